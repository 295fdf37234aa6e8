//! The Kafka producer of `triage ingest`: idempotent, `acks=all`, and a record either is
//! acknowledged within the produce timeout or is given up by the client library
//! (`message.timeout.ms`), so a request answered 503 leaves nothing behind that could land
//! later next to the help desk's retry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::FromClientConfigAndContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientContext;
use tracing::{error, warn};

use crate::config::KafkaSettings;
use crate::kafka::producer_config;

/// Why a record was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// Kafka did not acknowledge in time, or cannot now (broker down, queue full, topic
    /// missing): the help desk should retry later.
    #[error("Kafka did not take the record: {0}")]
    Unavailable(String),
    /// Kafka will never take this record (over the broker's or topic's size limit).
    #[error("the record is too large for Kafka: {0}")]
    TooLarge(String),
}

impl ProduceError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProduceError::Unavailable(_))
    }
}

/// Whether the topic can be written to, as far as the cluster's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    /// The topic exists and has partitions.
    Ready,
    /// The cluster answered and has no such topic.
    Missing,
    /// The cluster did not answer.
    Unreachable(String),
}

/// Client callbacks: errors are logged (at most every 10 s), a fatal error is remembered.
pub struct Ctx {
    /// Set once librdkafka reports a fatal error: the idempotent producer cannot go on and
    /// the process must be restarted; `/healthz` says so.
    fatal: Arc<AtomicBool>,
    /// When a client error was last logged (transient errors repeat every few seconds).
    last_logged: Mutex<Option<Instant>>,
}

impl ClientContext for Ctx {
    fn error(&self, e: KafkaError, reason: &str) {
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            self.fatal.store(true, Ordering::Release);
            error!("Kafka producer: fatal error, restart triage ingest: {e}: {reason}");
            return;
        }
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            warn!("Kafka producer: {e}: {reason}");
        }
    }
}

/// Produces webhook records to one topic.
pub struct TicketProducer {
    /// The client; cheap to clone, shared by all requests.
    producer: FutureProducer<Ctx>,
    /// Where records go.
    topic: String,
    /// `message.timeout.ms`: the longest a record waits for its acknowledgement.
    timeout: Duration,
    /// Shared with the client callbacks: set on a fatal client error.
    fatal: Arc<AtomicBool>,
}

impl TicketProducer {
    /// A producer for `topic` with the cluster settings of `[kafka]` (its producer
    /// properties included) and `message.timeout.ms` set to `timeout`. No connection yet.
    pub fn new(
        k: &KafkaSettings,
        topic: &str,
        timeout: Duration,
    ) -> Result<TicketProducer, String> {
        let mut c = producer_config(k);
        c.set("client.id", "triage-ingest")
            .set("message.timeout.ms", timeout.as_millis().to_string());
        // Each record holds an HTTP request open until it is acknowledged: batch for 1 ms
        // (what scripts/bench-ingest was measured with), unless the configuration says.
        let user_set =
            |key: &str| k.properties.contains_key(key) || k.producer_properties.contains_key(key);
        if !user_set("linger.ms") && !user_set("queue.buffering.max.ms") {
            c.set("linger.ms", "1");
        }
        let fatal = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            fatal: fatal.clone(),
            last_logged: Mutex::new(None),
        };
        let producer = FutureProducer::from_config_and_context(&c, ctx)
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(TicketProducer {
            producer,
            topic: topic.to_string(),
            timeout,
            fatal,
        })
    }

    /// The topic records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the client hit a fatal error (it will not produce again).
    pub fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Acquire)
    }

    /// Produce one record and wait for Kafka's acknowledgement: its partition and offset.
    pub async fn send(
        &self,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64), ProduceError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(payload)
            .headers(h);
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| classify(e))?;
        // message.timeout.ms resolves the delivery; the extra margin only guards against a
        // client that never calls back.
        match tokio::time::timeout(self.timeout + Duration::from_secs(5), delivery).await {
            Err(_) => Err(ProduceError::Unavailable(format!(
                "no acknowledgement within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Err(_canceled)) => Err(ProduceError::Unavailable("the producer is closing".into())),
            Ok(Ok(Err((e, _)))) => Err(classify(e)),
            Ok(Ok(Ok(d))) => Ok((d.partition, d.offset)),
        }
    }

    /// Ask the cluster whether the topic exists (blocking up to `timeout`, off the runtime).
    pub async fn topic_state(&self, timeout: Duration) -> TopicState {
        let p = self.producer.clone();
        let topic = self.topic.clone();
        let r = tokio::task::spawn_blocking(move || {
            let md = match p.client().fetch_metadata(Some(&topic), timeout) {
                Ok(md) => md,
                Err(e) => return TopicState::Unreachable(e.to_string()),
            };
            let ok = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty());
            if ok {
                TopicState::Ready
            } else {
                TopicState::Missing
            }
        })
        .await;
        r.unwrap_or_else(|e| TopicState::Unreachable(e.to_string()))
    }

    /// Wait (blocking, off the runtime) for records still queued, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let p = self.producer.clone();
        let r = tokio::task::spawn_blocking(move || p.flush(timeout)).await;
        if let Ok(Err(e)) = r {
            warn!("Kafka producer: flush: {e}");
        }
    }
}

fn classify(e: KafkaError) -> ProduceError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            ProduceError::TooLarge(e.to_string())
        }
        Some(RDKafkaErrorCode::MessageTimedOut) => {
            ProduceError::Unavailable("no acknowledgement within the produce timeout".into())
        }
        _ => ProduceError::Unavailable(e.to_string()),
    }
}
