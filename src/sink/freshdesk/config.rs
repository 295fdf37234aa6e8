//! The `[sink.freshdesk]` section: where Freshdesk is, its API key, what triage writes.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx, Secret};
use crate::sink::config::{raw_limits, HttpAuth, Mode, PostBackSettings};

/// Requests per minute by default, safely below Freshdesk's published limits: its smallest
/// plans allow 3,000 per hour, or 200 per minute with 80 ticket updates.
pub const DEFAULT_RPM_FRESHDESK: u32 = 40;

/// `[sink.freshdesk]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFreshdesk {
    base_url: String,
    mode: Option<Mode>,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    #[serde(default)]
    allow_public_reply: bool,
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

/// The `[sink.freshdesk]` section.
#[derive(Debug, Clone)]
pub struct FreshdeskSettings {
    /// Base URL, credentials (`{api_key}:X`), mode, limits.
    pub api: PostBackSettings,
}

impl RawFreshdesk {
    /// Check the section and read its API key (from the variable or the file).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<FreshdeskSettings, ConfigError> {
        let s = "sink.freshdesk";
        let Some(key) = ctx.one_secret(s, "api_key", self.api_key_env, self.api_key_file)? else {
            return Err(ctx.err(s, "give api_key_env (or api_key_file)"));
        };
        let auth = HttpAuth::Basic {
            user: key,
            password: Secret::new("X"),
        };
        Ok(FreshdeskSettings {
            api: ctx.post_back(
                s,
                &self.base_url,
                auth,
                self.mode,
                self.allow_public_reply,
                raw_limits!(self),
                DEFAULT_RPM_FRESHDESK,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn the_api_key_is_required() {
        let e = parse("[sink.freshdesk]\nbase_url = \"https://x.freshdesk.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_key_env"), "{e}");
    }
}
