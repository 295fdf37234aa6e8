//! Where records go that cannot be handled: a Kafka dead-letter topic (original bytes and key,
//! headers saying where the record came from and why it failed), or, for file input, a
//! `file:line: class: message` line on standard error.
//!
//! One dead letter per record, also across a crash: a worker killed after a dead letter was
//! acknowledged but before the record's offset was committed reads the record again after the
//! restart. So at start-up the topic's recent past ([`LOOK_BACK`]) is read, and a record whose
//! dead letter is already there (same source topic, partition, offset and bytes) is not
//! written again. Within a run, a record handled twice at once (its partition lost and given
//! back while its first letter still waited for the broker) gets one letter too.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use tracing::{debug, info, warn};

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

/// How far back the dead-letter topic is read at start-up for letters an earlier run wrote.
pub const LOOK_BACK: Duration = Duration::from_secs(15 * 60);

/// The longest the start-up scan may take; after that, repeats are no longer looked for.
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);

/// A dead letter's identity: source topic, partition, offset, and a digest of the bytes
/// (so that a recreated topic's new record at a reused offset is not taken for an old one).
type Origin = (String, i32, i64, u64);

fn digest(payload: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

/// The dead letters found on the topic at start-up.
struct Earlier {
    /// Filled by the scan.
    origins: std::sync::Mutex<HashSet<Origin>>,
    /// Turns true when the scan is over (done or given up).
    scanned: watch::Receiver<bool>,
}

/// How many of this run's letters are remembered (oldest forgotten first).
const REMEMBERED: usize = 100_000;

/// The letters this run wrote or is writing.
#[derive(Default)]
struct Recent {
    /// Per letter: held while it is written; true once written.
    slots: HashMap<Origin, Arc<tokio::sync::Mutex<bool>>>,
    /// Oldest first, for forgetting.
    order: VecDeque<Origin>,
}

/// Dead letters on a Kafka topic.
pub struct DeadLetterTopic {
    /// Shared with the decisions topic.
    producer: FutureProducer,
    /// The topic name.
    topic: String,
    /// Letters written by an earlier run, when the topic was scanned at start-up.
    earlier: Option<Arc<Earlier>>,
    /// Letters written by this run.
    recent: std::sync::Mutex<Recent>,
}

impl DeadLetterTopic {
    /// Dead letters to `topic` through `producer`.
    pub fn new(producer: FutureProducer, topic: impl Into<String>) -> DeadLetterTopic {
        DeadLetterTopic {
            producer,
            topic: topic.into(),
            earlier: None,
            recent: std::sync::Mutex::default(),
        }
    }

    /// Read the topic's last [`LOOK_BACK`] with a client of `reader`'s configuration (in a
    /// thread of its own) and write no second letter for a record already there. Sends wait
    /// for the scan; if it fails, letters are written as usual (a warning says so).
    pub fn skipping_earlier(mut self, reader: ClientConfig) -> DeadLetterTopic {
        let (tx, rx) = watch::channel(false);
        let earlier = Arc::new(Earlier {
            origins: std::sync::Mutex::default(),
            scanned: rx,
        });
        let (e, topic) = (earlier.clone(), self.topic.clone());
        std::thread::spawn(move || {
            let since = SystemTime::now() - LOOK_BACK;
            match scan(&reader, &topic, since) {
                Ok(found) => {
                    info!(
                        topic = %topic,
                        letters = found.len(),
                        "dead-letter topic read back {} minutes: records handled again will not be dead-lettered twice",
                        LOOK_BACK.as_secs() / 60
                    );
                    *e.origins.lock().unwrap_or_else(|p| p.into_inner()) = found;
                }
                Err(err) => warn!(
                    topic = %topic,
                    "cannot read the dead-letter topic back ({err}): a record handled again after a crash may get a second dead letter"
                ),
            }
            let _ = tx.send(true);
        });
        self.earlier = Some(earlier);
        self
    }

    /// Whether an earlier run already wrote this letter.
    async fn written_before(&self, origin: &Origin) -> bool {
        let Some(e) = &self.earlier else {
            return false;
        };
        let mut scanned = e.scanned.clone();
        let _ = scanned.wait_for(|done| *done).await;
        e.origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(origin)
    }

    /// This run's slot for a letter.
    fn slot(&self, origin: &Origin) -> Arc<tokio::sync::Mutex<bool>> {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = r.slots.get(origin) {
            return s.clone();
        }
        let s = Arc::new(tokio::sync::Mutex::new(false));
        r.slots.insert(origin.clone(), s.clone());
        r.order.push_back(origin.clone());
        if r.order.len() > REMEMBERED {
            if let Some(old) = r.order.pop_front() {
                r.slots.remove(&old);
            }
        }
        s
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

/// The origins of the letters on `topic` written since `since`.
fn scan(reader: &ClientConfig, topic: &str, since: SystemTime) -> Result<HashSet<Origin>, String> {
    let deadline = Instant::now() + SCAN_TIMEOUT;
    let c: BaseConsumer = reader.create().map_err(|e| e.to_string())?;
    let md = c
        .fetch_metadata(Some(topic), SCAN_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut query = TopicPartitionList::new();
    let ms = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            query
                .add_partition_offset(topic, p.id(), Offset::Offset(ms))
                .map_err(|e| e.to_string())?;
        }
    }
    let starts = c
        .offsets_for_times(query, SCAN_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut ends = std::collections::HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for e in starts.elements() {
        let (_, high) = c
            .fetch_watermarks(topic, e.partition(), SCAN_TIMEOUT)
            .map_err(|e| e.to_string())?;
        // No offset: nothing written since then.
        let Offset::Offset(start) = e.offset() else {
            continue;
        };
        if start < high {
            ends.insert(e.partition(), high);
            assignment
                .add_partition_offset(topic, e.partition(), Offset::Offset(start))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut found = HashSet::new();
    if ends.is_empty() {
        return Ok(found);
    }
    c.assign(&assignment).map_err(|e| e.to_string())?;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("not read to its end within {SCAN_TIMEOUT:?}"));
        }
        let m = match c.poll(Duration::from_millis(200)) {
            None => continue,
            Some(m) => m.map_err(|e| e.to_string())?,
        };
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
        let Some(h) = m.headers() else { continue };
        let get = |name: &str| {
            h.iter()
                .find(|x| x.key == name)
                .and_then(|x| std::str::from_utf8(x.value?).ok())
                .map(str::to_string)
        };
        let origin = (|| {
            Some((
                get(headers::SOURCE_TOPIC)?,
                get(headers::SOURCE_PARTITION)?.parse().ok()?,
                get(headers::SOURCE_OFFSET)?.parse().ok()?,
                digest(m.payload()),
            ))
        })();
        found.extend(origin);
    }
    Ok(found)
}

#[async_trait]
impl DeadLetterSink for DeadLetterTopic {
    async fn send(&self, l: DeadLetter<'_>) -> Result<(), SinkError> {
        let origin = (
            l.source.topic.clone(),
            l.source.partition,
            l.source.offset,
            digest(l.payload),
        );
        if self.written_before(&origin).await {
            debug!(
                partition = l.source.partition,
                offset = l.source.offset,
                "dead letter already written by an earlier run; not written again"
            );
            return Ok(());
        }
        // One writer per letter; a second one waits and finds it written.
        let slot = self.slot(&origin);
        let mut written = slot.lock().await;
        if *written {
            debug!(
                partition = l.source.partition,
                offset = l.source.offset,
                "dead letter already written; not written again"
            );
            return Ok(());
        }
        let r = match self.produce(&l, l.payload, false).await {
            // Too large for the topic: keep a prefix rather than block the partition forever.
            Err(SinkError::Permanent { .. })
                if l.payload.is_some_and(|p| p.len() > TRUNCATED_BYTES) =>
            {
                let prefix = l.payload.map(|p| &p[..TRUNCATED_BYTES]);
                self.produce(&l, prefix, true).await
            }
            Err(SinkError::Permanent { message }) => Err(SinkError::retry(message)),
            other => other,
        };
        *written = r.is_ok();
        r
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
