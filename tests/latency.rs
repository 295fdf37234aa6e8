//! Paced latency: tickets produced at a steady rate into the real Kafka broker (started by
//! `scripts/test` or `scripts/bench`), the release `triage run` deciding them with the
//! decisions topic and a Zendesk sink pointed at a local server holding Zendesk's contract, and
//! for each ticket the time from its produce to
//!
//! - **decision**: its decision record read from the decisions topic by a reader of this
//!   test (the moment `poll` hands it over; the reader waits at most 1 ms per fetch, see
//!   [`READER_FETCH_WAIT_MS`]). Not the decision record's Kafka timestamp: the worker's
//!   producer stamps it when the record is handed over, before `linger.ms` and the trip to the
//!   broker, so it would leave out exactly the waits being measured; and it has whole
//!   milliseconds only. The timestamp figures are printed beside, for comparison.
//! - **sink**: the Zendesk sink's last request for the ticket, the tags with the marker (after
//!   the note), arriving at the contract server: the moment an agent sees the ticket triaged.
//!   Tickets without a symptom get no request; they count for the decision only.
//!
//! The produce time is taken right before the record is handed to a producer that sends at
//! once (`linger.ms` 0), one ticket every `1 / rate` seconds on a fixed schedule (no bursts:
//! a send that is late goes at once and the schedule is kept; the worst lateness is printed).
//! Everything runs in this process on one monotonic clock, except the worker and the broker.
//! Before the clock starts, [`WARM_UP`] tickets are sent and waited for, so that the figures
//! are those of a worker in service, not of its first seconds (connections, producer id).
//!
//! 1,000 tickets/s for 5 s by default (the test suite); `TRIAGE_LONG=1` for 60 s;
//! `TRIAGE_LATENCY_RATE` and `TRIAGE_LATENCY_SECS` set either; `TRIAGE_LATENCY_CONFIG` adds
//! TOML to the worker's file (e.g. `[kafka.producer_properties]` to try a setting). Figures
//! on one line starting `latency:` (p50 / p99 / p99.9, nearest rank, in ms; `--nocapture`
//! shows it, `scripts/bench` runs it for 60 s); `TRIAGE_LATENCY_DUMP=FILE` writes every
//! ticket's figures. Speed is never asserted here: only that every ticket was decided once and
//! every ticket with a symptom got its note and tags once.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use support::ticketing::{zendesk_stamp, Server, Vendor, MARKER};
use support::*;
use triage::catalog::Catalog;
use triage::classify::Classifier;
use triage::decision::Decision;
use triage::ticket::Ticket;

const PARTITIONS: i32 = 3;

/// Tickets sent before the measured ones, and waited for: the producer's connection and id,
/// the worker's first records and the sink's connections are set up by then.
const WARM_UP: usize = 20;

/// The decisions reader's `fetch.wait.max.ms`: how long the broker may hold its fetch when
/// there is nothing new. Small, so that the reader adds no wait of its own to the figures.
const READER_FETCH_WAIT_MS: &str = "1";

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

/// Tickets per second.
fn rate() -> u64 {
    env_number("TRIAGE_LATENCY_RATE").unwrap_or(1_000).max(1)
}

/// Seconds of production.
fn secs() -> u64 {
    env_number("TRIAGE_LATENCY_SECS").unwrap_or(if support::faults::long() { 60 } else { 5 })
}

/// Ticket `i`'s Zendesk id (numeric, as Zendesk's are); also its record key.
fn zid(i: usize) -> String {
    (5_000_000 + i).to_string()
}

/// The ticket number of a Zendesk id or key, if it is one of this run's.
fn number(id: &str, n: usize) -> Option<usize> {
    id.parse::<usize>()
        .ok()?
        .checked_sub(5_000_000)
        .filter(|i| *i < n)
}

/// The labelled corpus (e-mail threads, HTML, chat, four languages, a third off-topic),
/// without ids or labels, and whether the built-in catalogue finds a symptom in each.
fn corpus() -> Vec<(serde_json::Map<String, serde_json::Value>, bool)> {
    let classifier = Classifier::new(Catalog::builtin()).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut out = Vec::new();
    for f in [
        "tickets.jsonl",
        "holdout.jsonl",
        "holdout2.jsonl",
        "holdout3.jsonl",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let serde_json::Value::Object(mut o) = serde_json::from_str(line).unwrap() else {
                panic!("{f}: not an object");
            };
            o.remove("labels");
            o.remove("id");
            let text = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            let t = Ticket {
                id: "0".into(),
                subject: text("subject"),
                body: text("body"),
                ..Default::default()
            };
            let found = !Decision::new(classifier.catalog(), &t, classifier.classify(t.text()))
                .symptoms
                .is_empty();
            out.push((o, found));
        }
    }
    out
}

/// What the producer did: when each ticket was handed over.
struct Sent {
    /// Since the run's clock origin, by ticket number.
    at: Vec<Duration>,
    /// Wall-clock milliseconds of the same moments (to compare with Kafka timestamps).
    wall_ms: Vec<i64>,
    /// The furthest a send fell behind its slot in the schedule.
    behind_max: Duration,
}

/// Hand one record to the producer, waiting while its queue is full.
fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, key: &str, payload: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(payload);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Produce the [`WARM_UP`] tickets after the first `n` of `payloads` and wait until `warm`
/// says they are all decided; then the first `n`, one every `interval`, keyed by ticket id, and
/// wait for every acknowledgement.
fn produce_paced(
    topic: &str,
    payloads: &[(String, Vec<u8>)],
    n: usize,
    interval: Duration,
    origin: Instant,
    warm: &AtomicUsize,
) -> Sent {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "0")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, payload) in &payloads[n..] {
        send(&p, topic, key, payload);
        std::thread::sleep(Duration::from_millis(20));
    }
    let by = Instant::now() + Duration::from_secs(60);
    while warm.load(Ordering::Acquire) < payloads.len() - n {
        assert!(
            Instant::now() < by,
            "the warm-up tickets were not decided within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut sent = Sent {
        at: Vec::with_capacity(payloads.len()),
        wall_ms: Vec::with_capacity(payloads.len()),
        behind_max: Duration::ZERO,
    };
    let start = Instant::now();
    for (i, (key, payload)) in payloads[..n].iter().enumerate() {
        let slot = start + interval * i as u32;
        let now = Instant::now();
        if slot > now {
            std::thread::sleep(slot - now);
        }
        let at = Instant::now();
        sent.behind_max = sent.behind_max.max(at.saturating_duration_since(slot));
        sent.at.push(at - origin);
        sent.wall_ms.push(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
        );
        send(&p, topic, key, payload);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    sent
}

/// What the reader saw on the decisions topic.
struct Seen {
    /// (ticket number, since the run's clock origin, the record's Kafka timestamp in ms).
    decisions: Vec<(usize, Duration, Option<i64>)>,
    /// Records whose key is not one of this run's tickets.
    foreign: usize,
}

/// A reader of the decisions topic from its beginning, connected before the run starts.
fn reader(topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("latency-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", READER_FETCH_WAIT_MS)
        .set("fetch.min.bytes", "1")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        c.fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("decisions topic watermarks");
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

/// Read until every one of `n` tickets (the measured ones and the warm-up after them) is
/// decided (or `deadline`), then `settle` longer to catch a duplicate; `warm` counts the
/// warm-up tickets decided, from `first_warm` on.
fn read_decisions(
    c: BaseConsumer,
    (n, first_warm): (usize, usize),
    origin: Instant,
    deadline: Instant,
    settle: Duration,
    warm: &AtomicUsize,
) -> Seen {
    let mut seen = Seen {
        decisions: Vec::with_capacity(n),
        foreign: 0,
    };
    let mut decided = vec![false; n];
    let mut distinct = 0;
    let mut until = deadline;
    while Instant::now() < until {
        let Some(m) = c.poll(Duration::from_millis(50)) else {
            continue;
        };
        let at = origin.elapsed();
        let m = m.expect("reading the decisions topic");
        let ts = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            Timestamp::NotAvailable => None,
        };
        let index = m
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| number(k, n));
        match index {
            Some(i) => {
                seen.decisions.push((i, at, ts));
                if !std::mem::replace(&mut decided[i], true) {
                    distinct += 1;
                    if i >= first_warm {
                        warm.fetch_add(1, Ordering::AcqRel);
                    }
                    if distinct == n {
                        until = Instant::now() + settle;
                    }
                }
            }
            None => seen.foreign += 1,
        }
    }
    seen
}

/// Nearest-rank percentile `q` (0..1) of sorted `v`, in ms.
fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_tickets_are_decided_and_written_back_once() {
    let _serial = serial().await;
    let (rate, secs) = (rate(), secs());
    let n = (rate * secs) as usize;
    // Tickets n.. are the warm-up: decided and written back like the others, never measured.
    let all = n + WARM_UP;
    let corpus = corpus();
    let payloads: Vec<(String, Vec<u8>)> = (0..all)
        .map(|i| {
            let mut o = corpus[i % corpus.len()].0.clone();
            o.insert("id".into(), zid(i).into());
            // The help desk's own stamp: the sink bases its safe update on it, no read first.
            o.insert("updated_at".into(), zendesk_stamp(0).into());
            (zid(i), serde_json::to_vec(&o).unwrap())
        })
        .collect();
    let with_symptom: Vec<bool> = (0..all).map(|i| corpus[i % corpus.len()].1).collect();

    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("bot@example.com/token:latency-token")
    );
    let zendesk = Server::start(Vendor::Zendesk, &auth).await;
    zendesk.st.keep_log.store(false, Ordering::Release);
    zendesk.st.keep_arrivals.store(true, Ordering::Release);
    let s = Setup::new("latency", PARTITIONS, &[]).await;
    let token = s.dir.path().join("zendesk-token");
    std::fs::write(&token, "latency-token\n").unwrap();
    let extra = std::env::var("TRIAGE_LATENCY_CONFIG").unwrap_or_default();
    let cfg = s.config(
        "latency.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [sink.zendesk]\nbase_url = \"{}\"\nemail = \"bot@example.com\"\napi_token_file = \"{}\"\n\
             timeout_ms = 10000\nrequests_per_minute = 6000000\n{}\n",
            zendesk.base(),
            token.display(),
            extra.replace("\\n", "\n")
        ),
    );

    // Per-ticket lines are info-level: at warn the figures measure the pipeline, not the log.
    let mut w = Worker::start_with(
        &cfg,
        "worker",
        &[],
        &[("TRIAGE_LOG", "warn,triage::server=info")],
    );
    let addr = w.metrics_addr(Duration::from_secs(60));
    let ready_by = Instant::now() + Duration::from_secs(60);
    while http_get(&addr, "/readyz").await.0 != 200 {
        assert!(
            Instant::now() < ready_by,
            "worker not ready within 60 s\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Assigned; give the consumer a moment to look up its start offsets.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let origin = Instant::now();
    let c = reader(&s.decisions);
    let deadline = origin + Duration::from_secs(secs + 180);
    let warm = Arc::new(AtomicUsize::new(0));
    let w2 = warm.clone();
    let reading = tokio::task::spawn_blocking(move || {
        read_decisions(c, (all, n), origin, deadline, Duration::from_secs(2), &w2)
    });
    let input = s.input.clone();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let sent = tokio::task::spawn_blocking(move || {
        produce_paced(&input, &payloads, n, interval, origin, &warm)
    })
    .await
    .unwrap();
    let produced_s = (sent.at[n - 1] - sent.at[0]).as_secs_f64();
    let seen = reading.await.unwrap();

    // Every ticket with a symptom ends in the tags with the marker; wait for the last ones.
    let want = with_symptom.iter().filter(|x| **x).count();
    let marked = || {
        zendesk
            .st
            .tickets
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.tags.iter().any(|x| x == MARKER))
            .count()
    };
    while marked() < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(60))
        .expect("worker did not stop after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", w.log_text());

    // Per ticket (the warm-up included): how often decided and tagged, and the first time.
    let mut times = vec![0usize; all];
    let mut decided_at: Vec<Option<(Duration, Option<i64>)>> = vec![None; all];
    for (i, at, ts) in &seen.decisions {
        times[*i] += 1;
        decided_at[*i].get_or_insert((*at, *ts));
    }
    let mut tag_writes = vec![0usize; all];
    let mut tagged_at: Vec<Option<Duration>> = vec![None; all];
    let mut first_request: Vec<Option<Duration>> = vec![None; all];
    for a in zendesk.st.arrivals.lock().unwrap().iter() {
        let Some(rest) = a.path.strip_prefix("/api/v2/tickets/") else {
            continue;
        };
        let id = rest.split(['/', '.']).next().unwrap_or("");
        let Some(i) = number(id, all) else { continue };
        let at = a.at - origin;
        first_request[i].get_or_insert(at);
        if a.method == "PUT" && rest.ends_with("/tags.json") {
            tag_writes[i] += 1;
            tagged_at[i].get_or_insert(at);
        }
    }

    // The figures: the measured tickets only.
    let after = |i: usize, at: Duration| ms(at.saturating_sub(sent.at[i]));
    let decision = |i: usize| decided_at[i].map(|(at, _)| after(i, at));
    let sink = |i: usize| tagged_at[i].map(|at| after(i, at));
    let mut decision_ms: Vec<f64> = (0..n).filter_map(decision).collect();
    let mut sink_ms: Vec<f64> = (0..n).filter_map(sink).collect();
    let mut first_ms: Vec<f64> = (0..n)
        .filter_map(|i| first_request[i].map(|at| after(i, at)))
        .collect();
    let mut stamp_ms: Vec<f64> = (0..n)
        .filter_map(|i| Some((decided_at[i]?.1? - sent.wall_ms[i]) as f64))
        .collect();
    // TRIAGE_LATENCY_DUMP=FILE: one line per ticket (number, produced at, decision and sink
    // latency, in ms; `-` where there is none), to see when in the run the slow ones were.
    if let Ok(file) = std::env::var("TRIAGE_LATENCY_DUMP") {
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "{i} {:.3} {} {}\n",
                    ms(sent.at[i]),
                    show(decision(i)),
                    show(sink(i))
                )
            })
            .collect();
        std::fs::write(&file, text).unwrap();
    }
    for v in [&mut decision_ms, &mut stamp_ms, &mut sink_ms, &mut first_ms] {
        v.sort_by(f64::total_cmp);
    }
    support::faults::append_figures(&format!(
        "latency: rate={rate}/s secs={secs} tickets={n} decision_p50_ms={:.2} decision_p99_ms={:.2} decision_p999_ms={:.2} sink_p50_ms={:.2} sink_p99_ms={:.2} sink_p999_ms={:.2}",
        pct(&decision_ms, 0.5),
        pct(&decision_ms, 0.99),
        pct(&decision_ms, 0.999),
        pct(&sink_ms, 0.5),
        pct(&sink_ms, 0.99),
        pct(&sink_ms, 0.999),
    ));
    eprintln!(
        "latency details: produced_rate={:.0}/s produce_behind_max_ms={:.2} decision_max_ms={:.1} \
         sink_tickets={} sink_max_ms={:.1} sink_first_request_p50_ms={:.2} sink_first_request_p99_ms={:.2} \
         decision_timestamp_p50_ms={} decision_timestamp_p99_ms={} (Kafka timestamps, whole ms)",
        (n - 1) as f64 / produced_s.max(1e-3),
        ms(sent.behind_max),
        decision_ms.last().copied().unwrap_or(f64::NAN),
        sink_ms.len(),
        sink_ms.last().copied().unwrap_or(f64::NAN),
        pct(&first_ms, 0.5),
        pct(&first_ms, 0.99),
        pct(&stamp_ms, 0.5),
        pct(&stamp_ms, 0.99),
    );

    // Correctness only: every ticket decided once, every write-back seen once.
    let missing = times.iter().filter(|t| **t == 0).count();
    let twice = times.iter().filter(|t| **t > 1).count();
    assert_eq!(
        (missing, twice, seen.foreign),
        (0, 0, 0),
        "every ticket decided exactly once (missing, twice, foreign)"
    );
    assert_eq!(
        end_offsets(&s.dead_letters, 1).iter().sum::<i64>(),
        0,
        "nothing dead-lettered\n{}",
        w.log_text()
    );
    let wrong: Vec<usize> = (0..all)
        .filter(|&i| tag_writes[i] != usize::from(with_symptom[i]))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "tickets whose tags were not written exactly once (with a symptom) or not at all \
         (without): {wrong:?}"
    );
    for (i, found) in with_symptom.iter().enumerate() {
        let t = zendesk.ticket(&zid(i));
        assert_eq!(
            t.notes.len(),
            usize::from(*found),
            "ticket {}: notes",
            zid(i)
        );
    }
    assert!(
        zendesk.st.unknown.lock().unwrap().is_empty()
            && zendesk.st.violations.lock().unwrap().is_empty(),
        "requests outside Zendesk's contract"
    );
}
