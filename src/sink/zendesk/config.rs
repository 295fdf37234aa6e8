//! The `[sink.zendesk]` section: where Zendesk is, how triage signs in, what it writes.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx};
use crate::sink::config::{raw_limits, Mode, PostBackSettings};

/// Requests per minute by default, safely below Zendesk's published limits: its Update Ticket
/// endpoint allows about 100 per minute per account (plans 200+ overall).
pub const DEFAULT_RPM_ZENDESK: u32 = 80;

/// `[sink.zendesk]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZendesk {
    base_url: String,
    mode: Option<Mode>,
    email: Option<String>,
    api_token_env: Option<String>,
    api_token_file: Option<PathBuf>,
    oauth_token_env: Option<String>,
    oauth_token_file: Option<PathBuf>,
    #[serde(default)]
    allow_public_reply: bool,
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

/// The `[sink.zendesk]` section.
#[derive(Debug, Clone)]
pub struct ZendeskSettings {
    /// Base URL, credentials (`{email}/token:{token}` or OAuth), mode, limits.
    pub api: PostBackSettings,
}

impl RawZendesk {
    /// Check the section and read its token (from the variable or the file).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<ZendeskSettings, ConfigError> {
        let s = "sink.zendesk";
        let auth = ctx.basic_or_bearer(
            s,
            (self.email, "email"),
            ("api_token", self.api_token_env, self.api_token_file),
            (self.oauth_token_env, self.oauth_token_file),
            |email| format!("{email}/token"),
        )?;
        Ok(ZendeskSettings {
            api: ctx.post_back(
                s,
                &self.base_url,
                auth,
                self.mode,
                self.allow_public_reply,
                raw_limits!(self),
                DEFAULT_RPM_ZENDESK,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::DEFAULT_RPM_ZENDESK;
    use crate::config::tests::{parse, KAFKA};
    use crate::sink::config::{HttpAuth, Mode};

    #[test]
    fn sink_sections_validate_urls_secrets_and_keys() {
        std::env::set_var("TRIAGE_TEST_ZD_TOKEN", "zd-very-secret");
        let zd = "[sink.zendesk]\nbase_url = \"https://acme.zendesk.com\"\nemail = \"bot@acme.example\"\napi_token_env = \"TRIAGE_TEST_ZD_TOKEN\"\n";
        let s = parse(&format!("{KAFKA}{zd}")).unwrap();
        let z = s.sink.zendesk.as_ref().unwrap();
        assert_eq!(z.api.mode, Mode::TagAndNote);
        assert_eq!(z.api.limits.requests_per_minute, DEFAULT_RPM_ZENDESK);
        assert!(!z.api.allow_public_reply);
        match &z.api.auth {
            HttpAuth::Basic { user, password } => {
                assert_eq!(user.expose(), "bot@acme.example/token");
                assert_eq!(password.expose(), "zd-very-secret");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{s:?}").contains("zd-very-secret"));

        // Plain http only on loopback.
        let e = parse(&zd.replace("https://acme", "http://acme"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:2: sink.zendesk.base_url: ") && e.contains("loopback"),
            "{e}"
        );
        assert!(parse(&zd.replace("https://acme.zendesk.com", "http://127.0.0.1:8080")).is_ok());
        // Unknown keys, modes, units.
        let e = parse(&format!("{zd}timeout = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `timeout`"), "{e}");
        let e = parse(&format!("{zd}mode = \"notes\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink.zendesk.mode"), "{e}");
        assert_eq!(
            parse(&format!("{zd}mode = \"shadow\"\n"))
                .unwrap()
                .sink
                .zendesk
                .unwrap()
                .api
                .mode,
            Mode::Shadow
        );
        let e = parse(&format!("{zd}oauth_token_env = \"TRIAGE_TEST_ZD_TOKEN\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        // A post-back sink is somewhere to write.
        let text = KAFKA.replace("decisions_topic = \"decisions\"\n", "");
        assert!(parse(&format!("{text}{zd}")).is_ok());
    }
}
