//! Helpers for the tests against the real Kafka broker started by `scripts/test`: topics,
//! producing tickets, collecting what the worker wrote, and running `triage run` as a child
//! process that can be signalled.
#![allow(dead_code)]

pub mod faults;
pub mod ingest;
pub mod ticketing;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// The broker's address; a missing variable fails the test with what to do.
pub fn bootstrap() -> String {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "KAFKA_BOOTSTRAP_SERVERS is not set: these tests need the local Kafka broker. \
             Run them with `scripts/test` (it starts deploy/kafka/kafka.sh and sets the variable), \
             or start the broker yourself and export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092"
        ),
    }
}

/// The Kafka tests share one small machine: run them one at a time.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A record to produce: (key, value); `None` is a null key or value.
pub type Rec = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A name no other run has used.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Create a topic on the test broker (and wait until it is usable).
pub async fn create_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_topic_on(&bootstrap(), name, partitions, configs).await
}

/// Create a topic on `bootstrap` and wait until every partition has a leader.
pub async fn create_topic_on(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let r = admin
        .create_topics(
            &[t],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics");
    for x in r {
        x.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
    // Metadata may lag behind the creation for a moment.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = c
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .is_ok_and(|md| {
                md.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The partitions named by a worker's `partitions assigned` / `partitions revoked` log line.
pub fn logged_partitions(line: &str) -> Vec<i32> {
    line.split("partitions=[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The end offset of every partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// A program on PATH (promtool, prometheus), or a failure saying how to get it.
pub fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run the tests with `scripts/test` (it installs Debian's \
                 prometheus package), or `apt-get install prometheus`"
            )
        })
}

/// Serve `app` on a free loopback port, in a task of its own; its address.
pub async fn serve_on_loopback(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Send signal `sig` to a child process (SIGTERM, SIGKILL, SIGHUP).
pub fn signal_child(child: &Child, sig: i32) {
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({sig}) failed");
}

/// Wait for a child's exit, at most `timeout`; `None` if it still runs.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test producer (large messages allowed).
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("message.max.bytes", "10485760")
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
        .expect("producer")
}

/// Produce records (key, value) and wait for all acknowledgements.
pub async fn produce(topic: &str, records: Vec<Rec>) {
    let p = producer();
    let mut pending = Vec::with_capacity(records.len());
    for (k, v) in &records {
        let mut r: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        pending.push(send_waiting(&p, r).await);
    }
    delivered(pending).await;
}

/// Hand one record to the producer, waiting while its local queue is full.
pub async fn send_waiting(
    p: &FutureProducer,
    mut r: FutureRecord<'_, [u8], [u8]>,
) -> DeliveryFuture {
    loop {
        match p.send_result(r) {
            Ok(f) => return f,
            Err((e, back)) => {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "produce: {e}"
                );
                r = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Wait for every acknowledgement; a record the broker did not take fails the test.
pub async fn delivered(pending: Vec<DeliveryFuture>) {
    for f in pending {
        f.await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery: {e}"));
    }
}

/// A realistic ticket body, varied by `i`.
pub fn ticket_json(i: usize) -> Vec<u8> {
    const BODIES: &[&str] = &[
        "I typed my security key PIN wrong too many times and now it says the PIN is blocked.",
        "The browser keeps asking me to insert my security key but it is plugged in, the light does not blink.",
        "Scanning the QR code with my phone to sign in on the kiosk PC fails with 'something went wrong'.",
        "I forgot my password after the holidays, please reset it so I can use the VPN again.",
        "My passkey did not sync to my new phone, the site says there are no passkeys available.",
        "The printer on the third floor shows a paper jam in tray 2 again.",
    ];
    serde_json::to_vec(&serde_json::json!({
        "id": format!("T{i:06}"),
        "subject": format!("Ticket {i}"),
        "body": BODIES[i % BODIES.len()],
    }))
    .unwrap()
}

/// `n` tickets T{from}..T{from+n} as keyed records.
pub fn tickets(from: usize, n: usize) -> Vec<Rec> {
    (from..from + n)
        .map(|i| (Some(format!("T{i:06}").into_bytes()), Some(ticket_json(i))))
        .collect()
}

/// One record read back from a topic.
#[derive(Debug, Clone)]
pub struct Got {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: HashMap<String, String>,
}

/// Reads a whole topic from the beginning in a background thread (no consumer group).
pub struct Collector {
    got: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    pub fn start(topic: &str) -> Collector {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("group.id", unique("collector"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "50")
            .set("receive.message.max.bytes", "20000000")
            .set("fetch.max.bytes", "16000000")
            .create()
            .unwrap();
        let md = c
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap();
        let parts = md.topics()[0].partitions().len() as i32;
        assert!(parts > 0, "topic {topic} has no partitions");
        let mut tpl = TopicPartitionList::new();
        for p in 0..parts {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, s) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let mut headers = HashMap::new();
                        if let Some(h) = m.headers() {
                            for x in h.iter() {
                                headers.insert(
                                    x.key.to_string(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                );
                            }
                        }
                        g.lock().unwrap().push(Got {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            payload: m.payload().map(<[u8]>::to_vec),
                            headers,
                        });
                    }
                    Some(Err(e)) => eprintln!("collector: {e}"),
                    None => {}
                }
            }
        });
        Collector {
            got,
            stop,
            thread: Some(thread),
        }
    }

    pub fn snapshot(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Ticket ids of the decisions read so far, with how often each was decided.
    pub fn decided(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for g in self.got.lock().unwrap().iter() {
            let v: serde_json::Value =
                serde_json::from_slice(g.payload.as_deref().unwrap()).unwrap();
            *m.entry(v["id"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
        m
    }

    /// Wait until `cond` holds for the records read so far; panics with `what` on timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Collector) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} (have {} records)",
                self.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Topics and a config file for one worker group.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub input: String,
    pub decisions: String,
    pub dead_letters: String,
    pub group: String,
}

impl Setup {
    /// Create the three topics (`partitions` each) and a unique group id.
    pub async fn new(name: &str, partitions: i32, topic_configs: &[(&str, &str)]) -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
            input: unique(&format!("{name}-in")),
            decisions: unique(&format!("{name}-decisions")),
            dead_letters: unique(&format!("{name}-dlq")),
            group: unique(&format!("{name}-group")),
        };
        create_topic(&s.input, partitions, topic_configs).await;
        create_topic(&s.decisions, partitions, &[]).await;
        create_topic(&s.dead_letters, 1, topic_configs).await;
        s
    }

    /// Write a config file: the `[kafka]` section for these topics, plus `extra` TOML.
    pub fn config(&self, file: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        let text = format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"{}\"\ninput_topic = \"{}\"\ndecisions_topic = \"{}\"\ndead_letter_topic = \"{}\"\n{extra}",
            bootstrap(),
            self.group,
            self.input,
            self.decisions,
            self.dead_letters
        );
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    }
}

/// `triage run --config FILE` as a child process, its log (stderr) in a file.
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
    /// Where its standard output goes, when kept.
    pub out: Option<PathBuf>,
}

impl Worker {
    pub fn start(config: &Path, name: &str) -> Worker {
        let log = config.with_file_name(format!("{name}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_triage"))
            .args(["run", "--config"])
            .arg(config)
            .env("TRIAGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start triage run");
        Worker {
            child,
            log,
            out: None,
        }
    }

    /// `triage run --config FILE ARGS…` with extra environment variables; standard output in
    /// `{name}.out` and standard error in `{name}.log` beside the config.
    pub fn start_with(config: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let log = config.with_file_name(format!("{name}.log"));
        let out = config.with_file_name(format!("{name}.out"));
        let child = Command::new(env!("CARGO_BIN_EXE_triage"))
            .args(["run", "--config"])
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start triage run");
        Worker {
            child,
            log,
            out: Some(out),
        }
    }

    /// What it printed on standard output (when started with [`Worker::start_with`]).
    pub fn out_text(&self) -> String {
        self.out
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default()
    }

    /// The address of its /metrics server, from its start-up log line.
    pub fn metrics_addr(&mut self, timeout: Duration) -> String {
        self.wait_log("serving /metrics", timeout);
        server_addr(&self.log_text()).expect("address in the log")
    }

    pub fn signal(&self, sig: i32) {
        signal_child(&self.child, sig);
    }

    /// Wait for the exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log_text().contains(needle) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "worker exited ({s}) before logging {needle:?}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "worker did not log {needle:?} within {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The partition sets from every "partitions assigned" / "revoked" log line, in order.
    pub fn rebalances(&self, what: &str) -> Vec<Vec<i32>> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(&format!("partitions {what}")))
            .filter_map(|l| {
                let s = l.split("partitions=[").nth(1)?;
                let list = s.split(']').next()?;
                Some(
                    list.split(',')
                        .filter_map(|x| x.trim().parse().ok())
                        .collect(),
                )
            })
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in a log's "serving /metrics … on http://ADDR" line (human or JSON format).
pub fn server_addr(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("serving /metrics"))?;
    let rest = line.split("http://").nth(1)?;
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect(),
    )
}

/// `GET http://{addr}{path}`: (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Percent-encoding of a URL query value.
pub fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of one sample in Prometheus text format (`name{labels}` exactly as rendered).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
