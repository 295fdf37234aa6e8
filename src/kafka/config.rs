//! The clients' configuration: consumer, producer and reader, from `[kafka]` (never logged: it
//! may hold secrets).

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;

use crate::config::{KafkaSettings, WorkerSettings};
use crate::source::SourceError;

/// The consumer's client configuration (never logged: it may hold secrets).
pub fn consumer_config(k: &KafkaSettings, w: &WorkerSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("group.id", &k.group_id)
        .set("client.id", "triage")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            w.commit_interval.as_millis().to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        // How long the broker may hold a fetch while there is nothing new. It answers as soon
        // as a record arrives (fetch.min.bytes stays at 1), so this costs no latency; lower
        // values measured the same and only add idle fetches (docs/operations.md).
        .set("fetch.wait.max.ms", "100")
        .set("statistics.interval.ms", "5000");
    apply(&mut c, k, &k.consumer_properties);
    c
}

/// The producer's client configuration: idempotent, `acks=all`, lingering 2 ms.
pub fn producer_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("client.id", "triage")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // At normal traffic a batch holds one or two decisions, so every decision waits about
        // this long; under a backlog it is what makes batches large. 2 ms kept the backlog
        // throughput of 5 ms; 1 ms cost about a tenth of it, 0 ms about a quarter
        // (docs/operations.md has the figures).
        .set("linger.ms", "2");
    apply(&mut c, k, &k.producer_properties);
    c
}

/// A reader's client configuration: partitions assigned by hand, no group joined, nothing
/// committed (the dead-letter topic's start-up scan).
pub fn reader_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("client.id", "triage")
        .set("group.id", format!("{}-reader", k.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    apply(&mut c, k, &k.consumer_properties);
    c
}

fn apply(
    c: &mut ClientConfig,
    k: &KafkaSettings,
    specific: &std::collections::BTreeMap<String, String>,
) {
    for (key, v) in k.properties.iter().chain(specific) {
        c.set(key, v);
    }
    for (key, secret) in &k.secret_properties {
        c.set(key, secret.expose());
    }
}

/// The producer for the decisions and dead-letter topics.
pub fn producer(k: &KafkaSettings) -> Result<FutureProducer, SourceError> {
    producer_config(k)
        .create()
        .map_err(|e| SourceError::Fatal(format!("cannot create the Kafka producer: {e}")))
}

/// Check that both clients accept the configured properties (no connection is needed).
pub fn check_properties(k: &KafkaSettings, w: &WorkerSettings) -> Result<(), SourceError> {
    let c: BaseConsumer = consumer_config(k, w)
        .create()
        .map_err(|e| SourceError::Fatal(format!("Kafka consumer properties: {e}")))?;
    drop(c);
    let p: rdkafka::producer::BaseProducer = producer_config(k)
        .create()
        .map_err(|e| SourceError::Fatal(format!("Kafka producer properties: {e}")))?;
    drop(p);
    Ok(())
}
