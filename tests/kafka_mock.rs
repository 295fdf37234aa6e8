//! The consumer's offset and dead-letter logic against librdkafka's mock cluster: no broker, no
//! Java, no environment variable; each test takes seconds and runs in plain `cargo test`.
//!
//! Each test is a case the fault runs (tests/fault_runs.rs, against a real broker) found:
//! - an assignment lost during a broker outage: the records handled before it are not handled
//!   again when the partition comes back;
//! - a dead letter acknowledged but its record's offset never committed (a crash): the worker
//!   that reads the record again writes no second letter, also when it took the partition
//!   over after its own start-up;
//! - a record handled twice at once (its first letter still waiting for the broker): one letter.
//!
//! A revocation while tickets are in flight is tested against the real broker
//! (tests/kafka_rebalance.rs): the mock cluster refuses an offset commit while another member
//! rejoins, where a real group coordinator accepts it, so the case cannot be told apart here.
//!
//! The mock cluster runs inside the test process; a broker outage is `broker_down`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use triage::config::{KafkaSettings, WorkerSettings};
use triage::decision::SourceRef;
use triage::kafka::{self, KafkaSource};
use triage::sink::dead_letter::{DeadLetter, DeadLetterSink, DeadLetterTopic};
use triage::source::{Record, Source};

const INPUT: &str = "in";
const DLQ: &str = "dlq";
/// The mock cluster's only broker.
const BROKER: i32 = 1;

/// The library's log lines, when `RUST_LOG` asks for them.
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn cluster(
    input_partitions: i32,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    logs();
    let c = MockCluster::new(1).expect("mock cluster");
    c.create_topic(INPUT, input_partitions, 1).unwrap();
    c.create_topic(DLQ, 1, 1).unwrap();
    c
}

/// Settings for a worker of `group` on the mock cluster: a short session (an outage of 6 s
/// loses the assignment) and fast reconnects.
fn settings(bootstrap: &str, group: &str) -> KafkaSettings {
    let props = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    KafkaSettings {
        bootstrap_servers: bootstrap.into(),
        group_id: group.into(),
        input_topic: INPUT.into(),
        decisions_topic: None,
        dead_letter_topic: DLQ.into(),
        properties: props(&[
            ("reconnect.backoff.ms", "50"),
            ("reconnect.backoff.max.ms", "200"),
            ("topic.metadata.refresh.interval.ms", "500"),
        ]),
        consumer_properties: props(&[
            // Above the mock cluster's 3 s wait for a new group's members, which would
            // otherwise time the first member out before the group forms.
            ("session.timeout.ms", "4000"),
            ("heartbeat.interval.ms", "200"),
            ("statistics.interval.ms", "0"),
        ]),
        producer_properties: Default::default(),
        secret_properties: Default::default(),
    }
}

/// Worker settings: commits only at revocation and shutdown unless `commit_interval` says so.
fn worker(commit_interval: Duration) -> WorkerSettings {
    WorkerSettings {
        commit_interval,
        drain_timeout: Duration::from_secs(20),
        ..WorkerSettings::default()
    }
}

fn produce(bootstrap: &str, partition: i32, count: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for i in 0..count {
        let body = format!("{{\"id\":\"{partition}-{i}\"}}");
        p.send(
            BaseRecord::<(), _>::to(INPUT)
                .partition(partition)
                .payload(&body),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// How many records `topic`'s partition 0 holds.
fn count(bootstrap: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "count")
        .create()
        .unwrap();
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    high - low
}

/// The next record within `wait`, if any (transient errors, as during an outage, are skipped).
async fn next(source: &mut KafkaSource, wait: Duration) -> Option<Record> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, source.recv()).await {
            Ok(Some(Ok(r))) => return Some(r),
            Ok(Some(Err(e))) => eprintln!("source: {e}"),
            Err(_) => return None,
            Ok(None) => panic!("the source ended"),
        }
    }
}

fn letter(source: &SourceRef) -> DeadLetter<'_> {
    DeadLetter {
        source,
        key: Some(b"k"),
        payload: Some(b"{not json"),
        class: "invalid_json",
        message: "expected value at line 1 column 2",
    }
}

/// A broker outage longer than the session timeout loses the assignment while commits fail.
/// When the partition comes back, fetching resumes at the last committed offset; the records
/// this worker handled in between are skipped, not handled a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_handled_before_an_assignment_lost_in_an_outage_are_not_handled_again() {
    let c = cluster(1);
    let b = c.bootstrap_servers();
    produce(&b, 0, 5);
    // No periodic commit: nothing handled before the outage is committed.
    let mut s =
        KafkaSource::subscribe(&settings(&b, "lost"), &worker(Duration::from_secs(600))).unwrap();
    for want in 0..5 {
        let r = next(&mut s, Duration::from_secs(20)).await.expect("record");
        assert_eq!(r.source.offset, want);
        r.ack.done();
    }
    c.broker_down(BROKER).unwrap();
    // Longer than the session timeout (4 s): the assignment is lost.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(6) {
        if let Some(r) = next(&mut s, Duration::from_millis(200)).await {
            panic!("record {} received during the outage", r.source.offset);
        }
    }
    c.broker_up(BROKER).unwrap();
    produce(&b, 0, 1);
    let r = next(&mut s, Duration::from_secs(30))
        .await
        .expect("the record produced after the outage");
    assert_eq!(
        r.source.offset, 5,
        "records handled before the assignment was lost were handled again"
    );
    r.ack.done();
    s.close().await.unwrap();
}

/// A worker killed after its dead letter was acknowledged, before the record's offset was
/// committed: the record is read again after the restart, and no second letter is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_writes_no_second_letter_for_a_record_already_dead_lettered() {
    let c = cluster(1);
    let b = c.bootstrap_servers();
    let k = settings(&b, "restart");
    let at = SourceRef {
        topic: INPUT.into(),
        partition: 0,
        offset: 7,
    };
    let first = DeadLetterTopic::new(kafka::producer(&k).unwrap(), DLQ);
    first.send(letter(&at)).await.unwrap();
    drop(first); // killed before the commit
    let again = DeadLetterTopic::new(kafka::producer(&k).unwrap(), DLQ)
        .skipping_earlier(kafka::reader_config(&k));
    again.send(letter(&at)).await.unwrap();
    let other = SourceRef { offset: 8, ..at };
    again.send(letter(&other)).await.unwrap();
    assert_eq!(count(&b, DLQ), 2, "one letter per record");
}

/// A worker takes over a partition from one that crashed between writing a dead letter and
/// committing the record's offset. The letter was written after the new owner started, so a
/// read-back at start-up alone does not see it; the one at assignment does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_taking_a_partition_over_writes_no_second_letter() {
    let c = cluster(1);
    let b = c.bootstrap_servers();
    produce(&b, 0, 3);
    let k = settings(&b, "takeover");
    let w = worker(Duration::from_secs(600));
    // The survivor starts first (its start-up read-back finds nothing) ...
    let survivor = Arc::new(
        DeadLetterTopic::new(kafka::producer(&k).unwrap(), DLQ)
            .skipping_earlier(kafka::reader_config(&k)),
    );
    let at = SourceRef {
        topic: INPUT.into(),
        partition: 0,
        offset: 1,
    };
    survivor
        .send(letter(&SourceRef {
            offset: 0,
            ..at.clone()
        }))
        .await
        .unwrap();
    // ... then the crashed worker dead-letters offset 1 and dies before committing.
    let crashed = DeadLetterTopic::new(kafka::producer(&k).unwrap(), DLQ);
    crashed.send(letter(&at)).await.unwrap();
    drop(crashed);
    assert_eq!(count(&b, DLQ), 2);
    // The partition is assigned to the survivor, which reads offset 1 again.
    let mut s = KafkaSource::subscribe(&k, &w).unwrap();
    let read_back = survivor.read_back();
    s.on_assign(move || read_back.request());
    let r = loop {
        let r = next(&mut s, Duration::from_secs(20)).await.expect("record");
        if r.source.offset == 1 {
            break r;
        }
        r.ack.done();
    };
    survivor.send(letter(&r.source)).await.unwrap();
    r.ack.done();
    assert_eq!(count(&b, DLQ), 2, "a second letter for offset 1");
    s.close().await.unwrap();
}

/// A broker stop lost the assignment while a dead letter waited for the broker; the record was
/// fetched again and a second task dead-lettered it while the first still waited. One letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_dead_lettered_twice_at_once_gets_one_letter() {
    let c = cluster(1);
    let b = c.bootstrap_servers();
    let k = settings(&b, "twice");
    let dlq = Arc::new(DeadLetterTopic::new(kafka::producer(&k).unwrap(), DLQ));
    // Connected before the outage, as a running worker's producer is.
    dlq.send(letter(&SourceRef {
        topic: INPUT.into(),
        partition: 0,
        offset: 0,
    }))
    .await
    .unwrap();
    c.broker_down(BROKER).unwrap();
    let at = SourceRef {
        topic: INPUT.into(),
        partition: 0,
        offset: 1,
    };
    let send = |dlq: Arc<DeadLetterTopic>, at: SourceRef| {
        tokio::spawn(async move { dlq.send(letter(&at)).await })
    };
    let first = send(dlq.clone(), at.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = send(dlq.clone(), at.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "the broker is down"
    );
    c.broker_up(BROKER).unwrap();
    for h in [first, second] {
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("sent once the broker is back")
            .unwrap()
            .unwrap();
    }
    assert_eq!(count(&b, DLQ), 2, "two letters for offset 1");
}
