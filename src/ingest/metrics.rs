//! The metrics of `triage ingest`, registered on a [`prometheus::Registry`] handed in.
//!
//! Call sites use the named methods; they never build metric names or label values. Labels
//! are bounded: `source` is one of the five route names and `outcome` one of
//! [`Outcome::ALL`]; ticket ids and text never become labels. Every handle is resolved once,
//! here, so counting a request is an atomic add.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::config::SourceKind;

/// What became of one webhook request: the `outcome` label, and the status it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Produced and acknowledged by Kafka: 200.
    Produced,
    /// Missing or wrong signature, token or password: 401.
    Unauthorized,
    /// A signed timestamp outside the tolerance (or unreadable): 401.
    Stale,
    /// A signature already accepted (or being produced) within the tolerance window: 409.
    Replayed,
    /// Not JSON, or no ticket where the source's pointers say: 400.
    Malformed,
    /// The body is over the limit: 413.
    TooLarge,
    /// The client did not send its body in time: 408.
    Timeout,
    /// Kafka did not acknowledge in time, or refused: 503 with `Retry-After`.
    Unavailable,
    /// Too many requests at once: 503 with `Retry-After`.
    Overloaded,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 9] = [
        Outcome::Produced,
        Outcome::Unauthorized,
        Outcome::Stale,
        Outcome::Replayed,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Overloaded,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Produced => "produced",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Stale => "stale",
            Outcome::Replayed => "replayed",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Overloaded => "overloaded",
        }
    }

    /// The HTTP status a request with this outcome is answered with.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Produced => 200,
            Outcome::Unauthorized | Outcome::Stale => 401,
            Outcome::Replayed => 409,
            Outcome::Malformed => 400,
            Outcome::TooLarge => 413,
            Outcome::Timeout => 408,
            Outcome::Unavailable | Outcome::Overloaded => 503,
        }
    }
}

/// The ingest server's metrics.
pub struct IngestMetrics {
    /// `triage_ingest_requests_total{source, outcome}`, indexed by source then outcome.
    requests: Vec<Vec<IntCounter>>,
    /// `triage_ingest_produce_duration_seconds{result="ok"}`.
    produce_ok: Histogram,
    /// `triage_ingest_produce_duration_seconds{result="error"}`.
    produce_error: Histogram,
    /// `triage_ingest_requests_in_flight`: webhook requests being handled now.
    in_flight: IntGauge,
}

impl IngestMetrics {
    /// Create the metrics and register them on `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<IngestMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "triage_ingest_requests_total",
                "Webhook requests received by triage ingest, by source and outcome.",
            ),
            &["source", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let produce = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "triage_ingest_produce_duration_seconds",
                "Time from handing a record to the Kafka producer to its acknowledgement (or failure).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["result"],
        )?;
        registry.register(Box::new(produce.clone()))?;
        let in_flight = IntGauge::new(
            "triage_ingest_requests_in_flight",
            "Webhook requests being handled by triage ingest now.",
        )?;
        registry.register(Box::new(in_flight.clone()))?;
        let requests = SourceKind::ALL
            .iter()
            .map(|s| {
                Outcome::ALL
                    .iter()
                    .map(|o| requests.with_label_values(&[s.name(), o.name()]))
                    .collect()
            })
            .collect();
        Ok(IngestMetrics {
            requests,
            produce_ok: produce.with_label_values(&["ok"]),
            produce_error: produce.with_label_values(&["error"]),
            in_flight,
        })
    }

    /// Count one request of `source` that ended with `outcome`.
    pub fn request(&self, source: SourceKind, outcome: Outcome) {
        self.requests[source.index()][outcome as usize].inc();
    }

    /// How long one produce took, and whether Kafka acknowledged the record.
    pub fn produce_latency(&self, elapsed: Duration, acknowledged: bool) {
        let h = if acknowledged {
            &self.produce_ok
        } else {
            &self.produce_error
        };
        h.observe(elapsed.as_secs_f64());
    }

    /// Count a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Webhook requests being handled now.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// How many requests of `source` ended with `outcome` so far (for tests and summaries).
    pub fn count(&self, source: SourceKind, outcome: Outcome) -> u64 {
        self.requests[source.index()][outcome as usize].get()
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn counts_by_source_and_outcome_with_bounded_labels() {
        let registry = Registry::new();
        let m = IngestMetrics::new(&registry).unwrap();
        m.request(SourceKind::Jira, Outcome::Produced);
        m.request(SourceKind::Jira, Outcome::Produced);
        m.request(SourceKind::Zendesk, Outcome::Replayed);
        m.produce_latency(Duration::from_millis(3), true);
        {
            let _g = m.in_flight();
            assert_eq!(m.in_flight.get(), 1);
        }
        assert_eq!(m.in_flight.get(), 0);
        assert_eq!(m.count(SourceKind::Jira, Outcome::Produced), 2);
        assert_eq!(m.count(SourceKind::Zendesk, Outcome::Produced), 0);

        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"triage_ingest_requests_total{outcome="produced",source="jira"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"triage_ingest_requests_total{outcome="replayed",source="zendesk"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"triage_ingest_produce_duration_seconds_bucket{result="ok",le="0.005"} 1"#
            ),
            "{text}"
        );
        // Every series exists from the start (5 sources x 9 outcomes), and no others.
        let series = text
            .lines()
            .filter(|l| l.starts_with("triage_ingest_requests_total{"))
            .count();
        assert_eq!(series, 45);
        // A second registration of the same names is refused, not silently merged.
        assert!(IngestMetrics::new(&registry).is_err());
    }
}
