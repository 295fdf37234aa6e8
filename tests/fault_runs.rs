//! Fault runs: `triage run` against a real Kafka broker and a Zendesk-contract server while
//! something breaks: the broker stops for a while, the sink answers 503 for minutes, the
//! worker is SIGKILLed again and again, a second worker joins and leaves the group.
//!
//! Every run mixes bad records into the tickets and ends with the same accounting
//! (tests/support/faults.rs): each input offset ends in a ticket written back (marker and one
//! note at the sink) or in a dead letter of the right class; no ticket has two notes; the
//! group's lag drains to 0. Each run prints one line of figures (also collected in
//! `target/tmp/run-figures.txt`, which `scripts/test` shows at the end).
//!
//! Without `TRIAGE_LONG=1` each fault runs in a short version (a few minutes for all four);
//! `scripts/test --long` runs the full ones: a 30 s broker stop, 5 minutes of 503s, 100,000
//! tickets with a SIGKILL every few seconds, and many join/leave cycles. Assertions are about
//! correctness only; the timeouts on waits are generous.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use support::faults::*;
use support::ticketing::Fault;
use support::{bootstrap, logged_partitions, serial, Worker};

const MINUTE: Duration = Duration::from_secs(60);

/// Wait until the sink holds `n` written-back tickets.
async fn wait_marked(rig: &Rig, n: usize, w: &mut Worker, timeout: Duration) {
    let started = Instant::now();
    while rig.marked() < n {
        assert_running(w, "waiting for tickets to be written back");
        assert!(
            started.elapsed() < timeout,
            "only {} of {n} tickets written back within {timeout:?}",
            rig.marked()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_stopped_mid_stream_worker_keeps_running_and_catches_up() {
    let _ = bootstrap(); // the broker's jars are in place (scripts/test)
    let _serial = serial().await;
    let (n, outage) = if long() {
        (20_000, Duration::from_secs(30))
    } else {
        (3_000, Duration::from_secs(10))
    };
    let broker = OwnBroker::start();
    let rig = Rig::new("fault-broker", &broker.bootstrap(), 3).await;
    let cfg = rig.config("", "max_in_flight = 2000\n");
    let mut w = Worker::start(&cfg, "w");
    // Spread over about 15 s: tickets keep coming while the broker is down.
    let chunk = n / 30;
    let feeder = feed(
        &rig.bootstrap,
        &rig.input,
        n,
        chunk,
        Duration::from_millis(500),
    );
    wait_marked(&rig, n / 6, &mut w, 2 * MINUTE).await;

    // The broker goes away while tickets are in flight and more keep coming.
    let down = Instant::now();
    broker.down();
    let before = rig.marked();
    tokio::time::sleep(outage).await;
    assert_running(&mut w, "broker down");
    broker.up();
    let back = Instant::now();
    let unavailable = down.elapsed();
    eprintln!("broker unavailable for {unavailable:?}; {before} tickets written back before");

    feeder.await.unwrap();
    wait_drained(&rig, 5 * MINUTE, || assert_running(&mut w, "catching up")).await;
    let drain = back.elapsed();
    stop(&mut w);
    let f = account(&rig, true);
    assert!(before < f.decided, "nothing was left to do after the stop");
    report(
        &format!("broker-stop-{}s", outage.as_secs()),
        &f,
        drain,
        &format!("unavailable_s={:.0}", unavailable.as_secs_f64()),
    );
}

/// The group's members (client ids) and state, from the broker.
fn group(group: &str) -> (Vec<String>, String) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let list = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .unwrap();
    let g = &list.groups()[0];
    (
        g.members().iter().map(|m| m.id().to_string()).collect(),
        g.state().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_503_for_minutes_worker_stays_in_the_group_and_drains() {
    let _serial = serial().await;
    let (n, outage, max_poll) = if long() {
        // Longer than librdkafka's default max.poll.interval.ms (300 s).
        (10_000, Duration::from_secs(300), None)
    } else {
        (2_000, Duration::from_secs(20), Some(10_000))
    };
    let rig = Rig::new("fault-503", &bootstrap(), 3).await;
    let cfg = rig.config(
        &max_poll
            .map(|ms| format!("\"max.poll.interval.ms\" = {ms}\n"))
            .unwrap_or_default(),
        "max_in_flight = 2000\nretry_max_ms = 5000\n",
    );
    let mut w = Worker::start(&cfg, "w");
    let feeder = feed(
        &rig.bootstrap,
        &rig.input,
        n,
        100,
        Duration::from_millis(200),
    );
    wait_marked(&rig, n / 5, &mut w, 2 * MINUTE).await;
    let (members_before, _) = group(&rig.group);

    // Every request fails with 503 until the outage ends.
    rig.zendesk
        .fail(None, None, usize::MAX, Fault::status(503).with_body("down"));
    let started = Instant::now();
    while started.elapsed() < outage {
        assert_running(&mut w, "sink down");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let lag_at_end_of_outage = rig.lag().expect("lag");
    let refused = usize::MAX - rig.zendesk.st.rules.lock().unwrap()[0].remaining;
    rig.zendesk.st.rules.lock().unwrap().clear();
    let recovered = Instant::now();
    eprintln!("sink down for {outage:?}: {refused} requests refused, lag {lag_at_end_of_outage}");
    assert!(
        refused > 0,
        "the worker never tried the sink during the outage"
    );
    assert!(lag_at_end_of_outage > 0, "the outage held nothing back");

    feeder.await.unwrap();
    wait_drained(&rig, 5 * MINUTE, || assert_running(&mut w, "catching up")).await;
    let drain = recovered.elapsed();

    // Still the same member: one assignment, never revoked or lost; the group unchanged.
    let (members_after, state) = group(&rig.group);
    assert_eq!(members_after, members_before, "the group's members changed");
    assert_eq!(state, "Stable");
    let log = w.log_text();
    assert_eq!(
        w.rebalances("assigned").len(),
        1,
        "the worker rejoined the group"
    );
    assert!(
        w.rebalances("revoked").is_empty(),
        "partitions revoked or lost"
    );
    assert!(
        !log.contains("max.poll.interval") && !log.contains("maximum poll interval"),
        "the worker overran max.poll.interval.ms"
    );
    assert!(log.contains("pausing intake") && log.contains("resuming intake"));
    stop(&mut w);
    let f = account(&rig, true);
    report(
        &format!("sink-503-{}s", outage.as_secs()),
        &f,
        drain,
        &format!("requests_refused={refused} lag_at_recovery={lag_at_end_of_outage} rebalances=0"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_every_few_seconds_while_tickets_flow() {
    let _serial = serial().await;
    // (tickets, ms from taking the partitions to the kill, fewest kills)
    let (n, kill_after, min_kills) = if long() {
        (100_000, (2_000, 6_000), 10)
    } else {
        (6_000, (1_000, 3_000), 4)
    };
    let mut dice = Dice::new("sigkill run");
    let rig = Rig::new("fault-kill", &bootstrap(), 3).await;
    let cfg = rig.config("", "max_in_flight = 2000\n");
    let (chunk, pause) = if long() { (1_000, 300) } else { (200, 300) };
    let feeder = feed(
        &rig.bootstrap,
        &rig.input,
        n,
        chunk,
        Duration::from_millis(pause),
    );
    let good = n - n / BAD_EVERY;
    let mut kills = 0;
    let mut last_kill = Instant::now();
    let mut w = Worker::start(&cfg, "w0");
    loop {
        // A restarted worker waits for the killed one's session to expire before it gets
        // the partitions; the kill comes a few seconds after it got them.
        wait_log_count(&mut w, "partitions assigned", 1, 2 * MINUTE).await;
        tokio::time::sleep(dice.millis(kill_after.0, kill_after.1)).await;
        if kills >= min_kills && feeder.is_finished() && rig.marked() >= good * 9 / 10 {
            break;
        }
        assert_running(&mut w, "before the kill");
        w.signal(libc::SIGKILL);
        w.wait(Duration::from_secs(10)).expect("SIGKILL");
        last_kill = Instant::now();
        kills += 1;
        eprintln!("kill {kills}: {} tickets written back", rig.marked());
        w = Worker::start(&cfg, &format!("w{kills}"));
    }
    feeder.await.unwrap();
    wait_drained(&rig, 10 * MINUTE, || assert_running(&mut w, "catching up")).await;
    let drain = last_kill.elapsed();
    stop(&mut w);
    // A record dead-lettered but not yet committed when the worker was killed is read again
    // after the restart: the worker finds its letter on the topic and writes no second one.
    let f = account(&rig, true);
    report(
        &format!("sigkill-{}k", n / 1000),
        &f,
        drain,
        &format!("kills={kills}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_worker_joins_and_leaves_repeatedly() {
    let _serial = serial().await;
    let (n, cycles) = if long() { (40_000, 25) } else { (6_000, 4) };
    let mut dice = Dice::new("join/leave run");
    let rig = Rig::new("fault-rebalance", &bootstrap(), 6).await;
    let cfg = rig.config("", "max_in_flight = 2000\n");
    let mut a = Worker::start(&cfg, "a");
    wait_log_count(&mut a, "partitions assigned", 1, 2 * MINUTE).await;
    // About as long as the join/leave cycles take.
    let feeder = feed(
        &rig.bootstrap,
        &rig.input,
        n,
        100,
        Duration::from_millis(400),
    );
    let mut revoked_from_a = 0;
    for cycle in 0..cycles {
        let before = a.rebalances("revoked").len();
        let mut b = Worker::start(&cfg, &format!("b{cycle}"));
        // Cooperative: a first gives up only the partitions that move, b gets them in a
        // second round.
        let started = Instant::now();
        while b.rebalances("assigned").iter().all(|p| p.is_empty()) {
            assert_running(&mut b, "b joining");
            assert!(started.elapsed() < 2 * MINUTE, "b never got a partition");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(dice.millis(1_000, 3_000)).await;
        assert_running(&mut a, "b joined");
        stop(&mut b);
        let moved = a.rebalances("revoked").len() - before;
        revoked_from_a += moved;
        tokio::time::sleep(dice.millis(500, 2_000)).await;
        eprintln!(
            "cycle {}: b took {:?} ; {} tickets written back",
            cycle + 1,
            b.rebalances("assigned"),
            rig.marked()
        );
    }
    let last_leave = Instant::now();
    feeder.await.unwrap();
    wait_drained(&rig, 5 * MINUTE, || assert_running(&mut a, "catching up")).await;
    let drain = last_leave.elapsed();
    let log = a.log_text();
    assert!(revoked_from_a > 0, "a never gave a partition up");
    assert!(!log.contains("lost=true"), "a lost its assignment");
    // a kept some partitions all along: it never held none after its first assignment.
    let mut held = std::collections::BTreeSet::new();
    for line in log.lines() {
        if line.contains("partitions assigned") {
            held.extend(logged_partitions(line));
        } else if line.contains("partitions revoked") {
            for p in logged_partitions(line) {
                held.remove(&p);
            }
            assert!(
                !held.is_empty(),
                "a gave up every partition at once: {line}"
            );
        }
    }
    stop(&mut a);
    let f = account(&rig, true);
    report(
        &format!("join-leave-x{cycles}"),
        &f,
        drain,
        &format!("revocations_of_a={revoked_from_a}"),
    );
}
