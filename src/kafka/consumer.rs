//! The input topic's consumer: a group member whose callbacks wait for, commit and forget
//! revoked partitions, and the [`Source`] the pipeline reads from.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tracing::{debug, info, warn};

use crate::config::{KafkaSettings, WorkerSettings};
use crate::decision::SourceRef;
use crate::server::Telemetry;
use crate::source::{Ack, Acknowledge, Record, Source, SourceError};

use super::config::consumer_config;
use super::offsets::{Acks, Shared};

/// The consumer's callbacks: rebalances and commit results.
pub struct Ctx {
    shared: Arc<Shared>,
}

impl ClientContext for Ctx {
    /// A statistics report: the lag of every partition held, and whether the group is up.
    fn stats(&self, s: Statistics) {
        let sh = &self.shared;
        if let Some(g) = &s.cgrp {
            if g.state != "up" {
                sh.telemetry.health.input_assigned(false);
            } else if g.join_state == "steady" {
                sh.telemetry.health.input_assigned(true);
            }
        }
        let mut held: Vec<i32> = sh.lock().parts.keys().copied().collect();
        held.sort_unstable();
        let lags: Vec<(i32, i64)> = match s.topics.get(&sh.topic) {
            Some(t) => held
                .iter()
                .filter_map(|p| {
                    let x = t.partitions.get(p)?;
                    // Nothing committed yet: everything from the start is still to be read
                    // (auto.offset.reset = earliest).
                    let lag = match x.consumer_lag {
                        -1 if x.committed_offset < 0 && x.lo_offset >= 0 => {
                            x.hi_offset - x.lo_offset
                        }
                        lag => lag,
                    };
                    (lag >= 0).then_some((*p, lag))
                })
                .collect(),
            None => Vec::new(),
        };
        sh.telemetry.metrics.consumer_lag(&sh.topic, &lags);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let partitions: Vec<i32> = tpl
            .elements_for_topic(&self.shared.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if partitions.is_empty() {
            return;
        }
        let lost = base.assignment_lost();
        info!(?partitions, lost, "partitions revoked");
        if lost {
            self.shared.telemetry.health.input_assigned(false);
        }
        let wait = || self.shared.revoke(&partitions, !lost);
        // Waiting blocks this thread: let the runtime move its other tasks elsewhere.
        let commit = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        if lost || commit.is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (p, o) in &commit {
            let _ = offsets.add_partition_offset(&self.shared.topic, *p, Offset::Offset(*o));
        }
        match base.commit(&offsets, CommitMode::Sync) {
            Ok(()) => debug!(?commit, "committed revoked partitions"),
            Err(e) => warn!("commit before giving up partitions failed ({e}); their last records will be handled again"),
        }
    }

    fn post_rebalance(&self, base: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl
                    .elements_for_topic(&self.shared.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                info!(?partitions, "partitions assigned");
                self.shared.assigned(&partitions);
                if !partitions.is_empty() {
                    if let Some(hook) = &*self
                        .shared
                        .on_assign
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                    {
                        hook();
                    }
                }
                self.shared.telemetry.health.input_assigned(true);
                if self.shared.paused.load(Ordering::Acquire) {
                    if let Err(e) = base.pause(tpl) {
                        warn!("cannot pause newly assigned partitions: {e}");
                    }
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!("rebalance error: {e}"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                self.shared.committed(offsets);
                let back = self.shared.commit_failures().succeeded(Instant::now());
                if let Some(line) = back {
                    info!("{line}");
                }
            }
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                let line = self
                    .shared
                    .commit_failures()
                    .failed(Instant::now(), e.to_string());
                if let Some(line) = line {
                    warn!("{line}");
                }
            }
        }
    }
}

/// The input topic, as a member of the consumer group.
pub struct KafkaSource {
    /// The consumer; `None` after `close`.
    consumer: Option<Arc<StreamConsumer<Ctx>>>,
    /// Tracker and flags shared with callbacks and acks.
    shared: Arc<Shared>,
    /// Acknowledgement receiver handed to every record.
    acks: Arc<dyn Acknowledge>,
}

impl KafkaSource {
    /// Create the consumer and subscribe to the input topic.
    pub fn subscribe(k: &KafkaSettings, w: &WorkerSettings) -> Result<KafkaSource, SourceError> {
        KafkaSource::subscribe_observed(k, w, Telemetry::default())
    }

    /// [`KafkaSource::subscribe`], reporting consumer lag and group membership to `telemetry`.
    pub fn subscribe_observed(
        k: &KafkaSettings,
        w: &WorkerSettings,
        telemetry: Telemetry,
    ) -> Result<KafkaSource, SourceError> {
        let shared = Arc::new(Shared {
            telemetry,
            topic: k.input_topic.clone(),
            tracker: Mutex::default(),
            progress: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            revoke_wait: w.drain_timeout,
            consumer: Mutex::new(Weak::new()),
            on_assign: Mutex::new(None),
            commit_failures: Mutex::default(),
        });
        let consumer: StreamConsumer<Ctx> = consumer_config(k, w)
            .create_with_context(Ctx {
                shared: shared.clone(),
            })
            .map_err(|e| SourceError::Fatal(format!("cannot create the Kafka consumer: {e}")))?;
        consumer.subscribe(&[&k.input_topic]).map_err(|e| {
            SourceError::Fatal(format!("cannot subscribe to {}: {e}", k.input_topic))
        })?;
        let consumer = Arc::new(consumer);
        *shared.consumer.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&consumer);
        Ok(KafkaSource {
            consumer: Some(consumer),
            acks: Arc::new(Acks(shared.clone())),
            shared,
        })
    }

    /// Call `hook` whenever partitions are assigned, before any of their records is received
    /// (the dead-letter topic's read-back, so that a partition taken over from a worker that
    /// crashed gets no second letter). Set it before the first [`Source::recv`].
    pub fn on_assign(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self
            .shared
            .on_assign
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
    }

    fn set_paused(&mut self, paused: bool) -> Result<(), SourceError> {
        self.shared.paused.store(paused, Ordering::Release);
        let Some(c) = &self.consumer else {
            return Ok(());
        };
        let assignment = c
            .assignment()
            .map_err(|e| SourceError::Transient(e.to_string()))?;
        if assignment.count() == 0 {
            return Ok(());
        }
        let r = if paused {
            c.pause(&assignment)
        } else {
            c.resume(&assignment)
        };
        r.map_err(|e| {
            SourceError::Transient(format!(
                "cannot {} partitions: {e}",
                if paused { "pause" } else { "resume" }
            ))
        })
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn recv(&mut self) -> Option<Result<Record, SourceError>> {
        let consumer = self.consumer.as_ref()?;
        loop {
            let m = match consumer.recv().await {
                Ok(m) => m,
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                    return Some(Err(SourceError::Fatal(e.to_string())))
                }
                Err(e) => return Some(Err(SourceError::Transient(e.to_string()))),
            };
            let Some(token) = self.shared.register(m.partition(), m.offset()) else {
                continue;
            };
            return Some(Ok(Record {
                source: SourceRef {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                },
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                ack: Ack::new(self.acks.clone(), token),
            }));
        }
    }

    fn pause(&mut self) -> Result<(), SourceError> {
        self.set_paused(true)
    }

    fn resume(&mut self) -> Result<(), SourceError> {
        self.set_paused(false)
    }

    fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        let Some(consumer) = self.consumer.take() else {
            return Ok(());
        };
        self.shared.closing.store(true, Ordering::Release);
        tokio::task::spawn_blocking(move || {
            let r = match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                Err(e) => Err(SourceError::Transient(format!("final commit failed: {e}"))),
            };
            // Dropping the last handle leaves the group (revoking, and committing, first).
            drop(consumer);
            r
        })
        .await
        .map_err(|e| SourceError::Fatal(e.to_string()))?
    }
}
