//! The offset tracker that carries the at-least-once guarantee: which records of each
//! partition are in flight, which are done, and the offset below which all are done (the only
//! one ever stored for commit).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::server::Telemetry;
use crate::source::{AckToken, Acknowledge};

use super::consumer::Ctx;

// ----- offset tracking ------------------------------------------------------------------------

/// One received record of a partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) offset: i64,
    pub(super) done: bool,
}

/// The records of one assigned partition that are not yet committed, in offset order.
#[derive(Debug, Default)]
pub(super) struct Part {
    /// Bumped on every assignment: acks from an earlier assignment are ignored.
    pub(super) generation: u64,
    /// Received and not yet committed.
    pub(super) entries: VecDeque<Entry>,
    /// Index of the first entry not done (== len when all are done).
    pub(super) first_undone: usize,
    /// The offset last stored for commit (the next offset to read after a restart).
    pub(super) stored: Option<i64>,
    /// Records below this offset were handled by this worker in an earlier assignment of the
    /// partition whose offsets could not be committed (see [`Tracker::handled`]): they are
    /// skipped, and this offset is stored for commit instead.
    pub(super) floor: Option<i64>,
}

impl Part {
    /// The offset below which every record is done, if any record is.
    pub(super) fn committable(&self) -> Option<i64> {
        if self.first_undone < self.entries.len() {
            let o = self.entries[self.first_undone].offset;
            (self.first_undone > 0).then_some(o)
        } else {
            self.entries.back().map(|e| e.offset + 1)
        }
    }

    pub(super) fn all_done(&self) -> bool {
        self.first_undone == self.entries.len()
    }
}

#[derive(Debug, Default)]
pub(super) struct Tracker {
    pub(super) parts: HashMap<i32, Part>,
    pub(super) next_generation: u64,
    /// For partitions given up (revoked or lost): the offset below which this worker had
    /// handled every record. When the broker is unreachable for longer than the session
    /// timeout, the assignment is lost while commits fail; when the partitions come back,
    /// fetching resumes at the last *committed* offset, and without this the records handled
    /// in between would be handled again (a second dead letter, a repeat post-back). Taken
    /// by the next assignment of the partition.
    pub(super) handled: HashMap<i32, i64>,
}

/// State shared by the source, the consumer's callbacks and the acknowledgement handles.
pub(super) struct Shared {
    /// The input topic.
    pub(super) topic: String,
    /// Per-partition records.
    pub(super) tracker: Mutex<Tracker>,
    /// Signalled whenever a record is done (a revocation may be waiting for that).
    pub(super) progress: Condvar,
    /// Records received and not yet committed, over all partitions.
    pub(super) in_flight: AtomicUsize,
    /// Whether the pipeline wants fetching paused (applies to newly assigned partitions too).
    pub(super) paused: AtomicBool,
    /// Shutting down: revocations do not wait, and records are no longer taken.
    pub(super) closing: AtomicBool,
    /// How long a revocation waits for in-flight records of the revoked partitions.
    pub(super) revoke_wait: Duration,
    /// The consumer, to store offsets from acknowledgements. Weak: the source owns it and
    /// must be able to close it at shutdown even while abandoned tasks still hold acks.
    pub(super) consumer: Mutex<Weak<StreamConsumer<Ctx>>>,
    /// Where consumer lag and group membership are reported.
    pub(super) telemetry: Telemetry,
    /// Called when partitions are assigned, before any of their records is received (see
    /// [`KafkaSource::on_assign`]).
    pub(super) on_assign: Mutex<Option<AssignHook>>,
    /// Offset commits failing in a row, for a warning that does not repeat 4 times a second.
    pub(super) commit_failures: Mutex<CommitFailures>,
}

/// See [`KafkaSource::on_assign`].
pub(super) type AssignHook = Box<dyn Fn() + Send + Sync>;

impl Shared {
    pub(super) fn commit_failures(&self) -> MutexGuard<'_, CommitFailures> {
        self.commit_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a received record into the tracker; `None` if it must not be handled (its
    /// partition is not, or no longer, ours, or it is a repeat).
    pub(super) fn register(&self, partition: i32, offset: i64) -> Option<AckToken> {
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
    pub(super) fn mark_done(&self, token: AckToken) {
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
    pub(super) fn store(&self, partition: i32, offset: i64) -> bool {
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
    pub(super) fn committed(&self, offsets: &TopicPartitionList) {
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

    pub(super) fn assigned(&self, partitions: &[i32]) {
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
    pub(super) fn revoke(&self, partitions: &[i32], wait: bool) -> Vec<(i32, i64)> {
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
pub(super) const COMMIT_FAILURES_EVERY: Duration = Duration::from_secs(30);

/// Offset commits failing in a row. During a broker outage the periodic commit fails about 4
/// times a second: the first failure is a warning, then one summary every
/// [`COMMIT_FAILURES_EVERY`] (how many failed since, the last error), and one line when a
/// commit succeeds again. Each method returns the line to log, if any.
#[derive(Debug, Default)]
pub(super) struct CommitFailures {
    /// When the first failure of the current run happened (`None`: commits succeed).
    pub(super) since: Option<Instant>,
    /// When the last line about this run was logged.
    pub(super) told: Option<Instant>,
    /// Failures in this run.
    pub(super) total: u64,
    /// Failures since the last line.
    pub(super) untold: u64,
    /// The last error.
    pub(super) last: String,
}

impl CommitFailures {
    pub(super) fn failed(&mut self, now: Instant, error: String) -> Option<String> {
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

    pub(super) fn succeeded(&mut self, now: Instant) -> Option<String> {
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
pub(super) struct Acks(pub(super) Arc<Shared>);

impl Acknowledge for Acks {
    fn done(&self, token: AckToken) {
        self.0.mark_done(token);
    }
    fn abandon(&self, _token: AckToken) {
        // Never done: the offset cannot move past it; it is read again after a restart.
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
