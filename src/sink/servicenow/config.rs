//! The `[sink.servicenow]` section: where ServiceNow is, how triage signs in, which table and
//! field it writes.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{ConfigError, Ctx};
use crate::sink::config::{raw_limits, Mode, PostBackSettings};

/// Requests per minute by default; ServiceNow's limits are set per instance.
pub const DEFAULT_RPM_SERVICENOW: u32 = 60;

/// `[sink.servicenow]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceNow {
    base_url: String,
    mode: Option<Mode>,
    table: Option<String>,
    symptom_field: String,
    ticket_id: Option<ServiceNowId>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    oauth_token_env: Option<String>,
    oauth_token_file: Option<PathBuf>,
    #[serde(default)]
    allow_public_reply: bool,
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

/// How ServiceNow tickets are identified in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceNowId {
    /// The ticket id is the record's `sys_id`.
    SysId,
    /// The ticket id is the record's `number` (INC0010001); triage looks the sys_id up.
    Number,
}

/// The `[sink.servicenow]` section.
#[derive(Debug, Clone)]
pub struct ServiceNowSettings {
    /// Base URL, credentials (basic or OAuth), mode, limits.
    pub api: PostBackSettings,
    /// The table the tickets live in (`incident`).
    pub table: String,
    /// The field that receives the symptom ids; it also marks the record as handled.
    pub symptom_field: String,
    /// Whether ticket ids are sys_ids or numbers.
    pub ticket_id: ServiceNowId,
}

impl RawServiceNow {
    /// Check the section and read its password or token (from the variable or the file).
    pub(crate) fn validate(self, ctx: &Ctx<'_>) -> Result<ServiceNowSettings, ConfigError> {
        let s = "sink.servicenow";
        let auth = ctx.basic_or_bearer(
            s,
            (self.username, "username"),
            ("password", self.password_env, self.password_file),
            (self.oauth_token_env, self.oauth_token_file),
            |u| u,
        )?;
        let name = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let table = self.table.unwrap_or_else(|| "incident".into());
        if !name(&table) {
            return Err(ctx.err(
                &format!("{s}.table"),
                format!("`{table}` is not a table name (a-z, 0-9, _), e.g. \"incident\""),
            ));
        }
        if !name(&self.symptom_field) {
            return Err(ctx.err(
                &format!("{s}.symptom_field"),
                format!(
                    "`{}` is not a field name (a-z, 0-9, _), e.g. \"u_triage_symptom\"",
                    self.symptom_field
                ),
            ));
        }
        if ["work_notes", "comments"].contains(&self.symptom_field.as_str()) {
            return Err(ctx.err(
                &format!("{s}.symptom_field"),
                "must be a field of its own, not a journal field",
            ));
        }
        Ok(ServiceNowSettings {
            api: ctx.post_back(
                s,
                &self.base_url,
                auth,
                self.mode,
                self.allow_public_reply,
                raw_limits!(self),
                DEFAULT_RPM_SERVICENOW,
            )?,
            table,
            symptom_field: self.symptom_field,
            ticket_id: self.ticket_id.unwrap_or(ServiceNowId::SysId),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn symptom_field_is_a_field_of_its_own() {
        std::env::set_var("TRIAGE_TEST_ZD_TOKEN", "zd-very-secret");
        let e = parse("[sink.servicenow]\nbase_url = \"https://x.service-now.com\"\nsymptom_field = \"work_notes\"\nusername = \"u\"\npassword_env = \"TRIAGE_TEST_ZD_TOKEN\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink.servicenow.symptom_field"), "{e}");
    }
}
