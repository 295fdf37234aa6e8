//! The `[sink.webhook]` section: where decisions are POSTed, with which secrets and limits.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx, Secret};
use crate::sink::config::{check_base_url, raw_limits, Mode, SinkLimits};

/// Requests per minute by default.
pub const DEFAULT_RPM_WEBHOOK: u32 = 6000;

/// `[sink.webhook]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    url: String,
    mode: Option<Mode>,
    bearer_token_env: Option<String>,
    bearer_token_file: Option<PathBuf>,
    signing_secret_env: Option<String>,
    signing_secret_file: Option<PathBuf>,
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

/// The `[sink.webhook]` section.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Where to POST (https, or http on loopback only).
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<Secret>,
    /// Key of the `X-Triage-Signature-256: sha256=<hex HMAC-SHA256 of the body>` header.
    pub signing_secret: Option<Secret>,
    /// `shadow` posts nothing; any other mode posts the whole decision.
    pub mode: Mode,
    /// Rate limit, timeout, circuit breaker.
    pub limits: SinkLimits,
}

impl RawWebhook {
    /// Check the section and read its secrets (from their variables or files).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<WebhookSettings, ConfigError> {
        let s = "sink.webhook";
        check_base_url(&self.url).map_err(|e| ctx.err(&format!("{s}.url"), e.0))?;
        let limits = ctx.limits(s, raw_limits!(self), DEFAULT_RPM_WEBHOOK)?;
        Ok(WebhookSettings {
            url: self.url,
            bearer_token: ctx.one_secret(
                s,
                "bearer_token",
                self.bearer_token_env,
                self.bearer_token_file,
            )?,
            signing_secret: ctx.one_secret(
                s,
                "signing_secret",
                self.signing_secret_env,
                self.signing_secret_file,
            )?,
            mode: self.mode.unwrap_or(Mode::TagAndNote),
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, KAFKA};

    #[test]
    fn secrets_come_from_env_or_file_and_never_show() {
        std::env::set_var("TRIAGE_TEST_SECRET_1", "s3cr3t-value");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "file-token\n").unwrap();
        let text = format!(
            "{KAFKA}[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.username\" = \"u\"\n[kafka.secret_properties]\n\"sasl.password\" = {{ env = \"TRIAGE_TEST_SECRET_1\" }}\n[sink.webhook]\nurl = \"http://127.0.0.1:1/hook\"\nbearer_token_file = \"{}\"\n",
            f.display()
        );
        let s = parse(&text).unwrap();
        let k = s.kafka.as_ref().unwrap();
        assert_eq!(
            k.secret_properties["sasl.password"].expose(),
            "s3cr3t-value"
        );
        assert_eq!(
            s.sink
                .webhook
                .as_ref()
                .unwrap()
                .bearer_token
                .as_ref()
                .unwrap()
                .expose(),
            "file-token"
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("s3cr3t-value") && !debug.contains("file-token"),
            "{debug}"
        );

        let e = parse(&format!(
            "{KAFKA}[kafka.secret_properties]\n\"sasl.password\" = {{ env = \"TRIAGE_TEST_UNSET_VARIABLE\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("TRIAGE_TEST_UNSET_VARIABLE is not set"), "{e}");
    }
}
