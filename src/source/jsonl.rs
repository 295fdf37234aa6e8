//! JSON Lines from a file or standard input: one record per non-blank line, numbered from 1.
//! The record's source is `{topic: <file name>, partition: 0, offset: <line number>}`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Ack, AckToken, Acknowledge, Record, Source, SourceError};
use crate::decision::SourceRef;

/// Lines read ahead of the pipeline.
const READ_AHEAD: usize = 256;

/// Reads lines on a blocking thread and hands them out as records.
pub struct JsonlSource {
    /// The file name (`<stdin>` for standard input), used as the records' topic.
    name: Arc<str>,
    /// Lines from the reader thread: (line number, bytes), or a read error.
    lines: mpsc::Receiver<Result<(i64, Vec<u8>), String>>,
    /// Records handed out and not yet acknowledged.
    pending: Arc<Pending>,
    /// While paused, `recv` waits instead of reading on.
    paused: bool,
}

/// Counts records not yet acknowledged.
#[derive(Default)]
struct Pending(AtomicUsize);

impl Acknowledge for Pending {
    fn done(&self, _: AckToken) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
    fn abandon(&self, _: AckToken) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl JsonlSource {
    /// Read `path`, or standard input for `-`.
    pub fn open(path: &Path) -> Result<JsonlSource, SourceError> {
        if path == Path::new("-") {
            return Ok(JsonlSource::from_reader("<stdin>", std::io::stdin()));
        }
        let f = std::fs::File::open(path).map_err(|e| {
            SourceError::Fatal(format!("{}: cannot open input: {e}", path.display()))
        })?;
        Ok(JsonlSource::from_reader(&path.display().to_string(), f))
    }

    /// Read from any reader (named `name` in records and messages).
    pub fn from_reader(name: &str, reader: impl Read + Send + 'static) -> JsonlSource {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        let label = name.to_string();
        std::thread::Builder::new()
            .name("triage-jsonl".into())
            .spawn(move || {
                let reader = BufReader::with_capacity(1 << 16, reader);
                for (i, line) in reader.split(b'\n').enumerate() {
                    let item = match line {
                        Ok(l) if l.iter().all(u8::is_ascii_whitespace) => continue,
                        Ok(mut l) => {
                            if l.last() == Some(&b'\r') {
                                l.pop();
                            }
                            Ok((i as i64 + 1, l))
                        }
                        Err(e) => Err(format!("{label}:{}: read failed: {e}", i + 1)),
                    };
                    let stop = item.is_err();
                    if tx.blocking_send(item).is_err() || stop {
                        return;
                    }
                }
            })
            .expect("cannot start the input thread");
        JsonlSource {
            name: name.into(),
            lines: rx,
            pending: Arc::default(),
            paused: false,
        }
    }
}

#[async_trait]
impl Source for JsonlSource {
    async fn recv(&mut self) -> Option<Result<Record, SourceError>> {
        if self.paused {
            std::future::pending::<()>().await;
        }
        match self.lines.recv().await? {
            Err(e) => Some(Err(SourceError::Fatal(e))),
            Ok((line, payload)) => {
                self.pending.0.fetch_add(1, Ordering::AcqRel);
                let token = AckToken {
                    partition: 0,
                    generation: 0,
                    offset: line,
                };
                Some(Ok(Record {
                    source: SourceRef {
                        topic: self.name.to_string(),
                        partition: 0,
                        offset: line,
                    },
                    key: None,
                    payload: Some(payload),
                    ack: Ack::new(self.pending.clone(), token),
                }))
            }
        }
    }

    fn pause(&mut self) -> Result<(), SourceError> {
        self.paused = true;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), SourceError> {
        self.paused = false;
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.pending.0.load(Ordering::Acquire)
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        Ok(())
    }
}
