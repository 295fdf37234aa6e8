//! The `[sink.jira]` section: where Jira Service Management is, how triage signs in, what it
//! writes.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx};
use crate::sink::config::{raw_limits, Mode, PostBackSettings};

/// Requests per minute by default, safely below Jira's published limits: Jira Cloud limits
/// writes per issue (20 per 2 s, 100 per 30 s) and by cost.
pub const DEFAULT_RPM_JIRA: u32 = 100;

/// `[sink.jira]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJira {
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

/// The `[sink.jira]` section.
#[derive(Debug, Clone)]
pub struct JiraSettings {
    /// Base URL, credentials (`email:api_token` or OAuth), mode, limits.
    pub api: PostBackSettings,
}

impl RawJira {
    /// Check the section and read its token (from the variable or the file).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<JiraSettings, ConfigError> {
        let s = "sink.jira";
        let auth = ctx.basic_or_bearer(
            s,
            (self.email, "email"),
            ("api_token", self.api_token_env, self.api_token_file),
            (self.oauth_token_env, self.oauth_token_file),
            |u| u,
        )?;
        Ok(JiraSettings {
            api: ctx.post_back(
                s,
                &self.base_url,
                auth,
                self.mode,
                self.allow_public_reply,
                raw_limits!(self),
                DEFAULT_RPM_JIRA,
            )?,
        })
    }
}
