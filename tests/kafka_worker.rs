//! `triage run` against the real Apache Kafka broker started by `scripts/test`
//! (deploy/kafka/kafka.sh): at least once, nothing lost, bad input dead-lettered, clean and
//! unclean stops, group membership, and a sink outage longer than max.poll.interval.ms.
//!
//! Each test creates its own topics and runs the real `triage` binary as a child process.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// The group's committed offset per partition of `topic`.
fn committed(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tickets_over_three_partitions_are_each_decided_once() {
    let _serial = serial().await;
    let s = Setup::new("t1", 3, &[]).await;
    let cfg = s.config("w.toml", "");
    let decisions = Collector::start(&s.decisions);
    let mut w = Worker::start(&cfg, "w");
    produce(&s.input, tickets(0, 10_000)).await;

    decisions.wait_for("10,000 decisions", 2 * MINUTE, |c| c.len() >= 10_000);
    // Anything decided twice would show up now.
    std::thread::sleep(Duration::from_secs(2));
    let decided = decisions.decided();
    assert_eq!(decided.len(), 10_000, "distinct tickets decided");
    assert_eq!(decisions.len(), 10_000, "decisions written (no duplicates)");
    assert!((0..10_000).all(|i| decided.contains_key(&format!("T{i:06}"))));

    // The record: the classify shape plus source, keyed by ticket id, on every partition.
    let all = decisions.snapshot();
    let mut source_partitions = BTreeSet::new();
    for g in &all {
        let v = json(g.payload.as_deref().unwrap());
        assert_eq!(g.key.as_deref(), Some(v["id"].as_str().unwrap().as_bytes()));
        assert_eq!(v["source"]["topic"], s.input.as_str());
        source_partitions.insert(v["source"]["partition"].as_i64().unwrap());
        assert!(v["source"]["offset"].as_i64().unwrap() >= 0);
        for key in ["symptoms", "tags", "reply", "catalogue"] {
            assert!(v.get(key).is_some(), "decision lacks {key}: {v}");
        }
    }
    assert_eq!(source_partitions, BTreeSet::from([0, 1, 2]));
    let pin = all
        .iter()
        .map(|g| json(g.payload.as_deref().unwrap()))
        .find(|v| v["id"] == "T000000")
        .unwrap();
    assert_eq!(pin["symptoms"][0]["id"], "pin-locked", "{pin}");

    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(30))
        .expect("worker did not stop after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", w.log_text());
    assert_eq!(
        committed(&s.group, &s.input, 3),
        end_offsets(&s.input, 3),
        "everything committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dead_letter_topic_and_good_tickets_are_decided() {
    let _serial = serial().await;
    let big_topics = [("max.message.bytes", "8388608")];
    let s = Setup::new("t2", 3, &big_topics).await;
    let cfg = s.config(
        "w.toml",
        "[kafka.producer_properties]\n\"message.max.bytes\" = 10485760\n[worker]\napi_user = \"triage-bot\"\n",
    );
    let big_body = format!(
        r#"{{"id": "P4", "body": "{}"}}"#,
        "my PIN is blocked ".repeat(5 * 1024 * 1024 / 18)
    );
    assert!(big_body.len() >= 5 * 1024 * 1024);
    let poison: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "invalid_json",
            Some(br#"{"id": "P1", "body": "unterminated"#.to_vec()),
        ),
        (
            "invalid_utf8",
            Some(b"{\"id\": \"P2\", \"body\": \"caf\xe9 au lait\"}".to_vec()),
        ),
        (
            "missing_body",
            Some(br#"{"id": "P3", "subject": "only a subject"}"#.to_vec()),
        ),
        ("too_large", Some(big_body.into_bytes())),
        ("empty", None),
    ];
    let mut records = tickets(0, 300);
    for (i, (class, payload)) in poison.iter().enumerate() {
        records.insert(
            40 + i * 50,
            (
                Some(format!("poison-{class}").into_bytes()),
                payload.clone(),
            ),
        );
    }
    // Loop prevention: triage's own changes are acknowledged and skipped.
    records.push((
        None,
        Some(br#"{"id": "O1", "body": "note added", "author": "triage-bot"}"#.to_vec()),
    ));
    records.push((
        None,
        Some(
            br#"{"id": "O2", "body": "PIN blocked", "tags": ["vip", "triage-processed"]}"#.to_vec(),
        ),
    ));
    let input = Collector::start(&s.input);
    let decisions = Collector::start(&s.decisions);
    let dead = Collector::start(&s.dead_letters);
    let mut w = Worker::start(&cfg, "w");
    produce(&s.input, records).await;

    decisions.wait_for("300 decisions", 2 * MINUTE, |c| c.len() >= 300);
    dead.wait_for("5 dead letters", MINUTE, |c| c.len() >= 5);
    input.wait_for("the whole input", MINUTE, |c| c.len() >= 307);
    std::thread::sleep(Duration::from_secs(2));
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(30))
        .expect("worker did not stop");
    assert!(status.success(), "{status}\n{}", w.log_text());

    let decided = decisions.decided();
    assert_eq!(decided.len(), 300, "every good ticket decided");
    assert_eq!(decisions.len(), 300);
    assert!(
        !decided.contains_key("O1") && !decided.contains_key("O2"),
        "own changes skipped"
    );

    let letters = dead.snapshot();
    assert_eq!(letters.len(), 5, "one dead letter per poison message");
    let originals: HashMap<(i32, i64), _> = input
        .snapshot()
        .into_iter()
        .map(|g| ((g.partition, g.offset), g))
        .collect();
    let mut classes = HashSet::new();
    for l in &letters {
        let h = &l.headers;
        assert_eq!(h["triage.source.topic"], s.input, "{h:?}");
        let at = (
            h["triage.source.partition"].parse::<i32>().unwrap(),
            h["triage.source.offset"].parse::<i64>().unwrap(),
        );
        let original = &originals[&at];
        assert_eq!(l.payload, original.payload, "the original bytes are kept");
        assert_eq!(l.key, original.key, "the original key is kept");
        let class = &h["triage.error.class"];
        assert_eq!(
            original.key.as_deref(),
            Some(format!("poison-{class}").as_bytes()),
            "class of {at:?}"
        );
        assert!(!h["triage.error.message"].is_empty());
        assert!(!h.contains_key("triage.payload.truncated"));
        classes.insert(class.clone());
    }
    assert_eq!(classes.len(), 5);
    assert_eq!(
        committed(&s.group, &s.input, 3),
        end_offsets(&s.input, 3),
        "no partition stuck"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_decides_every_ticket_with_bounded_duplicates() {
    let _serial = serial().await;
    const MAX_IN_FLIGHT: usize = 500;
    let s = Setup::new("t3", 3, &[]).await;
    let cfg = s.config(
        "w.toml",
        // A short session timeout: the restarted worker gets the partitions as soon as the
        // group notices that the killed one is gone.
        &format!(
            "[kafka.consumer_properties]\n\"session.timeout.ms\" = 6000\n[worker]\nmax_in_flight = {MAX_IN_FLIGHT}\n"
        ),
    );
    let decisions = Collector::start(&s.decisions);
    produce(&s.input, tickets(0, 10_000)).await;
    let mut w = Worker::start(&cfg, "first");
    decisions.wait_for("3,000 decisions", 2 * MINUTE, |c| c.len() >= 3_000);
    w.signal(libc::SIGKILL);
    w.wait(Duration::from_secs(10)).expect("SIGKILL");
    let before = decisions.len();
    assert!(
        before < 10_000,
        "killed too late to test anything ({before} decided)"
    );

    let mut w2 = Worker::start(&cfg, "second");
    decisions.wait_for("every ticket decided", 2 * MINUTE, |c| {
        c.decided().len() >= 10_000
    });
    std::thread::sleep(Duration::from_secs(2));
    let decided = decisions.decided();
    assert_eq!(decided.len(), 10_000, "every ticket decided at least once");
    let duplicates = decisions.len() - decided.len();
    eprintln!("SIGKILL after {before} decisions: {duplicates} ticket(s) decided twice (limit {MAX_IN_FLIGHT})");
    assert!(
        duplicates <= MAX_IN_FLIGHT,
        "{duplicates} duplicates exceed the in-flight limit {MAX_IN_FLIGHT}"
    );
    assert!(
        decided.values().all(|&n| n <= 2),
        "a ticket was decided more than twice"
    );
    w2.signal(libc::SIGTERM);
    assert!(w2.wait(Duration::from_secs(30)).expect("stop").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_drains_commits_and_restart_decides_nothing_twice() {
    let _serial = serial().await;
    const DRAIN: Duration = Duration::from_secs(5);
    let s = Setup::new("t4", 3, &[]).await;
    let cfg = s.config(
        "w.toml",
        &format!(
            "[worker]\ndrain_timeout_ms = {}\nmax_in_flight = 2000\n",
            DRAIN.as_millis()
        ),
    );
    let decisions = Collector::start(&s.decisions);
    produce(&s.input, tickets(0, 10_000)).await;
    let mut w = Worker::start(&cfg, "first");
    decisions.wait_for("3,000 decisions", 2 * MINUTE, |c| c.len() >= 3_000);
    let t0 = Instant::now();
    w.signal(libc::SIGTERM);
    let status = w
        .wait(DRAIN + Duration::from_secs(5))
        .expect("no exit within the drain timeout");
    let took = t0.elapsed();
    assert!(status.success(), "{status}\n{}", w.log_text());
    assert!(
        took < DRAIN + Duration::from_secs(3),
        "took {took:?} to stop"
    );
    let log = w.log_text();
    assert!(
        log.contains("stop requested") && log.contains("abandoned=0"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = decisions.len();
    assert!(before < 10_000, "stopped too late to test anything");

    let mut w2 = Worker::start(&cfg, "second");
    decisions.wait_for("every ticket decided", 2 * MINUTE, |c| {
        c.decided().len() >= 10_000
    });
    std::thread::sleep(Duration::from_secs(2));
    let decided = decisions.decided();
    assert_eq!(decided.len(), 10_000);
    let twice: Vec<_> = decided
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(id, _)| id.clone())
        .take(10)
        .collect();
    assert!(
        twice.is_empty(),
        "decided twice after a clean stop: {twice:?}…"
    );
    eprintln!("SIGTERM after {before} decisions, stopped in {took:?}; no duplicates");
    w2.signal(libc::SIGTERM);
    assert!(w2.wait(Duration::from_secs(30)).expect("stop").success());
}

/// The partitions a worker holds now, from its assignment / revocation log lines.
fn holding(w: &Worker) -> BTreeSet<i32> {
    let mut held = BTreeSet::new();
    for line in w.log_text().lines() {
        if line.contains("partitions assigned") {
            held.extend(logged_partitions(line));
        } else if line.contains("partitions revoked") {
            for p in logged_partitions(line) {
                held.remove(&p);
            }
        }
    }
    held
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_one_takes_over_when_the_other_stops() {
    let _serial = serial().await;
    let s = Setup::new("t5", 3, &[]).await;
    let cfg = s.config("w.toml", "[worker]\nmax_in_flight = 1000\n");
    let decisions = Collector::start(&s.decisions);
    let mut a = Worker::start(&cfg, "a");
    a.wait_log("partitions assigned", MINUTE);
    let mut b = Worker::start(&cfg, "b");
    wait_until("both workers to hold partitions", MINUTE, || {
        let (ha, hb) = (holding(&a), holding(&b));
        !ha.is_empty() && !hb.is_empty() && ha.is_disjoint(&hb) && ha.union(&hb).count() == 3
    });
    let (held_a, held_b) = (holding(&a), holding(&b));
    eprintln!("a holds {held_a:?}, b holds {held_b:?}");

    produce(&s.input, tickets(0, 3_000)).await;
    decisions.wait_for("3,000 decisions", 2 * MINUTE, |c| {
        c.decided().len() >= 3_000
    });
    // Both decided some: every partition has decisions, and each partition belongs to one.
    let by_partition: BTreeSet<i64> = decisions
        .snapshot()
        .iter()
        .map(|g| {
            json(g.payload.as_deref().unwrap())["source"]["partition"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(by_partition, BTreeSet::from([0, 1, 2]));

    // Stop a while tickets keep coming; b must take a's partitions over.
    let input = s.input.clone();
    let feeder = tokio::spawn(async move {
        for chunk in 0..12 {
            produce(&input, tickets(3_000 + chunk * 500, 500)).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.signal(libc::SIGTERM);
    let status = a.wait(Duration::from_secs(30)).expect("a did not stop");
    assert!(status.success(), "{status}\n{}", a.log_text());
    wait_until("b to hold every partition", MINUTE, || {
        holding(&b).len() == 3
    });
    feeder.await.unwrap();
    decisions.wait_for("9,000 decisions", 2 * MINUTE, |c| {
        c.decided().len() >= 9_000
    });
    std::thread::sleep(Duration::from_secs(2));
    let decided = decisions.decided();
    assert_eq!(decided.len(), 9_000, "nothing lost");
    let duplicates = decisions.len() - decided.len();
    eprintln!("handover: {duplicates} duplicate decision(s)");
    assert!(
        duplicates <= 1000,
        "{duplicates} duplicates exceed the in-flight limit"
    );
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(30)).expect("b stop").success());
    assert_eq!(committed(&s.group, &s.input, 3), end_offsets(&s.input, 3));
}

/// A webhook receiver that answers 503 until `fail_until`, then 200.
#[derive(Default)]
struct Hook {
    fail_until: Mutex<Option<Instant>>,
    first_request: Mutex<Option<Instant>>,
    last_failure: Mutex<Option<Instant>>,
    failures: AtomicUsize,
    accepted: Mutex<HashMap<String, usize>>,
    idempotency_keys: Mutex<HashSet<String>>,
}

async fn hook(
    axum::extract::State(h): axum::extract::State<Arc<Hook>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let now = Instant::now();
    h.first_request.lock().unwrap().get_or_insert(now);
    let failing = h.fail_until.lock().unwrap().is_some_and(|t| now < t);
    if failing {
        h.failures.fetch_add(1, Ordering::AcqRel);
        *h.last_failure.lock().unwrap() = Some(now);
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "down for maintenance",
        )
            .into_response();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    *h.accepted.lock().unwrap().entry(id).or_insert(0) += 1;
    if let Some(k) = headers.get("idempotency-key") {
        h.idempotency_keys
            .lock()
            .unwrap()
            .insert(k.to_str().unwrap().to_string());
    }
    axum::http::StatusCode::NO_CONTENT.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_longer_than_max_poll_interval_keeps_the_worker_in_the_group() {
    let _serial = serial().await;
    const MAX_POLL: Duration = Duration::from_secs(8);
    const OUTAGE: Duration = Duration::from_secs(15);
    let state = Arc::new(Hook::default());
    *state.fail_until.lock().unwrap() = Some(Instant::now() + OUTAGE);
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(state.clone());
    let port = serve_on_loopback(app).await.port();

    let s = Setup::new("t6", 3, &[]).await;
    // The breaker is kept closed: this test wants the worker retrying all through the outage
    // (the breaker's own behaviour is tested in tests/sinks.rs).
    let cfg = s.config(
        "w.toml",
        &format!(
            "[kafka.consumer_properties]\n\"max.poll.interval.ms\" = {}\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000\n\
             [sink.webhook]\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout_ms = 2000\n\
             circuit_breaker_failures = 1000000\n\
             [worker]\nmax_in_flight = 200\nretry_max_ms = 1000\n",
            MAX_POLL.as_millis()
        ),
    );
    let decisions = Collector::start(&s.decisions);
    produce(&s.input, tickets(0, 1_000)).await;
    let mut w = Worker::start(&cfg, "w");

    let deadline = Instant::now() + 2 * MINUTE;
    while state.accepted.lock().unwrap().len() < 1_000 {
        assert!(
            Instant::now() < deadline,
            "webhook got {} tickets\n{}",
            state.accepted.lock().unwrap().len(),
            w.log_text()
        );
        assert!(
            w.child.try_wait().unwrap().is_none(),
            "worker exited\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The outage really outlasted max.poll.interval.ms, and the worker kept retrying through it.
    let first = state.first_request.lock().unwrap().unwrap();
    let last_failure = state.last_failure.lock().unwrap().unwrap();
    assert!(
        last_failure - first > MAX_POLL + Duration::from_secs(2),
        "outage seen for {:?}",
        last_failure - first
    );
    assert!(state.failures.load(Ordering::Acquire) >= 5);

    // Everything caught up, nothing twice on the webhook or on the decisions topic.
    let accepted = state.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1_000);
    assert!(
        accepted.values().all(|&n| n == 1),
        "a ticket was accepted twice"
    );
    assert_eq!(state.idempotency_keys.lock().unwrap().len(), 1_000);
    decisions.wait_for("1,000 decisions", MINUTE, |c| c.len() >= 1_000);
    assert_eq!(
        decisions.len(),
        1_000,
        "decisions topic written once per ticket"
    );

    // Still the same member: one assignment, never revoked or lost, never over the interval.
    let log = w.log_text();
    assert_eq!(
        w.rebalances("assigned").len(),
        1,
        "rejoined the group:\n{log}"
    );
    assert!(
        w.rebalances("revoked").is_empty(),
        "partitions revoked:\n{log}"
    );
    assert!(
        !log.to_lowercase().contains("max.poll.interval") && !log.contains("maximum poll interval"),
        "{log}"
    );
    assert!(
        log.contains("pausing intake") && log.contains("resuming intake"),
        "{log}"
    );
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(30)).expect("stop").success());
}
