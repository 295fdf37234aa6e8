//! Where ticket records come from: a Kafka consumer group ([`crate::kafka::KafkaSource`]) or a
//! JSON Lines file or standard input ([`jsonl`]). Both hand the pipeline [`Record`]s with an
//! [`Ack`]; a record's offset may be committed only after its ack is `done()`. rdkafka types
//! stay in `kafka` and in the Kafka sinks.

use std::sync::Arc;

use async_trait::async_trait;

use crate::decision::SourceRef;

pub mod jsonl;

/// One raw record, as received.
pub struct Record {
    /// Where it came from.
    pub source: SourceRef,
    /// The message key, unchanged (kept for dead letters).
    pub key: Option<Vec<u8>>,
    /// The message value, unchanged (`None` for a null value).
    pub payload: Option<Vec<u8>>,
    /// Say when the record is fully handled.
    pub ack: Ack,
}

/// Which record an acknowledgement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckToken {
    /// Partition.
    pub partition: i32,
    /// Which assignment of that partition the record was received under: acknowledgements
    /// from before a partition was revoked and assigned again are ignored.
    pub generation: u64,
    /// Offset (or line number).
    pub offset: i64,
}

/// The receiving side of acknowledgements; implemented by each source.
pub trait Acknowledge: Send + Sync {
    /// The record is fully handled: every sink took it, or it was dead-lettered.
    fn done(&self, token: AckToken);
    /// The record will not be handled by this process (shutdown, revoked partition).
    fn abandon(&self, token: AckToken);
}

/// A record's acknowledgement handle. Dropping it without [`Ack::done`] abandons the record:
/// its offset is never committed, so it is delivered again after a restart or rebalance.
pub struct Ack {
    /// Who to tell; `None` once told.
    to: Option<Arc<dyn Acknowledge>>,
    /// Which record.
    token: AckToken,
}

impl Ack {
    /// An acknowledgement handle for `token`.
    pub fn new(to: Arc<dyn Acknowledge>, token: AckToken) -> Ack {
        Ack {
            to: Some(to),
            token,
        }
    }

    /// Mark the record fully handled; its offset may now be committed.
    pub fn done(mut self) {
        if let Some(to) = self.to.take() {
            to.done(self.token);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            to.abandon(self.token);
        }
    }
}

/// A source failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A transient problem (broker unreachable, rebalance in progress): keep going.
    #[error("{0}")]
    Transient(String),
    /// The source cannot go on (fatal client error, unreadable input): stop the worker.
    #[error("{0}")]
    Fatal(String),
}

impl SourceError {
    /// Whether the worker can carry on after this error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Transient(_))
    }
}

/// A stream of records with back-pressure and offset tracking.
#[async_trait]
pub trait Source: Send {
    /// The next record; `None` when the input has ended (files only; a topic never ends).
    /// Cancel safe: the pipeline calls it inside `select!`. While paused, a stream source
    /// must still be called regularly (it serves the group protocol) and may return records
    /// that were already on their way; a file source simply waits.
    async fn recv(&mut self) -> Option<Result<Record, SourceError>>;

    /// Stop fetching new records (too many in flight, or sinks failing).
    fn pause(&mut self) -> Result<(), SourceError>;

    /// Fetch again.
    fn resume(&mut self) -> Result<(), SourceError>;

    /// Records received and not yet committed (for a file: not yet handled).
    fn in_flight(&self) -> usize;

    /// Commit what is done and leave (end of the run). Records not done are not committed.
    async fn close(&mut self) -> Result<(), SourceError>;
}
