//! Where records go that cannot be handled: a Kafka dead-letter topic (original bytes and key,
//! headers saying where the record came from and why it failed), or, for file input, a
//! `file:line: class: message` line on standard error.
//!
//! One dead letter per record, also across a crash: a worker killed after a dead letter was
//! acknowledged but before the record's offset was committed leaves the record to be read
//! again, by itself after a restart or by the worker its partitions go to. So the topic is
//! read back at start-up, from its beginning (what retention kept), and again, from where the
//! last read stopped, whenever partitions are assigned ([`DeadLetterTopic::read_back`]); a
//! record whose dead letter is already there (same source topic, partition, offset and bytes)
//! is not written again. A send waits for the read-backs asked for before it. The letters
//! found are kept in memory (some 60 bytes each), bounded by the topic's retention. Within a
//! run, a record handled twice at once (its partition lost and given back while its first
//! letter still waited for the broker) gets one letter too.
//!
//! Not covered: a worker that lost a partition and still writes a letter for one of its
//! records after the new owner's read-back (both write one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::util::Timeout;
use tokio::sync::watch;
use tracing::{debug, warn};

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

/// The longest one read-back may take; after that, repeats are no longer looked for until the
/// next read-back (which goes on from where this one stopped).
const SCAN_TIMEOUT: Duration = Duration::from_secs(60);

/// A dead letter's identity: source topic, partition, offset, and a digest of the bytes
/// (so that a recreated topic's new record at a reused offset is not taken for an old one).
type Origin = (String, i32, i64, u64);

fn digest(payload: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

/// The dead letters found on the topic, and the read-backs asked for and done.
struct Earlier {
    /// Filled by the reader thread.
    origins: Arc<Mutex<HashSet<Origin>>>,
    /// Read-backs asked for: 1 at start-up, one more per assignment.
    asked: AtomicU64,
    /// The last read-back over (done or given up): a send waits until it covers the
    /// read-backs asked for when the send began.
    over: watch::Receiver<u64>,
    /// Wakes the reader thread; dropping it ends the thread.
    wake: Mutex<mpsc::Sender<()>>,
}

/// Asks the dead-letter topic for a read-back (see [`DeadLetterTopic::read_back`]).
#[derive(Clone)]
pub struct ReadBack(Weak<Earlier>);

impl ReadBack {
    /// Read the letters written since the last read-back; sends from now on wait for it.
    /// Does not block.
    pub fn request(&self) {
        let Some(e) = self.0.upgrade() else { return };
        e.asked.fetch_add(1, Ordering::AcqRel);
        let _ = e.wake.lock().unwrap_or_else(|p| p.into_inner()).send(());
    }
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

    /// Read the whole topic back with a client of `reader`'s configuration (in a thread of its
    /// own, which then waits for [`DeadLetterTopic::read_back`] requests and reads on from
    /// where it stopped) and write no second letter for a record already there. Sends wait
    /// for the read-backs asked for before them; if one fails, letters are written as usual
    /// (a warning says so) and the next one tries again.
    pub fn skipping_earlier(mut self, reader: ClientConfig) -> DeadLetterTopic {
        let (over_tx, over) = watch::channel(0);
        let (wake, woken) = mpsc::channel();
        let origins = Arc::new(Mutex::new(HashSet::new()));
        let earlier = Arc::new(Earlier {
            origins: origins.clone(),
            asked: AtomicU64::new(1),
            over,
            wake: Mutex::new(wake),
        });
        let asked = Arc::downgrade(&earlier);
        let topic = self.topic.clone();
        std::thread::spawn(move || {
            let mut reader = Reader {
                config: reader,
                client: None,
                topic,
                next: HashMap::new(),
            };
            loop {
                let Some(target) = asked.upgrade().map(|e| e.asked.load(Ordering::Acquire)) else {
                    return;
                };
                match reader.read_on(&origins) {
                    Ok(read) => debug!(
                        topic = %reader.topic,
                        read,
                        letters = origins.lock().unwrap_or_else(|p| p.into_inner()).len(),
                        "dead-letter topic read back: records handled again will not be dead-lettered twice"
                    ),
                    Err(err) => warn!(
                        topic = %reader.topic,
                        "cannot read the dead-letter topic back ({err}; tried again at the next assignment): \
                         a record handled again after a crash may get a second dead letter"
                    ),
                }
                let _ = over_tx.send(target);
                // Wait for the next request; all of those already queued are covered by one.
                if woken.recv().is_err() {
                    return;
                }
                while woken.try_recv().is_ok() {}
            }
        });
        self.earlier = Some(earlier);
        self
    }

    /// A handle asking for a read-back of the letters written since the last one: given to
    /// the consumer to call when partitions are assigned, so that a partition taken over
    /// from a worker that crashed between its letter and its commit gets no second letter.
    /// Does nothing without [`DeadLetterTopic::skipping_earlier`].
    pub fn read_back(&self) -> ReadBack {
        ReadBack(self.earlier.as_ref().map_or_else(Weak::new, Arc::downgrade))
    }

    /// Whether this letter is already on the topic (as of the last read-back).
    async fn written_before(&self, origin: &Origin) -> bool {
        let Some(e) = &self.earlier else {
            return false;
        };
        let asked = e.asked.load(Ordering::Acquire);
        let mut over = e.over.clone();
        let _ = over.wait_for(|done| *done >= asked).await;
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

/// Reads the dead-letter topic on from where it stopped.
struct Reader {
    config: ClientConfig,
    /// Created at the first read-back.
    client: Option<BaseConsumer>,
    topic: String,
    /// Per partition of the topic, the next offset to read.
    next: HashMap<i32, i64>,
}

impl Reader {
    /// Read every partition of the topic to its current end, adding the origins of the
    /// letters found; how many letters were read.
    fn read_on(&mut self, origins: &Mutex<HashSet<Origin>>) -> Result<usize, String> {
        let deadline = Instant::now() + SCAN_TIMEOUT;
        if self.client.is_none() {
            self.client = Some(self.config.create().map_err(|e| e.to_string())?);
        }
        let Some(c) = &self.client else {
            return Ok(0);
        };
        let topic = self.topic.as_str();
        let md = c
            .fetch_metadata(Some(topic), SCAN_TIMEOUT)
            .map_err(|e| e.to_string())?;
        let mut ends = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for t in md.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (low, high) = c
                    .fetch_watermarks(topic, p.id(), SCAN_TIMEOUT)
                    .map_err(|e| e.to_string())?;
                // Letters deleted by retention are gone: start at the low watermark.
                let from = self.next.get(&p.id()).map_or(low, |n| (*n).max(low));
                if from < high {
                    ends.insert(p.id(), high);
                    assignment
                        .add_partition_offset(topic, p.id(), Offset::Offset(from))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if ends.is_empty() {
            return Ok(0);
        }
        c.assign(&assignment).map_err(|e| e.to_string())?;
        let mut read = 0;
        while !ends.is_empty() {
            if Instant::now() > deadline {
                return Err(format!("not read to its end within {SCAN_TIMEOUT:?}"));
            }
            let m = match c.poll(Duration::from_millis(200)) {
                None => continue,
                Some(m) => m.map_err(|e| e.to_string())?,
            };
            let next = self.next.entry(m.partition()).or_default();
            *next = (*next).max(m.offset() + 1);
            if ends.get(&m.partition()).is_some_and(|end| *next >= *end) {
                ends.remove(&m.partition());
            }
            read += 1;
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
            origins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(origin);
        }
        Ok(read)
    }
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
                "dead letter already on the topic; not written again"
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
