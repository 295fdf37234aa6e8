//! A revocation while tickets are in flight, against the real Apache Kafka broker started by
//! `scripts/test`: the revoked partition's records finished during the revocation are
//! committed before it is given up, so its new owner does not handle them again.
//!
//! (librdkafka's mock cluster cannot show this: it refuses an offset commit while another
//! member rejoins, where a real group coordinator accepts commits of the current generation
//! until the rebalance completes.)
// A tier of its own: needs the Kafka broker that scripts/test starts (cargo feature test-broker).
#![cfg(feature = "test-broker")]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio::sync::mpsc;

use triage::config::{KafkaSettings, WorkerSettings};
use triage::decision::SourceRef;
use triage::kafka::KafkaSource;
use triage::source::{Record, Source};

/// Settings for a member of `group` reading `input`.
fn settings(input: &str, group: &str) -> KafkaSettings {
    let props = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    KafkaSettings {
        bootstrap_servers: support::bootstrap(),
        group_id: group.into(),
        input_topic: input.into(),
        decisions_topic: None,
        dead_letter_topic: format!("{input}-dlq"),
        properties: Default::default(),
        consumer_properties: props(&[
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "200"),
            ("statistics.interval.ms", "0"),
        ]),
        producer_properties: Default::default(),
        secret_properties: Default::default(),
    }
}

/// Commits only at revocation and shutdown; a revocation waits up to 20 s for in-flight records.
fn worker() -> WorkerSettings {
    WorkerSettings {
        commit_interval: Duration::from_secs(600),
        drain_timeout: Duration::from_secs(20),
        ..WorkerSettings::default()
    }
}

fn produce(topic: &str, partition: i32, count: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", support::bootstrap())
        .create()
        .unwrap();
    for i in 0..count {
        let body = format!("{{\"id\":\"{partition}-{i}\"}}");
        p.send(
            BaseRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&body),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

/// The next record within `wait`, if any (transient errors are skipped).
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

/// Every record of `source` until `stop` (records are sent on `out` with their acks).
fn drive(
    mut source: KafkaSource,
    out: mpsc::UnboundedSender<Record>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<KafkaSource> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stop => return source,
                r = source.recv() => if let Some(Ok(r)) = r {
                    let _ = out.send(r);
                },
            }
        }
    })
}

/// A second member joins while the first still has a ticket in flight on the partition it
/// gives up. The revocation waits for it, and commits it: the new owner starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_finished_during_a_revocation_are_not_handled_again_by_the_new_owner() {
    let _one_at_a_time = support::serial().await;
    let input = support::unique("revoke-in");
    support::create_topic(&input, 2, &[]).await;
    for p in 0..2 {
        produce(&input, p, 4);
    }
    let k = settings(&input, &support::unique("revoke"));
    let w = worker();
    let mut a = KafkaSource::subscribe(&k, &w).unwrap();
    // Offsets 0..=2 of both partitions done, offset 3 of each still in flight.
    let mut held = Vec::new();
    while held.len() < 2 {
        let r = next(&mut a, Duration::from_secs(60)).await.expect("record");
        if r.source.offset == 3 {
            held.push(r);
        } else {
            r.ack.done();
        }
    }
    let (a_tx, mut a_rx) = mpsc::unbounded_channel();
    let (a_stop, a_stopped) = tokio::sync::oneshot::channel();
    let a = drive(a, a_tx, a_stopped);
    let mut bw = KafkaSource::subscribe(&k, &w).unwrap();
    // The broker starts the rebalance as soon as the new member joins (well within a second
    // here); the held tickets finish 5 s later, while the revocation waits for them.
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        for r in held {
            r.ack.done();
        }
    });
    let mut seen = Vec::new();
    let t0 = Instant::now();
    while !finisher.is_finished() {
        seen.extend(next(&mut bw, Duration::from_millis(200)).await);
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
    for p in 0..2 {
        produce(&input, p, 1);
    }
    // The new owner gets its partition and reads on from the committed offset.
    while seen.is_empty() {
        seen.extend(next(&mut bw, Duration::from_millis(200)).await);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the new member got no partition"
        );
    }
    while let Some(r) = next(&mut bw, Duration::from_secs(2)).await {
        seen.push(r);
    }
    // Both members stop before anything is asserted, so that a failure does not hang on them.
    let again: Vec<SourceRef> = seen
        .iter()
        .filter(|r| r.source.offset != 4)
        .map(|r| r.source.clone())
        .collect();
    drop(seen);
    a_stop.send(()).unwrap();
    let mut a = a.await.unwrap();
    let mut old_owner = Vec::new();
    while let Ok(r) = a_rx.try_recv() {
        old_owner.push(r.source.clone());
    }
    a.close().await.unwrap();
    bw.close().await.unwrap();
    assert_eq!(again, vec![], "handled again by the new owner");
    assert!(
        old_owner.iter().all(|s| s.offset == 4),
        "old owner after the rebalance: {old_owner:?}"
    );
}
