//! `triage ingest` through a 30-second Kafka outage: while the broker is down every request
//! gets 503 with `Retry-After` (nothing is acknowledged that Kafka does not have); once it is
//! back, the help desks' retries land, each delivery exactly once, and replays are refused.
//!
//! The test stops and starts a broker of its own (deploy/kafka/kafka.sh on free ports and a
//! state directory of its own), so the shared broker of `scripts/test` is left alone. The
//! variable KAFKA_BOOTSTRAP_SERVERS must still be set, as for every Kafka test: it says the
//! broker's jars are in place (`scripts/test` fetched them).
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use support::ingest::*;

/// A single-node broker started with the project's script, stopped when dropped.
struct TestBroker {
    state: tempfile::TempDir,
    port: u16,
    controller_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestBroker {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kafka/kafka.sh")
    }

    fn new() -> TestBroker {
        let b = TestBroker {
            state: tempfile::tempdir().unwrap(),
            port: free_port(),
            controller_port: free_port(),
        };
        b.start();
        b
    }

    fn kafka_sh(&self, command: &str) -> std::process::Output {
        Command::new("bash")
            .arg(Self::script())
            .arg(command)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller_port.to_string())
            // Plain listener only: a TLS listener at a port derived from a random one could
            // collide, and this test is about outages, not security.
            .env("KAFKA_SASL_SSL_PORT", "off")
            .env("TRIAGE_KAFKA_DIR", self.state.path())
            .output()
            .expect("run deploy/kafka/kafka.sh")
    }

    fn start(&self) {
        let out = self.kafka_sh("start");
        assert!(
            out.status.success(),
            "kafka.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let out = self.kafka_sh("stop");
        assert!(
            out.status.success(),
            "kafka.sh stop failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.kafka_sh("stop");
    }
}

async fn create_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let r = admin
        .create_topics(
            &[NewTopic::new(name, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for x in r {
        x.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// Every record of partition 0 of `topic`: key -> how many records carry it.
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<String, usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "outage-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut keys = BTreeMap::new();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while read < high {
        assert!(Instant::now() < deadline, "could not read {high} records");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            read = m.offset() + 1;
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            *keys.entry(key).or_insert(0) += 1;
        }
    }
    keys
}

async fn wait_ready(client: &reqwest::Client, server: &IngestServer, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {status}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One help-desk delivery and how the help desk retries it: Jira, ServiceNow and Freshdesk
/// send the same request again; Zendesk and the generic sender sign anew (new timestamp).
struct Delivery {
    key: &'static str,
    first: Hook,
    retry: Box<dyn Fn() -> Hook + Send>,
}

/// How long the broker stays down.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_gets_503_and_retried_deliveries_land_exactly_once() {
    // As for every Kafka test: fail (not skip) without the environment scripts/test sets up.
    let _ = support::bootstrap();
    let _serial = support::serial().await;
    let broker = TestBroker::new();
    let topic = support::unique("outage-in");
    create_topic(&broker.bootstrap(), &topic).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\ngroup_id = \"outage\"\ninput_topic = \"{topic}\"\ndead_letter_topic = \"{topic}-dlq\"\n[sink]\nstdout = true\n{}",
            broker.bootstrap(),
            ingest_section("produce_timeout_ms = 2000\nretry_after_s = 1\n")
        ),
    )
    .unwrap();
    let mut server = IngestServer::start(&cfg, "ingest", "info");
    let client = reqwest::Client::new();
    let text = "my security key PIN is blocked";
    assert_eq!(
        jira("HD-0", "before", text)
            .send(&client, &server.base)
            .await
            .status,
        200
    );
    wait_ready(&client, &server, 200).await;

    broker.stop();
    let stopped = Instant::now();

    let now = now_secs();
    let jira_hook = jira("HD-1", "PIN", text);
    let sn = servicenow("sn-1", "PIN", text);
    let fd = freshdesk(7, "PIN", text);
    let deliveries = vec![
        Delivery {
            key: "HD-1",
            first: jira_hook.clone(),
            retry: Box::new(move || jira_hook.clone()),
        },
        Delivery {
            key: "Z-1",
            first: zendesk("Z-1", "PIN", text, now),
            retry: Box::new(move || zendesk("Z-1", "PIN", text, now_secs())),
        },
        Delivery {
            key: "G-1",
            first: generic("G-1", "PIN", text, now),
            retry: Box::new(move || generic("G-1", "PIN", text, now_secs())),
        },
        Delivery {
            key: "sn-1",
            first: sn.clone(),
            retry: Box::new(move || sn.clone()),
        },
        Delivery {
            key: "7",
            first: fd.clone(),
            retry: Box::new(move || fd.clone()),
        },
    ];

    // While the broker is down: 503 with Retry-After, for every source, after at most the
    // produce timeout (plus a margin).
    let started = Instant::now();
    let answers = futures_join(
        deliveries
            .iter()
            .map(|d| {
                let (c, base, hook) = (client.clone(), server.base.clone(), d.first.clone());
                async move { hook.send(&c, &base).await }
            })
            .collect(),
    )
    .await;
    for (d, a) in deliveries.iter().zip(&answers) {
        assert_eq!(a.status, 503, "{}: {a:?}", d.key);
        assert_eq!(a.json["status"], "unavailable");
        assert_eq!(a.retry_after.as_deref(), Some("1"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    wait_ready(&client, &server, 503).await;

    // The broker stays down for OUTAGE in all; the help desks keep retrying meanwhile, and every
    // retry is refused with 503, never accepted into nothing.
    while stopped.elapsed() < OUTAGE {
        for d in &deliveries {
            let a = (d.retry)().send(&client, &server.base).await;
            assert_eq!(a.status, 503, "{} during the outage: {a:?}", d.key);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    broker.start();

    // The help desks retry after Retry-After until the answer is 2xx.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Vec::new();
    for d in &deliveries {
        loop {
            let hook = (d.retry)();
            let a = hook.send(&client, &server.base).await;
            if a.status == 200 {
                last.push(hook);
                break;
            }
            assert_eq!(a.status, 503, "{}: {a:?}", d.key);
            assert!(Instant::now() < deadline, "{} never accepted: {a:?}", d.key);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    // Replays of what was accepted are refused.
    for hook in last
        .iter()
        .filter(|h| h.path != "/webhooks/servicenow" && h.path != "/webhooks/freshdesk")
    {
        let a = hook.send(&client, &server.base).await;
        assert_eq!(a.status, 409, "{}: {a:?}", hook.path);
    }
    wait_ready(&client, &server, 200).await;

    // Exactly one record per delivery: none lost, none doubled by the 503s and retries.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keys = read_all(&broker.bootstrap(), &topic);
    let want: BTreeMap<String, usize> = ["HD-0", "HD-1", "Z-1", "G-1", "sn-1", "7"]
        .iter()
        .map(|k| (k.to_string(), 1))
        .collect();
    assert_eq!(keys, want);

    server.signal(libc::SIGTERM);
    let exit = server.wait(Duration::from_secs(30)).expect("ingest stops");
    assert!(exit.success(), "{}", server.log_text());
}

/// Run futures concurrently and collect their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
