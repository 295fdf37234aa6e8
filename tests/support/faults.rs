//! What the fault runs share (tests/fault_runs.rs): a broker of the test's own that can be
//! stopped and started, a Zendesk-contract server that counts notes per ticket, input with bad
//! records mixed in, consumer lag (committed offsets against high watermarks), and the
//! accounting every run ends with: each input offset ends in a posted decision or a dead
//! letter, and no ticket has two notes.
//!
//! `TRIAGE_LONG=1` (set by `scripts/test --long`) selects the full-size runs; without it each
//! fault runs in a short version. Every run appends one line of figures to
//! [`figures_file`], which `scripts/test` prints at the end.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::ticketing::{Server, Vendor, MARKER};
use super::{create_topic_on, delivered, send_waiting, unique, Got, Worker};

/// Whether the full-size runs were asked for (`TRIAGE_LONG=1`, `scripts/test --long`).
pub fn long() -> bool {
    std::env::var("TRIAGE_LONG").is_ok_and(|v| v == "1")
}

/// Where every fault run and the soak append their line of figures (`scripts/test` prints the file at the end).
pub fn figures_file() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("run-figures.txt")
}

/// A small deterministic random source (xorshift), seeded from the clock; the seed is printed
/// so that a run can be told apart from another.
pub struct Dice(u64);

impl Dice {
    pub fn new(what: &str) -> Dice {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("{what}: random seed {seed}");
        Dice(seed)
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo + 1)
    }

    /// A duration in `lo_ms..=hi_ms` milliseconds.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(self.between(lo_ms, hi_ms))
    }
}

// ----- a broker of the test's own ----------------------------------------------------------

/// A single-node broker started with deploy/kafka/kafka.sh on its own port and state
/// directory, so that stopping it disturbs no other test. The port comes from
/// `TRIAGE_FAULT_KAFKA_PORT` (default 19112; the controller listens on the next port).
/// Stopped when dropped.
pub struct OwnBroker {
    state: tempfile::TempDir,
    port: u16,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let port = match std::env::var("TRIAGE_FAULT_KAFKA_PORT") {
            Ok(p) => p
                .parse()
                .unwrap_or_else(|_| panic!("TRIAGE_FAULT_KAFKA_PORT={p} is not a port number")),
            Err(_) => 19112,
        };
        let b = OwnBroker {
            state: tempfile::tempdir().unwrap(),
            port,
        };
        b.up();
        b
    }

    fn kafka_sh(&self, command: &str) -> std::process::Output {
        Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kafka/kafka.sh"))
            .arg(command)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.port + 1).to_string())
            .env("TRIAGE_KAFKA_DIR", self.state.path())
            .output()
            .expect("run deploy/kafka/kafka.sh")
    }

    /// Start it (again); data kept in the state directory survives.
    pub fn up(&self) {
        let out = self.kafka_sh("start");
        assert!(
            out.status.success(),
            "kafka.sh start on port {} failed (set TRIAGE_FAULT_KAFKA_PORT to a free port):\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stop it (SIGTERM, as an operator or an orchestrator would).
    pub fn down(&self) {
        let out = self.kafka_sh("stop");
        assert!(
            out.status.success(),
            "kafka.sh stop failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = self.kafka_sh("stop");
    }
}

// ----- input ---------------------------------------------------------------------------------

/// Ticket bodies that each have a symptom, so that every good ticket gets a note.
const BODIES: &[&str] = &[
    "I typed my security key PIN wrong too many times and now it says the PIN is blocked.",
    "My passkey did not sync to my new phone, the site says there are no passkeys available.",
    "Scanning the QR code with my phone to sign in on the kiosk PC fails with something went wrong.",
];

/// Bad records, one of these every [`BAD_EVERY`] records, with the dead-letter class each
/// must end in.
const BAD: &[&str] = &[
    "invalid_json",
    "missing_body",
    "missing_id",
    "sink_rejected",
];

/// One record in this many is bad.
pub const BAD_EVERY: usize = 50;

/// The Zendesk id of good record `i` (numeric, as Zendesk's are).
pub fn ticket_id(i: usize) -> String {
    (1_000_000 + i).to_string()
}

/// Record `i` of a run as (key, value). Good records are keyed `ticket-{id}`, bad ones
/// `bad-{class}-{i}` with the class they must be dead-lettered with.
pub fn record(i: usize) -> (Vec<u8>, Vec<u8>) {
    if i % BAD_EVERY == BAD_EVERY - 1 {
        let class = BAD[(i / BAD_EVERY) % BAD.len()];
        let value = match class {
            "invalid_json" => format!("{{\"id\": \"{i}\", \"body\": ").into_bytes(),
            "missing_body" => {
                format!("{{\"id\": \"{}\", \"subject\": \"s\"}}", ticket_id(i)).into_bytes()
            }
            "missing_id" => b"{\"subject\": \"s\", \"body\": \"my PIN is blocked\"}".to_vec(),
            // Decodes and has a symptom, but Zendesk ids are numeric: the sink refuses it.
            _ => serde_json::to_vec(&serde_json::json!({
                "id": format!("HD-{i}"), "subject": "PIN", "body": BODIES[0],
            }))
            .unwrap(),
        };
        return (format!("bad-{class}-{i}").into_bytes(), value);
    }
    let id = ticket_id(i);
    let value = serde_json::to_vec(&serde_json::json!({
        "id": id,
        "subject": format!("Ticket {i}"),
        "body": BODIES[i % BODIES.len()],
    }))
    .unwrap();
    (format!("ticket-{id}").into_bytes(), value)
}

/// An idempotent producer (a broker restart must not duplicate the input).
pub fn producer_on(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produce records `from..from + n` (see [`record`]) and wait for every acknowledgement.
pub async fn produce_range(p: &FutureProducer, topic: &str, from: usize, n: usize) {
    let mut pending = Vec::with_capacity(n);
    for i in from..from + n {
        let (k, v) = record(i);
        let r = FutureRecord::to(topic)
            .key(k.as_slice())
            .payload(v.as_slice());
        pending.push(send_waiting(p, r).await);
    }
    delivered(pending).await;
}

/// Produce `n` records in chunks of `chunk`, `pause` apart, in a task of its own: the tickets
/// keep flowing while the test injects its fault.
pub fn feed(
    bootstrap: &str,
    topic: &str,
    n: usize,
    chunk: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let p = producer_on(bootstrap);
    let topic = topic.to_string();
    tokio::spawn(async move {
        let mut from = 0;
        while from < n {
            let k = chunk.min(n - from);
            produce_range(&p, &topic, from, k).await;
            from += k;
            tokio::time::sleep(pause).await;
        }
    })
}

// ----- lag -----------------------------------------------------------------------------------

/// The group's consumer lag on `topic`: the sum over partitions of the high watermark minus
/// the committed offset (minus the low watermark where nothing is committed). `None` while
/// the broker does not answer.
pub fn lag(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
    let mut total = 0;
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10)).ok()?;
        let done = match got.find_partition(topic, p)?.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        total += high - done;
    }
    Some(total)
}

/// Wait until the group's lag is 0. `check` runs between polls (e.g. "the worker is still
/// running"). Returns how long it took.
pub async fn wait_drained(rig: &Rig, timeout: Duration, mut check: impl FnMut()) -> Duration {
    let started = Instant::now();
    let mut last = None;
    loop {
        check();
        let l = rig.lag();
        if l == Some(0) {
            return started.elapsed();
        }
        if l.is_some() {
            last = l;
        }
        assert!(
            started.elapsed() < timeout,
            "consumer lag did not drain to 0 within {timeout:?} (last seen {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Wait until the worker's log has `needle` at least `times` times (without blocking the
/// runtime the sink server runs on).
pub async fn wait_log_count(w: &mut Worker, needle: &str, times: usize, timeout: Duration) {
    let started = Instant::now();
    while w.log_text().matches(needle).count() < times {
        assert_running(w, &format!("waiting for {needle:?}"));
        assert!(
            started.elapsed() < timeout,
            "the worker did not log {needle:?} {times} time(s) within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----- reading back ----------------------------------------------------------------------------

/// Every record of `topic` (all partitions, up to their high watermarks now).
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("fault-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let parts = md.topics()[0].partitions().len() as i32;
    let mut want = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        let (low, high) = c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            want.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
        }
    }
    let mut out = Vec::new();
    if want.is_empty() {
        return out;
    }
    c.assign(&tpl).unwrap();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while want
        .iter()
        .any(|(p, high)| next.get(p).copied().unwrap_or(0) < *high)
    {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for x in h.iter() {
                headers.insert(
                    x.key.to_string(),
                    String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        next.insert(m.partition(), m.offset() + 1);
        if m.offset() < want[&m.partition()] {
            out.push(Got {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}

// ----- one run's topics, sink and workers ------------------------------------------------------

/// The topics, consumer group and Zendesk-contract server of one run.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
    pub input: String,
    pub dead_letters: String,
    pub group: String,
    pub partitions: i32,
    pub zendesk: Server,
    token: PathBuf,
}

impl Rig {
    /// Topics on `bootstrap` (the input with `partitions`, a one-partition dead-letter topic)
    /// and a Zendesk server that keeps no request log (runs make hundreds of thousands).
    pub async fn new(name: &str, bootstrap: &str, partitions: i32) -> Rig {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot@example.com/token:fault-token")
        );
        let zendesk = Server::start(Vendor::Zendesk, &auth).await;
        zendesk
            .st
            .keep_log
            .store(false, std::sync::atomic::Ordering::Release);
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("zendesk-token");
        std::fs::write(&token, "fault-token\n").unwrap();
        let r = Rig {
            dir,
            bootstrap: bootstrap.to_string(),
            input: unique(&format!("{name}-in")),
            dead_letters: unique(&format!("{name}-dlq")),
            group: unique(&format!("{name}-group")),
            partitions,
            zendesk,
            token,
        };
        create_topic_on(bootstrap, &r.input, partitions, &[]).await;
        create_topic_on(bootstrap, &r.dead_letters, 1, &[]).await;
        r
    }

    /// A worker config: these topics, the Zendesk sink, and `extra` TOML (which may add
    /// `[kafka.consumer_properties]` or `[worker]` keys; both sections are opened here).
    pub fn config(&self, consumer_properties: &str, worker: &str) -> PathBuf {
        let path = self.dir.path().join("worker.toml");
        let text = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\ninput_topic = \"{}\"\n\
             dead_letter_topic = \"{}\"\n\
             [kafka.consumer_properties]\n\"session.timeout.ms\" = 6000\n\"heartbeat.interval.ms\" = 1000\n{consumer_properties}\n\
             [worker]\nretry_initial_ms = 100\n{worker}\n\
             [sink.zendesk]\nbase_url = \"{}\"\nemail = \"bot@example.com\"\napi_token_file = \"{}\"\n\
             timeout_ms = 10000\nrequests_per_minute = 6000000\n",
            self.bootstrap,
            self.group,
            self.input,
            self.dead_letters,
            self.zendesk.base(),
            self.token.display()
        );
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }

    /// The group's lag now.
    pub fn lag(&self) -> Option<i64> {
        lag(&self.bootstrap, &self.group, &self.input, self.partitions)
    }

    /// Tickets that carry the marker (decided and written back).
    pub fn marked(&self) -> usize {
        self.zendesk
            .st
            .tickets
            .lock()
            .unwrap()
            .values()
            .filter(|t| t.tags.iter().any(|x| x == MARKER))
            .count()
    }
}

/// Panic with the worker's log tail if it is no longer running.
pub fn assert_running(w: &mut Worker, what: &str) {
    if let Some(s) = w.child.try_wait().unwrap() {
        let log = w.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{what}: the worker exited ({s}); last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// Stop a worker with SIGTERM and require a clean exit.
pub fn stop(w: &mut Worker) {
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(60))
        .expect("the worker did not stop within 60 s of SIGTERM");
    assert!(status.success(), "worker exit {status}");
}

// ----- accounting ------------------------------------------------------------------------------

/// What a run did, from the input topic, the dead-letter topic and the sink server.
#[derive(Debug)]
pub struct Figures {
    /// Records on the input topic (good and bad).
    pub sent: usize,
    /// Input offsets whose ticket was written back (marker and note at the sink).
    pub decided: usize,
    /// Input offsets with a dead letter.
    pub dead_lettered: usize,
    /// Dead letters beyond one per input offset.
    pub dead_letter_repeats: usize,
    /// Repeat deliveries the sink recognised and did not write again.
    pub duplicates_suppressed: usize,
    /// Tickets holding more than one note.
    pub notes_twice: usize,
}

/// Check the run's outcome and return its figures. Every input offset must end in a posted
/// decision (good records: the marker and exactly one note at the sink, no dead letter) or a
/// dead letter of the expected class (bad records); with `one_dead_letter_each`, exactly one.
pub fn account(rig: &Rig, one_dead_letter_each: bool) -> Figures {
    let input = read_all(&rig.bootstrap, &rig.input);
    let letters = read_all(&rig.bootstrap, &rig.dead_letters);
    let mut by_offset: HashMap<(i32, i64), Vec<String>> = HashMap::new();
    for l in &letters {
        let h = &l.headers;
        assert_eq!(h["triage.source.topic"], rig.input, "{h:?}");
        let at = (
            h["triage.source.partition"].parse().unwrap(),
            h["triage.source.offset"].parse().unwrap(),
        );
        by_offset
            .entry(at)
            .or_default()
            .push(h["triage.error.class"].clone());
    }
    let tickets = rig.zendesk.st.tickets.lock().unwrap().clone();
    let notes_twice = tickets.values().filter(|t| t.notes.len() > 1).count();
    let mut f = Figures {
        sent: input.len(),
        decided: 0,
        dead_lettered: 0,
        dead_letter_repeats: letters.len().saturating_sub(by_offset.len()),
        duplicates_suppressed: rig
            .zendesk
            .st
            .repeats_seen
            .load(std::sync::atomic::Ordering::Acquire),
        notes_twice,
    };
    let mut problems = Vec::new();
    for g in &input {
        let key = String::from_utf8(g.key.clone().unwrap()).unwrap();
        let at = (g.partition, g.offset);
        let dead = by_offset.get(&at);
        if let Some(id) = key.strip_prefix("ticket-") {
            let t = tickets.get(id);
            let marked = t.is_some_and(|t| t.tags.iter().any(|x| x == MARKER));
            let notes = t.map_or(0, |t| t.notes.len());
            if !marked || notes != 1 || dead.is_some() {
                problems.push(format!(
                    "{at:?} ticket {id}: marker {marked}, {notes} note(s), dead letters {dead:?}"
                ));
            } else {
                f.decided += 1;
            }
        } else {
            let want_class = key
                .strip_prefix("bad-")
                .and_then(|k| k.rsplit_once('-'))
                .map(|(c, _)| c.to_string())
                .unwrap_or_else(|| panic!("unexpected input key {key}"));
            match dead {
                Some(classes)
                    if classes.iter().all(|c| *c == want_class)
                        && (!one_dead_letter_each || classes.len() == 1) =>
                {
                    f.dead_lettered += 1
                }
                _ => problems.push(format!(
                    "{at:?} {key}: dead letters {dead:?}, expected {} of class {want_class}",
                    if one_dead_letter_each {
                        "one"
                    } else {
                        "at least one"
                    }
                )),
            }
        }
    }
    let known: std::collections::HashSet<(i32, i64)> =
        input.iter().map(|g| (g.partition, g.offset)).collect();
    for at in by_offset.keys() {
        if !known.contains(at) {
            problems.push(format!("dead letter for {at:?}, which is not on the input"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} input offset(s) not accounted for, e.g.:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(notes_twice, 0, "tickets with two notes");
    assert_eq!(f.decided + f.dead_lettered, f.sent);
    f
}

/// Print the run's one line of figures and append it to [`figures_file`].
pub fn report(run: &str, f: &Figures, drain: Duration, extra: &str) {
    let line = format!(
        "fault run {run}: sent={} decided={} dead_lettered={} dead_letter_repeats={} duplicates_suppressed={} notes_twice={} drain_s={:.1}{}{extra}",
        f.sent,
        f.decided,
        f.dead_lettered,
        f.dead_letter_repeats,
        f.duplicates_suppressed,
        f.notes_twice,
        drain.as_secs_f64(),
        if extra.is_empty() { "" } else { " " },
    );
    append_figures(&line);
}

/// Print one line of a run's figures and append it to [`figures_file`] (fault runs, the soak).
pub fn append_figures(line: &str) {
    eprintln!("{line}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(figures_file())
        .expect("open the run figures file");
    writeln!(file, "{line}").unwrap();
}
