//! Where records go that cannot be handled: a Kafka dead-letter topic (original bytes and key,
//! headers saying where the record came from and why it failed), or, for file input, a
//! `file:line: class: message` line on standard error.

use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use super::decisions_topic::produce_error;
use super::SinkError;
use crate::decision::SourceRef;

/// Header names on dead letters (all values are UTF-8 text).
pub mod headers {
    /// Topic the record was read from.
    pub const SOURCE_TOPIC: &str = "triage.source.topic";
    /// Its partition, in decimal.
    pub const SOURCE_PARTITION: &str = "triage.source.partition";
    /// Its offset, in decimal.
    pub const SOURCE_OFFSET: &str = "triage.source.offset";
    /// A stable class: `invalid_json`, `invalid_utf8`, `missing_id`, `missing_body`,
    /// `too_large`, `empty`, `no_text`, `not_object`, `field_type`, `sink_rejected`.
    pub const ERROR_CLASS: &str = "triage.error.class";
    /// A readable message (no ticket text).
    pub const ERROR_MESSAGE: &str = "triage.error.message";
    /// Present (`true`) only when the dead-letter topic refused the original bytes as too
    /// large and a prefix was written instead.
    pub const PAYLOAD_TRUNCATED: &str = "triage.payload.truncated";
    /// The original payload's size in bytes, when truncated.
    pub const PAYLOAD_BYTES: &str = "triage.payload.bytes";
}

/// A record that cannot be handled, and why.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    /// Where it came from.
    pub source: &'a SourceRef,
    /// Its key, unchanged.
    pub key: Option<&'a [u8]>,
    /// Its bytes, unchanged (`None`: the message had a null value).
    pub payload: Option<&'a [u8]>,
    /// Stable error class (see [`headers::ERROR_CLASS`]).
    pub class: &'a str,
    /// What is wrong.
    pub message: &'a str,
}

/// Somewhere dead letters are kept. The pipeline acknowledges a record only after `send`
/// returned `Ok`.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Keep one dead letter.
    async fn send(&self, letter: DeadLetter<'_>) -> Result<(), SinkError>;
}

/// Dead letters on a Kafka topic.
pub struct DeadLetterTopic {
    /// Shared with the decisions topic.
    producer: FutureProducer,
    /// The topic name.
    topic: String,
}

impl DeadLetterTopic {
    /// Dead letters to `topic` through `producer`.
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> DeadLetterTopic {
        DeadLetterTopic {
            producer,
            topic: topic.into(),
        }
    }

    async fn produce(
        &self,
        l: &DeadLetter<'_>,
        payload: Option<&[u8]>,
        truncated: bool,
    ) -> Result<(), SinkError> {
        let partition = l.source.partition.to_string();
        let offset = l.source.offset.to_string();
        let size = l.payload.map_or(0, <[u8]>::len).to_string();
        let mut h = OwnedHeaders::new_with_capacity(7)
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(l.source.topic.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: headers::ERROR_CLASS,
                value: Some(l.class),
            })
            .insert(Header {
                key: headers::ERROR_MESSAGE,
                value: Some(l.message),
            });
        if truncated {
            h = h
                .insert(Header {
                    key: headers::PAYLOAD_TRUNCATED,
                    value: Some("true"),
                })
                .insert(Header {
                    key: headers::PAYLOAD_BYTES,
                    value: Some(size.as_str()),
                });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic).headers(h);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(k) = l.key {
            record = record.key(k);
        }
        match self.producer.send(record, Timeout::Never).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(produce_error(
                &format!("dead-letter topic {}", self.topic),
                &e,
            )),
        }
    }
}

/// The prefix kept when the dead-letter topic refuses a record as too large.
const TRUNCATED_BYTES: usize = 64 * 1024;

#[async_trait]
impl DeadLetterSink for DeadLetterTopic {
    async fn send(&self, l: DeadLetter<'_>) -> Result<(), SinkError> {
        match self.produce(&l, l.payload, false).await {
            // Too large for the topic: keep a prefix rather than block the partition forever.
            Err(SinkError::Permanent { .. })
                if l.payload.is_some_and(|p| p.len() > TRUNCATED_BYTES) =>
            {
                let prefix = l.payload.map(|p| &p[..TRUNCATED_BYTES]);
                self.produce(&l, prefix, true).await
            }
            Err(SinkError::Permanent { message }) => Err(SinkError::retry(message)),
            other => other,
        }
    }
}

/// Dead letters as `name:line: class: message; line skipped` on standard error (file input).
#[derive(Debug, Default)]
pub struct StderrDeadLetters;

#[async_trait]
impl DeadLetterSink for StderrDeadLetters {
    async fn send(&self, l: DeadLetter<'_>) -> Result<(), SinkError> {
        eprintln!(
            "{}:{}: {}: {}; line skipped",
            l.source.topic, l.source.offset, l.class, l.message
        );
        Ok(())
    }
}
