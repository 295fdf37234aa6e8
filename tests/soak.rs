//! Soak: many tickets through the real Kafka broker started by `scripts/test` and the release
//! `triage run`, with the default in-flight limit: every ticket decided exactly once, nothing
//! dead-lettered, and the worker's peak resident memory (VmHWM) under [`PEAK_RSS_LIMIT_MIB`].
//!
//! 50,000 tickets by default; 1,000,000 with `TRIAGE_LONG=1` (`scripts/test --long`), or any
//! count in `TRIAGE_SOAK_TICKETS`. The figures are printed on one line starting `soak:`
//! (run with `--nocapture` to see it; `scripts/bench` does): tickets/s from the first decision
//! to the last (Kafka record timestamps of the decisions) and over the slowest whole 5-second
//! window between them (runs shorter than 7 s have none: `-`), wall time including the group
//! join, p50/p99 of the worker's decide latency (`triage_ticket_duration_seconds`: record
//! taken off the input -> the decisions topic acknowledged it, interpolated within histogram
//! buckets like PromQL's `histogram_quantile`), and peak RSS. Speed is never asserted here.
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, Timestamp};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use support::*;

/// The worker's peak resident set must stay below this with the default `max_in_flight`.
const PEAK_RSS_LIMIT_MIB: f64 = 256.0;

const PARTITIONS: i32 = 3;

fn ticket_count() -> usize {
    if let Ok(n) = std::env::var("TRIAGE_SOAK_TICKETS") {
        return n
            .parse()
            .expect("TRIAGE_SOAK_TICKETS must be a number of tickets");
    }
    match std::env::var("TRIAGE_LONG").as_deref() {
        Ok("1") => 1_000_000,
        _ => 50_000,
    }
}

/// The labelled corpus (e-mail threads, HTML, chat, four languages, a third off-topic),
/// without ids or labels: what the soak cycles through.
fn corpus() -> Vec<serde_json::Map<String, serde_json::Value>> {
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
            out.push(o);
        }
    }
    out
}

fn id(i: usize) -> String {
    format!("S{i:07}")
}

/// Produce tickets S0000000.. (the corpus, cycled) and wait until all are acknowledged.
fn load(topic: &str, n: usize) {
    let corpus = corpus();
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..n {
        let mut o = corpus[i % corpus.len()].clone();
        o.insert("id".into(), id(i).into());
        let payload = serde_json::to_vec(&o).unwrap();
        let key = id(i);
        let mut record = BaseRecord::to(topic).key(key.as_bytes()).payload(&payload);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(300)).expect("flush");
    let on_topic: i64 = end_offsets(topic, PARTITIONS).iter().sum();
    assert_eq!(on_topic, n as i64, "records on {topic} after loading");
}

/// Delete the run's topics: a long soak leaves a million records on the broker's disk.
async fn delete_topics(topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    if let Err(e) = admin.delete_topics(topics, &AdminOptions::new()).await {
        eprintln!("soak: cannot delete topics {topics:?}: {e}");
    }
}

/// What was read from the decisions topic: how often each ticket was decided, and when.
struct Decisions {
    /// By ticket number.
    times: Vec<u8>,
    /// Records whose key is not a soak ticket id.
    foreign: usize,
    /// Records read.
    total: usize,
    /// Kafka timestamps (ms) of the first and last decision.
    first_ms: i64,
    last_ms: i64,
    /// Decisions per second of Kafka timestamp.
    per_second: std::collections::BTreeMap<i64, usize>,
}

impl Decisions {
    /// The lowest rate over any whole 5-second window between the first decision and the
    /// last (the partial seconds at both ends left out); `None` for shorter runs.
    fn slowest_5s_rate(&self) -> Option<f64> {
        let (first, last) = (self.first_ms / 1000 + 1, self.last_ms / 1000 - 1);
        (first..=last - 4)
            .map(|start| {
                (start..start + 5)
                    .map(|sec| self.per_second.get(&sec).copied().unwrap_or(0))
                    .sum::<usize>() as f64
                    / 5.0
            })
            .min_by(f64::total_cmp)
    }
}

/// Read the decisions topic until `n` distinct tickets are decided (or `timeout`), then
/// `settle` longer to catch any duplicate.
fn read_decisions(topic: &str, n: usize, timeout: Duration, settle: Duration) -> Decisions {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("soak-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut d = Decisions {
        times: vec![0; n],
        foreign: 0,
        total: 0,
        first_ms: i64::MAX,
        last_ms: i64::MIN,
        per_second: Default::default(),
    };
    let mut distinct = 0;
    let deadline = Instant::now() + timeout;
    let mut settled: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if settled.is_some_and(|s| now >= s) {
            break;
        }
        assert!(
            now < deadline || settled.is_some(),
            "only {distinct} of {n} tickets decided after {timeout:?}"
        );
        let Some(m) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.expect("reading the decisions topic");
        d.total += 1;
        if let Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) = m.timestamp() {
            d.first_ms = d.first_ms.min(t);
            d.last_ms = d.last_ms.max(t);
            *d.per_second.entry(t / 1000).or_default() += 1;
        }
        let index = m
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.strip_prefix('S'))
            .and_then(|k| k.parse::<usize>().ok())
            .filter(|i| *i < n);
        match index {
            Some(i) => {
                if d.times[i] == 0 {
                    distinct += 1;
                }
                d.times[i] = d.times[i].saturating_add(1);
                if distinct == n && settled.is_none() {
                    settled = Some(Instant::now() + settle);
                }
            }
            None => d.foreign += 1,
        }
    }
    d
}

/// Peak resident set of a process, from `VmHWM` in `/proc/PID/status`, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}

/// The `q` quantile of a Prometheus histogram family in `metrics`, interpolated linearly within
/// the bucket it falls in (as `histogram_quantile` does).
fn histogram_quantile(metrics: &str, family: &str, q: f64) -> f64 {
    let prefix = format!("{family}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|l| {
            let (le, rest) = l.split_once('"').unwrap();
            let count: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, count)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().expect("histogram buckets").1;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower;
            }
            let inside = count - below;
            return lower
                + (le - lower)
                    * if inside > 0.0 {
                        (rank - below) / inside
                    } else {
                        1.0
                    };
        }
        (lower, below) = (le, count);
    }
    lower
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_every_ticket_is_decided_once_within_the_memory_bound() {
    let _serial = serial().await;
    let n = ticket_count();
    let s = Setup::new("soak", PARTITIONS, &[]).await;
    // TRIAGE_SOAK_CONFIG: more TOML for the worker's file (e.g. "[worker]\nmax_in_flight = 5000").
    let extra = std::env::var("TRIAGE_SOAK_CONFIG").unwrap_or_default();
    let cfg = s.config(
        "soak.toml",
        &format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n"),
    );
    let loading = Instant::now();
    let (input, topic) = (s.input.clone(), s.decisions.clone());
    tokio::task::spawn_blocking(move || load(&input, n))
        .await
        .unwrap();
    eprintln!(
        "soak: loaded {n} tickets in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    // Per-ticket lines are info-level: at warn the figures measure the pipeline, not the log.
    let started = Instant::now();
    let mut w = Worker::start_with(
        &cfg,
        "worker",
        &[],
        &[("TRIAGE_LOG", "warn,triage::server=info")],
    );
    let addr = w.metrics_addr(Duration::from_secs(60));
    let timeout = Duration::from_secs(120 + n as u64 / 1_000);
    let d = tokio::task::spawn_blocking(move || {
        read_decisions(&topic, n, timeout, Duration::from_secs(3))
    })
    .await
    .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let (_, metrics) = http_get(&addr, "/metrics").await;
    let peak = peak_rss_mib(w.child.id());
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(60))
        .expect("worker did not stop after SIGTERM");
    assert!(status.success(), "exit status {status}\n{}", w.log_text());

    let span_s = ((d.last_ms - d.first_ms) as f64 / 1000.0).max(0.001);
    let p50 = histogram_quantile(&metrics, "triage_ticket_duration_seconds", 0.50);
    let p99 = histogram_quantile(&metrics, "triage_ticket_duration_seconds", 0.99);
    support::faults::append_figures(&format!(
        "soak: tickets={n} rate={:.0} slowest_5s_rate={} first_to_last_s={span_s:.1} wall_s={wall:.1} p50_ms={:.1} p99_ms={:.1} peak_rss_mib={peak:.1} rss_limit_mib={PEAK_RSS_LIMIT_MIB} duplicates={}",
        (n - 1) as f64 / span_s,
        d.slowest_5s_rate()
            .map_or_else(|| "-".to_string(), |r| format!("{r:.0}")),
        p50 * 1e3,
        p99 * 1e3,
        d.total - n - d.foreign
    ));

    delete_topics(&[&s.input, &s.decisions]).await;
    let missing = d.times.iter().filter(|t| **t == 0).count();
    let twice = d.times.iter().filter(|t| **t > 1).count();
    assert_eq!(
        (missing, twice, d.foreign),
        (0, 0, 0),
        "every ticket decided exactly once"
    );
    assert_eq!(d.total, n, "decision records");
    assert_eq!(
        end_offsets(&s.dead_letters, 1).iter().sum::<i64>(),
        0,
        "nothing dead-lettered"
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("triage_tickets_consumed_total{{topic=\"{}\"}}", s.input)
        ),
        Some(n as f64),
        "records taken (each once)"
    );
    assert!(
        peak < PEAK_RSS_LIMIT_MIB,
        "peak RSS {peak:.1} MiB over {PEAK_RSS_LIMIT_MIB} MiB with max_in_flight at its default"
    );
}
