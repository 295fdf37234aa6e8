//! The run loop of `triage run`: records in, decisions out, offsets committed only after.
//!
//! One loop receives records and spawns a task per record; the task decodes, classifies,
//! posts to every sink and acknowledges. The loop itself never waits on a sink: when too many
//! records are in flight, or a sink is failing and tickets are waiting to retry, it pauses the
//! source and keeps polling it (so a Kafka consumer stays in its group), and resumes when
//! things recover. On shutdown it stops taking records, lets the tasks in flight finish within
//! the drain timeout, flushes the sinks and closes the source (which commits what is done).
//!
//! Every stage reports to [`crate::metrics`] through handles resolved once, and every record
//! ends in one info-level log line: ticket id, topic, partition, offset, symptoms, outcome
//! (never ticket text). The catalogue is taken from a [`LiveCatalogue`] when a ticket's
//! classification starts, so a reload never changes it under a ticket in flight.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use crate::classify::Classifier;
use crate::config::WorkerSettings;
use crate::decision::Decision;
use crate::metrics::SinkMetrics;
use crate::reload::LiveCatalogue;
use crate::server::Telemetry;
use crate::sink::dead_letter::{DeadLetter, DeadLetterSink};
use crate::sink::{Delivery, SinkError, TicketSink};
use crate::source::{Record, Source, SourceError};
use crate::ticket::{Ticket, TicketShape};

/// How often the loop wakes up on its own to re-check back-pressure (and poll the source).
const TICK: Duration = Duration::from_millis(20);

/// At the concurrency limit with no ticket finishing for this long, intake is paused so the
/// source is polled again (a Kafka consumer must keep serving its group).
const STALLED: Duration = Duration::from_secs(1);

/// The dead-letter sink's name in logs and in the `sink` label of the sink metrics.
const DEAD_LETTERS: &str = "dead-letters";

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration or the environment does not allow starting.
    #[error("{0}")]
    Setup(String),
    /// The source failed for good.
    #[error("input: {0}")]
    Source(#[from] SourceError),
    /// A sink failed for good (its output is gone).
    #[error("sink: {0}")]
    Sink(String),
}

impl RunError {
    /// Whether starting again unchanged may work (a restart by a supervisor, say).
    pub fn is_retryable(&self) -> bool {
        match self {
            RunError::Setup(_) => false,
            RunError::Source(e) => e.is_retryable(),
            RunError::Sink(_) => true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records taken from the source.
    pub received: u64,
    /// Tickets classified and delivered to every sink.
    pub decided: u64,
    /// Records sent to the dead-letter sink.
    pub dead_lettered: u64,
    /// Ticket events skipped by loop prevention (triage's own changes).
    pub skipped: u64,
    /// Records still in flight when the drain timeout ran out (handled again after restart).
    pub abandoned: u64,
}

/// The stages every record goes through, and the sinks they end in.
pub struct Pipeline {
    /// Shared with every record's task.
    handler: Arc<Handler>,
}

/// What a record's task needs.
struct Handler {
    /// Finds the symptoms: the catalogue in service when a ticket starts.
    catalogue: LiveCatalogue,
    /// Metrics and readiness.
    telemetry: Telemetry,
    /// The metric handles of each of `sinks`, in the same order.
    sink_metrics: Vec<SinkMetrics>,
    /// The metric handles of the dead-letter sink.
    dead_letter_metrics: SinkMetrics,
    /// Where the ticket's fields are in a record.
    shape: TicketShape,
    /// Every sink a decision goes to, in order.
    sinks: Vec<Arc<dyn TicketSink>>,
    /// Where undecodable or rejected records go.
    dead_letters: Arc<dyn DeadLetterSink>,
    /// Limits, loop prevention, retry delays.
    worker: WorkerSettings,
    /// Tickets currently waiting to retry a sink: while any are, intake is paused.
    retrying: AtomicUsize,
    /// Set by a task whose sink failed for good: the run stops.
    fatal: Mutex<Option<String>>,
    /// Counters for the summary.
    decided: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
}

impl Pipeline {
    /// A pipeline posting to `sinks`, dead-lettering to `dead_letters`, with a fixed catalogue
    /// and metrics of its own.
    pub fn new(
        classifier: Classifier,
        shape: TicketShape,
        sinks: Vec<Arc<dyn TicketSink>>,
        dead_letters: Arc<dyn DeadLetterSink>,
        worker: WorkerSettings,
    ) -> Pipeline {
        let telemetry = Telemetry::default();
        let catalogue = LiveCatalogue::new(classifier, None, &telemetry.metrics);
        Pipeline::with_telemetry(catalogue, shape, sinks, dead_letters, worker, telemetry)
    }

    /// A pipeline classifying with the catalogue in service in `catalogue`, reporting to
    /// `telemetry`.
    pub fn with_telemetry(
        catalogue: LiveCatalogue,
        shape: TicketShape,
        sinks: Vec<Arc<dyn TicketSink>>,
        dead_letters: Arc<dyn DeadLetterSink>,
        worker: WorkerSettings,
        telemetry: Telemetry,
    ) -> Pipeline {
        let sink_metrics = sinks
            .iter()
            .map(|s| telemetry.metrics.sink(s.name()))
            .collect();
        let dead_letter_metrics = telemetry.metrics.sink(DEAD_LETTERS);
        Pipeline {
            handler: Arc::new(Handler {
                catalogue,
                telemetry,
                sink_metrics,
                dead_letter_metrics,
                shape,
                sinks,
                dead_letters,
                worker,
                retrying: AtomicUsize::new(0),
                fatal: Mutex::new(None),
                decided: AtomicU64::new(0),
                dead_lettered: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
            }),
        }
    }

    /// Run until the source ends or `shutdown` turns true; then drain, flush and close.
    pub async fn run(
        &self,
        source: &mut dyn Source,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Summary, RunError> {
        let h = &self.handler;
        let max = h.worker.max_in_flight;
        let max_tasks = h.worker.max_concurrent_tickets.max(1);
        let mut full_since: Option<Instant> = None;
        let mut tasks = JoinSet::new();
        let mut tick = interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut paused = false;
        let mut received = 0u64;
        let mut last_source_error: Option<Instant> = None;
        let mut stop_requested = *shutdown.borrow();
        let mut source_error = None;

        while !stop_requested {
            if h.fatal().is_some() {
                break;
            }
            // Back-pressure, two ways. At most max_concurrent_tickets are handled at once:
            // at the limit the loop takes no record until one finishes (librdkafka's bounded
            // prefetch queue then fills and fetching stops by itself). Pause while too many
            // records are in flight (not yet committed), while tickets wait for a failing
            // sink, or when no ticket has finished for STALLED at the concurrency limit (so the
            // loop goes back to polling and serving the group); resume once below three
            // quarters of the in-flight limit, sinks work and tickets finish again.
            let in_flight = source.in_flight();
            let retrying = h.retrying.load(Ordering::Acquire);
            let full = tasks.len() >= max_tasks;
            if !full {
                full_since = None;
            }
            let stalled = full && full_since.get_or_insert_with(Instant::now).elapsed() >= STALLED;
            if !paused && (in_flight >= max || retrying > 0 || stalled) {
                match source.pause() {
                    Ok(()) => paused = true,
                    Err(e) => warn!("cannot pause the input: {e}"),
                }
                debug!(in_flight, retrying, stalled, "input paused");
            } else if paused && in_flight <= max - max / 4 && retrying == 0 && !stalled {
                match source.resume() {
                    Ok(()) => paused = false,
                    Err(e) => warn!("cannot resume the input: {e}"),
                }
                debug!(in_flight, "input resumed");
            }
            // While paused the source is polled whatever the number of tickets: few records
            // still arrive, and the group protocol must be served.
            let take = !full || paused;

            tokio::select! {
                biased;
                _ = shutdown.changed() => stop_requested = true,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(e) = done {
                        error!("a ticket task failed: {e}");
                    }
                }
                _ = tick.tick() => {}
                // recv: the next record from the source (also serves the group protocol).
                r = source.recv(), if take => match r {
                    None => break,
                    Some(Err(e)) if !e.is_retryable() => {
                        source_error = Some(e);
                        break;
                    }
                    Some(Err(e)) => {
                        // Transient (broker down, rebalancing): say so at most every 10 s.
                        if last_source_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                            warn!("input: {e}");
                            last_source_error = Some(Instant::now());
                        }
                    }
                    Some(Ok(record)) => {
                        received += 1;
                        h.telemetry.metrics.ticket_consumed(&record.source.topic);
                        tasks.spawn(h.clone().handle(record, std::time::Instant::now()));
                    }
                },
            }
        }

        // Drain: no new records; the tasks in flight get the drain timeout when a stop was
        // requested (all the time they need when the input simply ended).
        h.telemetry.health.stopping();
        if let Err(e) = source.pause() {
            debug!("cannot pause the input for the drain: {e}");
        }
        let mut deadline = stop_requested.then(|| Instant::now() + h.worker.drain_timeout);
        if !tasks.is_empty() {
            info!(in_flight = tasks.len(), "draining");
        }
        let mut abandoned = 0u64;
        while !tasks.is_empty() {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = shutdown.changed(), if deadline.is_none() => {
                    deadline = Some(Instant::now() + h.worker.drain_timeout);
                }
                Some(_) = tasks.join_next() => {}
                _ = timeout => {
                    abandoned = tasks.len() as u64;
                    warn!(abandoned, "drain timeout reached; the remaining tickets will be handled again after a restart");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                }
                // Keep serving the group protocol; records still arriving are left for later.
                r = source.recv() => if let Some(Ok(record)) = r {
                    drop(record);
                },
            }
        }

        for s in &h.sinks {
            if let Err(e) = s.flush().await {
                warn!(sink = s.name(), "flush failed: {e}");
            }
        }
        let closed = source.close().await;
        let summary = Summary {
            received,
            decided: h.decided.load(Ordering::Acquire),
            dead_lettered: h.dead_lettered.load(Ordering::Acquire),
            skipped: h.skipped.load(Ordering::Acquire),
            abandoned,
        };
        info!(
            received = summary.received,
            decided = summary.decided,
            dead_lettered = summary.dead_lettered,
            skipped = summary.skipped,
            abandoned = summary.abandoned,
            "stopped"
        );
        if let Some(e) = source_error {
            return Err(RunError::Source(e));
        }
        if let Some(f) = h.fatal() {
            return Err(RunError::Sink(f));
        }
        closed?;
        Ok(summary)
    }
}

/// What became of one record, for its log line.
struct Report {
    /// Where it ended.
    outcome: Outcome,
    /// The ticket id, once decoded.
    ticket: Option<String>,
    /// The symptoms found, comma-separated (empty: none, or not classified).
    symptoms: String,
    /// Why it was dead-lettered (the error class).
    reason: Option<&'static str>,
}

impl Report {
    fn new(outcome: Outcome) -> Report {
        Report {
            outcome,
            ticket: None,
            symptoms: String::new(),
            reason: None,
        }
    }

    fn of(mut self, ticket: &Ticket) -> Report {
        self.ticket = Some(ticket.id.clone());
        self
    }
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Every sink took the decision.
    Decided,
    /// Sent to the dead-letter sink.
    DeadLettered,
    /// Loop prevention: triage's own change.
    Skipped,
    /// Not handled (a sink failed for good); the offset stays where it is.
    Abandoned,
}

impl Handler {
    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One record, start to end; `taken` is when the loop took it from the source.
    async fn handle(self: Arc<Self>, record: Record, taken: std::time::Instant) {
        let _inflight = self.telemetry.metrics.ticket_started();
        let report = self.process(&record).await;
        let src = &record.source;
        let ticket = report.ticket.as_deref().unwrap_or("");
        let outcome = report.outcome.word();
        match report.reason {
            None => info!(
                ticket,
                topic = %src.topic,
                partition = src.partition,
                offset = src.offset,
                symptoms = report.symptoms.as_str(),
                outcome,
                "ticket handled"
            ),
            Some(reason) => info!(
                ticket,
                topic = %src.topic,
                partition = src.partition,
                offset = src.offset,
                symptoms = report.symptoms.as_str(),
                outcome,
                reason,
                "ticket handled"
            ),
        }
        let counter = match report.outcome {
            Outcome::Decided => &self.decided,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Skipped => &self.skipped,
            Outcome::Abandoned => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.telemetry.metrics.ticket_done(taken.elapsed());
        // store offset: the record is fully handled; its offset may be committed.
        record.ack.done();
    }

    async fn process(&self, record: &Record) -> Report {
        // decode: bytes -> ticket; what does not decode goes to the dead letters.
        let ticket = match self
            .shape
            .decode(record.payload.as_deref().unwrap_or_default())
        {
            Ok(t) => t,
            Err(e) => return self.dead_letter(record, e.class(), &e.to_string()).await,
        };
        // loop prevention: skip events triage caused itself.
        if self.is_own(&ticket) {
            return Report::new(Outcome::Skipped).of(&ticket);
        }
        if ticket.truncated.is_some() {
            // Over worker.max_ticket_bytes with oversize = "scan-prefix": only the beginning
            // is scanned, and the decision says so.
            self.telemetry.metrics.ticket_truncated();
        }
        // classify: with the catalogue in service now, kept until this ticket is done.
        let active = self.catalogue.current();
        let started = std::time::Instant::now();
        let decision = Decision::new(
            active.classifier.catalog(),
            &ticket,
            active.classifier.classify(ticket.text()),
        );
        active
            .metrics
            .ticket_classified(&decision.symptoms, started.elapsed());
        let symptoms = decision
            .symptoms
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // post: every sink, each retried until it takes the decision or refuses it for good.
        let delivery = Delivery {
            ticket: &ticket,
            decision: &decision,
            source: &record.source,
        };
        for (sink, metrics) in self.sinks.iter().zip(&self.sink_metrics) {
            match self.retrying(metrics, || sink.post(delivery)).await {
                Ok(()) => {}
                Err(SinkError::Permanent { message }) => {
                    let message =
                        format!("{} refused ticket {}: {message}", sink.name(), ticket.id);
                    let mut r = self.dead_letter(record, "sink_rejected", &message).await;
                    r.symptoms = symptoms;
                    return r.of(&ticket);
                }
                Err(e) => return self.fail(e).of(&ticket),
            }
        }
        Report {
            symptoms,
            ..Report::new(Outcome::Decided).of(&ticket)
        }
    }

    fn is_own(&self, t: &Ticket) -> bool {
        let by_us = match (&self.worker.api_user, &t.author) {
            (Some(us), Some(author)) => us.eq_ignore_ascii_case(author),
            _ => false,
        };
        by_us
            || t.tags
                .iter()
                .any(|tag| tag.eq_ignore_ascii_case(&self.worker.marker_tag))
    }

    async fn dead_letter(&self, record: &Record, class: &'static str, message: &str) -> Report {
        let letter = DeadLetter {
            source: &record.source,
            key: record.key.as_deref(),
            payload: record.payload.as_deref(),
            class,
            message,
        };
        match self
            .retrying(&self.dead_letter_metrics, || self.dead_letters.send(letter))
            .await
        {
            Ok(()) => {
                self.telemetry.metrics.dead_lettered(class);
                Report {
                    reason: Some(class),
                    ..Report::new(Outcome::DeadLettered)
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&self, e: SinkError) -> Report {
        error!("{e}; stopping");
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert_with(|| e.to_string());
        Report::new(Outcome::Abandoned)
    }

    /// Call `attempt` until it succeeds or fails for good, waiting between tries (exponential
    /// backoff with full jitter, or the delay the other side asked for). While this ticket
    /// waits, the loop keeps intake paused.
    async fn retrying<F, Fut>(&self, metrics: &SinkMetrics, mut attempt: F) -> Result<(), SinkError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), SinkError>>,
    {
        let what = metrics.name();
        let mut delay = self.worker.retry_initial;
        let mut waiting: Option<RetryGuard<'_>> = None;
        loop {
            let started = std::time::Instant::now();
            let result = attempt().await;
            metrics.request(&result, started.elapsed());
            match result {
                Err(e) if e.is_retryable() => {
                    metrics.retry(&e);
                    if waiting.is_none() {
                        waiting = Some(RetryGuard::new(&self.retrying, what, &e));
                    }
                    let wait = e
                        .retry_after()
                        .unwrap_or_else(|| jitter(delay))
                        .min(self.worker.retry_max);
                    debug!(sink = what, ?wait, "retrying: {e}");
                    sleep(wait).await;
                    delay = (delay * 2).min(self.worker.retry_max);
                }
                other => return other,
            }
        }
    }
}

impl Outcome {
    /// The word in the `outcome` log field.
    fn word(self) -> &'static str {
        match self {
            Outcome::Decided => "decided",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Skipped => "skipped",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Counts a ticket as waiting for a sink while it lives (also when its task is aborted).
struct RetryGuard<'a> {
    count: &'a AtomicUsize,
}

impl<'a> RetryGuard<'a> {
    fn new(count: &'a AtomicUsize, what: &str, e: &SinkError) -> RetryGuard<'a> {
        if count.fetch_add(1, Ordering::AcqRel) == 0 {
            warn!(sink = what, "{e}; pausing intake until it recovers");
        }
        RetryGuard { count }
    }
}

impl Drop for RetryGuard<'_> {
    fn drop(&mut self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            info!("sinks recovered; resuming intake");
        }
    }
}

/// A random delay in [delay/10, delay] ("full jitter", with a floor so retries never spin).
fn jitter(delay: Duration) -> Duration {
    let r = RandomState::new().build_hasher().finish();
    let ms = delay.as_millis().max(1) as u64;
    let floor = (ms / 10).max(1);
    Duration::from_millis(floor + r % (ms - floor + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::source::jsonl::JsonlSource;
    use crate::ticket::Preset;
    use async_trait::async_trait;

    /// Records what it was given; fails the first `fail` posts with a retryable error.
    #[derive(Default)]
    struct Recorder {
        posted: Mutex<Vec<String>>,
        fail: AtomicUsize,
        permanent_for: Option<String>,
    }

    #[async_trait]
    impl TicketSink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
            if self.permanent_for.as_deref() == Some(d.ticket.id.as_str()) {
                return Err(SinkError::permanent("HTTP 404"));
            }
            if self.fail.load(Ordering::Acquire) > 0 {
                self.fail.fetch_sub(1, Ordering::AcqRel);
                return Err(SinkError::retry("HTTP 503"));
            }
            self.posted.lock().unwrap().push(d.ticket.id.clone());
            Ok(())
        }
    }

    #[derive(Default)]
    struct Letters(Mutex<Vec<(i64, String)>>);

    #[async_trait]
    impl DeadLetterSink for Letters {
        async fn send(&self, l: DeadLetter<'_>) -> Result<(), SinkError> {
            self.0
                .lock()
                .unwrap()
                .push((l.source.offset, l.class.to_string()));
            Ok(())
        }
    }

    fn worker() -> WorkerSettings {
        WorkerSettings {
            max_in_flight: 4,
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(5),
            api_user: Some("triage-bot".into()),
            ..WorkerSettings::default()
        }
    }

    async fn run_lines(lines: &str, sink: Arc<Recorder>) -> (Summary, Arc<Letters>) {
        let letters = Arc::new(Letters::default());
        let p = Pipeline::new(
            Classifier::new(Catalog::builtin()).unwrap(),
            TicketShape::preset(Preset::Plain, 1000),
            vec![sink],
            letters.clone(),
            worker(),
        );
        let mut src =
            JsonlSource::from_reader("t.jsonl", std::io::Cursor::new(lines.as_bytes().to_vec()));
        let (_tx, rx) = watch::channel(false);
        let s = p.run(&mut src, rx).await.unwrap();
        assert_eq!(src.in_flight(), 0);
        (s, letters)
    }

    #[tokio::test]
    async fn decides_dead_letters_and_skips() {
        let sink = Arc::new(Recorder {
            fail: AtomicUsize::new(3),
            permanent_for: Some("gone".into()),
            ..Recorder::default()
        });
        let big = "x".repeat(2000);
        let lines = format!(
            "{{\"id\": \"a\", \"body\": \"my security key PIN is blocked\"}}\nnot json\n\n{{\"id\": \"b\", \"subject\": \"no body\"}}\n{{\"id\": \"c\", \"body\": \"{big}\"}}\n{{\"id\": \"d\", \"body\": \"hi\", \"author\": \"triage-bot\"}}\n{{\"id\": \"e\", \"body\": \"hi\", \"tags\": [\"triage-processed\"]}}\n{{\"id\": \"gone\", \"body\": \"hi\"}}\n{{\"id\": \"f\", \"body\": \"reset my password\"}}\n"
        );
        let (s, letters) = run_lines(&lines, sink.clone()).await;
        let mut posted = sink.posted.lock().unwrap().clone();
        posted.sort();
        assert_eq!(posted, vec!["a", "f"], "decided after retries");
        let mut l = letters.0.lock().unwrap().clone();
        l.sort();
        assert_eq!(
            l,
            vec![
                (2, "invalid_json".to_string()),
                (4, "missing_body".to_string()),
                (5, "too_large".to_string()),
                (8, "sink_rejected".to_string())
            ]
        );
        assert_eq!(
            s,
            Summary {
                received: 8,
                decided: 2,
                dead_lettered: 4,
                skipped: 2,
                abandoned: 0
            }
        );
    }

    /// Lines handed over one at a time (the source waits for the next one like on a pipe).
    struct ChanReader(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);

    impl std::io::Read for ChanReader {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(line) => self.1 = line,
                    Err(_) => return Ok(0),
                }
            }
            let n = out.len().min(self.1.len());
            out[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    /// Holds ticket `a` until released; records (ticket, catalogue version) of every post.
    #[derive(Default)]
    struct Gate {
        entered: tokio::sync::Notify,
        release: tokio::sync::Notify,
        posted: Mutex<Vec<(String, String, Vec<String>)>>,
    }

    #[async_trait]
    impl TicketSink for Gate {
        fn name(&self) -> &str {
            "gate"
        }
        async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
            if d.ticket.id == "a" {
                self.entered.notify_one();
                self.release.notified().await;
            }
            self.posted.lock().unwrap().push((
                d.ticket.id.clone(),
                d.decision.catalogue.version.clone(),
                d.decision.symptoms.iter().map(|f| f.id.clone()).collect(),
            ));
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_ticket_in_flight_finishes_with_the_catalogue_it_started_with() {
        let cat = |version: &str, phrase: &str| {
            format!(
                "[catalogue]\nname = \"mini\"\nversion = \"{version}\"\n\n[[symptom]]\nid = \"printer-jam\"\ntitle = \"Printer jam\"\nkeywords = [\"{phrase}\"]\nchecks = [\"c\"]\nfix = \"f\"\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mini.toml");
        std::fs::write(&file, cat("1", "paper jam")).unwrap();
        let telemetry = Telemetry::default();
        let live = LiveCatalogue::new(
            Classifier::new(Catalog::load(dir.path()).unwrap()).unwrap(),
            Some(dir.path().to_path_buf()),
            &telemetry.metrics,
        );
        let gate = Arc::new(Gate::default());
        let p = Pipeline::with_telemetry(
            live.clone(),
            TicketShape::preset(Preset::Plain, 1000),
            vec![gate.clone()],
            Arc::new(Letters::default()),
            worker(),
            telemetry.clone(),
        );
        let (lines, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let mut src = JsonlSource::from_reader("pipe", ChanReader(rx, Vec::new()));
        let (_tx, stop) = watch::channel(false);
        let run = tokio::spawn(async move { p.run(&mut src, stop).await });

        lines
            .send(b"{\"id\": \"a\", \"body\": \"paper jam in tray 2\"}\n".to_vec())
            .unwrap();
        gate.entered.notified().await;
        // Ticket a is classified and waits in the sink: reload to version 2, which no longer
        // knows "paper jam" but "toner empty".
        std::fs::write(&file, cat("2", "toner empty")).unwrap();
        live.reload("test").unwrap();
        gate.release.notify_one();
        lines
            .send(b"{\"id\": \"b\", \"body\": \"paper jam, and the toner empty\"}\n".to_vec())
            .unwrap();
        drop(lines);
        let summary = run.await.unwrap().unwrap();
        assert_eq!(summary.decided, 2);

        let mut posted = gate.posted.lock().unwrap().clone();
        posted.sort();
        assert_eq!(
            posted,
            vec![
                ("a".into(), "1".into(), vec!["printer-jam".to_string()]),
                ("b".into(), "2".into(), vec!["printer-jam".to_string()]),
            ]
        );
        let text = telemetry.metrics.render();
        for line in [
            "triage_tickets_classified_total{symptom=\"printer-jam\"} 2",
            "triage_tickets_consumed_total{topic=\"pipe\"} 2",
            "triage_sink_requests_total{outcome=\"ok\",sink=\"gate\"} 2",
            "triage_inflight_tickets 0",
            "triage_catalogue_reloads_total{result=\"ok\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    /// Counts the posts under way at once, each taking a few milliseconds.
    #[derive(Default)]
    struct Slow {
        now: AtomicUsize,
        most: AtomicUsize,
        posted: AtomicUsize,
    }

    #[async_trait]
    impl TicketSink for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn post(&self, _d: Delivery<'_>) -> Result<(), SinkError> {
            let n = self.now.fetch_add(1, Ordering::AcqRel) + 1;
            self.most.fetch_max(n, Ordering::AcqRel);
            sleep(Duration::from_millis(3)).await;
            self.now.fetch_sub(1, Ordering::AcqRel);
            self.posted.fetch_add(1, Ordering::AcqRel);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_tickets_are_handled_at_once_than_the_concurrency_limit() {
        let sink = Arc::new(Slow::default());
        let p = Pipeline::new(
            Classifier::new(Catalog::builtin()).unwrap(),
            TicketShape::preset(Preset::Plain, 1000),
            vec![sink.clone()],
            Arc::new(Letters::default()),
            WorkerSettings {
                max_in_flight: 1000,
                max_concurrent_tickets: 3,
                ..worker()
            },
        );
        let lines: String = (0..60)
            .map(|i| format!("{{\"id\": \"t{i}\", \"body\": \"reset my password\"}}\n"))
            .collect();
        let mut src = JsonlSource::from_reader("t.jsonl", std::io::Cursor::new(lines.into_bytes()));
        let (_tx, rx) = watch::channel(false);
        let s = p.run(&mut src, rx).await.unwrap();
        assert_eq!((s.decided, sink.posted.load(Ordering::Acquire)), (60, 60));
        let most = sink.most.load(Ordering::Acquire);
        assert!(most <= 3, "{most} tickets at the sink at once (limit 3)");
        assert!(most >= 2, "tickets still run concurrently ({most})");
    }

    #[test]
    fn jitter_stays_within_bounds() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(100));
            assert!(
                j >= Duration::from_millis(10) && j <= Duration::from_millis(100),
                "{j:?}"
            );
        }
    }
}
