//! The decision JSON POSTed to an HTTP endpoint: a generic webhook.
//!
//! Each POST carries the decision (the decisions-topic JSON), an `Idempotency-Key` that is the
//! same for every delivery of one ticket event (so the receiver can drop repeats), and, when a
//! signing secret is configured, `X-Triage-Signature-256: sha256=<hex>`: the HMAC-SHA256 of the
//! exact body bytes under that secret. A receiver recomputes it over the raw body and compares
//! in constant time before trusting anything in it.
//!
//! Retry policy (see [`super::http`]): 408, 429, 5xx and connection errors or timeouts are
//! retried (honouring `Retry-After` in seconds or as an HTTP date); any other 4xx rejects the
//! ticket for good (dead letter, with the status and the start of the response body).

pub mod config;

use std::time::SystemTime;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use sha2::Sha256;
use tracing::info;

use self::config::WebhookSettings;
use super::config::{check_base_url, HttpAuth, Mode};
use super::http::{retry_after, Api, Call};
use super::{Delivery, SinkError, TicketSink};
use crate::config::Secret;
use crate::decision::DecisionRecord;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "x-triage-signature-256";

/// POSTs `{...decision, "source": {topic, partition, offset}}` to one URL.
pub struct WebhookSink {
    /// Client, limits, breaker, credentials.
    api: Api,
    /// Where to POST.
    url: reqwest::Url,
    /// Key for the body signature, if any.
    signing_secret: Option<Secret>,
    /// `shadow`: post nothing.
    mode: Mode,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url.as_str())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink for `settings`; fails only on an unusable URL or token.
    pub fn new(settings: &WebhookSettings) -> Result<WebhookSink, SinkError> {
        let url = check_base_url(&settings.url)
            .map_err(|e| SinkError::permanent(format!("webhook URL: {e}")))?;
        let auth = match &settings.bearer_token {
            Some(t) => HttpAuth::Bearer(t.clone()),
            None => HttpAuth::None,
        };
        Ok(WebhookSink {
            api: Api::new("webhook", url.clone(), &auth, &settings.limits)?,
            url,
            signing_secret: settings.signing_secret.clone(),
            mode: settings.mode,
        })
    }
}

/// `sha256=` and the lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
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

#[async_trait]
impl TicketSink for WebhookSink {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        if self.mode == Mode::Shadow {
            info!(sink = "webhook", ticket = %d.ticket.id, "shadow mode: decision not posted");
            return Ok(());
        }
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
        let mut call = Call::new(
            Method::POST,
            self.url.clone(),
            format!("POST ticket {}", d.ticket.id),
        );
        let key = HeaderValue::from_str(&key)
            .map_err(|_| SinkError::permanent("the topic name cannot go in a header"))?;
        call.headers
            .push((HeaderName::from_static("idempotency-key"), key));
        if let Some(secret) = &self.signing_secret {
            let mut v = HeaderValue::from_str(&signature(secret.expose().as_bytes(), &body))
                .expect("hex is a valid header value");
            v.set_sensitive(true);
            call.headers
                .push((HeaderName::from_static(SIGNATURE_HEADER), v));
        }
        call.body = Some(body);
        self.api.send(&call).await.map(|_| ())
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
    fn signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
