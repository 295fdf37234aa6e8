//! What every post-back sink's section shares: base URL, mode, credentials, limits, and checks.
//!
//! Each sink's own section (`[sink.<name>]`) is read in its `config.rs`; the checks here report
//! through the shared locator ([`crate::config`]), so errors read `path:line: key: message`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::config::{ConfigError, Ctx, Secret};

/// Why a base URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

/// Check a configured base URL: `https://` with a host, no credentials, query or fragment.
///
/// The one exception is deliberate and narrow: plain `http://` is accepted when the host is a
/// loopback address (`127.0.0.0/8`, `::1`) or `localhost`, so that tests and local relays
/// can run without certificates. Nothing else goes unencrypted: not private ranges, not
/// hostnames that merely resolve to loopback.
pub fn check_base_url(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw).map_err(|e| UrlError(format!("`{raw}` is not a URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| UrlError(format!("`{raw}` has no host")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError(
            "must not carry credentials; use the sink's token or password settings".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError(format!(
            "`{raw}` must not have a query or a fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        "http" => Err(UrlError(format!(
            "`{raw}` is not https: plain http is allowed only for loopback addresses (127.0.0.1, ::1, localhost)"
        ))),
        other => Err(UrlError(format!(
            "`{raw}`: scheme {other} is not supported; use https://"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a post-back sink writes on a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Mode {
    /// Decide and record (logs, decisions topic), write nothing to the ticketing system.
    #[serde(rename = "shadow")]
    Shadow,
    /// The symptoms' tags (and the marker tag).
    #[serde(rename = "tag")]
    Tag,
    /// The note (and the marker tag).
    #[serde(rename = "note")]
    Note,
    /// Both.
    #[serde(rename = "tag+note")]
    TagAndNote,
}

impl Mode {
    /// Whether the symptoms' tags are written.
    pub fn tags(self) -> bool {
        matches!(self, Mode::Tag | Mode::TagAndNote)
    }
    /// Whether the note is written.
    pub fn note(self) -> bool {
        matches!(self, Mode::Note | Mode::TagAndNote)
    }
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Tag => "tag",
            Mode::Note => "note",
            Mode::TagAndNote => "tag+note",
        }
    }
}

/// How a sink authenticates. Every value is a [`Secret`]: never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// No `Authorization` header.
    None,
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user part (for Zendesk `{email}/token`, for Freshdesk the API key).
        user: Secret,
        /// The password part (a token, a password, or Freshdesk's `X`).
        password: Secret,
    },
    /// `Authorization: Bearer {token}` (OAuth).
    Bearer(Secret),
    /// `Authorization: token {token}` (Request Tracker's auth tokens).
    Token(Secret),
}

/// Protections every HTTP sink has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLimits {
    /// Per-request timeout (connect, send, receive); a timeout is retried.
    pub timeout: Duration,
    /// Requests per minute at most (all of this sink's requests).
    pub requests_per_minute: u32,
    /// Consecutive failures (5xx, 408, timeouts, connection errors) that open the breaker.
    pub breaker_failures: u32,
    /// How long the open breaker refuses calls before it lets one probe through.
    pub breaker_open_for: Duration,
}

/// What every ticketing-system sink is configured with.
#[derive(Debug, Clone)]
pub struct PostBackSettings {
    /// The system's base URL (https, or http on loopback only), checked at start-up.
    pub base_url: reqwest::Url,
    /// Credentials.
    pub auth: HttpAuth,
    /// What to write.
    pub mode: Mode,
    /// Post the note as a public reply when the catalogue asks for one (default: never).
    pub allow_public_reply: bool,
    /// Rate limit, timeout, circuit breaker.
    pub limits: SinkLimits,
}

/// Keys every HTTP sink has (repeated in each section: `deny_unknown_fields` does not work
/// through `flatten`).
/// The limits keys every sink section shares, gathered from a raw section.
macro_rules! raw_limits {
    ($raw:expr) => {
        $crate::sink::config::RawLimits {
            timeout_ms: $raw.timeout_ms,
            requests_per_minute: $raw.requests_per_minute,
            circuit_breaker_failures: $raw.circuit_breaker_failures,
            circuit_breaker_open_ms: $raw.circuit_breaker_open_ms,
        }
    };
}
pub(crate) use raw_limits;

/// The limits keys of a sink section, as written.
pub(crate) struct RawLimits {
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) requests_per_minute: Option<u32>,
    pub(crate) circuit_breaker_failures: Option<u32>,
    pub(crate) circuit_breaker_open_ms: Option<u64>,
}

const DEFAULT_SINK_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_BREAKER_FAILURES: u32 = 5;
const DEFAULT_BREAKER_OPEN_MS: u64 = 10_000;

/// The checks every post-back sink's section shares.
impl Ctx<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn post_back(
        &self,
        section: &str,
        base_url: &str,
        auth: HttpAuth,
        mode: Option<Mode>,
        allow_public_reply: bool,
        limits: RawLimits,
        default_rpm: u32,
    ) -> Result<PostBackSettings, ConfigError> {
        let base_url =
            check_base_url(base_url).map_err(|e| self.err(&format!("{section}.base_url"), e.0))?;
        Ok(PostBackSettings {
            base_url,
            auth,
            mode: mode.unwrap_or(Mode::TagAndNote),
            allow_public_reply,
            limits: self.limits(section, limits, default_rpm)?,
        })
    }

    pub(crate) fn limits(
        &self,
        section: &str,
        raw: RawLimits,
        default_rpm: u32,
    ) -> Result<SinkLimits, ConfigError> {
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_SINK_TIMEOUT_MS);
        if timeout_ms == 0 {
            return Err(self.err(&format!("{section}.timeout_ms"), "must be at least 1"));
        }
        let rpm = raw.requests_per_minute.unwrap_or(default_rpm);
        if rpm == 0 {
            return Err(self.err(
                &format!("{section}.requests_per_minute"),
                "must be at least 1",
            ));
        }
        let failures = raw
            .circuit_breaker_failures
            .unwrap_or(DEFAULT_BREAKER_FAILURES);
        if failures == 0 {
            return Err(self.err(
                &format!("{section}.circuit_breaker_failures"),
                "must be at least 1",
            ));
        }
        Ok(SinkLimits {
            timeout: Duration::from_millis(timeout_ms),
            requests_per_minute: rpm,
            breaker_failures: failures,
            breaker_open_for: Duration::from_millis(
                raw.circuit_breaker_open_ms
                    .unwrap_or(DEFAULT_BREAKER_OPEN_MS),
            ),
        })
    }

    /// Basic auth from a user and a secret, or a bearer token: exactly one of the two.
    /// `user` turns the configured user into the one sent (Zendesk adds `/token`).
    pub(crate) fn basic_or_bearer(
        &self,
        section: &str,
        (user, user_key): (Option<String>, &str),
        (secret_key, secret_env, secret_file): (&str, Option<String>, Option<PathBuf>),
        (oauth_env, oauth_file): (Option<String>, Option<PathBuf>),
        user_as_sent: impl FnOnce(String) -> String,
    ) -> Result<HttpAuth, ConfigError> {
        let secret = self.one_secret(section, secret_key, secret_env, secret_file)?;
        let oauth = self.one_secret(section, "oauth_token", oauth_env, oauth_file)?;
        match (user, secret, oauth) {
            (Some(u), Some(password), None) => Ok(HttpAuth::Basic {
                user: Secret::new(user_as_sent(u)),
                password,
            }),
            (None, None, Some(o)) => Ok(HttpAuth::Bearer(o)),
            _ => Err(self.err(
                section,
                format!(
                    "give {user_key} with {secret_key}_env (or {secret_key}_file), or oauth_token_env (or oauth_token_file), not both"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_need_https_except_on_loopback() {
        assert!(check_base_url("https://acme.zendesk.com").is_ok());
        assert!(check_base_url("https://acme.zendesk.com/").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://127.5.0.1:8080").is_ok());
        assert!(check_base_url("http://[::1]:8080/x").is_ok());
        assert!(check_base_url("http://localhost:1").is_ok());
        for bad in [
            "http://acme.zendesk.com",
            "http://10.0.0.1",
            "http://192.168.1.1",
            "http://localhost.example.com",
            "ftp://acme.example.com",
            "https://user:pw@acme.zendesk.com",
            "https://acme.zendesk.com/?x=1",
            "acme.zendesk.com",
        ] {
            assert!(check_base_url(bad).is_err(), "{bad} accepted");
        }
        let e = check_base_url("http://acme.zendesk.com").unwrap_err();
        assert!(e.0.contains("only for loopback"), "{e}");
    }
}
