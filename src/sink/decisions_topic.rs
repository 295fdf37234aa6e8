//! Decisions on a Kafka topic: the decision JSON (the `triage classify` shape plus `source`),
//! keyed by ticket id so that all decisions about one ticket land on one partition, in order.

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::{Delivery, SinkError, TicketSink};
use crate::decision::DecisionRecord;

/// Produces each decision to one topic and waits for the broker's acknowledgement
/// (`acks=all`, idempotent producer).
pub struct DecisionsTopic {
    /// Shared with the dead-letter topic; cloning it is cheap.
    producer: FutureProducer,
    /// The topic name.
    topic: String,
}

impl DecisionsTopic {
    /// A sink writing to `topic` through `producer`.
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> DecisionsTopic {
        DecisionsTopic {
            producer,
            topic: topic.into(),
        }
    }
}

/// What a failed produce means: retry, reject this record, or stop.
pub fn produce_error(what: &str, e: &KafkaError) -> SinkError {
    let code = match e {
        KafkaError::MessageProduction(c) => Some(*c),
        _ => e.rdkafka_error_code(),
    };
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::MessageBatchTooLarge,
        ) => SinkError::permanent(format!("{what}: {e}")),
        Some(RDKafkaErrorCode::Fatal) => SinkError::Fatal {
            message: format!("{what}: {e}"),
        },
        _ => SinkError::retry(format!("{what}: {e}")),
    }
}

#[async_trait]
impl TicketSink for DecisionsTopic {
    fn name(&self) -> &str {
        "decisions-topic"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let payload = serde_json::to_vec(&DecisionRecord {
            decision: d.decision,
            source: d.source,
        })
        .map_err(|e| SinkError::permanent(format!("cannot encode the decision: {e}")))?;
        let record = FutureRecord::to(&self.topic)
            .key(d.ticket.id.as_bytes())
            .payload(&payload);
        match self.producer.send(record, Timeout::Never).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(produce_error(
                &format!("decisions topic {}", self.topic),
                &e,
            )),
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            rdkafka::producer::Producer::flush(
                &p,
                Timeout::After(std::time::Duration::from_secs(10)),
            )
        })
        .await
        .map_err(|e| SinkError::retry(format!("flush: {e}")))?
        .map_err(|e| produce_error("flush", &e))
    }
}
