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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tracing::{debug, info, warn};

use super::{Ack, AckToken, Acknowledge, Record, Source, SourceError};
use crate::config::{KafkaSettings, WorkerSettings};
use crate::decision::SourceRef;
use crate::server::Telemetry;

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
        .set("fetch.wait.max.ms", "100")
        .set("statistics.interval.ms", "5000");
    apply(&mut c, k, &k.consumer_properties);
    c
}

/// The producer's client configuration: idempotent, `acks=all`.
pub fn producer_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("client.id", "triage")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
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

// ----- start-up connection check ------------------------------------------------------------

/// Why the cluster cannot be used, found before the worker (or `triage ingest`) starts: a
/// wrong password or an untrusted certificate otherwise shows only as an endless stream of
/// librdkafka retries. Every message says where, as whom, and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused the login (SASL): wrong password, unknown user or mechanism.
    #[error(
        "Kafka at {bootstrap} refused to authenticate user {user} with SASL mechanism {mechanism}: {reason}. \
         Check the password (kafka.secret_properties \"sasl.password\" and the variable or file it names), \
         \"sasl.username\" and \"sasl.mechanism\" in [kafka.properties] against the user on the cluster"
    )]
    Authentication {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// `sasl.mechanism` (librdkafka's default when unset).
        mechanism: String,
        /// `sasl.username`, quoted, or a note that none is set.
        user: String,
        /// What librdkafka said.
        reason: String,
    },
    /// The TLS handshake failed: a CA that did not sign the broker's certificate, a
    /// certificate for another host name, or TLS spoken to a plaintext port.
    #[error(
        "TLS with Kafka at {bootstrap} failed: {reason}. Check \"ssl.ca.location\" in [kafka.properties] \
         (the CA that signed the broker's certificate), that the certificate names the host in \
         kafka.bootstrap_servers, and that \"security.protocol\" matches the broker's listener"
    )]
    Tls {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// What librdkafka said.
        reason: String,
    },
    /// No answer in time: the cluster is down or unreachable, or the address is wrong.
    #[error(
        "Kafka at {bootstrap} did not answer within {timeout_ms} ms: {reason}. Check \
         kafka.bootstrap_servers, that the brokers run, and \"security.protocol\""
    )]
    Unreachable {
        /// `kafka.bootstrap_servers`.
        bootstrap: String,
        /// How long the check waited.
        timeout_ms: u128,
        /// The last thing librdkafka said.
        reason: String,
    },
    /// The client cannot be created from the configured properties.
    #[error("Kafka client properties: {0}")]
    Properties(String),
}

impl ConnectError {
    /// Whether starting again unchanged may work: only when the cluster did not answer.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

impl From<ConnectError> for SourceError {
    fn from(e: ConnectError) -> SourceError {
        SourceError::Fatal(e.to_string())
    }
}

/// The check client's callbacks: remember the first login or TLS failure, keep librdkafka's
/// own log lines (which repeat every retry) at debug level.
#[derive(Default)]
struct ProbeCtx {
    /// The first authentication or TLS failure reported, if any.
    refused: Mutex<Option<(Refusal, String)>>,
    /// The last error reported (for the message when nothing answers).
    last: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Authentication,
    Tls,
}

/// Which kind of refusal a librdkafka client error is, if any.
fn refusal(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Refusal> {
    let r = reason.to_ascii_lowercase();
    match code {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => {
            Some(Refusal::Authentication)
        }
        Some(RDKafkaErrorCode::SSL) => Some(Refusal::Tls),
        _ if r.contains("sasl authentication") => Some(Refusal::Authentication),
        _ if r.contains("ssl handshake") || r.contains("certificate verify") => Some(Refusal::Tls),
        _ => None,
    }
}

impl ClientContext for ProbeCtx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        debug!(?level, fac, "librdkafka: {message}");
    }

    fn error(&self, e: KafkaError, reason: &str) {
        let text = format!("{e}: {reason}");
        if let Some(kind) = refusal(e.rdkafka_error_code(), reason) {
            let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            r.get_or_insert((kind, reason.to_string()));
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

impl rdkafka::producer::ProducerContext for ProbeCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// A property as configured for the producer (and so for the check), if set.
fn property<'a>(k: &'a KafkaSettings, key: &str) -> Option<&'a str> {
    k.properties
        .get(key)
        .or_else(|| k.producer_properties.get(key))
        .map(String::as_str)
}

/// Ask the cluster for metadata once, as the configured clients would, and fail within
/// `timeout` with a message naming the broker, the user and what to check when the login
/// or the TLS handshake is refused or nothing answers. Blocking (run it off the runtime).
pub fn check_connection(k: &KafkaSettings, timeout: Duration) -> Result<(), ConnectError> {
    let ctx = ProbeCtx::default();
    let client: rdkafka::producer::BaseProducer<ProbeCtx> = producer_config(k)
        .create_with_context(ctx)
        .map_err(|e| ConnectError::Properties(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    loop {
        let now = Instant::now();
        let step = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(500));
        let last_err = match client.client().fetch_metadata(Some(&k.input_topic), step) {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        // Serves the queued events (every one of them until the short deadline), among them
        // the error callbacks where the reason of a refusal is reported.
        client.poll(Duration::from_millis(100));
        let ctx = client.context();
        let refused = ctx
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((kind, reason)) = refused {
            let bootstrap = k.bootstrap_servers.clone();
            return Err(match kind {
                Refusal::Authentication => ConnectError::Authentication {
                    bootstrap,
                    mechanism: property(k, "sasl.mechanism")
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            "GSSAPI (librdkafka's default; set \"sasl.mechanism\")".into()
                        }),
                    user: match property(k, "sasl.username") {
                        Some(u) => format!("\"{u}\""),
                        None if k.secret_properties.contains_key("sasl.username") => {
                            "(sasl.username from kafka.secret_properties)".into()
                        }
                        None => "(none: \"sasl.username\" is not set)".into(),
                    },
                    reason,
                },
                Refusal::Tls => ConnectError::Tls { bootstrap, reason },
            });
        }
        if Instant::now() >= deadline {
            let reason = ctx
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or(last_err);
            return Err(ConnectError::Unreachable {
                bootstrap: k.bootstrap_servers.clone(),
                timeout_ms: timeout.as_millis(),
                reason,
            });
        }
    }
}

/// [`check_connection`] from async code.
pub async fn check_connection_async(
    k: &KafkaSettings,
    timeout: Duration,
) -> Result<(), ConnectError> {
    let k = k.clone();
    tokio::task::spawn_blocking(move || check_connection(&k, timeout))
        .await
        .map_err(|e| ConnectError::Properties(format!("the connection check panicked: {e}")))?
}

/// Fail early, with a message saying what to do, when a configured topic does not exist.
pub async fn check_topics(
    producer: &FutureProducer,
    topics: Vec<String>,
    timeout: Duration,
) -> Result<(), SourceError> {
    let p = producer.clone();
    tokio::task::spawn_blocking(move || {
        for t in topics {
            let md = p
                .client()
                .fetch_metadata(Some(&t), timeout)
                .map_err(|e| SourceError::Fatal(format!("cannot reach Kafka to look up topic {t}: {e}")))?;
            let missing = md
                .topics()
                .iter()
                .find(|mt| mt.name() == t)
                .map(|mt| mt.error().is_some() || mt.partitions().is_empty())
                .unwrap_or(true);
            if missing {
                return Err(SourceError::Fatal(format!(
                    "topic {t} does not exist (create it first, e.g. deploy/kafka/kafka.sh topics --create --topic {t} --partitions 3)"
                )));
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| SourceError::Fatal(e.to_string()))?
}

// ----- offset tracking ------------------------------------------------------------------------

/// One received record of a partition.
#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: i64,
    done: bool,
}

/// The records of one assigned partition that are not yet committed, in offset order.
#[derive(Debug, Default)]
struct Part {
    /// Bumped on every assignment: acks from an earlier assignment are ignored.
    generation: u64,
    /// Received and not yet committed.
    entries: VecDeque<Entry>,
    /// Index of the first entry not done (== len when all are done).
    first_undone: usize,
    /// The offset last stored for commit (the next offset to read after a restart).
    stored: Option<i64>,
    /// Records below this offset were handled by this worker in an earlier assignment of the
    /// partition whose offsets could not be committed (see [`Tracker::handled`]): they are
    /// skipped, and this offset is stored for commit instead.
    floor: Option<i64>,
}

impl Part {
    /// The offset below which every record is done, if any record is.
    fn committable(&self) -> Option<i64> {
        if self.first_undone < self.entries.len() {
            let o = self.entries[self.first_undone].offset;
            (self.first_undone > 0).then_some(o)
        } else {
            self.entries.back().map(|e| e.offset + 1)
        }
    }

    fn all_done(&self) -> bool {
        self.first_undone == self.entries.len()
    }
}

#[derive(Debug, Default)]
struct Tracker {
    parts: HashMap<i32, Part>,
    next_generation: u64,
    /// For partitions given up (revoked or lost): the offset below which this worker had
    /// handled every record. When the broker is unreachable for longer than the session
    /// timeout, the assignment is lost while commits fail; when the partitions come back,
    /// fetching resumes at the last *committed* offset, and without this the records handled
    /// in between would be handled again (a second dead letter, a repeat post-back). Taken
    /// by the next assignment of the partition.
    handled: HashMap<i32, i64>,
}

/// State shared by the source, the consumer's callbacks and the acknowledgement handles.
struct Shared {
    /// The input topic.
    topic: String,
    /// Per-partition records.
    tracker: Mutex<Tracker>,
    /// Signalled whenever a record is done (a revocation may be waiting for that).
    progress: Condvar,
    /// Records received and not yet committed, over all partitions.
    in_flight: AtomicUsize,
    /// Whether the pipeline wants fetching paused (applies to newly assigned partitions too).
    paused: AtomicBool,
    /// Shutting down: revocations do not wait, and records are no longer taken.
    closing: AtomicBool,
    /// How long a revocation waits for in-flight records of the revoked partitions.
    revoke_wait: Duration,
    /// The consumer, to store offsets from acknowledgements. Weak: the source owns it and
    /// must be able to close it at shutdown even while abandoned tasks still hold acks.
    consumer: Mutex<Weak<StreamConsumer<Ctx>>>,
    /// Where consumer lag and group membership are reported.
    telemetry: Telemetry,
    /// Called when partitions are assigned, before any of their records is received (see
    /// [`KafkaSource::on_assign`]).
    on_assign: Mutex<Option<AssignHook>>,
    /// Offset commits failing in a row, for a warning that does not repeat 4 times a second.
    commit_failures: Mutex<CommitFailures>,
}

/// See [`KafkaSource::on_assign`].
type AssignHook = Box<dyn Fn() + Send + Sync>;

impl Shared {
    fn commit_failures(&self) -> MutexGuard<'_, CommitFailures> {
        self.commit_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a received record into the tracker; `None` if it must not be handled (its
    /// partition is not, or no longer, ours, or it is a repeat).
    fn register(&self, partition: i32, offset: i64) -> Option<AckToken> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let mut t = self.lock();
        let part = t.parts.get_mut(&partition)?;
        if let Some(floor) = part.floor.filter(|f| offset < *f) {
            // Handled by this worker before the partition was lost: move the commit past it.
            if part.stored.is_none_or(|s| s < floor) && self.store(partition, floor) {
                part.stored = Some(floor);
            }
            debug!(
                partition,
                offset, "record already handled before the partition was lost; skipped"
            );
            return None;
        }
        if let Some(last) = part.entries.back() {
            if offset <= last.offset {
                debug!(
                    partition,
                    offset, "record received again while in flight; ignored"
                );
                return None;
            }
        }
        part.entries.push_back(Entry {
            offset,
            done: false,
        });
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Some(AckToken {
            partition,
            generation: part.generation,
            offset,
        })
    }

    /// Mark a record done and store the new committable offset, if it moved.
    fn mark_done(&self, token: AckToken) {
        let mut t = self.lock();
        let Some(part) = t.parts.get_mut(&token.partition) else {
            return;
        };
        if part.generation != token.generation {
            return;
        }
        let Ok(i) = part
            .entries
            .binary_search_by_key(&token.offset, |e| e.offset)
        else {
            return;
        };
        part.entries[i].done = true;
        while part.first_undone < part.entries.len() && part.entries[part.first_undone].done {
            part.first_undone += 1;
        }
        if let Some(next) = part.committable() {
            if !matches!(part.stored, Some(s) if next <= s) {
                // Stored under the lock, so stored offsets of a partition only ever increase.
                if self.store(token.partition, next) {
                    part.stored = Some(next);
                }
            }
        }
        drop(t);
        self.progress.notify_all();
    }

    /// Store `offset` of `partition` for the next commit; whether it was stored.
    fn store(&self, partition: i32, offset: i64) -> bool {
        let Some(c) = self
            .consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
        else {
            return false;
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return false;
        }
        match c.store_offsets(&tpl) {
            Ok(()) => true,
            Err(e) => {
                debug!(partition, "cannot store offset {offset}: {e}");
                false
            }
        }
    }

    /// A successful commit: the records below the committed offsets leave the in-flight set.
    fn committed(&self, offsets: &TopicPartitionList) {
        let mut t = self.lock();
        let mut released = 0;
        for e in offsets.elements_for_topic(&self.topic) {
            let (Offset::Offset(o), Ok(())) = (e.offset(), e.error()) else {
                continue;
            };
            let Some(part) = t.parts.get_mut(&e.partition()) else {
                continue;
            };
            while part.first_undone > 0 && part.entries.front().is_some_and(|x| x.offset < o) {
                part.entries.pop_front();
                part.first_undone -= 1;
                released += 1;
            }
        }
        drop(t);
        self.in_flight.fetch_sub(released, Ordering::AcqRel);
    }

    fn assigned(&self, partitions: &[i32]) {
        let mut t = self.lock();
        for &p in partitions {
            t.next_generation += 1;
            let generation = t.next_generation;
            let floor = t.handled.remove(&p);
            if let Some(old) = t.parts.insert(
                p,
                Part {
                    generation,
                    floor,
                    ..Part::default()
                },
            ) {
                self.in_flight
                    .fetch_sub(old.entries.len(), Ordering::AcqRel);
            }
        }
    }

    /// Wait (bounded) for the partitions' records, then return the offsets to commit and
    /// forget the partitions.
    fn revoke(&self, partitions: &[i32], wait: bool) -> Vec<(i32, i64)> {
        let deadline = Instant::now() + self.revoke_wait;
        let mut t = self.lock();
        if wait && !self.closing.load(Ordering::Acquire) {
            loop {
                let busy = partitions
                    .iter()
                    .any(|p| t.parts.get(p).is_some_and(|x| !x.all_done()));
                let now = Instant::now();
                if !busy || now >= deadline {
                    if busy {
                        warn!("revoked partitions still had records in flight after {:?}; they will be handled again by their new owner", self.revoke_wait);
                    }
                    break;
                }
                t = self
                    .progress
                    .wait_timeout(t, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let mut commit = Vec::new();
        for p in partitions {
            if let Some(part) = t.parts.remove(p) {
                self.in_flight
                    .fetch_sub(part.entries.len(), Ordering::AcqRel);
                let next = part.committable();
                if let Some(next) = next {
                    commit.push((*p, next));
                }
                if let Some(handled) = next.max(part.stored).max(part.floor) {
                    t.handled.insert(*p, handled);
                }
            }
        }
        commit
    }
}

/// How often a run of failing offset commits is summed up in one warning.
const COMMIT_FAILURES_EVERY: Duration = Duration::from_secs(30);

/// Offset commits failing in a row. During a broker outage the periodic commit fails about 4
/// times a second: the first failure is a warning, then one summary every
/// [`COMMIT_FAILURES_EVERY`] (how many failed since, the last error), and one line when a
/// commit succeeds again. Each method returns the line to log, if any.
#[derive(Debug, Default)]
struct CommitFailures {
    /// When the first failure of the current run happened (`None`: commits succeed).
    since: Option<Instant>,
    /// When the last line about this run was logged.
    told: Option<Instant>,
    /// Failures in this run.
    total: u64,
    /// Failures since the last line.
    untold: u64,
    /// The last error.
    last: String,
}

impl CommitFailures {
    fn failed(&mut self, now: Instant, error: String) -> Option<String> {
        self.total += 1;
        self.untold += 1;
        self.last = error;
        let Some(told) = self.told else {
            self.since = Some(now);
            self.told = Some(now);
            self.untold = 0;
            return Some(format!(
                "offset commit failed: {} (retried at every commit; failures are summed up every {}s until a commit succeeds)",
                self.last,
                COMMIT_FAILURES_EVERY.as_secs()
            ));
        };
        if now.duration_since(told) < COMMIT_FAILURES_EVERY {
            return None;
        }
        let line = format!(
            "offset commits still failing: {} failed in the last {}s, {} since the first {}s ago; last error: {} (retried at every commit)",
            self.untold,
            now.duration_since(told).as_secs(),
            self.total,
            self.since.map_or(0, |s| now.duration_since(s).as_secs()),
            self.last
        );
        self.told = Some(now);
        self.untold = 0;
        Some(line)
    }

    fn succeeded(&mut self, now: Instant) -> Option<String> {
        let since = self.since.take()?;
        let line = format!(
            "offset commits succeed again after {} failed over {}s",
            self.total,
            now.duration_since(since).as_secs()
        );
        *self = CommitFailures::default();
        Some(line)
    }
}

/// Acknowledgements go straight to the tracker (no trip through the poll loop).
struct Acks(Arc<Shared>);

impl Acknowledge for Acks {
    fn done(&self, token: AckToken) {
        self.0.mark_done(token);
    }
    fn abandon(&self, _token: AckToken) {
        // Never done: the offset cannot move past it; it is read again after a restart.
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            topic: "t".into(),
            tracker: Mutex::default(),
            progress: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            revoke_wait: Duration::from_millis(10),
            consumer: Mutex::new(Weak::new()),
            telemetry: Telemetry::default(),
            on_assign: Mutex::new(None),
            commit_failures: Mutex::default(),
        }
    }

    fn committable(s: &Shared, p: i32) -> Option<i64> {
        s.lock().parts[&p].committable()
    }

    fn settings(props: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: "127.0.0.1:1".into(),
            group_id: "g".into(),
            input_topic: "in".into(),
            decisions_topic: None,
            dead_letter_topic: "dlq".into(),
            properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            consumer_properties: Default::default(),
            producer_properties: Default::default(),
            secret_properties: [(
                "sasl.password".to_string(),
                crate::config::Secret::new("pw-never-shown"),
            )]
            .into(),
        }
    }

    #[test]
    fn refusals_are_told_from_other_client_errors() {
        use RDKafkaErrorCode as C;
        let sasl = "sasl_ssl://h:9094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512";
        assert_eq!(
            refusal(Some(C::Authentication), sasl),
            Some(Refusal::Authentication)
        );
        assert_eq!(
            refusal(Some(C::BrokerTransportFailure), sasl),
            Some(Refusal::Authentication)
        );
        let tls = "sasl_ssl://h:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        assert_eq!(refusal(Some(C::SSL), tls), Some(Refusal::Tls));
        assert_eq!(
            refusal(
                Some(C::BrokerTransportFailure),
                "h:9094/bootstrap: error:0A000086:SSL routines::certificate verify failed"
            ),
            Some(Refusal::Tls)
        );
        assert_eq!(
            refusal(
                Some(C::BrokerTransportFailure),
                "h:9094/bootstrap: Connect to ipv4#127.0.0.1:9094 failed: Connection refused"
            ),
            None
        );
        assert_eq!(
            refusal(Some(C::AllBrokersDown), "1/1 brokers are down"),
            None
        );
    }

    #[test]
    fn refusal_messages_say_where_as_whom_and_what_to_check_without_the_secret() {
        let e = ConnectError::Authentication {
            bootstrap: "kafka:9094".into(),
            mechanism: "SCRAM-SHA-512".into(),
            user: "\"triage\"".into(),
            reason: "invalid credentials".into(),
        };
        let m = e.to_string();
        for needed in [
            "kafka:9094",
            "user \"triage\"",
            "SCRAM-SHA-512",
            "sasl.password",
            "invalid credentials",
        ] {
            assert!(m.contains(needed), "{needed:?} missing: {m}");
        }
        assert!(!e.is_retryable());
        let t = ConnectError::Tls {
            bootstrap: "kafka:9094".into(),
            reason: "certificate verify failed".into(),
        };
        assert!(t.to_string().contains("ssl.ca.location") && !t.is_retryable());
        let u = ConnectError::Unreachable {
            bootstrap: "kafka:9094".into(),
            timeout_ms: 5000,
            reason: "Connection refused".into(),
        };
        assert!(u.to_string().contains("5000 ms") && u.is_retryable());
    }

    #[test]
    fn nothing_listening_is_unreachable_within_the_timeout() {
        let k = settings(&[]);
        let t0 = Instant::now();
        let e = check_connection(&k, Duration::from_millis(1500)).unwrap_err();
        assert!(matches!(e, ConnectError::Unreachable { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        assert!(!format!("{e} {e:?}").contains("pw-never-shown"));
    }

    #[test]
    fn commits_only_below_the_first_record_not_done() {
        let s = shared();
        s.assigned(&[0]);
        let toks: Vec<_> = [5, 6, 8, 9]
            .iter()
            .map(|o| s.register(0, *o).unwrap())
            .collect();
        assert_eq!(s.in_flight.load(Ordering::Acquire), 4);
        assert_eq!(committable(&s, 0), None);
        s.mark_done(toks[1]); // 6 done, 5 not: nothing committable
        assert_eq!(committable(&s, 0), None);
        s.mark_done(toks[0]); // 5, 6 done: resume at 8
        assert_eq!(committable(&s, 0), Some(8));
        s.mark_done(toks[3]);
        assert_eq!(committable(&s, 0), Some(8));
        s.mark_done(toks[2]);
        assert_eq!(committable(&s, 0), Some(10));
        // The records leave the in-flight count only when a commit covers them.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(8)).unwrap();
        s.committed(&tpl);
        assert_eq!(s.in_flight.load(Ordering::Acquire), 2);
        assert_eq!(committable(&s, 0), Some(10));
    }

    #[test]
    fn acks_from_an_earlier_assignment_are_ignored() {
        let s = shared();
        s.assigned(&[1]);
        let old = s.register(1, 0).unwrap();
        assert_eq!(s.revoke(&[1], true), vec![]);
        assert_eq!(s.in_flight.load(Ordering::Acquire), 0);
        assert!(s.register(1, 1).is_none(), "not ours any more");
        s.assigned(&[1]);
        let new = s.register(1, 0).unwrap();
        s.mark_done(old);
        assert_eq!(
            committable(&s, 1),
            None,
            "old generation's ack must not count"
        );
        s.mark_done(new);
        assert_eq!(committable(&s, 1), Some(1));
        assert!(
            s.register(1, 0).is_none(),
            "a repeat of an offset in flight is dropped"
        );
    }

    /// A broker outage longer than the session timeout: the assignment is lost while commits
    /// fail; when the partition comes back, fetching resumes at the last committed offset.
    /// The records handled in between must not be handled again (a second dead letter).
    #[test]
    fn lost_assignment_during_a_broker_outage_does_not_handle_done_records_twice() {
        let s = shared();
        s.assigned(&[0]);
        let toks: Vec<_> = (0..4).map(|o| s.register(0, o).unwrap()).collect();
        for t in &toks[..3] {
            s.mark_done(*t);
        }
        // Lost: nothing committed; offset 3 was still in flight.
        assert_eq!(s.revoke(&[0], false), vec![(0, 3)]);
        s.assigned(&[0]);
        for o in 0..3 {
            assert!(s.register(0, o).is_none(), "offset {o} was handled already");
        }
        assert!(
            s.register(0, 3).is_some(),
            "the record in flight is handled again"
        );
        assert!(s.register(0, 4).is_some());
        // Lost again before anything new was done: what was handled stays known.
        assert_eq!(s.revoke(&[0], false), vec![]);
        s.assigned(&[0]);
        assert!(s.register(0, 0).is_none(), "still below what was handled");
    }

    /// A 65-second outage fails 4 commits a second: 3 warnings (the first, two summaries)
    /// and one line when commits succeed again, not 260 warnings.
    #[test]
    fn failing_commits_are_summed_up_not_logged_each_time() {
        let mut f = CommitFailures::default();
        let t0 = Instant::now();
        let mut lines = Vec::new();
        for i in 0..260u64 {
            let now = t0 + Duration::from_millis(250 * i);
            lines.extend(f.failed(now, format!("Local: Broker transport failure #{i}")));
        }
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].contains("#0"), "{}", lines[0]);
        assert!(
            lines[1].contains("120 failed in the last 30s") && lines[1].contains("#120"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].contains("241 since the first 60s ago"),
            "{}",
            lines[2]
        );
        let back = f.succeeded(t0 + Duration::from_secs(66)).expect("a line");
        assert!(back.contains("after 260 failed over 66s"), "{back}");
        assert_eq!(f.succeeded(t0 + Duration::from_secs(67)), None);
        // The next outage starts with a warning of its own.
        assert!(f
            .failed(t0 + Duration::from_secs(70), "again".into())
            .is_some_and(|l| l.starts_with("offset commit failed: again")));
    }

    #[test]
    fn revocation_returns_what_is_done() {
        let s = shared();
        s.assigned(&[0, 1]);
        let a = s.register(0, 10).unwrap();
        let _b = s.register(0, 11).unwrap();
        s.mark_done(a);
        let t0 = Instant::now();
        assert_eq!(s.revoke(&[0], true), vec![(0, 11)]);
        assert!(
            t0.elapsed() >= Duration::from_millis(10),
            "waited for the record in flight"
        );
        assert!(s.lock().parts.contains_key(&1));
    }
}
