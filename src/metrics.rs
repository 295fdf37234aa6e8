//! The Prometheus registry of `triage run`, and one named method per thing that happens.
//!
//! Call sites never build metric names or label sets: they hold handles resolved once (per
//! symptom when a catalogue is loaded, per sink when it starts, per topic or dead-letter reason
//! the first time it is seen) and call methods such as
//! [`CatalogueMetrics::ticket_classified`] or [`SinkMetrics::request`]. Labels stay bounded:
//! symptom ids, sink names, topics, partitions, fixed outcome and reason words; never a ticket
//! id or any ticket text.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `triage_tickets_consumed_total` | counter | `topic` |
//! | `triage_tickets_classified_total` | counter | `symptom` (a ticket with two symptoms counts once for each) |
//! | `triage_tickets_unmatched_total` | counter | |
//! | `triage_classify_duration_seconds` | histogram | (its `_count` is the number of tickets classified) |
//! | `triage_tickets_truncated_total` | counter | (tickets of which only the beginning was scanned: `worker.oversize = "scan-prefix"`) |
//! | `triage_ticket_duration_seconds` | histogram | (record taken off the input -> every sink acknowledged, dead-lettered or skipped) |
//! | `triage_sink_requests_total` | counter | `sink`, `outcome` = `ok` \| `retry` \| `rejected` \| `fatal` |
//! | `triage_sink_duration_seconds` | histogram | `sink` |
//! | `triage_sink_retries_total` | counter | `sink`, `reason` = `rate_limited` \| `timeout` \| `server_error` \| `connection` \| `unavailable` |
//! | `triage_dead_letters_total` | counter | `reason` (the dead letter's `triage.error.class`) |
//! | `triage_consumer_lag` | gauge | `topic`, `partition` (from librdkafka statistics; only partitions this worker holds) |
//! | `triage_inflight_tickets` | gauge | |
//! | `triage_circuit_open` | gauge | `sink` (1 while the sink's circuit breaker is open) |
//! | `triage_catalogue_info` | gauge | `name`, `version`, `digest` (1 for the catalogue in service) |
//! | `triage_catalogue_reloads_total` | counter | `result` = `ok` \| `error` |
//! | `triage_build_info` | gauge | `version` |

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::catalog::Catalog;
use crate::classify::Finding;
use crate::sink::SinkError;

/// The name of every metric family, as in the table above.
pub const FAMILIES: [&str; 16] = [
    "triage_tickets_consumed_total",
    "triage_tickets_classified_total",
    "triage_tickets_unmatched_total",
    "triage_classify_duration_seconds",
    "triage_tickets_truncated_total",
    "triage_ticket_duration_seconds",
    "triage_sink_requests_total",
    "triage_sink_duration_seconds",
    "triage_sink_retries_total",
    "triage_dead_letters_total",
    "triage_consumer_lag",
    "triage_inflight_tickets",
    "triage_circuit_open",
    "triage_catalogue_info",
    "triage_catalogue_reloads_total",
    "triage_build_info",
];

/// The content type of [`Metrics::render`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Classification takes microseconds: buckets from 10 µs to 0.25 s.
const CLASSIFY_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
    0.25,
];

/// A ticket from intake to done: a millisecond when idle, seconds when a backlog is worked off
/// (up to `worker.max_in_flight` tickets wait their turn) or a sink is retried.
const TICKET_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A sink call: a Kafka acknowledgement in milliseconds up to an HTTP API's timeout.
const SINK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why a sink call is retried; the `reason` label of `triage_sink_retries_total`.
const RETRY_REASONS: [&str; 5] = [
    "rate_limited",
    "timeout",
    "server_error",
    "connection",
    "unavailable",
];

/// The registry and every metric family; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Everything below is registered here; `/metrics` renders it.
    registry: Registry,
    /// Per symptom: the product's view of what users are struggling with.
    classified: IntCounterVec,
    /// Tickets in which no symptom was found: a rising share means the catalogue lags behind.
    unmatched: IntCounter,
    /// Time to classify one ticket and build its decision.
    classify_duration: Histogram,
    /// Tickets whose text was over the scan limit and scanned in part only: decisions that
    /// may have missed a symptom described further down.
    truncated: IntCounter,
    /// Time from taking a record to being done with it (the worker's decide latency).
    ticket_duration: Histogram,
    /// Sink calls by outcome.
    sink_requests: IntCounterVec,
    /// Sink call latency.
    sink_duration: HistogramVec,
    /// Retries by sink and reason.
    sink_retries: IntCounterVec,
    /// Consumer lag per partition held by this worker.
    consumer_lag: IntGaugeVec,
    /// Tickets being handled right now (received, not yet acknowledged or given up).
    inflight: IntGauge,
    /// 1 while a sink's circuit breaker is open.
    circuit_open: IntGaugeVec,
    /// 1 for the catalogue in service, labelled with its name, version and digest.
    catalogue_info: IntGaugeVec,
    /// Successful reloads.
    reload_ok: IntCounter,
    /// Refused reloads (the old catalogue kept serving).
    reload_error: IntCounter,
    /// Records taken from the input, per topic (file name for JSON Lines input): resolved
    /// `triage_tickets_consumed_total{topic}` handles.
    topics: LabelCache,
    /// Dead letters by reason: resolved `triage_dead_letters_total{reason}` handles.
    dead_letter_reasons: LabelCache,
    /// The label values of the `catalogue_info` series currently set.
    catalogue_labels: Mutex<Option<[String; 3]>>,
    /// The (topic, partition) lag series currently reported.
    lag_series: Mutex<BTreeSet<(String, i32)>>,
    /// Every sink started, for readiness (`circuit_open`).
    sinks: Mutex<Vec<SinkMetrics>>,
}

/// Handles of one labelled counter family, each label value resolved once.
struct LabelCache {
    family: IntCounterVec,
    resolved: RwLock<HashMap<String, IntCounter>>,
}

impl LabelCache {
    fn new(family: IntCounterVec) -> LabelCache {
        LabelCache {
            family,
            resolved: RwLock::default(),
        }
    }

    fn get(&self, value: &str) -> IntCounter {
        if let Some(c) = self
            .resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(value)
        {
            return c.clone();
        }
        let c = self.family.with_label_values(&[value]);
        self.resolved
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(value.to_string())
            .or_insert(c)
            .clone()
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every family of the table above.
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge"),
            )
        };
        let classified = counter_vec(
            "triage_tickets_classified_total",
            "Tickets in which a symptom was found, per symptom (a ticket with two symptoms counts for each).",
            &["symptom"],
        );
        let unmatched = register(
            &r,
            IntCounter::new(
                "triage_tickets_unmatched_total",
                "Tickets classified in which no symptom of the catalogue was found.",
            )
            .expect("valid counter"),
        );
        let consumed = counter_vec(
            "triage_tickets_consumed_total",
            "Records taken from the input, per topic (or input file).",
            &["topic"],
        );
        let classify_duration = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "triage_classify_duration_seconds",
                    "Time to classify one ticket and build its decision; the count is the number of tickets classified.",
                )
                .buckets(CLASSIFY_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
        );
        let truncated = register(
            &r,
            IntCounter::new(
                "triage_tickets_truncated_total",
                "Tickets whose subject and body were over worker.max_ticket_bytes and of which only the beginning was scanned (worker.oversize = \"scan-prefix\").",
            )
            .expect("valid counter"),
        );
        let ticket_duration = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "triage_ticket_duration_seconds",
                    "Time from taking a record off the input to being done with it: decided (every sink acknowledged), dead-lettered or skipped. Includes waiting behind other tickets in flight.",
                )
                .buckets(TICKET_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
        );
        let sink_requests = counter_vec(
            "triage_sink_requests_total",
            "Calls to a sink by outcome: ok, retry (failed, will retry), rejected (refused for good: dead-lettered), fatal.",
            &["sink", "outcome"],
        );
        let sink_duration = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "triage_sink_duration_seconds",
                    "Time of one call to a sink, whatever its outcome.",
                )
                .buckets(SINK_BUCKETS.to_vec()),
                &["sink"],
            )
            .expect("valid histogram"),
        );
        let sink_retries = counter_vec(
            "triage_sink_retries_total",
            "Sink calls that failed and are retried, by reason.",
            &["sink", "reason"],
        );
        let dead_letters = counter_vec(
            "triage_dead_letters_total",
            "Records sent to the dead letters, by reason (the triage.error.class header).",
            &["reason"],
        );
        let consumer_lag = gauge_vec(
            "triage_consumer_lag",
            "Records behind the end of each input partition this worker holds (committed offset to high watermark, from librdkafka statistics).",
            &["topic", "partition"],
        );
        let inflight = register(
            &r,
            IntGauge::new(
                "triage_inflight_tickets",
                "Tickets being handled now: received and not yet acknowledged, dead-lettered or given up.",
            )
            .expect("valid gauge"),
        );
        let circuit_open = gauge_vec(
            "triage_circuit_open",
            "1 while a sink's circuit breaker is open (calls to it are not even tried).",
            &["sink"],
        );
        let catalogue_info = gauge_vec(
            "triage_catalogue_info",
            "1 for the symptom catalogue in service.",
            &["name", "version", "digest"],
        );
        let reloads = counter_vec(
            "triage_catalogue_reloads_total",
            "Catalogue reloads (SIGHUP or a changed file), by result: ok, or error (refused; the old catalogue keeps serving).",
            &["result"],
        );
        let build_info = gauge_vec(
            "triage_build_info",
            "1, labelled with the version of this triage build.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let inner = Inner {
            registry: r,
            reload_ok: reloads.with_label_values(&["ok"]),
            reload_error: reloads.with_label_values(&["error"]),
            topics: LabelCache::new(consumed.clone()),
            dead_letter_reasons: LabelCache::new(dead_letters.clone()),
            classified,
            unmatched,
            classify_duration,
            truncated,
            ticket_duration,
            sink_requests,
            sink_duration,
            sink_retries,
            consumer_lag,
            inflight,
            circuit_open,
            catalogue_info,
            catalogue_labels: Mutex::default(),
            lag_series: Mutex::default(),
            sinks: Mutex::default(),
        };
        Metrics {
            inner: Arc::new(inner),
        }
    }

    /// Everything, in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// A catalogue goes into service: resolve its per-symptom counters (so every symptom has a
    /// series from the start, at 0) and make it the one `triage_catalogue_info` shows.
    pub fn catalogue_loaded(&self, catalog: &Catalog) -> CatalogueMetrics {
        let i = &self.inner;
        let by_symptom = catalog
            .symptoms
            .iter()
            .map(|s| i.classified.with_label_values(&[s.id.as_str()]))
            .collect();
        let labels = [
            catalog.name.clone(),
            catalog.version.clone(),
            catalog.digest.clone(),
        ];
        let mut current = i.catalogue_labels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = current.as_ref().filter(|old| **old != labels) {
            let _ = i
                .catalogue_info
                .remove_label_values(&[&old[0], &old[1], &old[2]]);
        }
        i.catalogue_info
            .with_label_values(&[&labels[0], &labels[1], &labels[2]])
            .set(1);
        *current = Some(labels);
        CatalogueMetrics {
            by_symptom,
            unmatched: i.unmatched.clone(),
            duration: i.classify_duration.clone(),
        }
    }

    /// A reload was tried: `ok` says whether the new catalogue went into service.
    pub fn catalogue_reloaded(&self, ok: bool) {
        if ok {
            self.inner.reload_ok.inc();
        } else {
            self.inner.reload_error.inc();
        }
    }

    /// A record was taken from `topic`.
    pub fn ticket_consumed(&self, topic: &str) {
        self.inner.topics.get(topic).inc();
    }

    /// A record went to the dead letters for `reason` (its error class).
    pub fn dead_lettered(&self, reason: &str) {
        self.inner.dead_letter_reasons.get(reason).inc();
    }

    /// A ticket's text was over the scan limit: only its beginning was scanned.
    pub fn ticket_truncated(&self) {
        self.inner.truncated.inc();
    }

    /// A record was done with (decided, dead-lettered or skipped) `took` after it was taken.
    pub fn ticket_done(&self, took: Duration) {
        self.inner.ticket_duration.observe(took.as_secs_f64());
    }

    /// A ticket is being handled until the returned guard is dropped.
    pub fn ticket_started(&self) -> InflightGuard {
        self.inner.inflight.inc();
        InflightGuard(self.inner.inflight.clone())
    }

    /// The handles of one sink, resolved now; call once per sink at start.
    pub fn sink(&self, name: &str) -> SinkMetrics {
        let i = &self.inner;
        let outcome = |o: &str| i.sink_requests.with_label_values(&[name, o]);
        let circuit = i.circuit_open.with_label_values(&[name]);
        circuit.set(0);
        let s = SinkMetrics {
            name: Arc::from(name),
            ok: outcome("ok"),
            retry: outcome("retry"),
            rejected: outcome("rejected"),
            fatal: outcome("fatal"),
            duration: i.sink_duration.with_label_values(&[name]),
            retries: RETRY_REASONS.map(|r| i.sink_retries.with_label_values(&[name, r])),
            circuit,
        };
        let mut sinks = i.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if !sinks.iter().any(|x| x.name == s.name) {
            sinks.push(s.clone());
        }
        s
    }

    /// The sinks whose circuit breaker is open now.
    pub fn open_circuits(&self) -> Vec<String> {
        self.inner
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.circuit.get() != 0)
            .map(|s| s.name.to_string())
            .collect()
    }

    /// The consumer lag of every partition of `topic` this worker holds now (from a statistics
    /// report). Partitions no longer held lose their series, so that the worker that holds a
    /// partition is the only one reporting its lag.
    pub fn consumer_lag(&self, topic: &str, lags: &[(i32, i64)]) {
        let i = &self.inner;
        let mut series = i.lag_series.lock().unwrap_or_else(|e| e.into_inner());
        let now: BTreeSet<(String, i32)> =
            lags.iter().map(|(p, _)| (topic.to_string(), *p)).collect();
        for (t, p) in series.iter().filter(|s| s.0 == topic && !now.contains(s)) {
            let _ = i
                .consumer_lag
                .remove_label_values(&[t.as_str(), &p.to_string()]);
        }
        series.retain(|s| s.0 != topic);
        for (p, lag) in lags {
            i.consumer_lag
                .with_label_values(&[topic, &p.to_string()])
                .set(*lag);
        }
        series.extend(now);
    }
}

/// Decrements `triage_inflight_tickets` when the ticket is done (or its task aborted).
pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The per-symptom handles of one catalogue, resolved when it was loaded. Its symptom indexes
/// match [`Catalog::symptoms`] of that catalogue, so it travels with it.
#[derive(Clone)]
pub struct CatalogueMetrics {
    /// `triage_tickets_classified_total{symptom}`, by symptom index.
    by_symptom: Vec<IntCounter>,
    /// `triage_tickets_unmatched_total`.
    unmatched: IntCounter,
    /// `triage_classify_duration_seconds`.
    duration: Histogram,
}

impl CatalogueMetrics {
    /// A ticket was classified in `took`: count each symptom found, or one unmatched ticket.
    pub fn ticket_classified(&self, findings: &[Finding], took: Duration) {
        self.duration.observe(took.as_secs_f64());
        if findings.is_empty() {
            self.unmatched.inc();
        }
        for f in findings {
            if let Some(counter) = self.by_symptom.get(f.index) {
                counter.inc();
            }
        }
    }
}

/// The handles of one sink, resolved when it started. The pipeline records every call
/// ([`SinkMetrics::request`], [`SinkMetrics::retry`]). A sink with a circuit breaker takes its
/// own clone when it is built (`telemetry.metrics.sink(name)` in `worker::run_with`, with
/// the name its `TicketSink::name` returns) and calls [`SinkMetrics::circuit_open`] when the
/// breaker opens and closes; `/readyz` follows.
#[derive(Clone)]
pub struct SinkMetrics {
    name: Arc<str>,
    ok: IntCounter,
    retry: IntCounter,
    rejected: IntCounter,
    fatal: IntCounter,
    duration: Histogram,
    /// By [`RETRY_REASONS`] index.
    retries: [IntCounter; 5],
    circuit: IntGauge,
}

impl SinkMetrics {
    /// One call to the sink took `took` and ended in `result`.
    pub fn request(&self, result: &Result<(), SinkError>, took: Duration) {
        self.duration.observe(took.as_secs_f64());
        match result {
            Ok(()) => self.ok.inc(),
            Err(SinkError::Retryable { .. }) => self.retry.inc(),
            Err(SinkError::Permanent { .. }) => self.rejected.inc(),
            Err(SinkError::Fatal { .. }) => self.fatal.inc(),
        }
    }

    /// A failed call will be tried again.
    pub fn retry(&self, e: &SinkError) {
        let reason = retry_reason(e);
        let i = RETRY_REASONS.iter().position(|r| *r == reason).unwrap_or(4);
        self.retries[i].inc();
    }

    /// The sink's circuit breaker opened (`true`) or closed (`false`). While any is open,
    /// `/readyz` answers 503.
    pub fn circuit_open(&self, open: bool) {
        self.circuit.set(i64::from(open));
    }

    /// The sink's name, as in the `sink` label.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A bounded reason for a retryable sink error, from the conventions of the sinks' messages
/// (`…: HTTP 503 Service Unavailable`, `…: timed out`, `…: connection failed`).
fn retry_reason(e: &SinkError) -> &'static str {
    let SinkError::Retryable {
        message,
        retry_after,
    } = e
    else {
        return "unavailable";
    };
    let status = message
        .split("HTTP ")
        .nth(1)
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(429) => "rate_limited",
        Some(408) => "timeout",
        Some(500..=599) => "server_error",
        _ if retry_after.is_some() => "rate_limited",
        _ if message.contains("timed out") => "timeout",
        _ if message.contains("connection") => "connection",
        _ => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Classifier;
    use crate::classify::TicketText;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    #[test]
    fn every_family_is_named_as_documented() {
        let m = Metrics::new();
        let cat = Catalog::builtin();
        m.catalogue_loaded(&cat);
        m.ticket_consumed("tickets");
        m.dead_lettered("invalid_json");
        m.sink("webhook");
        m.consumer_lag("tickets", &[(0, 3)]);
        m.catalogue_reloaded(true);
        let _g = m.ticket_started();
        let text = m.render();
        let mut types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        types.sort_unstable();
        let mut families = FAMILIES.to_vec();
        families.sort_unstable();
        assert_eq!(types, families);
        assert_eq!(sample(&text, "triage_inflight_tickets"), Some(1.0));
        let info = format!(
            "triage_catalogue_info{{digest=\"{}\",name=\"{}\",version=\"{}\"}}",
            cat.digest, cat.name, cat.version
        );
        assert_eq!(sample(&text, &info), Some(1.0), "{text}");
    }

    #[test]
    fn symptoms_are_counted_by_handle_and_start_at_zero() {
        let m = Metrics::new();
        let c = Classifier::new(Catalog::builtin()).unwrap();
        let cm = m.catalogue_loaded(c.catalog());
        let first = &c.catalog().symptoms[0].id;
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                &format!("triage_tickets_classified_total{{symptom=\"{first}\"}}")
            ),
            Some(0.0)
        );
        let pin = c.classify(TicketText {
            subject: "",
            body: "I typed my security key PIN wrong too many times and now the PIN is blocked.",
        });
        assert_eq!(pin.ids(), ["pin-locked"]);
        let nothing = c.classify(TicketText {
            subject: "",
            body: "The printer on the third floor is jammed.",
        });
        cm.ticket_classified(&pin.findings, Duration::from_micros(20));
        cm.ticket_classified(&pin.findings, Duration::from_micros(20));
        cm.ticket_classified(&nothing.findings, Duration::from_micros(20));
        let text = m.render();
        assert_eq!(
            sample(
                &text,
                "triage_tickets_classified_total{symptom=\"pin-locked\"}"
            ),
            Some(2.0)
        );
        assert_eq!(sample(&text, "triage_tickets_unmatched_total"), Some(1.0));
        assert_eq!(
            sample(&text, "triage_classify_duration_seconds_count"),
            Some(3.0)
        );
    }

    #[test]
    fn a_new_catalogue_replaces_the_info_series() {
        let m = Metrics::new();
        let a = Catalog::builtin();
        let mut b = Catalog::builtin();
        b.version = "next".into();
        b.digest = "sha256:0000".into();
        m.catalogue_loaded(&a);
        m.catalogue_loaded(&b);
        let text = m.render();
        let infos: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("triage_catalogue_info{"))
            .collect();
        assert_eq!(infos.len(), 1, "{infos:?}");
        assert!(infos[0].contains("version=\"next\""), "{infos:?}");
    }

    #[test]
    fn sink_outcomes_retries_and_circuits() {
        let m = Metrics::new();
        let s = m.sink("webhook");
        let took = Duration::from_millis(3);
        s.request(&Ok(()), took);
        let e503 = SinkError::retry("webhook: HTTP 503 Service Unavailable");
        s.request(&Err(e503.clone()), took);
        s.retry(&e503);
        s.retry(&SinkError::Retryable {
            message: "webhook: HTTP 429 Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(1)),
        });
        s.retry(&SinkError::retry("webhook example.com: timed out"));
        s.retry(&SinkError::retry("webhook example.com: connection failed"));
        s.retry(&SinkError::retry(
            "decisions topic t: Broker: Not enough replicas",
        ));
        s.request(
            &Err(SinkError::permanent("webhook: HTTP 404 Not Found")),
            took,
        );
        assert!(m.open_circuits().is_empty());
        s.circuit_open(true);
        assert_eq!(m.open_circuits(), ["webhook"]);
        let text = m.render();
        for (outcome, n) in [
            ("ok", 1.0),
            ("retry", 1.0),
            ("rejected", 1.0),
            ("fatal", 0.0),
        ] {
            assert_eq!(
                sample(
                    &text,
                    &format!(
                        "triage_sink_requests_total{{outcome=\"{outcome}\",sink=\"webhook\"}}"
                    )
                ),
                Some(n),
                "{outcome}"
            );
        }
        for reason in RETRY_REASONS {
            assert_eq!(
                sample(
                    &text,
                    &format!("triage_sink_retries_total{{reason=\"{reason}\",sink=\"webhook\"}}")
                ),
                Some(1.0),
                "{reason}\n{text}"
            );
        }
        assert_eq!(
            sample(&text, "triage_circuit_open{sink=\"webhook\"}"),
            Some(1.0)
        );
        s.circuit_open(false);
        assert!(m.open_circuits().is_empty());
    }

    #[test]
    fn lag_series_follow_the_assignment() {
        let m = Metrics::new();
        m.consumer_lag("t", &[(0, 5), (1, 7)]);
        m.consumer_lag("t", &[(1, 2)]);
        let text = m.render();
        assert_eq!(
            sample(&text, "triage_consumer_lag{partition=\"0\",topic=\"t\"}"),
            None
        );
        assert_eq!(
            sample(&text, "triage_consumer_lag{partition=\"1\",topic=\"t\"}"),
            Some(2.0)
        );
    }
}
