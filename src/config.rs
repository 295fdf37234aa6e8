//! `triage.toml` -> [`Settings`]: what the worker reads, where it writes, and its limits.
//!
//! Every key is documented in `deploy/triage.example.toml`. Unknown keys are errors, and every
//! error names the file, the line and the key (`triage.toml:12: kafka.group_id: …`). Secrets
//! (SASL passwords, key passphrases, tokens) are never written in the file itself: the file
//! names an environment variable or a file to read them from, and [`Secret`] keeps them out of
//! `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::ticket::{Preset, TicketShape};

/// Everything `triage run` needs to know, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file the settings came from (`None`: built-in defaults, no file).
    pub path: Option<PathBuf>,
    /// Kafka input and output; `None` means the embedded default (JSON Lines in, stdout out).
    pub kafka: Option<KafkaSettings>,
    /// How to find a ticket's fields in an input record.
    pub input: TicketShape,
    /// Limits and loop prevention.
    pub worker: WorkerSettings,
    /// Where decisions go besides the decisions topic.
    pub sink: SinkSettings,
}

/// The `[kafka]` section.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: where to find the cluster.
    pub bootstrap_servers: String,
    /// `group.id`: workers with the same group share the input topic's partitions.
    pub group_id: String,
    /// The topic tickets arrive on.
    pub input_topic: String,
    /// Where decisions are written (keyed by ticket id); `None`: not written to Kafka.
    pub decisions_topic: Option<String>,
    /// Where records that cannot be handled go, with headers saying why.
    pub dead_letter_topic: String,
    /// librdkafka properties for both the consumer and the producer.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only.
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_properties: BTreeMap<String, String>,
    /// Secret librdkafka properties (for both clients), read from the environment or files.
    pub secret_properties: BTreeMap<String, Secret>,
}

/// The `[worker]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSettings {
    /// Tickets received and not yet committed, at most. The consumer pauses at this many, so
    /// it also bounds memory and how many tickets a crash can make the worker handle twice.
    pub max_in_flight: usize,
    /// Records longer than this go to the dead-letter topic undecoded.
    pub max_ticket_bytes: usize,
    /// On SIGTERM/SIGINT, how long to let in-flight tickets finish before leaving anyway.
    pub drain_timeout: Duration,
    /// How often handled offsets are committed to Kafka.
    pub commit_interval: Duration,
    /// The tag triage writes on tickets it has handled; tickets carrying it are skipped.
    pub marker_tag: String,
    /// triage's own user in the ticketing system; events it authored are skipped.
    pub api_user: Option<String>,
    /// First delay before retrying a failed sink; it doubles up to `retry_max`.
    pub retry_initial: Duration,
    /// Longest delay between two retries of a sink.
    pub retry_max: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            max_in_flight: 50_000,
            max_ticket_bytes: 1 << 20,
            drain_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_millis(250),
            marker_tag: "triage-processed".into(),
            api_user: None,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The `[sink]` section: every sink configured here runs, each decision goes to all of them.
#[derive(Debug, Clone, Default)]
pub struct SinkSettings {
    /// Print each decision on standard output as one JSON line.
    pub stdout: bool,
    /// POST each decision to an HTTP endpoint.
    pub webhook: Option<WebhookSettings>,
    /// Tags and an internal note in Zendesk.
    pub zendesk: Option<ZendeskSettings>,
    /// Labels and an internal comment in Jira Service Management.
    pub jira: Option<JiraSettings>,
    /// A work note and a symptom field in ServiceNow.
    pub servicenow: Option<ServiceNowSettings>,
    /// Tags and a private note in Freshdesk.
    pub freshdesk: Option<FreshdeskSettings>,
}

impl SinkSettings {
    /// Whether any sink besides the decisions topic is configured.
    pub fn any(&self) -> bool {
        self.stdout
            || self.webhook.is_some()
            || self.zendesk.is_some()
            || self.jira.is_some()
            || self.servicenow.is_some()
            || self.freshdesk.is_some()
    }
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

/// The `[sink.zendesk]` section.
#[derive(Debug, Clone)]
pub struct ZendeskSettings {
    /// Base URL, credentials (`{email}/token:{token}` or OAuth), mode, limits.
    pub api: PostBackSettings,
}

/// The `[sink.jira]` section.
#[derive(Debug, Clone)]
pub struct JiraSettings {
    /// Base URL, credentials (`email:api_token` or OAuth), mode, limits.
    pub api: PostBackSettings,
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

/// The `[sink.freshdesk]` section.
#[derive(Debug, Clone)]
pub struct FreshdeskSettings {
    /// Base URL, credentials (`{api_key}:X`), mode, limits.
    pub api: PostBackSettings,
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

/// A secret value: shown as `***` by `Debug` and `Display`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value itself: for handing to a client library, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A configuration that cannot be used. Never retryable: the file must be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is read but wrong.
    #[error("{path}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The key, dotted (`kafka.group_id`), when known.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ConfigError {
    /// Never: configuration errors need a person.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

// ----- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    kafka: Option<RawKafka>,
    #[serde(default)]
    input: RawInput,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    sink: RawSink,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    bootstrap_servers: String,
    group_id: String,
    input_topic: String,
    decisions_topic: Option<String>,
    dead_letter_topic: String,
    #[serde(default)]
    properties: BTreeMap<String, PropValue>,
    #[serde(default)]
    consumer_properties: BTreeMap<String, PropValue>,
    #[serde(default)]
    producer_properties: BTreeMap<String, PropValue>,
    #[serde(default)]
    secret_properties: BTreeMap<String, RawSecret>,
}

/// A librdkafka property value: TOML strings, integers, floats and booleans are all accepted.
#[derive(Deserialize)]
#[serde(untagged)]
enum PropValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl PropValue {
    fn into_string(self) -> String {
        match self {
            PropValue::Str(s) => s,
            PropValue::Int(i) => i.to_string(),
            PropValue::Float(f) => f.to_string(),
            PropValue::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: Option<String>,
    file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInput {
    #[serde(default)]
    preset: Preset,
    id: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    tags: Option<String>,
    author: Option<String>,
    updated: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawWorker {
    max_in_flight: usize,
    max_ticket_bytes: usize,
    drain_timeout_ms: u64,
    commit_interval_ms: u64,
    marker_tag: String,
    api_user: Option<String>,
    retry_initial_ms: u64,
    retry_max_ms: u64,
}

impl Default for RawWorker {
    fn default() -> Self {
        let d = WorkerSettings::default();
        RawWorker {
            max_in_flight: d.max_in_flight,
            max_ticket_bytes: d.max_ticket_bytes,
            drain_timeout_ms: d.drain_timeout.as_millis() as u64,
            commit_interval_ms: d.commit_interval.as_millis() as u64,
            marker_tag: d.marker_tag,
            api_user: None,
            retry_initial_ms: d.retry_initial.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSink {
    stdout: Option<bool>,
    webhook: Option<RawWebhook>,
    zendesk: Option<RawZendesk>,
    jira: Option<RawJira>,
    servicenow: Option<RawServiceNow>,
    freshdesk: Option<RawFreshdesk>,
}

/// Keys every HTTP sink has (repeated in each section: `deny_unknown_fields` does not work
/// through `flatten`).
struct RawLimits {
    timeout_ms: Option<u64>,
    requests_per_minute: Option<u32>,
    circuit_breaker_failures: Option<u32>,
    circuit_breaker_open_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZendesk {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJira {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceNow {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreshdesk {
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

/// Default requests per minute, safely below each vendor's published limits: Zendesk's Update
/// Ticket endpoint allows about 100 per minute per account (plans 200+ overall); Freshdesk's
/// smallest plans allow 3,000 per hour, or 200 per minute with 80 ticket updates; Jira Cloud
/// limits writes per issue (20 per 2 s, 100 per 30 s) and by cost; ServiceNow's limits are set
/// per instance.
pub const DEFAULT_RPM_ZENDESK: u32 = 80;
/// See [`DEFAULT_RPM_ZENDESK`].
pub const DEFAULT_RPM_JIRA: u32 = 100;
/// See [`DEFAULT_RPM_ZENDESK`].
pub const DEFAULT_RPM_SERVICENOW: u32 = 60;
/// See [`DEFAULT_RPM_ZENDESK`].
pub const DEFAULT_RPM_FRESHDESK: u32 = 40;
/// See [`DEFAULT_RPM_ZENDESK`].
pub const DEFAULT_RPM_WEBHOOK: u32 = 6000;
const DEFAULT_SINK_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_BREAKER_FAILURES: u32 = 5;
const DEFAULT_BREAKER_OPEN_MS: u64 = 10_000;

/// Properties that have their own key or that the worker's guarantees depend on.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.bootstrap_servers instead"),
    ("group.id", "set kafka.group_id instead"),
    (
        "enable.auto.offset.store",
        "triage stores offsets itself, only after a ticket is handled",
    ),
    (
        "enable.auto.commit",
        "triage commits stored offsets every worker.commit_interval_ms",
    ),
    (
        "auto.commit.interval.ms",
        "set worker.commit_interval_ms instead",
    ),
    (
        "partition.assignment.strategy",
        "triage relies on cooperative-sticky assignment",
    ),
    ("enable.idempotence", "the producer is always idempotent"),
    (
        "acks",
        "the producer always waits for all in-sync replicas (acks=all)",
    ),
];

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k == "ssl.key.pem"
        || k == "sasl.oauthbearer.config"
}

// ----- loading --------------------------------------------------------------------------------

impl Settings {
    /// The built-in defaults: no Kafka, plain JSON Lines tickets, decisions on stdout.
    pub fn embedded() -> Settings {
        let worker = WorkerSettings::default();
        Settings {
            path: None,
            kafka: None,
            input: TicketShape::preset(Preset::Plain, worker.max_ticket_bytes),
            worker,
            sink: SinkSettings {
                stdout: true,
                ..SinkSettings::default()
            },
        }
    }

    /// Read and validate a file. Secrets are read from their variables and files now.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Settings::parse(&text, path)
    }

    /// Validate the text of a file; `path` is used in messages and to resolve nothing else.
    pub fn parse(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let ctx = Ctx {
            text,
            path: path.display().to_string(),
        };
        let de = toml::Deserializer::new(text);
        let raw: RawSettings = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| ctx.line_at(s.start));
            ConfigError::Invalid {
                path: ctx.path.clone(),
                line,
                field: if field == "." { String::new() } else { field },
                message: inner.message().trim_end().to_string(),
            }
        })?;
        let mut s = ctx.validate(raw)?;
        s.path = Some(path.to_path_buf());
        Ok(s)
    }
}

/// The text being validated, for finding where a key is.
struct Ctx<'a> {
    text: &'a str,
    path: String,
}

impl Ctx<'_> {
    fn line_at(&self, byte: usize) -> usize {
        self.text[..byte.min(self.text.len())].matches('\n').count() + 1
    }

    /// The line of a key (dotted path), or of its nearest enclosing table.
    fn line_of(&self, field: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text).ok()?;
        let mut table: &dyn toml_edit::TableLike = doc.as_table();
        let mut line = None;
        let parts: Vec<&str> = field.split('.').collect();
        // Keys may themselves contain dots (librdkafka property names): try the longest
        // remaining key first.
        let mut i = 0;
        while i < parts.len() {
            let mut found = None;
            for j in (i + 1..=parts.len()).rev() {
                let key = parts[i..j].join(".");
                if let Some((k, item)) = table.get_key_value(&key) {
                    found = Some((j, k.span(), item));
                    break;
                }
            }
            let (j, span, item) = found?;
            if let Some(span) = span {
                line = Some(self.line_at(span.start));
            }
            i = j;
            match item.as_table_like() {
                Some(t) if i < parts.len() => table = t,
                _ => break,
            }
        }
        line
    }

    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line: self.line_of(field),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn validate(&self, raw: RawSettings) -> Result<Settings, ConfigError> {
        let w = raw.worker;
        if w.max_in_flight == 0 {
            return Err(self.err("worker.max_in_flight", "must be at least 1"));
        }
        if w.max_ticket_bytes < 16 {
            return Err(self.err("worker.max_ticket_bytes", "must be at least 16"));
        }
        if w.commit_interval_ms < 10 {
            return Err(self.err("worker.commit_interval_ms", "must be at least 10"));
        }
        if w.marker_tag.trim().is_empty() || w.marker_tag.contains(char::is_whitespace) {
            return Err(self.err(
                "worker.marker_tag",
                "must be one word (a tag or label), e.g. \"triage-processed\"",
            ));
        }
        if w.retry_initial_ms == 0 || w.retry_max_ms < w.retry_initial_ms {
            return Err(self.err(
                "worker.retry_max_ms",
                "retry_initial_ms must be at least 1 and retry_max_ms at least retry_initial_ms",
            ));
        }
        if matches!(&w.api_user, Some(u) if u.trim().is_empty()) {
            return Err(self.err(
                "worker.api_user",
                "must not be empty (leave it out instead)",
            ));
        }
        let worker = WorkerSettings {
            max_in_flight: w.max_in_flight,
            max_ticket_bytes: w.max_ticket_bytes,
            drain_timeout: Duration::from_millis(w.drain_timeout_ms),
            commit_interval: Duration::from_millis(w.commit_interval_ms),
            marker_tag: w.marker_tag,
            api_user: w.api_user,
            retry_initial: Duration::from_millis(w.retry_initial_ms),
            retry_max: Duration::from_millis(w.retry_max_ms),
        };

        let input = self.input(raw.input, worker.max_ticket_bytes)?;
        let kafka = raw.kafka.map(|k| self.kafka(k)).transpose()?;

        let sink = self.sinks(raw.sink, kafka.is_none())?;
        if let Some(k) = &kafka {
            if k.decisions_topic.is_none() && !sink.any() {
                return Err(self.err(
                    "kafka",
                    "decisions go nowhere: set kafka.decisions_topic, a [sink.*] section, or sink.stdout = true",
                ));
            }
        }
        Ok(Settings {
            path: None,
            kafka,
            input,
            worker,
            sink,
        })
    }

    /// The `[sink]` section; `stdout` defaults to `default_stdout` (on without Kafka).
    fn sinks(&self, raw: RawSink, default_stdout: bool) -> Result<SinkSettings, ConfigError> {
        let webhook = match raw.webhook {
            None => None,
            Some(wh) => {
                let s = "sink.webhook";
                crate::sink::http::check_base_url(&wh.url)
                    .map_err(|e| self.err(&format!("{s}.url"), e.0))?;
                let limits = self.limits(
                    s,
                    RawLimits {
                        timeout_ms: wh.timeout_ms,
                        requests_per_minute: wh.requests_per_minute,
                        circuit_breaker_failures: wh.circuit_breaker_failures,
                        circuit_breaker_open_ms: wh.circuit_breaker_open_ms,
                    },
                    DEFAULT_RPM_WEBHOOK,
                )?;
                Some(WebhookSettings {
                    url: wh.url,
                    bearer_token: self.one_secret(
                        s,
                        "bearer_token",
                        wh.bearer_token_env,
                        wh.bearer_token_file,
                    )?,
                    signing_secret: self.one_secret(
                        s,
                        "signing_secret",
                        wh.signing_secret_env,
                        wh.signing_secret_file,
                    )?,
                    mode: wh.mode.unwrap_or(Mode::TagAndNote),
                    limits,
                })
            }
        };
        let zendesk = match raw.zendesk {
            None => None,
            Some(z) => {
                let s = "sink.zendesk";
                let token = self.one_secret(s, "api_token", z.api_token_env, z.api_token_file)?;
                let oauth =
                    self.one_secret(s, "oauth_token", z.oauth_token_env, z.oauth_token_file)?;
                let auth = match (z.email, token, oauth) {
                    (Some(email), Some(t), None) => HttpAuth::Basic {
                        user: Secret(format!("{email}/token")),
                        password: t,
                    },
                    (None, None, Some(o)) => HttpAuth::Bearer(o),
                    _ => {
                        return Err(self.err(
                            s,
                            "give email with api_token_env (or api_token_file), or oauth_token_env (or oauth_token_file), not both",
                        ))
                    }
                };
                Some(ZendeskSettings {
                    api: self.post_back(
                        s,
                        &z.base_url,
                        auth,
                        z.mode,
                        z.allow_public_reply,
                        RawLimits {
                            timeout_ms: z.timeout_ms,
                            requests_per_minute: z.requests_per_minute,
                            circuit_breaker_failures: z.circuit_breaker_failures,
                            circuit_breaker_open_ms: z.circuit_breaker_open_ms,
                        },
                        DEFAULT_RPM_ZENDESK,
                    )?,
                })
            }
        };
        let jira = match raw.jira {
            None => None,
            Some(j) => {
                let s = "sink.jira";
                let token = self.one_secret(s, "api_token", j.api_token_env, j.api_token_file)?;
                let oauth =
                    self.one_secret(s, "oauth_token", j.oauth_token_env, j.oauth_token_file)?;
                let auth = match (j.email, token, oauth) {
                    (Some(email), Some(t), None) => HttpAuth::Basic {
                        user: Secret(email),
                        password: t,
                    },
                    (None, None, Some(o)) => HttpAuth::Bearer(o),
                    _ => {
                        return Err(self.err(
                            s,
                            "give email with api_token_env (or api_token_file), or oauth_token_env (or oauth_token_file), not both",
                        ))
                    }
                };
                Some(JiraSettings {
                    api: self.post_back(
                        s,
                        &j.base_url,
                        auth,
                        j.mode,
                        j.allow_public_reply,
                        RawLimits {
                            timeout_ms: j.timeout_ms,
                            requests_per_minute: j.requests_per_minute,
                            circuit_breaker_failures: j.circuit_breaker_failures,
                            circuit_breaker_open_ms: j.circuit_breaker_open_ms,
                        },
                        DEFAULT_RPM_JIRA,
                    )?,
                })
            }
        };
        let servicenow = match raw.servicenow {
            None => None,
            Some(n) => {
                let s = "sink.servicenow";
                let password = self.one_secret(s, "password", n.password_env, n.password_file)?;
                let oauth =
                    self.one_secret(s, "oauth_token", n.oauth_token_env, n.oauth_token_file)?;
                let auth = match (n.username, password, oauth) {
                    (Some(u), Some(p), None) => HttpAuth::Basic {
                        user: Secret(u),
                        password: p,
                    },
                    (None, None, Some(o)) => HttpAuth::Bearer(o),
                    _ => {
                        return Err(self.err(
                            s,
                            "give username with password_env (or password_file), or oauth_token_env (or oauth_token_file), not both",
                        ))
                    }
                };
                let name = |v: &str| {
                    !v.is_empty()
                        && v.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                };
                let table = n.table.unwrap_or_else(|| "incident".into());
                if !name(&table) {
                    return Err(self.err(
                        &format!("{s}.table"),
                        format!("`{table}` is not a table name (a-z, 0-9, _), e.g. \"incident\""),
                    ));
                }
                if !name(&n.symptom_field) {
                    return Err(self.err(
                        &format!("{s}.symptom_field"),
                        format!(
                            "`{}` is not a field name (a-z, 0-9, _), e.g. \"u_triage_symptom\"",
                            n.symptom_field
                        ),
                    ));
                }
                if ["work_notes", "comments"].contains(&n.symptom_field.as_str()) {
                    return Err(self.err(
                        &format!("{s}.symptom_field"),
                        "must be a field of its own, not a journal field",
                    ));
                }
                Some(ServiceNowSettings {
                    api: self.post_back(
                        s,
                        &n.base_url,
                        auth,
                        n.mode,
                        n.allow_public_reply,
                        RawLimits {
                            timeout_ms: n.timeout_ms,
                            requests_per_minute: n.requests_per_minute,
                            circuit_breaker_failures: n.circuit_breaker_failures,
                            circuit_breaker_open_ms: n.circuit_breaker_open_ms,
                        },
                        DEFAULT_RPM_SERVICENOW,
                    )?,
                    table,
                    symptom_field: n.symptom_field,
                    ticket_id: n.ticket_id.unwrap_or(ServiceNowId::SysId),
                })
            }
        };
        let freshdesk = match raw.freshdesk {
            None => None,
            Some(f) => {
                let s = "sink.freshdesk";
                let Some(key) = self.one_secret(s, "api_key", f.api_key_env, f.api_key_file)?
                else {
                    return Err(self.err(s, "give api_key_env (or api_key_file)"));
                };
                let auth = HttpAuth::Basic {
                    user: key,
                    password: Secret("X".into()),
                };
                Some(FreshdeskSettings {
                    api: self.post_back(
                        s,
                        &f.base_url,
                        auth,
                        f.mode,
                        f.allow_public_reply,
                        RawLimits {
                            timeout_ms: f.timeout_ms,
                            requests_per_minute: f.requests_per_minute,
                            circuit_breaker_failures: f.circuit_breaker_failures,
                            circuit_breaker_open_ms: f.circuit_breaker_open_ms,
                        },
                        DEFAULT_RPM_FRESHDESK,
                    )?,
                })
            }
        };
        Ok(SinkSettings {
            stdout: raw.stdout.unwrap_or(default_stdout),
            webhook,
            zendesk,
            jira,
            servicenow,
            freshdesk,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn post_back(
        &self,
        section: &str,
        base_url: &str,
        auth: HttpAuth,
        mode: Option<Mode>,
        allow_public_reply: bool,
        limits: RawLimits,
        default_rpm: u32,
    ) -> Result<PostBackSettings, ConfigError> {
        let base_url = crate::sink::http::check_base_url(base_url)
            .map_err(|e| self.err(&format!("{section}.base_url"), e.0))?;
        Ok(PostBackSettings {
            base_url,
            auth,
            mode: mode.unwrap_or(Mode::TagAndNote),
            allow_public_reply,
            limits: self.limits(section, limits, default_rpm)?,
        })
    }

    fn limits(
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

    /// A secret given as `{key}_env` or `{key}_file` (not both), if any.
    fn one_secret(
        &self,
        section: &str,
        key: &str,
        env: Option<String>,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        match (env, file) {
            (Some(_), Some(_)) => Err(self.err(
                &format!("{section}.{key}_env"),
                format!("set {key}_env or {key}_file, not both"),
            )),
            (Some(env), None) => Ok(Some(
                self.secret_env(&format!("{section}.{key}_env"), &env)?,
            )),
            (None, Some(file)) => Ok(Some(
                self.secret_file(&format!("{section}.{key}_file"), &file)?,
            )),
            (None, None) => Ok(None),
        }
    }

    fn input(&self, raw: RawInput, max_bytes: usize) -> Result<TicketShape, ConfigError> {
        let mut shape = TicketShape::preset(raw.preset, max_bytes);
        let pointer = |field: &str, p: &str| -> Result<(), ConfigError> {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(self.err(
                    field,
                    format!(
                        "`{p}` is not a JSON pointer (it must start with `/`, e.g. \"/ticket/id\")"
                    ),
                ));
            }
            Ok(())
        };
        for (field, value, target) in [
            ("input.id", raw.id, &mut shape.id),
            ("input.body", raw.body, &mut shape.body),
        ] {
            if let Some(p) = value {
                pointer(field, &p)?;
                if p.is_empty() {
                    return Err(self.err(field, "is required and must point into the record"));
                }
                *target = p;
            }
        }
        for (field, value, target) in [
            ("input.subject", raw.subject, &mut shape.subject),
            ("input.tags", raw.tags, &mut shape.tags),
            ("input.author", raw.author, &mut shape.author),
            ("input.updated", raw.updated, &mut shape.updated_stamp),
        ] {
            if let Some(p) = value {
                pointer(field, &p)?;
                *target = (!p.is_empty()).then_some(p);
            }
        }
        Ok(shape)
    }

    fn kafka(&self, k: RawKafka) -> Result<KafkaSettings, ConfigError> {
        if k.bootstrap_servers.trim().is_empty() {
            return Err(self.err(
                "kafka.bootstrap_servers",
                "must name at least one host:port",
            ));
        }
        if k.group_id.trim().is_empty() {
            return Err(self.err("kafka.group_id", "must not be empty"));
        }
        let topic = |field: &str, t: &str| -> Result<(), ConfigError> {
            let valid = !t.is_empty()
                && t.len() <= 249
                && t != "."
                && t != ".."
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if valid {
                Ok(())
            } else {
                Err(self.err(
                    field,
                    format!("`{t}` is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)"),
                ))
            }
        };
        topic("kafka.input_topic", &k.input_topic)?;
        topic("kafka.dead_letter_topic", &k.dead_letter_topic)?;
        if let Some(d) = &k.decisions_topic {
            topic("kafka.decisions_topic", d)?;
            if d == &k.input_topic {
                return Err(self.err(
                    "kafka.decisions_topic",
                    "must differ from kafka.input_topic",
                ));
            }
        }
        if k.dead_letter_topic == k.input_topic {
            return Err(self.err(
                "kafka.dead_letter_topic",
                "must differ from kafka.input_topic",
            ));
        }
        let props = |section: &str,
                     map: BTreeMap<String, PropValue>|
         -> Result<BTreeMap<String, String>, ConfigError> {
            let mut out = BTreeMap::new();
            for (key, value) in map {
                let field = format!("kafka.{section}.{key}");
                if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == key) {
                    return Err(self.err(&field, format!("cannot be set here: {why}")));
                }
                if looks_secret(&key) {
                    return Err(self.err(
                        &field,
                        format!(
                            "is a secret: do not write it in the file; use [kafka.secret_properties] \"{key}\" = {{ env = \"VARIABLE\" }} (or {{ file = \"/path\" }})"
                        ),
                    ));
                }
                out.insert(key, value.into_string());
            }
            Ok(out)
        };
        let properties = props("properties", k.properties)?;
        let consumer_properties = props("consumer_properties", k.consumer_properties)?;
        let producer_properties = props("producer_properties", k.producer_properties)?;
        let mut secret_properties = BTreeMap::new();
        for (key, s) in k.secret_properties {
            let field = format!("kafka.secret_properties.{key}");
            if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == key) {
                return Err(self.err(&field, format!("cannot be set here: {why}")));
            }
            let value = match (s.env, s.file) {
                (Some(env), None) => self.secret_env(&field, &env)?,
                (None, Some(file)) => self.secret_file(&field, &file)?,
                _ => {
                    return Err(self.err(
                        &field,
                        "give exactly one of env = \"VARIABLE\" or file = \"/path\"",
                    ))
                }
            };
            secret_properties.insert(key, value);
        }
        Ok(KafkaSettings {
            bootstrap_servers: k.bootstrap_servers,
            group_id: k.group_id,
            input_topic: k.input_topic,
            decisions_topic: k.decisions_topic,
            dead_letter_topic: k.dead_letter_topic,
            properties,
            consumer_properties,
            producer_properties,
            secret_properties,
        })
    }

    fn secret_env(&self, field: &str, var: &str) -> Result<Secret, ConfigError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) => Err(self.err(field, format!("environment variable {var} is empty"))),
            Err(_) => Err(self.err(
                field,
                format!("environment variable {var} is not set (export it before starting triage)"),
            )),
        }
    }

    fn secret_file(&self, field: &str, file: &Path) -> Result<Secret, ConfigError> {
        match std::fs::read_to_string(file) {
            Ok(v) => {
                let v = v.trim_end_matches(['\r', '\n']).to_string();
                if v.is_empty() {
                    Err(self.err(field, format!("{} is empty", file.display())))
                } else {
                    Ok(Secret(v))
                }
            }
            Err(e) => Err(self.err(field, format!("cannot read {}: {e}", file.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("triage.toml"))
    }

    const KAFKA: &str = r#"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
group_id = "triage"
input_topic = "tickets"
decisions_topic = "decisions"
dead_letter_topic = "tickets-dlq"
"#;

    #[test]
    fn minimal_kafka_file() {
        let s = parse(KAFKA).unwrap();
        let k = s.kafka.unwrap();
        assert_eq!(k.input_topic, "tickets");
        assert!(
            !s.sink.stdout,
            "stdout is off by default when reading from Kafka"
        );
        assert_eq!(s.worker, WorkerSettings::default());
        assert_eq!(s.input, TicketShape::preset(Preset::Plain, 1 << 20));
    }

    #[test]
    fn unknown_keys_name_file_line_and_field() {
        let e = parse(&format!("{KAFKA}group = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("triage.toml:8: kafka"), "{e}");
        assert!(e.contains("unknown field `group`"), "{e}");
        let e = parse("[worker]\nmax_in_flight = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:2: worker.max_in_flight: "),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let e = parse(&format!("{KAFKA}\n[worker]\nmax_in_flight = 0\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "triage.toml:10: worker.max_in_flight: must be at least 1"
        );
        let e = parse("[input]\nid = \"ticket/id\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:2: input.id: `ticket/id` is not a JSON pointer"),
            "{e}"
        );
        let e = parse(&format!(
            "{KAFKA}[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("triage.toml:9: kafka.properties.sasl.password: is a secret"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        let e = parse(&format!(
            "{KAFKA}[kafka.consumer_properties]\n\"enable.auto.offset.store\" = true\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("triage stores offsets itself"), "{e}");
    }

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

    #[test]
    fn presets_and_overrides() {
        let s =
            parse("[input]\npreset = \"jira\"\nauthor = \"\"\nsubject = \"/issue/fields/title\"\n")
                .unwrap();
        assert_eq!(s.input.id, "/issue/key");
        assert_eq!(s.input.subject.as_deref(), Some("/issue/fields/title"));
        assert_eq!(s.input.author, None);
        assert!(s.kafka.is_none());
        assert!(s.sink.stdout, "stdout is the default sink without Kafka");
        let e = parse("[input]\npreset = \"servicenow\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("triage.toml:2: input.preset: "), "{e}");
    }

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
        let e = parse("[sink.servicenow]\nbase_url = \"https://x.service-now.com\"\nsymptom_field = \"work_notes\"\nusername = \"u\"\npassword_env = \"TRIAGE_TEST_ZD_TOKEN\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sink.servicenow.symptom_field"), "{e}");
        let e = parse("[sink.freshdesk]\nbase_url = \"https://x.freshdesk.com\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("api_key_env"), "{e}");
        // A post-back sink is somewhere to write.
        let text = KAFKA.replace("decisions_topic = \"decisions\"\n", "");
        assert!(parse(&format!("{text}{zd}")).is_ok());
    }

    #[test]
    fn kafka_needs_somewhere_to_write() {
        let text = KAFKA.replace("decisions_topic = \"decisions\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("decisions go nowhere"), "{e}");
        assert!(parse(&format!("{text}[sink]\nstdout = true\n")).is_ok());
    }
}
