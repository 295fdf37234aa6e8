//! One request, start to end: route -> authenticate -> read the body -> verify the
//! signature -> refuse replays -> decode the ticket -> produce -> answer.
//!
//! Only a record Kafka has acknowledged is answered 2xx. Every refusal happens before
//! producing, so nothing refused reaches Kafka. Bodies are never logged, and neither are
//! the headers that carry credentials.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::config::{Forward, IngestSettings, SourceKind};
use super::metrics::{IngestMetrics, Outcome};
use super::produce::{ProduceError, TicketProducer, TopicState};
use super::replay::{Replay, ReplayCache};
use super::verify::{Refusal, Verifier};
use super::IngestError;
use crate::ticket::{DecodeError, Ticket, TicketShape};

/// The response type of every route.
pub type Reply = Response<Full<Bytes>>;

/// One help desk's route.
pub struct Route {
    /// Which help desk.
    kind: SourceKind,
    /// Its authentication scheme and secret.
    verifier: Verifier,
    /// Signatures it recently had accepted.
    replay: ReplayCache,
    /// Where the ticket is in its payloads.
    shape: TicketShape,
    /// Raw payload or plain shape on the topic.
    forward: Forward,
    /// When a refusal for bad credentials was last logged (they can come in floods).
    last_refusal_log: Mutex<Option<Instant>>,
}

/// The state every request shares.
pub struct Ingest {
    /// The configured routes.
    routes: Vec<Route>,
    /// Where records go.
    pub(super) producer: TicketProducer,
    /// Counters and histograms.
    metrics: IngestMetrics,
    /// What `/metrics` serves.
    registry: Registry,
    /// Webhook requests handled at once, at most.
    permits: Semaphore,
    /// Larger bodies get 413.
    max_body_bytes: usize,
    /// Larger records (after mapping) get 413: `triage run` would dead-letter them. With
    /// `worker.oversize = "scan-prefix"` a record under it whose text is long is accepted
    /// whole; the worker scans its beginning.
    max_record_bytes: usize,
    /// Time allowed for the body to arrive.
    pub(super) request_timeout: Duration,
    /// `Retry-After` on 503.
    retry_after: HeaderValue,
    /// Open connections at most.
    pub(super) max_connections: usize,
    /// How long in-flight requests may take to finish at shutdown.
    pub(super) drain_timeout: Duration,
    /// Set when a stop was requested: `/readyz` answers 503 from then on.
    pub(super) stopping: AtomicBool,
    /// What the last look at the topic found (`/readyz`).
    readiness: Mutex<TopicState>,
    /// The nudge routes of pulled sources (`/rt/nudge`), each waking its poller.
    nudges: Vec<(&'static str, Arc<tokio::sync::Notify>)>,
}

/// What the plain shape looks like on the topic (the fields `triage run` reads by default).
#[derive(Serialize)]
struct PlainRecord<'a> {
    id: &'a str,
    subject: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<&'a str>,
    source: &'a str,
}

/// The JSON body of every answer.
#[derive(Serialize)]
struct Answer<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
}

/// Headers a help desk sends that identify one delivery across its retries (copied to the
/// record, for tracing a duplicate back to its deliveries).
const DELIVERY_ID_HEADERS: &[&str] = &[
    "x-zendesk-webhook-invocation-id",
    "x-atlassian-webhook-identifier",
];

impl Ingest {
    /// The shared state for `settings` (the routes' secrets are read now);
    /// `max_record_bytes` is the largest record the worker decodes
    /// ([`crate::config::WorkerSettings::record_limit`]).
    pub fn new(
        settings: &IngestSettings,
        max_record_bytes: usize,
        producer: TicketProducer,
        registry: Registry,
    ) -> Result<Ingest, IngestError> {
        let metrics = IngestMetrics::new(&registry)
            .map_err(|e| IngestError::Config(format!("metrics: {e}")))?;
        let mut routes = Vec::with_capacity(settings.sources.len());
        for s in &settings.sources {
            routes.push(Route {
                kind: s.kind,
                verifier: Verifier::new(&s.auth, settings.timestamp_tolerance)
                    .map_err(|e| IngestError::Config(e.to_string()))?,
                replay: ReplayCache::new(
                    settings.timestamp_tolerance,
                    settings.replay_cache_entries,
                ),
                shape: s.shape.clone(),
                forward: s.forward,
                last_refusal_log: Mutex::new(None),
            });
        }
        Ok(Ingest {
            routes,
            producer,
            metrics,
            registry,
            permits: Semaphore::new(settings.max_concurrent_requests),
            max_body_bytes: settings.max_body_bytes,
            max_record_bytes,
            request_timeout: settings.request_timeout,
            retry_after: HeaderValue::from(settings.retry_after.as_secs().max(1)),
            max_connections: settings.max_connections,
            drain_timeout: settings.drain_timeout,
            stopping: AtomicBool::new(false),
            readiness: Mutex::new(TopicState::Unreachable("not checked yet".into())),
            nudges: settings
                .rt
                .iter()
                .map(|_| ("/rt/nudge", Arc::new(tokio::sync::Notify::new())))
                .collect(),
        })
    }

    /// What wakes the poller behind the nudge route `path`, if there is one.
    pub fn nudge(&self, path: &str) -> Option<Arc<tokio::sync::Notify>> {
        self.nudges
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, n)| n.clone())
    }

    /// The metrics (for summaries and tests).
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Record what the last look at the topic found.
    pub(super) fn set_readiness(&self, state: TopicState) {
        *self.readiness.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Answer one request; never fails (errors are answers).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Reply, Infallible> {
        let path = req.uri().path();
        let reply = match path {
            "/healthz" | "/readyz" | "/metrics" => {
                if req.method() != Method::GET && req.method() != Method::HEAD {
                    return Ok(method_not_allowed("GET, HEAD"));
                }
                match path {
                    "/healthz" => self.healthz(),
                    "/readyz" => self.readyz(),
                    _ => self.metrics_text(),
                }
            }
            _ if self.nudge(path).is_some() => {
                if req.method() != Method::POST {
                    return Ok(method_not_allowed("POST"));
                }
                // Only a hint to poll now (coalesced): nothing is read from the request.
                if let Some(n) = self.nudge(path) {
                    n.notify_one();
                }
                text(StatusCode::ACCEPTED, "polling\n")
            }
            _ => match self.routes.iter().find(|r| r.kind.path() == path) {
                Some(route) => self.webhook(route, req).await,
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        };
        Ok(reply)
    }

    fn healthz(&self) -> Reply {
        if self.producer.is_fatal() {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the Kafka producer hit a fatal error: restart triage ingest\n",
            );
        }
        text(StatusCode::OK, "ok\n")
    }

    fn readyz(&self) -> Reply {
        if self.stopping.load(Ordering::Acquire) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        if self.producer.is_fatal() {
            return text(StatusCode::SERVICE_UNAVAILABLE, "Kafka producer failed\n");
        }
        let state = self
            .readiness
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match state {
            TopicState::Ready => text(StatusCode::OK, "ready\n"),
            TopicState::Missing => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("topic {} does not exist\n", self.producer.topic()),
            ),
            TopicState::Unreachable(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Kafka is unreachable: {e}\n"),
            ),
        }
    }

    fn metrics_text(&self) -> Reply {
        let mut out = Vec::with_capacity(8192);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n"));
        }
        let mut r = Response::new(Full::new(Bytes::from(out)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    async fn webhook(self: &Arc<Self>, route: &Route, req: Request<Incoming>) -> Reply {
        if req.method() != Method::POST {
            return method_not_allowed("POST");
        }
        let _in_flight = self.metrics.in_flight();
        // Bounded concurrency: beyond the limit, say "later" at once instead of queueing.
        let Ok(_permit) = self.permits.try_acquire() else {
            return self.refuse(
                route,
                Outcome::Overloaded,
                "too many requests at once; retry later",
            );
        };

        // authenticate: what the headers alone show (credentials, signed timestamp).
        let pending = match route.verifier.headers(req.headers(), SystemTime::now()) {
            Ok(p) => p,
            Err(r) => return self.unauthorized(route, r),
        };

        // read the body: refused unread when it says it is too large; cut off at the limit
        // when it does not say; given up when the client is too slow.
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return self.too_large(route);
        }
        let delivery_id = DELIVERY_ID_HEADERS.iter().find_map(|h| {
            let v = req.headers().get(*h)?.to_str().ok()?;
            (v.len() <= 128).then(|| v.to_string())
        });
        let body = Limited::new(req.into_body(), self.max_body_bytes);
        let body = match tokio::time::timeout(self.request_timeout, body.collect()).await {
            Err(_) => {
                let mut r = self.refuse(
                    route,
                    Outcome::Timeout,
                    "the request body did not arrive in time",
                );
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.too_large(route)
            }
            Ok(Err(_)) => {
                return self.refuse(
                    route,
                    Outcome::Malformed,
                    "the request body could not be read",
                )
            }
            Ok(Ok(c)) => c.to_bytes(),
        };

        // verify: the signature over the raw body.
        let mac = match pending.body(&body) {
            Ok(m) => m,
            Err(r) => return self.unauthorized(route, r),
        };

        // replay: a signature accepted (or being produced) within the window is refused.
        let reservation = match mac.map(|m| route.replay.reserve(m)).transpose() {
            Ok(r) => r,
            Err(Replay::Accepted) => {
                return self.refuse(
                    route,
                    Outcome::Replayed,
                    "this signed delivery was already accepted; it is not produced again",
                )
            }
            Err(Replay::InFlight) => {
                return self.refuse(
                    route,
                    Outcome::Replayed,
                    "this signed delivery is being produced by another request",
                )
            }
        };

        // decode: the ticket must be where the source's pointers say; then the record
        // `triage run` reads, keyed by ticket id.
        let ticket = match route.shape.decode(&body) {
            Ok(t) => t,
            Err(DecodeError::TooLarge { .. }) => return self.too_large(route),
            Err(e) => return self.refuse(route, Outcome::Malformed, &e.to_string()),
        };
        let record: Bytes = match route.forward {
            Forward::Raw => body,
            Forward::Plain => plain(route.kind, &ticket),
        };
        if record.len() > self.max_record_bytes {
            return self.too_large(route);
        }

        // produce: answer 2xx only once Kafka has acknowledged (acks=all). In a task of its
        // own, so a client hanging up cannot cut it short: the replay memory then holds what
        // really reached Kafka, and a retry of a delivery that did land is refused, not doubled.
        let app = self.clone();
        let kind = route.kind;
        let id = ticket.id;
        let task = tokio::spawn(async move {
            let mut headers: Vec<(&str, &str)> = vec![("triage-source", kind.name())];
            if let Some(d) = &delivery_id {
                headers.push(("triage-delivery-id", d));
            }
            let started = Instant::now();
            let sent = app.producer.send(&id, &record, &headers).await;
            app.metrics.produce_latency(started.elapsed(), sent.is_ok());
            if let Ok((partition, offset)) = sent {
                if let Some(r) = reservation {
                    r.accept();
                }
                app.metrics.request(kind, Outcome::Produced);
                debug!(source = kind.name(), ticket = %id, partition, offset, "produced");
            }
            (id, sent)
        });
        let (id, sent) = match task.await {
            Ok(r) => r,
            Err(e) => (String::new(), Err(ProduceError::Unavailable(e.to_string()))),
        };
        match sent {
            Ok((partition, offset)) => answer(
                StatusCode::OK,
                &Answer {
                    status: Outcome::Produced.name(),
                    error: None,
                    ticket: Some(&id),
                    partition: Some(partition),
                    offset: Some(offset),
                },
            ),
            Err(ProduceError::TooLarge(e)) => {
                warn!(
                    source = route.kind.name(),
                    "Kafka refused a record as too large: {e}"
                );
                self.too_large(route)
            }
            Err(e) => {
                warn!(source = route.kind.name(), "answering 503: {e}");
                self.refuse(route, Outcome::Unavailable, &e.to_string())
            }
        }
    }

    fn too_large(&self, route: &Route) -> Reply {
        let msg = format!(
            "the body is over the limit of {} bytes",
            self.max_body_bytes.min(self.max_record_bytes)
        );
        let mut r = self.refuse(route, Outcome::TooLarge, &msg);
        // The rest of the body is not read: do not reuse the connection.
        r.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        r
    }

    fn unauthorized(&self, route: &Route, why: Refusal) -> Reply {
        let outcome = if why.is_stale() {
            Outcome::Stale
        } else {
            Outcome::Unauthorized
        };
        // A misconfigured secret refuses every request: say so in the log, once a minute.
        let mut last = route
            .last_refusal_log
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            warn!(
                source = route.kind.name(),
                refused_so_far = self.metrics.count(route.kind, outcome) + 1,
                "refusing requests that fail authentication ({why}); check [ingest.{}] and the help desk's webhook settings",
                route.kind.name()
            );
        }
        drop(last);
        let mut r = self.refuse(route, outcome, &why.to_string());
        if let Some(c) = route.verifier.challenge() {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }

    /// Count and answer a request that is not produced.
    fn refuse(&self, route: &Route, outcome: Outcome, reason: &str) -> Reply {
        self.metrics.request(route.kind, outcome);
        debug!(
            source = route.kind.name(),
            outcome = outcome.name(),
            "refused: {reason}"
        );
        let status = StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = answer(
            status,
            &Answer {
                status: outcome.name(),
                error: Some(reason),
                ticket: None,
                partition: None,
                offset: None,
            },
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(RETRY_AFTER, self.retry_after.clone());
        }
        r
    }
}

/// The plain shape of a ticket, as `triage run` reads it by default.
fn plain(kind: SourceKind, t: &Ticket) -> Bytes {
    let record = PlainRecord {
        id: &t.id,
        subject: &t.subject,
        body: &t.body,
        tags: &t.tags,
        author: t.author.as_deref(),
        updated_at: t.updated_stamp.as_deref(),
        source: kind.name(),
    };
    Bytes::from(serde_json::to_vec(&record).expect("strings always serialise"))
}

fn answer(status: StatusCode, a: &Answer<'_>) -> Reply {
    let body = serde_json::to_vec(a).expect("strings always serialise");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, s: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(s.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}
