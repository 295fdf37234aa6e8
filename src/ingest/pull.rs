//! Help desks that cannot push: `triage ingest` reads their event feed instead, and produces
//! each new ticket to the input topic like a webhook would.
//!
//! A help desk plugs in with a [`PullFeed`]: "the events after position N, oldest first", where
//! a position is a number that only grows (Request Tracker's transaction id). [`follow`] does
//! the rest, the same for every feed:
//! - it keeps the position of the last event it is done with in a [`Cursor`] file, written
//!   (atomically, synced) only after Kafka acknowledged that event's record, so a restart
//!   resumes where the acknowledged records end: nothing is skipped; at worst the record of
//!   the one event in flight at a crash is produced twice, which the sinks' idempotency
//!   absorbs;
//! - it reads the feed every `poll_interval`, at once again while pages come back full, and
//!   at once when nudged ([`tokio::sync::Notify`]; `POST /<source>/nudge` on the ingest
//!   server, e.g. from an RT scrip). A nudge is only a hint: polling alone finds everything;
//! - when the help desk or Kafka is away it waits and tries again (the feed from the same
//!   position, the record until Kafka takes it), logging a warning at most every 30 s.
//!
//! Events a feed says are not work (e.g. the help desk's own records of what triage wrote)
//! come back as [`Pulled`] without a record: the cursor moves past them, nothing is produced.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, warn};

use super::produce::{ProduceError, TicketProducer};
use super::server::stopped;

/// One event of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Its position; greater than every earlier event's.
    pub position: u64,
    /// What to produce for it (`None`: not work, only move past it).
    pub record: Option<PulledRecord>,
}

/// A record for the input topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledRecord {
    /// The ticket id (the record's key: one ticket's records stay on one partition).
    pub key: String,
    /// The record in the plain shape (`id`, `subject`, `body`, `tags`, `author`).
    pub payload: Vec<u8>,
}

/// A help desk's event feed.
#[async_trait]
pub trait PullFeed: Send + Sync {
    /// The source's name (`rt`), for logs and the nudge route (`/rt/nudge`).
    fn name(&self) -> &'static str;
    /// At most `limit` events after `after`, oldest first. An error is retried later; its
    /// message must hold no ticket text and no credentials.
    async fn fetch(&self, after: u64, limit: usize) -> Result<Vec<Pulled>, String>;
}

/// Where a feed's position is kept: one number in a file.
#[derive(Debug, Clone)]
pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    /// The cursor in `path` (created on the first store).
    pub fn new(path: &Path) -> Cursor {
        Cursor {
            path: path.to_path_buf(),
        }
    }

    /// The stored position; 0 when the file does not exist yet.
    pub fn load(&self) -> Result<u64, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => s.trim().parse().map_err(|_| {
                format!(
                    "{}: not a cursor (one number expected); fix or remove it",
                    self.path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Store `position`: a temporary file, synced, renamed over the cursor, directory synced.
    pub fn store(&self, position: u64) -> Result<(), String> {
        let err = |e: std::io::Error| format!("cannot write {}: {e}", self.path.display());
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            writeln!(f, "{position}").map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// How [`follow`] paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Time between reads of the feed when nothing is nudged.
    pub poll_interval: Duration,
    /// Events per read.
    pub batch: usize,
}

/// Logs a repeated warning at most every 30 s.
struct Quiet(Option<Instant>);

impl Quiet {
    fn warn(&mut self, what: &str, e: &str) {
        if self
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(30))
        {
            self.0 = Some(Instant::now());
            warn!("{what}: {e} (trying again)");
        }
    }
}

/// Follow `feed` until `shutdown`: produce each event's record, then move the cursor.
/// Returns an error only when the cursor cannot be read or written (a disk problem to fix).
pub async fn follow(
    feed: Arc<dyn PullFeed>,
    producer: &TicketProducer,
    cursor: Cursor,
    pace: Pace,
    nudge: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let name = feed.name();
    let mut position = cursor.load()?;
    info!(source = name, position, "following the feed");
    let mut quiet_feed = Quiet(None);
    let mut quiet_kafka = Quiet(None);
    let mut backoff = pace.poll_interval;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let events = match feed.fetch(position, pace.batch).await {
            Ok(e) => {
                backoff = pace.poll_interval;
                e
            }
            Err(e) => {
                quiet_feed.warn(&format!("{name}: reading the feed"), &e);
                tokio::select! {
                    _ = stopped(&mut shutdown) => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                    _ = nudge.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30).max(pace.poll_interval));
                continue;
            }
        };
        let full = events.len() >= pace.batch;
        for ev in events {
            if ev.position <= position {
                continue;
            }
            if let Some(r) = &ev.record {
                let mut wait = Duration::from_millis(200);
                loop {
                    match producer
                        .send(&r.key, &r.payload, &[("triage-source", name)])
                        .await
                    {
                        Ok(_) => break,
                        Err(ProduceError::TooLarge(e)) => {
                            // Kafka will never take it: moving on is the only way forward.
                            error!(source = name, ticket = %r.key, "record refused as too large, skipped: {e}");
                            break;
                        }
                        Err(e) => {
                            quiet_kafka.warn(&format!("{name}: producing"), &e.to_string());
                            tokio::select! {
                                _ = stopped(&mut shutdown) => return Ok(()),
                                _ = tokio::time::sleep(wait) => {}
                            }
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                    }
                }
                debug!(source = name, ticket = %r.key, position = ev.position, "produced");
            }
            cursor.store(ev.position)?;
            position = ev.position;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = stopped(&mut shutdown) => return Ok(()),
            _ = tokio::time::sleep(pace.poll_interval) => {}
            _ = nudge.notified() => debug!(source = name, "nudged"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_starts_at_zero_and_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cursor::new(&dir.path().join("rt.cursor"));
        assert_eq!(c.load().unwrap(), 0);
        c.store(41).unwrap();
        c.store(42).unwrap();
        assert_eq!(
            Cursor::new(&dir.path().join("rt.cursor")).load().unwrap(),
            42
        );
        std::fs::write(dir.path().join("rt.cursor"), "x\n").unwrap();
        assert!(c.load().unwrap_err().contains("not a cursor"));
    }
}
