//! The Kafka side: a consumer-group member that reads the input topic and commits only what
//! is done, and the producer shared by the decisions and dead-letter topics.
//!
//! Offsets: `enable.auto.offset.store=false`; for each partition the tracker keeps the records
//! received, in offset order, and stores (for the periodic auto-commit) only the offset below
//! which every record is done. A record stays "in flight" until a commit covering it succeeds,
//! so the in-flight limit also bounds what a crash can make the group handle twice.
//!
//! Rebalances (cooperative-sticky): on revocation the worker waits, up to the drain timeout,
//! for the revoked partitions' records to finish, commits what is done, and forgets them;
//! acknowledgements arriving later for those partitions are ignored (another member will
//! handle the records again). On a lost assignment nothing is committed, and the records this
//! worker handled are skipped when the partition comes back. On every assignment the hook set
//! with [`KafkaSource::on_assign`] runs before any record of the new partitions is received.
//!
//! Failed offset commits are retried at the next commit; while they keep failing (a broker
//! outage) the first failure is a warning, then one summary line every 30 s, and one line when
//! commits succeed again.
//!
//! librdkafka's statistics (every `statistics.interval.ms`, 5 s unless configured) give the
//! consumer lag of each partition held (`triage_consumer_lag`) and the group state, which with
//! the rebalance callbacks drives readiness (`/readyz`).

pub mod config;
pub mod consumer;
mod offsets;
pub mod probe;

pub use config::{check_properties, consumer_config, producer, producer_config, reader_config};
pub use consumer::{Ctx, KafkaSource};
pub use probe::{check_connection, check_connection_async, check_topics, ConnectError};
