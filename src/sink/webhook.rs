//! The decision JSON POSTed to an HTTP endpoint: a generic webhook, and the base the
//! ticketing-system sinks build on (status classes, `Retry-After`, idempotency key).
//!
//! Retry policy: 408, 429, 5xx and connection errors or timeouts are retried (honouring
//! `Retry-After` in seconds or as an HTTP date); any other 4xx rejects the ticket for good.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;

use super::{Delivery, SinkError, TicketSink};
use crate::config::WebhookSettings;
use crate::decision::DecisionRecord;

/// POSTs `{...decision, "source": {topic, partition, offset}}` to one URL.
pub struct WebhookSink {
    /// Connection pool and timeouts; cheap to share.
    client: reqwest::Client,
    /// Where to POST.
    url: reqwest::Url,
    /// The `Authorization` header, if any (marked sensitive: never printed).
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink for `settings`; fails only on an unusable URL or token.
    pub fn new(settings: &WebhookSettings) -> Result<WebhookSink, SinkError> {
        let url = reqwest::Url::parse(&settings.url)
            .map_err(|e| SinkError::permanent(format!("webhook URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("triage/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::permanent(format!("cannot build the HTTP client: {e}")))?;
        let auth = match &settings.bearer_token {
            None => None,
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        SinkError::permanent(
                            "the webhook bearer token holds characters not allowed in a header",
                        )
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(WebhookSink { client, url, auth })
    }
}

/// What an HTTP status means for a retry (Vector's policy: 408, 429 and 5xx retry).
pub fn classify_status(
    status: StatusCode,
    headers: &HeaderMap,
    what: &str,
) -> Result<(), SinkError> {
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{what}: HTTP {status}");
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
    {
        Err(SinkError::Retryable {
            message,
            retry_after: retry_after(headers, SystemTime::now()),
        })
    } else {
        Err(SinkError::Permanent { message })
    }
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[async_trait]
impl TicketSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let body = serde_json::to_vec(&DecisionRecord {
            decision: d.decision,
            source: d.source,
        })
        .map_err(|e| SinkError::permanent(format!("cannot encode the decision: {e}")))?;
        // The same ticket event always carries the same key, so a receiver can drop repeats.
        let key = format!(
            "triage-{}-{}-{}",
            d.source.topic, d.source.partition, d.source.offset
        );
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", key)
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            SinkError::retry(format!(
                "webhook {}: {kind}",
                self.url.host_str().unwrap_or("?")
            ))
        })?;
        classify_status(resp.status(), resp.headers(), "webhook")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_reject() {
        let h = HeaderMap::new();
        assert!(classify_status(StatusCode::OK, &h, "x").is_ok());
        assert!(classify_status(StatusCode::NO_CONTENT, &h, "x").is_ok());
        for s in [408, 429, 500, 502, 503, 504] {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), &h, "x").unwrap_err();
            assert!(e.is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422] {
            let e = classify_status(StatusCode::from_u16(s).unwrap(), &h, "x").unwrap_err();
            assert!(!e.is_retryable(), "{s}");
            assert_eq!(e.class(), "sink_rejected");
        }
    }

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
}
