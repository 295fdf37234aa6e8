//! What every HTTP post-back sink shares: one client per sink (rustls, certificate checks on),
//! authentication, a rate limiter, `Retry-After` holds, a circuit breaker, and
//! the mapping from HTTP outcomes to [`SinkError`].
//!
//! Retry policy (the pipeline does the waiting, never the poll loop):
//! - 2xx: done.
//! - 429, 408, 5xx, connection errors and timeouts: [`SinkError::Retryable`], carrying the
//!   server's `Retry-After` (seconds or an HTTP date) when it sent one. The pipeline pauses
//!   intake and retries the ticket with exponential backoff and full jitter, or after exactly
//!   the delay the server asked for. A `Retry-After` also puts the whole sink on hold: until it
//!   has passed, no request of this sink is sent; other tickets' requests wait for it in their
//!   own tasks (up to a minute; a longer hold fails them as retryable).
//! - A rate limit the server says concerns one resource only (Jira's per-issue write limit) is
//!   waited out inside that ticket's task: other tickets go on and intake is not paused.
//! - Any other 4xx: [`SinkError::Permanent`] with the status and the start of the response body;
//!   the ticket goes to the dead-letter topic.
//!
//! The circuit breaker counts consecutive failures (5xx, 408, timeouts, connection errors; a 429
//! is the server working as intended and does not count). After `failures` of them it opens:
//! calls fail at once for `open_for`. Then one call is let through as a probe (half-open): its
//! success closes the breaker, its failure opens it again.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::{debug, info, warn};

use super::config::{HttpAuth, SinkLimits};
use super::SinkError;

/// Longest response body kept in a dead-letter message, in bytes.
pub const MAX_ERROR_BODY_BYTES: usize = 512;

/// Longest wait for a hold (a per-resource rate limit, or another request's `Retry-After`)
/// that is waited out inside the ticket's task; a longer one becomes a retryable error.
const MAX_SCOPED_WAIT: Duration = Duration::from_secs(60);

/// How many per-resource rate limits one request waits out before giving up for now.
const MAX_SCOPED_RETRIES: u32 = 5;

/// `Retry-After` as a delay: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An HTTP response the sink handles itself (a 2xx, or a status it asked for).
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, whole.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON of type `T`; a body that does not parse is a permanent error (the
    /// server does not speak the API the sink was written for).
    pub fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, SinkError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SinkError::permanent(format!(
                "{what}: unexpected response ({e}): {}",
                body_excerpt(&self.body)
            ))
        })
    }
}

/// The start of a response body for a message: UTF-8 (lossy), one line, at most
/// [`MAX_ERROR_BODY_BYTES`] bytes.
pub fn body_excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_ERROR_BODY_BYTES)];
    let mut s: String = String::from_utf8_lossy(cut)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > MAX_ERROR_BODY_BYTES {
        s.push('…');
    }
    if s.trim().is_empty() {
        "(empty body)".into()
    } else {
        s
    }
}

/// One request.
#[derive(Debug)]
pub struct Call {
    /// GET, PUT, POST, PATCH.
    pub method: Method,
    /// Absolute URL (from [`Api::url`]).
    pub url: Url,
    /// JSON body, if any.
    pub body: Option<Vec<u8>>,
    /// Extra headers (a webhook's signature, say).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The resource a per-resource rate limit would concern (a Jira issue key).
    pub scope: Option<String>,
    /// Statuses besides 2xx the caller handles itself (409 for a safe update, say).
    pub expect: &'static [StatusCode],
    /// For messages: what this request does (`PUT ticket 42`), without ticket text.
    pub what: String,
}

impl Call {
    /// A request without a body.
    pub fn new(method: Method, url: Url, what: impl Into<String>) -> Call {
        Call {
            method,
            url,
            body: None,
            headers: Vec::new(),
            scope: None,
            expect: &[],
            what: what.into(),
        }
    }

    /// With a JSON body.
    pub fn json(mut self, value: &serde_json::Value) -> Call {
        self.body = Some(serde_json::to_vec(value).expect("a JSON value always serialises"));
        self
    }

    /// Also hand these statuses back to the caller.
    pub fn expect(mut self, statuses: &'static [StatusCode]) -> Call {
        self.expect = statuses;
        self
    }

    /// A per-resource rate limit on this request delays only `scope`.
    pub fn scope(mut self, scope: impl Into<String>) -> Call {
        self.scope = Some(scope.into());
        self
    }
}

/// Says whether a 429 concerns one resource only (from its headers).
pub type ScopedLimit = fn(&HeaderMap) -> bool;

/// A client for one ticketing system: base URL, credentials and the shared protections.
pub struct Api {
    /// The sink's name, for logs and messages.
    name: &'static str,
    /// Connection pool, TLS (rustls, certificates verified), timeouts.
    client: reqwest::Client,
    /// Validated base URL; request paths are appended to it.
    base: Url,
    /// The `Authorization` header (marked sensitive), if any.
    auth: Option<HeaderValue>,
    /// Spaces requests out to at most `requests_per_minute`.
    limiter: RateLimiter,
    /// Stops calling a server that keeps failing.
    breaker: Breaker,
    /// `Retry-After` holds: the whole sink, and per resource.
    holds: Holds,
    /// Recognises a per-resource 429 (Jira's `RateLimit-Reason: jira-per-issue-on-write`).
    scoped_limit: Option<ScopedLimit>,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("name", &self.name)
            .field("base", &self.base.as_str())
            .field("auth", &self.auth.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client for `base` (already checked by [`check_base_url`](super::config::check_base_url)).
    pub fn new(
        name: &'static str,
        base: Url,
        auth: &HttpAuth,
        limits: &SinkLimits,
    ) -> Result<Api, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(limits.timeout)
            .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("triage/", env!("CARGO_PKG_VERSION")))
            .https_only(base.scheme() == "https")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                SinkError::permanent(format!("{name}: cannot build the HTTP client: {e}"))
            })?;
        let auth = auth_header(auth).map_err(|m| SinkError::permanent(format!("{name}: {m}")))?;
        Ok(Api {
            name,
            client,
            base,
            auth,
            limiter: RateLimiter::per_minute(limits.requests_per_minute),
            breaker: Breaker::new(limits.breaker_failures, limits.breaker_open_for),
            holds: Holds::default(),
            scoped_limit: None,
        })
    }

    /// Recognise per-resource rate limits with `f`.
    pub fn with_scoped_limit(mut self, f: ScopedLimit) -> Api {
        self.scoped_limit = Some(f);
        self
    }

    /// The sink's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The base URL followed by `segments`, each percent-encoded as one path segment (a ticket
    /// id can never add segments, a query or a fragment).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("a checked http(s) base URL can take path segments");
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    /// Send one request through the hold, the breaker and the limiter, and map the outcome.
    pub async fn send(&self, call: &Call) -> Result<Reply, SinkError> {
        let mut scoped_waits = 0u32;
        loop {
            // The server asked everyone to wait (the ticket whose request got the 429 or 503
            // is already being retried by the pipeline, which paused intake). Other tickets
            // wait here, in their own tasks, like for the rate limiter: failing them would make
            // each restart its steps from the beginning, and under a steady trickle of 429s no
            // ticket would ever finish. A very long hold is handed to the pipeline instead.
            if let Some(left) = self.holds.global_left() {
                if left > MAX_SCOPED_WAIT {
                    return Err(SinkError::Retryable {
                        message: format!(
                            "{}: {}: holding off as the server asked (Retry-After)",
                            self.name, call.what
                        ),
                        retry_after: Some(left),
                    });
                }
                sleep(left).await;
                continue;
            }
            // A limit on this resource only: wait here; other tickets are not held up.
            if let Some(scope) = &call.scope {
                if let Some(left) = self.holds.scope_left(scope) {
                    if left > MAX_SCOPED_WAIT || scoped_waits >= MAX_SCOPED_RETRIES {
                        return Err(SinkError::Retryable {
                            message: format!(
                                "{}: {}: rate limited for this resource",
                                self.name, call.what
                            ),
                            retry_after: Some(left),
                        });
                    }
                    scoped_waits += 1;
                    debug!(
                        sink = self.name,
                        ?left,
                        "waiting out a per-resource rate limit"
                    );
                    sleep(left).await;
                    continue;
                }
            }
            let permit = self
                .breaker
                .acquire()
                .map_err(|left| SinkError::Retryable {
                    message: format!(
                        "{}: circuit breaker open after repeated failures",
                        self.name
                    ),
                    retry_after: Some(left),
                })?;
            self.limiter.acquire().await;
            // A Retry-After may have arrived while this request waited for its slot.
            if self.holds.global_left().is_some() {
                permit.neutral();
                continue;
            }

            let mut req = self
                .client
                .request(call.method.clone(), call.url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(a) = &self.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            if let Some(b) = &call.body {
                req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            for (k, v) in &call.headers {
                req = req.header(k.clone(), v.clone());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    permit.failure();
                    return Err(SinkError::retry(format!(
                        "{}: {}: {}",
                        self.name,
                        call.what,
                        transport_error(&e)
                    )));
                }
            };
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = match resp.bytes().await {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    permit.failure();
                    return Err(SinkError::retry(format!(
                        "{}: {}: reading the response: {}",
                        self.name,
                        call.what,
                        transport_error(&e)
                    )));
                }
            };
            if status.is_success() || call.expect.contains(&status) {
                permit.success();
                return Ok(Reply {
                    status,
                    headers,
                    body,
                });
            }
            let wait = retry_after(&headers, SystemTime::now());
            if status == StatusCode::TOO_MANY_REQUESTS {
                // Rate limited: the server is fine, the breaker neither opens nor closes.
                permit.neutral();
                let scoped = self.scoped_limit.is_some_and(|f| f(&headers));
                if let (true, Some(scope)) = (scoped, &call.scope) {
                    let wait = wait.unwrap_or(Duration::from_secs(1 << scoped_waits.min(5)));
                    self.holds.hold_scope(scope, wait);
                    continue;
                }
                if let Some(w) = wait {
                    self.holds.hold_all(w);
                }
                return Err(SinkError::Retryable {
                    message: format!("{}: {}: HTTP {status} (rate limited)", self.name, call.what),
                    retry_after: wait,
                });
            }
            if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
                permit.failure();
                if let Some(w) = wait {
                    self.holds.hold_all(w);
                }
                return Err(SinkError::Retryable {
                    message: format!("{}: {}: HTTP {status}", self.name, call.what),
                    retry_after: wait,
                });
            }
            // Any other 4xx: this request will never work; the server itself is fine.
            permit.success();
            return Err(SinkError::permanent(format!(
                "{}: {}: HTTP {status}: {}",
                self.name,
                call.what,
                body_excerpt(&body)
            )));
        }
    }
}

/// A transport failure in a few words (reqwest's own text may carry the full URL).
fn transport_error(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection broken while reading the response"
    } else {
        "request failed"
    }
}

/// The `Authorization` header for `auth`, marked sensitive so that it is never printed.
fn auth_header(auth: &HttpAuth) -> Result<Option<HeaderValue>, String> {
    let text = match auth {
        HttpAuth::None => return Ok(None),
        HttpAuth::Basic { user, password } => {
            let raw = format!("{}:{}", user.expose(), password.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        }
        HttpAuth::Bearer(token) => format!("Bearer {}", token.expose()),
        HttpAuth::Token(token) => format!("token {}", token.expose()),
    };
    let mut v = HeaderValue::from_str(&text)
        .map_err(|_| "the credentials hold characters not allowed in an HTTP header".to_string())?;
    v.set_sensitive(true);
    Ok(Some(v))
}

// ----- rate limiter ---------------------------------------------------------------------------

/// Spaces requests at least `60 s / requests_per_minute` apart, so that no minute ever sees
/// more than `requests_per_minute` (+1) of them. Waiting happens in the ticket's task.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two requests.
    interval: Duration,
    /// The earliest moment the next request may go.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter for `n` requests per minute (`n` ≥ 1).
    pub fn per_minute(n: u32) -> RateLimiter {
        RateLimiter {
            interval: Duration::from_secs(60) / n.max(1),
            next: Mutex::new(None),
        }
    }

    /// Wait for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        };
        sleep_until(slot).await;
    }
}

// ----- Retry-After holds ----------------------------------------------------------------------

/// Moments before which no request may go: for the whole sink, and per resource.
#[derive(Debug, Default)]
struct Holds {
    /// The whole sink (a 429 or 503 with `Retry-After`).
    all: Mutex<Option<Instant>>,
    /// One resource each (Jira's per-issue limit).
    scoped: Mutex<HashMap<String, Instant>>,
}

impl Holds {
    fn hold_all(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut a = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none_or(|t| t < until) {
            *a = Some(until);
        }
    }

    fn global_left(&self) -> Option<Duration> {
        let a = self.all.lock().unwrap_or_else(|e| e.into_inner());
        let left = a.map(|t| t.saturating_duration_since(Instant::now()))?;
        (!left.is_zero()).then_some(left)
    }

    fn hold_scope(&self, scope: &str, d: Duration) {
        let now = Instant::now();
        let mut m = self.scoped.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, t| *t > now);
        let until = now + d;
        let e = m.entry(scope.to_string()).or_insert(until);
        if *e < until {
            *e = until;
        }
    }

    fn scope_left(&self, scope: &str) -> Option<Duration> {
        let m = self.scoped.lock().unwrap_or_else(|e| e.into_inner());
        let left = m.get(scope)?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

// ----- circuit breaker ------------------------------------------------------------------------

/// Opens after repeated failures, probes with one call before closing.
#[derive(Debug)]
pub struct Breaker {
    /// Consecutive failures that open it.
    threshold: u32,
    /// How long it stays open before a probe.
    open_for: Duration,
    /// Where it is now.
    state: Arc<Mutex<BreakerState>>,
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` in a row so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls fail at once until `until`.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// One probe is out (since `since`); other calls fail at once.
    HalfOpen {
        /// When the probe went.
        since: Instant,
    },
}

/// Leave to make one call; report how it went. Dropping it unreported (the task was cancelled)
/// counts as neither success nor failure, but frees a probe slot.
#[must_use]
pub struct Permit {
    /// The breaker's state.
    state: Arc<Mutex<BreakerState>>,
    /// Whether this call is the half-open probe.
    probe: bool,
    /// For reopening.
    threshold: u32,
    /// For reopening.
    open_for: Duration,
    /// Reported already.
    done: bool,
}

impl Breaker {
    /// A closed breaker opening after `threshold` consecutive failures for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            state: Arc::new(Mutex::new(BreakerState::Closed { failures: 0 })),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leave to call, or how long until a call may be tried.
    pub fn acquire(&self) -> Result<Permit, Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let probe = match *s {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } if now < until => return Err(until - now),
            BreakerState::Open { .. } => {
                info!("circuit breaker half-open: sending one probe request");
                *s = BreakerState::HalfOpen { since: now };
                true
            }
            // A probe that never reported back (hung far past its timeout): send another.
            BreakerState::HalfOpen { since } if now - since > self.open_for * 2 => {
                *s = BreakerState::HalfOpen { since: now };
                true
            }
            BreakerState::HalfOpen { .. } => return Err(self.open_for.min(Duration::from_secs(1))),
        };
        Ok(Permit {
            state: self.state.clone(),
            probe,
            threshold: self.threshold,
            open_for: self.open_for,
            done: false,
        })
    }
}

impl Permit {
    /// The server answered (2xx, or a 4xx that is the request's fault): close the breaker.
    pub fn success(mut self) {
        self.done = true;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.probe || matches!(*s, BreakerState::Closed { .. }) {
            if self.probe {
                info!("circuit breaker closed: the probe succeeded");
            }
            *s = BreakerState::Closed { failures: 0 };
        }
    }

    /// The server failed (5xx, 408, timeout, connection): count it; open at the threshold.
    pub fn failure(mut self) {
        self.done = true;
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let open = match *s {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                *s = BreakerState::Closed {
                    failures: failures + 1,
                };
                false
            }
            BreakerState::Closed { .. } => true,
            BreakerState::HalfOpen { .. } => self.probe,
            BreakerState::Open { .. } => false,
        };
        if open {
            warn!(
                open_for = ?self.open_for,
                "circuit breaker open after repeated failures: no requests until a probe succeeds"
            );
            *s = BreakerState::Open {
                until: Instant::now() + self.open_for,
            };
        }
    }

    /// Neither (a 429): the state stays; a probe slot is freed for the next call.
    pub fn neutral(mut self) {
        self.done = true;
        self.release_probe();
    }

    fn release_probe(&self) {
        if self.probe {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(*s, BreakerState::HalfOpen { .. }) {
                *s = BreakerState::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.release_probe();
        }
    }
}

// ----- one ticket at a time -------------------------------------------------------------------

/// Serialises work on one ticket inside this process: the pipeline handles records
/// concurrently, and two events of one ticket must not both find "no note yet".
#[derive(Debug, Default)]
pub struct TicketLocks {
    /// Ticket id -> its lock, while anyone holds or waits for it.
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a ticket is being worked on.
pub struct TicketGuard<'a> {
    /// The lock map, to forget the entry when nobody needs it any more.
    locks: &'a TicketLocks,
    /// The ticket id.
    id: String,
    /// The held lock (dropped first).
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl TicketLocks {
    /// Wait until no other task works on ticket `id`.
    pub async fn lock(&self, id: &str) -> TicketGuard<'_> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        TicketGuard {
            locks: self,
            id: id.to_string(),
            guard: Some(guard),
        }
    }

    /// How many tickets have an entry (for tests: entries are forgotten when free).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no ticket has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.get(&self.id) {
            // Only the map holds it: nobody is waiting.
            if Arc::strong_count(m) == 1 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn body_excerpts_are_bounded_single_lines() {
        assert_eq!(body_excerpt(b""), "(empty body)");
        assert_eq!(
            body_excerpt(b"{\"error\":\n\"bad\"}"),
            "{\"error\": \"bad\"}"
        );
        let long = vec![b'x'; 2000];
        let e = body_excerpt(&long);
        assert_eq!(e.chars().count(), MAX_ERROR_BODY_BYTES + 1);
        assert!(e.ends_with('…'));
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_failures_and_probes_before_closing() {
        let b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            b.acquire().unwrap().failure();
        }
        assert_eq!(b.state(), BreakerState::Closed { failures: 2 });
        // A success in between resets the count.
        b.acquire().unwrap().success();
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        let wait = b.acquire().err().expect("open: calls fail at once");
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(9));

        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.acquire().expect("half-open lets one probe through");
        assert!(matches!(b.state(), BreakerState::HalfOpen { .. }));
        assert!(b.acquire().is_err(), "only one probe at a time");
        probe.failure();
        assert!(
            matches!(b.state(), BreakerState::Open { .. }),
            "failed probe reopens"
        );
        assert!(b.acquire().is_err());

        tokio::time::advance(Duration::from_secs(10)).await;
        b.acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });

        // A cancelled probe frees the slot for the next call.
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(b.acquire().unwrap());
        assert!(b.acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_requests() {
        let l = RateLimiter::per_minute(120);
        let t0 = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        // The first goes at once, then one every 500 ms.
        assert_eq!(t0.elapsed(), Duration::from_millis(2000));
    }

    #[tokio::test(start_paused = true)]
    async fn holds_cover_the_sink_or_one_scope() {
        let h = Holds::default();
        assert_eq!(h.global_left(), None);
        h.hold_scope("HD-1", Duration::from_secs(2));
        assert!(h.scope_left("HD-1").is_some());
        assert_eq!(h.scope_left("HD-2"), None);
        assert_eq!(h.global_left(), None);
        h.hold_all(Duration::from_secs(3));
        h.hold_all(Duration::from_secs(1));
        assert_eq!(
            h.global_left(),
            Some(Duration::from_secs(3)),
            "the longer hold wins"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(h.global_left(), None);
        assert_eq!(h.scope_left("HD-1"), None);
    }

    #[tokio::test]
    async fn ticket_locks_serialise_one_ticket_and_forget_free_ones() {
        let locks = Arc::new(TicketLocks::default());
        let g = locks.lock("1").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock("1").await;
        });
        let _other = locks.lock("2").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "second lock of one ticket waits");
        drop(g);
        waiter.await.unwrap();
        drop(_other);
        assert!(locks.is_empty());
    }

    #[test]
    fn auth_headers_are_sensitive() {
        use crate::config::Secret;
        let h = auth_header(&HttpAuth::Basic {
            user: Secret::new("a@b.c/token"),
            password: Secret::new("tok"),
        })
        .unwrap()
        .unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic YUBiLmMvdG9rZW46dG9r");
        assert!(!format!("{h:?}").contains("YUBi"));
        let b = auth_header(&HttpAuth::Bearer(Secret::new("x")))
            .unwrap()
            .unwrap();
        assert_eq!(b.to_str().unwrap(), "Bearer x");
    }
}
