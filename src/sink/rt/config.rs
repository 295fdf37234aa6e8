//! Request Tracker's sections: `[sink.rt]` (the file's keys [`RawRt`], what they become
//! [`RtSettings`]) and `[ingest.rt]` ([`RawRtSource`], [`RtSourceSettings`]), and their checks.
//! Errors name the file, the line and the key, like every other section's.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx, SecretRef};
use crate::sink::config::{HttpAuth, Mode, PostBackSettings, RawLimits};

/// Requests per minute by default. RT is usually run by the same organisation as triage and
/// has no published limit; 300 a minute (5 a second) keeps a small RT responsive for agents.
pub const DEFAULT_RPM_RT: u32 = 300;

/// How long a claim on a ticket's note lasts by default (see the sink's idempotency notes).
pub const DEFAULT_CLAIM_LEASE_MS: u64 = 30_000;

/// `[sink.rt]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRt {
    base_url: String,
    mode: Option<Mode>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    tags_field: Option<String>,
    note_field: Option<String>,
    claim_lease_ms: Option<u64>,
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

/// The `[sink.rt]` section, validated.
#[derive(Debug, Clone)]
pub struct RtSettings {
    /// RT's web base URL (its `WebBaseURL`; REST 2.0 is under `REST/2.0/`), the token, mode,
    /// limits. Public replies are never allowed: the note is always a Comment.
    pub api: PostBackSettings,
    /// The multi-value custom field triage adds its tags to (`Tags`).
    pub tags_field: String,
    /// The single-value custom field that holds triage's claim on writing the note, then the
    /// fact that it is written (`TriageNote`).
    pub note_field: String,
    /// How long a claim stops other workers from writing the note.
    pub claim_lease: Duration,
}

/// Whether `name` can be an RT custom field name as triage uses it (in JSON keys only).
fn field_name_ok(name: &str) -> bool {
    !name.trim().is_empty()
        && name.len() <= 200
        && name == name.trim()
        && !name.chars().any(char::is_control)
}

impl RawRt {
    /// Check the section and read its token (from the variable or the file).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<RtSettings, ConfigError> {
        let s = "sink.rt";
        let Some(token) = ctx.one_secret(s, "token", self.token_env, self.token_file)? else {
            return Err(ctx.err(
                s,
                "give token_env (or token_file): an RT auth token of triage's user",
            ));
        };
        let tags_field = self.tags_field.unwrap_or_else(|| "Tags".into());
        let note_field = self.note_field.unwrap_or_else(|| "TriageNote".into());
        for (key, v) in [("tags_field", &tags_field), ("note_field", &note_field)] {
            if !field_name_ok(v) {
                return Err(ctx.err(
                    &format!("{s}.{key}"),
                    "must be a custom field's name (not empty, no surrounding spaces or control characters, at most 200 bytes)",
                ));
            }
        }
        if tags_field.eq_ignore_ascii_case(&note_field) {
            return Err(ctx.err(
                &format!("{s}.note_field"),
                "must be a field of its own, not the tags field",
            ));
        }
        let lease_ms = self.claim_lease_ms.unwrap_or(DEFAULT_CLAIM_LEASE_MS);
        if lease_ms < 1_000 {
            return Err(ctx.err(
                &format!("{s}.claim_lease_ms"),
                "must be at least 1000 (longer than one request to RT takes)",
            ));
        }
        let limits = RawLimits {
            timeout_ms: self.timeout_ms,
            requests_per_minute: self.requests_per_minute,
            circuit_breaker_failures: self.circuit_breaker_failures,
            circuit_breaker_open_ms: self.circuit_breaker_open_ms,
        };
        let api = ctx.post_back(
            s,
            &self.base_url,
            HttpAuth::Token(token),
            self.mode,
            false,
            limits,
            DEFAULT_RPM_RT,
        )?;
        if Duration::from_millis(lease_ms) <= api.limits.timeout {
            return Err(ctx.err(
                &format!("{s}.claim_lease_ms"),
                format!(
                    "must be longer than timeout_ms ({} ms): a claim must outlast the request that writes the note",
                    api.limits.timeout.as_millis()
                ),
            ));
        }
        Ok(RtSettings {
            api,
            tags_field,
            note_field,
            claim_lease: Duration::from_millis(lease_ms),
        })
    }
}

/// How often the feed is read by default when nothing nudges.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 5_000;
/// Transactions read per request by default.
pub const DEFAULT_BATCH: usize = 100;

/// `[ingest.rt]` as written: `triage ingest` follows RT's transactions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRtSource {
    base_url: String,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    cursor_file: PathBuf,
    tags_field: Option<String>,
    user: Option<String>,
    poll_interval_ms: Option<u64>,
    batch: Option<usize>,
    timeout_ms: Option<u64>,
}

/// The `[ingest.rt]` section, validated: where RT is, and where the cursor is kept.
#[derive(Debug, Clone)]
pub struct RtSourceSettings {
    /// RT's web base URL (`WebBaseURL`).
    pub base_url: reqwest::Url,
    /// The auth token of triage's RT user, read when `triage ingest` starts.
    pub token: SecretRef,
    /// The file that holds the id of the last transaction produced and acknowledged.
    pub cursor_file: PathBuf,
    /// The tags field, read into the record's tags (the worker skips marked tickets).
    pub tags_field: String,
    /// triage's own RT user: what it created is never new work.
    pub user: String,
    /// How often the feed is read when no nudge comes.
    pub poll_interval: Duration,
    /// Transactions per request.
    pub batch: usize,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl RawRtSource {
    /// Check the section; the token stays unread until `triage ingest` starts.
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<RtSourceSettings, ConfigError> {
        let s = "ingest.rt";
        let base_url = crate::sink::config::check_base_url(&self.base_url)
            .map_err(|e| ctx.err(&format!("{s}.base_url"), e.0))?;
        let Some(token) = ctx.secret_pair(s, "token", self.token_env, self.token_file)? else {
            return Err(ctx.err(
                s,
                "give token_env (or token_file): an RT auth token of triage's user",
            ));
        };
        if self.cursor_file.as_os_str().is_empty() {
            return Err(ctx.err(&format!("{s}.cursor_file"), "must name a file"));
        }
        let tags_field = self.tags_field.unwrap_or_else(|| "Tags".into());
        if !field_name_ok(&tags_field) {
            return Err(ctx.err(
                &format!("{s}.tags_field"),
                "must be a custom field's name (not empty, no surrounding spaces or control characters, at most 200 bytes)",
            ));
        }
        let user = self.user.unwrap_or_else(|| "triage".into());
        if !field_name_ok(&user) {
            return Err(ctx.err(&format!("{s}.user"), "must be an RT user name"));
        }
        let poll_ms = self.poll_interval_ms.unwrap_or(DEFAULT_POLL_INTERVAL_MS);
        if !(100..=3_600_000).contains(&poll_ms) {
            return Err(ctx.err(
                &format!("{s}.poll_interval_ms"),
                "must be between 100 and 3600000",
            ));
        }
        let batch = self.batch.unwrap_or(DEFAULT_BATCH);
        if !(1..=1000).contains(&batch) {
            return Err(ctx.err(&format!("{s}.batch"), "must be between 1 and 1000"));
        }
        let timeout_ms = self.timeout_ms.unwrap_or(10_000);
        if timeout_ms == 0 {
            return Err(ctx.err(&format!("{s}.timeout_ms"), "must be at least 1"));
        }
        Ok(RtSourceSettings {
            base_url,
            token,
            cursor_file: self.cursor_file,
            tags_field,
            user,
            poll_interval: Duration::from_millis(poll_ms),
            batch,
            timeout: Duration::from_millis(timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Settings;
    use crate::sink::config::{HttpAuth, Mode};

    fn parse(text: &str) -> Result<crate::config::Settings, String> {
        Settings::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_token_from_the_environment() {
        std::env::set_var("TRIAGE_TEST_RT_TOKEN_A", "1-2-abc");
        let s = parse(
            "[sink.rt]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"TRIAGE_TEST_RT_TOKEN_A\"\n",
        )
        .unwrap();
        let rt = s.sink.rt.clone().expect("configured");
        assert_eq!(rt.tags_field, "Tags");
        assert_eq!(rt.note_field, "TriageNote");
        assert_eq!(rt.api.mode, Mode::TagAndNote);
        assert!(!rt.api.allow_public_reply);
        assert_eq!(rt.api.limits.requests_per_minute, super::DEFAULT_RPM_RT);
        match &rt.api.auth {
            HttpAuth::Token(t) => assert_eq!(t.expose(), "1-2-abc"),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{rt:?}").contains("abc"));
        assert!(s.sink.any());
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = parse("[sink.rt]\nbase_url = \"http://127.0.0.1:9\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml:1: sink.rt: give token_env (or token_file): an RT auth token of triage's user"
        );
        std::env::set_var("TRIAGE_TEST_RT_TOKEN_B", "x");
        let base = "[sink.rt]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"TRIAGE_TEST_RT_TOKEN_B\"\n";
        let e = parse(&format!("{base}note_field = \"tags\"\n")).unwrap_err();
        assert!(
            e.starts_with("t.toml:4: sink.rt.note_field: must be a field of its own"),
            "{e}"
        );
        let e = parse(&format!("{base}tags_field = \" Tags\"\n")).unwrap_err();
        assert!(e.starts_with("t.toml:4: sink.rt.tags_field: "), "{e}");
        let e = parse(&format!("{base}claim_lease_ms = 5000\n")).unwrap_err();
        assert!(
            e.starts_with("t.toml:4: sink.rt.claim_lease_ms: must be longer than timeout_ms"),
            "{e}"
        );
        let e = parse(&format!("{base}allow_public_reply = true\n")).unwrap_err();
        assert!(
            e.starts_with("t.toml:4: sink.rt.allow_public_reply: "),
            "{e}"
        );
        let e = parse("[sink.rt]\nbase_url = \"http://rt.example.org\"\ntoken_env = \"TRIAGE_TEST_RT_TOKEN_B\"\n").unwrap_err();
        assert!(e.starts_with("t.toml:2: sink.rt.base_url: "), "{e}");
        let e = parse(&format!("{base}token_file = \"/nonexistent/rt\"\n")).unwrap_err();
        assert!(
            e.contains("sink.rt.token_env: set token_env or token_file, not both"),
            "{e}"
        );
    }

    const KAFKA: &str = "[kafka]\nbootstrap_servers = \"127.0.0.1:9\"\ngroup_id = \"g\"\ninput_topic = \"in\"\ndead_letter_topic = \"dl\"\ndecisions_topic = \"d\"\n";

    #[test]
    fn the_source_alone_is_enough_for_ingest_and_its_token_stays_unread() {
        let s = parse(&format!(
            "{KAFKA}[ingest]\n[ingest.rt]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"TRIAGE_TEST_RT_UNSET\"\ncursor_file = \"/tmp/c\"\n"
        ))
        .unwrap();
        let rt = s.ingest.as_ref().unwrap().rt.clone().unwrap();
        assert_eq!(rt.tags_field, "Tags");
        assert_eq!(rt.user, "triage");
        assert_eq!(rt.batch, super::DEFAULT_BATCH);
        let e = rt.token.read().unwrap_err().to_string();
        assert!(e.contains("ingest.rt.token_env"), "{e}");
        let e = parse(&format!(
            "{KAFKA}[ingest]\n[ingest.rt]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"X\"\ncursor_file = \"/tmp/c\"\nbatch = 0\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("t.toml:12: ingest.rt.batch: "), "{e}");
        let e = parse(&format!(
            "{KAFKA}[ingest]\n[ingest.rt]\nbase_url = \"http://127.0.0.1:9\"\ntoken_env = \"X\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("cursor_file"), "{e}");
    }
}
