//! `triage.toml` -> [`Settings`]: what the worker reads, where it writes, and its limits.
//!
//! Every key is documented in `deploy/triage.example.toml`. Unknown keys are errors, and every
//! error names the file, the line and the key (`triage.toml:12: kafka.group_id: …`). Secrets
//! (SASL passwords, key passphrases, tokens) are never written in the file itself: the file
//! names an environment variable or a file to read them from, and [`Secret`] keeps them out of
//! `Debug` output. The `[ingest]` section configures `triage ingest`, the webhook receiver;
//! its secrets stay unread ([`SecretRef`]) until that command starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sink::{RawSink, SinkSettings};
use crate::ticket::{Preset, TicketShape};

mod locate;
mod secret;

pub(crate) use locate::Ctx;
pub use secret::{Secret, SecretRef};

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
    /// The webhook receiver `triage ingest`; `None` without an `[ingest]` section.
    pub ingest: Option<IngestSettings>,
    /// The HTTP endpoints (`/metrics`, `/healthz`, `/readyz`).
    pub server: ServerSettings,
    /// Log format and level.
    pub log: LogSettings,
    /// Catalogue reloading.
    pub catalogue: CatalogueSettings,
}

/// The `[server]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None`: no server (the default,
    /// so that several workers on one host, or a quick run on a laptop, never collide).
    pub listen: Option<SocketAddr>,
}

/// The `[log]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Human-readable lines, or one JSON object per line for log collectors.
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `triage=debug,warn`); the `TRIAGE_LOG` variable overrides
    /// it. `None`: `info` (`warn` for `--input`).
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO triage::pipeline: ticket handled ticket="T1" …`
    #[default]
    Human,
    /// `{"timestamp": …, "level": "INFO", "message": "ticket handled", "ticket": "T1", …}`
    Json,
}

/// The `[catalogue]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueSettings {
    /// Reload the catalogue when its files change (SIGHUP always reloads it).
    pub watch: bool,
    /// How often the files are checked for changes.
    pub watch_interval: Duration,
}

impl Default for CatalogueSettings {
    fn default() -> Self {
        CatalogueSettings {
            watch: true,
            watch_interval: Duration::from_secs(2),
        }
    }
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
    /// Tickets being handled at once (decoding, classifying, waiting for a sink), at most.
    /// Unlike `max_in_flight` it does not count tickets done and waiting for their commit:
    /// it bounds the records and decisions held in memory, whatever `max_in_flight` is.
    pub max_concurrent_tickets: usize,
    /// The most ticket bytes the worker scans. With [`Oversize::DeadLetter`] it is the limit
    /// of a whole record (larger ones go to the dead-letter topic undecoded); with
    /// [`Oversize::ScanPrefix`] it is the limit of a ticket's subject and body together, of
    /// which only the beginning is scanned when they are longer.
    pub max_ticket_bytes: usize,
    /// What to do with a ticket over `max_ticket_bytes`.
    pub oversize: Oversize,
    /// With [`Oversize::ScanPrefix`], records longer than this are still dead-lettered
    /// undecoded: a whole record is held (and parsed) in memory, so memory needs a hard bound
    /// that does not depend on what senders send. Unused with [`Oversize::DeadLetter`].
    pub max_record_bytes: usize,
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
            max_concurrent_tickets: 2048,
            max_ticket_bytes: 1 << 20,
            oversize: Oversize::DeadLetter,
            max_record_bytes: 8 << 20,
            drain_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_millis(250),
            marker_tag: "triage-processed".into(),
            api_user: None,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
        }
    }
}

impl WorkerSettings {
    /// The largest record the worker decodes; larger ones are dead-lettered (`too_large`).
    pub fn record_limit(&self) -> usize {
        match self.oversize {
            Oversize::DeadLetter => self.max_ticket_bytes,
            Oversize::ScanPrefix => self.max_record_bytes,
        }
    }

    /// `input` (the `[input]` pointers) with this section's limits applied.
    pub fn limit_shape(&self, input: TicketShape) -> TicketShape {
        let shape = TicketShape {
            max_bytes: self.record_limit(),
            max_text_bytes: None,
            ..input
        };
        match self.oversize {
            Oversize::DeadLetter => shape,
            Oversize::ScanPrefix => shape.scanning_prefix(self.max_ticket_bytes),
        }
    }
}

/// What the worker does with a ticket over `worker.max_ticket_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Oversize {
    /// `"dead-letter"`: send the record to the dead-letter topic undecoded (class
    /// `too_large`), so that nothing is decided on part of a ticket.
    #[default]
    DeadLetter,
    /// `"scan-prefix"`: decode records up to `worker.max_record_bytes`, scan the first
    /// `max_ticket_bytes` of subject and body, and mark the decision `truncated`.
    ScanPrefix,
}

impl Oversize {
    /// The word in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Oversize::DeadLetter => "dead-letter",
            Oversize::ScanPrefix => "scan-prefix",
        }
    }
}

/// The `[ingest]` section: the HTTP server that turns help-desk webhooks into records on the
/// input topic.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Where the server listens (`host:port`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The topic records are produced to (default: `kafka.input_topic`).
    pub topic: String,
    /// Larger request bodies are refused with 413 before they are read in full.
    pub max_body_bytes: usize,
    /// Webhook requests handled at once; more get 503 with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// A client has this long to send its headers, and again its body (else 408).
    pub request_timeout: Duration,
    /// How long a record may take to be acknowledged by Kafka (`message.timeout.ms`); then
    /// the request gets 503 and the record is given up, so a retry cannot duplicate it.
    pub produce_timeout: Duration,
    /// Sent as `Retry-After` with every 503.
    pub retry_after: Duration,
    /// Signed timestamps further than this from the clock are refused (401), and signatures
    /// are remembered this long to refuse replays (409).
    pub timestamp_tolerance: Duration,
    /// Signatures remembered per source, at most (bounds the memory of replay protection).
    pub replay_cache_entries: usize,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
    /// One route per configured help desk, in a fixed order.
    pub sources: Vec<IngestSource>,
    /// Request Tracker's transactions, followed by polling (`[ingest.rt]`).
    pub rt: Option<crate::sink::rt::config::RtSourceSettings>,
}

/// The help desks (and the generic signed JSON) `triage ingest` has a route for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// Zendesk webhooks, signed with `X-Zendesk-Webhook-Signature`.
    Zendesk,
    /// Jira webhooks, signed with `X-Hub-Signature: sha256=…`.
    Jira,
    /// ServiceNow outbound REST messages: a shared token header or basic auth.
    ServiceNow,
    /// Freshdesk automation webhooks: a shared token header or basic auth.
    Freshdesk,
    /// Any JSON POST signed with HMAC-SHA256.
    Generic,
}

impl SourceKind {
    /// Every kind, in the order routes are listed.
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Zendesk,
        SourceKind::Jira,
        SourceKind::ServiceNow,
        SourceKind::Freshdesk,
        SourceKind::Generic,
    ];

    /// The name used in the configuration, the route, metrics and record headers.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Zendesk => "zendesk",
            SourceKind::Jira => "jira",
            SourceKind::ServiceNow => "servicenow",
            SourceKind::Freshdesk => "freshdesk",
            SourceKind::Generic => "generic",
        }
    }

    /// The route webhooks of this kind are POSTed to.
    pub fn path(self) -> &'static str {
        match self {
            SourceKind::Zendesk => "/webhooks/zendesk",
            SourceKind::Jira => "/webhooks/jira",
            SourceKind::ServiceNow => "/webhooks/servicenow",
            SourceKind::Freshdesk => "/webhooks/freshdesk",
            SourceKind::Generic => "/webhooks/generic",
        }
    }

    /// Position in [`SourceKind::ALL`] (for per-source tables).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Where the ticket is in this kind's payload unless the configuration says otherwise.
    fn default_shape(self, max_bytes: usize) -> TicketShape {
        let p = |s: &str| Some(s.to_string());
        match self {
            SourceKind::Zendesk => TicketShape::preset(Preset::Zendesk, max_bytes),
            SourceKind::Jira => TicketShape::preset(Preset::Jira, max_bytes),
            SourceKind::Generic => TicketShape::preset(Preset::Plain, max_bytes),
            // The payload is whatever the outbound REST message's content template says; the
            // documented template uses the incident table's own field names.
            SourceKind::ServiceNow => TicketShape {
                id: "/sys_id".into(),
                subject: p("/short_description"),
                body: "/description".into(),
                tags: None,
                author: p("/sys_updated_by"),
                updated_stamp: p("/sys_updated_on"),
                max_bytes,
                max_text_bytes: None,
            },
            // Likewise the automation rule's JSON template, documented with a `ticket` object.
            SourceKind::Freshdesk => TicketShape {
                id: "/ticket/id".into(),
                subject: p("/ticket/subject"),
                body: "/ticket/description".into(),
                tags: p("/ticket/tags"),
                author: None,
                updated_stamp: p("/ticket/updated_at"),
                max_bytes,
                max_text_bytes: None,
            },
        }
    }
}

/// One route of `triage ingest`.
#[derive(Debug, Clone)]
pub struct IngestSource {
    /// Which help desk.
    pub kind: SourceKind,
    /// How its requests prove where they come from.
    pub auth: IngestAuth,
    /// Where the ticket is in its payload (validated on every request: 400 if absent).
    pub shape: TicketShape,
    /// What is written to Kafka: the payload as received, or the plain shape.
    pub forward: Forward,
}

/// How a route authenticates requests. Secrets are compared in constant time.
#[derive(Debug, Clone)]
pub enum IngestAuth {
    /// Zendesk: base64 HMAC-SHA256 of the signature timestamp followed by the raw body.
    ZendeskSignature {
        /// The webhook's signing secret.
        secret: SecretRef,
    },
    /// Jira (WebSub): `X-Hub-Signature: sha256=` + hex HMAC-SHA256 of the raw body.
    HubSignature {
        /// The secret entered when the webhook was registered.
        secret: SecretRef,
    },
    /// Generic: `sha256=<hex>` HMAC-SHA256 in a header, over `<timestamp>.<body>` when a
    /// timestamp header is configured, else over the body alone.
    Hmac {
        /// The shared signing secret.
        secret: SecretRef,
        /// The header carrying the signature (lower case).
        signature_header: String,
        /// The header carrying the Unix time in seconds (lower case); `None`: not signed.
        timestamp_header: Option<String>,
    },
    /// A shared token in a header (ServiceNow, Freshdesk).
    Token {
        /// The header carrying it (lower case).
        header: String,
        /// The token.
        token: SecretRef,
    },
    /// HTTP basic authentication (ServiceNow, Freshdesk).
    Basic {
        /// The user name the help desk sends.
        username: String,
        /// The password it sends.
        password: SecretRef,
    },
}

impl IngestAuth {
    /// A short name for logs and `--check-config`.
    pub fn describe(&self) -> String {
        match self {
            IngestAuth::ZendeskSignature { .. } => {
                "signature (X-Zendesk-Webhook-Signature, timestamped)".into()
            }
            IngestAuth::HubSignature { .. } => "signature (X-Hub-Signature: sha256=…)".into(),
            IngestAuth::Hmac {
                signature_header,
                timestamp_header,
                ..
            } => match timestamp_header {
                Some(t) => format!("signature ({signature_header}, timestamped by {t})"),
                None => format!("signature ({signature_header}, not timestamped)"),
            },
            IngestAuth::Token { header, .. } => format!("shared token ({header})"),
            IngestAuth::Basic { username, .. } => format!("basic auth (user {username})"),
        }
    }
}

/// What `triage ingest` writes for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The body as received: `triage run`'s `[input]` pointers are this source's own.
    Raw,
    /// `{"id", "subject", "body", "tags", "author", "updated_at", "source"}`: `triage run`
    /// reads the plain shape, and this source's payload is another.
    Plain,
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
    ingest: Option<RawIngest>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    catalogue: RawCatalogue,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: LogFormat,
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCatalogue {
    watch: bool,
    watch_interval_ms: u64,
}

impl Default for RawCatalogue {
    fn default() -> Self {
        let d = CatalogueSettings::default();
        RawCatalogue {
            watch: d.watch,
            watch_interval_ms: d.watch_interval.as_millis() as u64,
        }
    }
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
    max_concurrent_tickets: usize,
    max_ticket_bytes: usize,
    oversize: Oversize,
    max_record_bytes: Option<usize>,
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
            max_concurrent_tickets: d.max_concurrent_tickets,
            max_ticket_bytes: d.max_ticket_bytes,
            oversize: d.oversize,
            max_record_bytes: None,
            drain_timeout_ms: d.drain_timeout.as_millis() as u64,
            commit_interval_ms: d.commit_interval.as_millis() as u64,
            marker_tag: d.marker_tag,
            api_user: None,
            retry_initial_ms: d.retry_initial.as_millis() as u64,
            retry_max_ms: d.retry_max.as_millis() as u64,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawIngest {
    listen: String,
    topic: Option<String>,
    max_body_bytes: Option<usize>,
    max_concurrent_requests: usize,
    max_connections: usize,
    request_timeout_ms: u64,
    produce_timeout_ms: u64,
    retry_after_s: u64,
    timestamp_tolerance_s: u64,
    replay_cache_entries: usize,
    drain_timeout_ms: u64,
    zendesk: Option<RawSource>,
    jira: Option<RawSource>,
    servicenow: Option<RawSource>,
    freshdesk: Option<RawSource>,
    generic: Option<RawSource>,
    rt: Option<crate::sink::rt::config::RawRtSource>,
}

impl Default for RawIngest {
    fn default() -> Self {
        RawIngest {
            listen: "127.0.0.1:8080".into(),
            topic: None,
            max_body_bytes: None,
            max_concurrent_requests: 256,
            max_connections: 1024,
            request_timeout_ms: 10_000,
            produce_timeout_ms: 5_000,
            retry_after_s: 5,
            timestamp_tolerance_s: 300,
            replay_cache_entries: 100_000,
            drain_timeout_ms: 10_000,
            zendesk: None,
            jira: None,
            servicenow: None,
            freshdesk: None,
            generic: None,
            rt: None,
        }
    }
}

/// One `[ingest.<source>]` table. Which keys apply depends on the source; the others are
/// refused with a message saying what that source uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    signature_header: Option<String>,
    timestamp_header: Option<String>,
    token_header: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    id: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    tags: Option<String>,
    author: Option<String>,
    updated: Option<String>,
}

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

/// Pointer overrides as written in `[input]` or an `[ingest.<source>]` table.
struct Pointers {
    id: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    tags: Option<String>,
    author: Option<String>,
    updated: Option<String>,
}

/// Whether two shapes read the same fields from the same places (size limits aside).
fn same_pointers(a: &TicketShape, b: &TicketShape) -> bool {
    a.id == b.id
        && a.subject == b.subject
        && a.body == b.body
        && a.tags == b.tags
        && a.author == b.author
        && a.updated_stamp == b.updated_stamp
}

// ----- loading --------------------------------------------------------------------------------

impl Settings {
    /// The built-in defaults: no Kafka, plain JSON Lines tickets, decisions on stdout.
    pub fn embedded() -> Settings {
        let worker = WorkerSettings::default();
        Settings {
            path: None,
            kafka: None,
            input: worker.limit_shape(TicketShape::preset(Preset::Plain, 0)),
            worker,
            sink: SinkSettings {
                stdout: true,
                ..SinkSettings::default()
            },
            ingest: None,
            server: ServerSettings::default(),
            log: LogSettings::default(),
            catalogue: CatalogueSettings::default(),
        }
    }

    /// Read and validate a file. The worker's secrets (`[kafka.secret_properties]`,
    /// `[sink.webhook]`) are read from their variables and files now; the webhook secrets of
    /// `[ingest]` only when `triage ingest` starts ([`SecretRef::read`]).
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

impl Ctx<'_> {
    fn validate(&self, raw: RawSettings) -> Result<Settings, ConfigError> {
        let w = raw.worker;
        if w.max_in_flight == 0 {
            return Err(self.err("worker.max_in_flight", "must be at least 1"));
        }
        if w.max_concurrent_tickets == 0 {
            return Err(self.err("worker.max_concurrent_tickets", "must be at least 1"));
        }
        if w.max_ticket_bytes < 16 {
            return Err(self.err("worker.max_ticket_bytes", "must be at least 16"));
        }
        let max_record_bytes = match (w.oversize, w.max_record_bytes) {
            (Oversize::DeadLetter, Some(_)) => {
                return Err(self.err(
                    "worker.max_record_bytes",
                    "only applies with worker.oversize = \"scan-prefix\" (with \"dead-letter\", worker.max_ticket_bytes is the record limit)",
                ))
            }
            (_, Some(n)) if n < w.max_ticket_bytes => {
                return Err(self.err(
                    "worker.max_record_bytes",
                    format!(
                        "must be at least worker.max_ticket_bytes ({})",
                        w.max_ticket_bytes
                    ),
                ))
            }
            (_, n) => n.unwrap_or_else(|| WorkerSettings::default().max_record_bytes.max(w.max_ticket_bytes)),
        };
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
            max_concurrent_tickets: w.max_concurrent_tickets,
            max_ticket_bytes: w.max_ticket_bytes,
            oversize: w.oversize,
            max_record_bytes,
            drain_timeout: Duration::from_millis(w.drain_timeout_ms),
            commit_interval: Duration::from_millis(w.commit_interval_ms),
            marker_tag: w.marker_tag,
            api_user: w.api_user,
            retry_initial: Duration::from_millis(w.retry_initial_ms),
            retry_max: Duration::from_millis(w.retry_max_ms),
        };

        let input = worker.limit_shape(self.input(raw.input, worker.max_ticket_bytes)?);
        let kafka = raw.kafka.map(|k| self.kafka(k)).transpose()?;

        let sink = raw.sink.validate(self, kafka.is_none())?;
        if let Some(k) = &kafka {
            if k.decisions_topic.is_none() && !sink.any() {
                return Err(self.err(
                    "kafka",
                    "decisions go nowhere: set kafka.decisions_topic, a [sink.*] section, or sink.stdout = true",
                ));
            }
        }
        let ingest = match raw.ingest {
            None => None,
            Some(i) => Some(self.ingest(i, kafka.as_ref(), &input, &worker)?),
        };
        let server = ServerSettings {
            listen: match raw.server.listen {
                None => None,
                Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                    self.err(
                        "server.listen",
                        format!("`{a}` is not an IP address and port, e.g. \"0.0.0.0:9898\" (all interfaces), \"127.0.0.1:9898\" or \"[::]:9898\""),
                    )
                })?),
            },
        };
        if let Some(level) = &raw.log.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                return Err(self.err(
                    "log.level",
                    format!("`{level}` is not a log filter ({e}); e.g. \"info\", \"debug\" or \"triage=debug,warn\""),
                ));
            }
        }
        let log = LogSettings {
            format: raw.log.format,
            level: raw.log.level,
        };
        if raw.catalogue.watch_interval_ms < 100 {
            return Err(self.err("catalogue.watch_interval_ms", "must be at least 100"));
        }
        let catalogue = CatalogueSettings {
            watch: raw.catalogue.watch,
            watch_interval: Duration::from_millis(raw.catalogue.watch_interval_ms),
        };
        Ok(Settings {
            path: None,
            kafka,
            input,
            worker,
            sink,
            ingest,
            server,
            log,
            catalogue,
        })
    }

    fn input(&self, raw: RawInput, max_bytes: usize) -> Result<TicketShape, ConfigError> {
        let shape = TicketShape::preset(raw.preset, max_bytes);
        self.pointers(
            "input",
            shape,
            Pointers {
                id: raw.id,
                subject: raw.subject,
                body: raw.body,
                tags: raw.tags,
                author: raw.author,
                updated: raw.updated,
            },
        )
    }

    /// Apply pointer overrides (`[input]` or an `[ingest.<source>]` table) to a shape.
    fn pointers(
        &self,
        section: &str,
        mut shape: TicketShape,
        p: Pointers,
    ) -> Result<TicketShape, ConfigError> {
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
        for (key, value, target) in [
            ("id", p.id, &mut shape.id),
            ("body", p.body, &mut shape.body),
        ] {
            if let Some(p) = value {
                let field = format!("{section}.{key}");
                pointer(&field, &p)?;
                if p.is_empty() {
                    return Err(self.err(&field, "is required and must point into the record"));
                }
                *target = p;
            }
        }
        for (key, value, target) in [
            ("subject", p.subject, &mut shape.subject),
            ("tags", p.tags, &mut shape.tags),
            ("author", p.author, &mut shape.author),
            ("updated", p.updated, &mut shape.updated_stamp),
        ] {
            if let Some(p) = value {
                pointer(&format!("{section}.{key}"), &p)?;
                *target = (!p.is_empty()).then_some(p);
            }
        }
        Ok(shape)
    }

    fn ingest(
        &self,
        raw: RawIngest,
        kafka: Option<&KafkaSettings>,
        input: &TicketShape,
        worker: &WorkerSettings,
    ) -> Result<IngestSettings, ConfigError> {
        let Some(kafka) = kafka else {
            return Err(self.err(
                "ingest",
                "needs a [kafka] section: triage ingest produces what it receives to Kafka",
            ));
        };
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            self.err(
                "ingest.listen",
                format!(
                    "`{}` is not an IP address and port (e.g. \"0.0.0.0:8080\" or \"127.0.0.1:8080\")",
                    raw.listen
                ),
            )
        })?;
        let topic = raw.topic.unwrap_or_else(|| kafka.input_topic.clone());
        self.topic("ingest.topic", &topic)?;
        // What the worker decodes, ingest accepts: with oversize = "dead-letter" that is
        // worker.max_ticket_bytes; with "scan-prefix", worker.max_record_bytes (the worker
        // then scans the beginning of a long ticket).
        let (limit, limit_key) = match worker.oversize {
            Oversize::DeadLetter => (worker.max_ticket_bytes, "worker.max_ticket_bytes"),
            Oversize::ScanPrefix => (worker.max_record_bytes, "worker.max_record_bytes"),
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(limit);
        if max_body_bytes < 16 {
            return Err(self.err("ingest.max_body_bytes", "must be at least 16"));
        }
        if max_body_bytes > limit {
            return Err(self.err(
                "ingest.max_body_bytes",
                format!(
                    "must not exceed {limit_key} ({limit}): triage run would dead-letter larger records"
                ),
            ));
        }
        for (field, value) in [
            (
                "ingest.max_concurrent_requests",
                raw.max_concurrent_requests as u64,
            ),
            ("ingest.max_connections", raw.max_connections as u64),
            ("ingest.request_timeout_ms", raw.request_timeout_ms),
            ("ingest.produce_timeout_ms", raw.produce_timeout_ms),
            ("ingest.retry_after_s", raw.retry_after_s),
            ("ingest.timestamp_tolerance_s", raw.timestamp_tolerance_s),
            (
                "ingest.replay_cache_entries",
                raw.replay_cache_entries as u64,
            ),
        ] {
            if value == 0 {
                return Err(self.err(field, "must be at least 1"));
            }
        }
        let sources_raw = [
            (SourceKind::Zendesk, raw.zendesk),
            (SourceKind::Jira, raw.jira),
            (SourceKind::ServiceNow, raw.servicenow),
            (SourceKind::Freshdesk, raw.freshdesk),
            (SourceKind::Generic, raw.generic),
        ];
        let mut sources = Vec::new();
        for (kind, r) in sources_raw {
            if let Some(r) = r {
                sources.push(self.ingest_source(kind, r, input, max_body_bytes)?);
            }
        }
        let rt = raw.rt.map(|r| r.validate(self)).transpose()?;
        if sources.is_empty() && rt.is_none() {
            return Err(self.err(
                "ingest",
                "no source to receive: add at least one of [ingest.zendesk], [ingest.jira], [ingest.servicenow], [ingest.freshdesk], [ingest.generic], [ingest.rt]",
            ));
        }
        Ok(IngestSettings {
            listen,
            topic,
            max_body_bytes,
            max_concurrent_requests: raw.max_concurrent_requests,
            max_connections: raw.max_connections,
            request_timeout: Duration::from_millis(raw.request_timeout_ms),
            produce_timeout: Duration::from_millis(raw.produce_timeout_ms),
            retry_after: Duration::from_secs(raw.retry_after_s),
            timestamp_tolerance: Duration::from_secs(raw.timestamp_tolerance_s),
            replay_cache_entries: raw.replay_cache_entries,
            drain_timeout: Duration::from_millis(raw.drain_timeout_ms),
            sources,
            rt,
        })
    }

    fn ingest_source(
        &self,
        kind: SourceKind,
        r: RawSource,
        input: &TicketShape,
        max_bytes: usize,
    ) -> Result<IngestSource, ConfigError> {
        let section = format!("ingest.{}", kind.name());
        let key = |k: &str| format!("{section}.{k}");
        // Keys that belong to other kinds of source: refuse them, saying what this one uses.
        let hmac_keys = [
            ("secret_env", r.secret_env.is_some()),
            ("secret_file", r.secret_file.is_some()),
        ];
        let generic_keys = [
            ("signature_header", r.signature_header.is_some()),
            ("timestamp_header", r.timestamp_header.is_some()),
        ];
        let shared_keys = [
            ("token_header", r.token_header.is_some()),
            ("token_env", r.token_env.is_some()),
            ("token_file", r.token_file.is_some()),
            ("username", r.username.is_some()),
            ("password_env", r.password_env.is_some()),
            ("password_file", r.password_file.is_some()),
        ];
        let refuse = |keys: &[(&str, bool)], uses: &str| -> Result<(), ConfigError> {
            match keys.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(self.err(
                    &key(k),
                    format!("is not used by {} webhooks ({uses})", kind.name()),
                )),
                None => Ok(()),
            }
        };
        let auth = match kind {
            SourceKind::Zendesk | SourceKind::Jira | SourceKind::Generic => {
                let uses = "they are signed: set secret_env or secret_file";
                refuse(&shared_keys, uses)?;
                if kind != SourceKind::Generic {
                    refuse(&generic_keys, uses)?;
                }
                let secret = self
                    .secret_pair(&section, "secret", r.secret_env, r.secret_file)?
                    .ok_or_else(|| {
                        self.err(
                            &section,
                            "needs the signing secret: set secret_env = \"VARIABLE\" or secret_file = \"/path\"",
                        )
                    })?;
                match kind {
                    SourceKind::Zendesk => IngestAuth::ZendeskSignature { secret },
                    SourceKind::Jira => IngestAuth::HubSignature { secret },
                    _ => {
                        let signature_header = match r.signature_header {
                            Some(h) => self.header_name(&key("signature_header"), &h)?,
                            None => "x-triage-signature".into(),
                        };
                        let timestamp_header = match r.timestamp_header {
                            Some(h) if h.is_empty() => None,
                            Some(h) => Some(self.header_name(&key("timestamp_header"), &h)?),
                            None => Some("x-triage-timestamp".into()),
                        };
                        IngestAuth::Hmac {
                            secret,
                            signature_header,
                            timestamp_header,
                        }
                    }
                }
            }
            SourceKind::ServiceNow | SourceKind::Freshdesk => {
                let uses = "set token_header with token_env or token_file, or username with password_env or password_file";
                refuse(&hmac_keys, uses)?;
                refuse(&generic_keys, uses)?;
                let token = self.secret_pair(&section, "token", r.token_env, r.token_file)?;
                let password =
                    self.secret_pair(&section, "password", r.password_env, r.password_file)?;
                match (r.token_header, token, r.username, password) {
                    (Some(h), Some(token), None, None) => IngestAuth::Token {
                        header: self.header_name(&key("token_header"), &h)?,
                        token,
                    },
                    (None, None, Some(u), Some(password)) => {
                        if u.is_empty() || u.contains(':') {
                            return Err(self.err(
                                &key("username"),
                                "must be non-empty and must not contain `:`",
                            ));
                        }
                        IngestAuth::Basic {
                            username: u,
                            password,
                        }
                    }
                    (Some(_), None, _, _) => {
                        return Err(self.err(
                            &key("token_header"),
                            "needs the token: set token_env = \"VARIABLE\" or token_file = \"/path\"",
                        ))
                    }
                    (None, Some(_), _, _) => {
                        return Err(self.err(
                            &key("token_env"),
                            "needs token_header: the header the token is sent in, e.g. \"X-Triage-Token\"",
                        ))
                    }
                    (None, None, Some(_), None) => {
                        return Err(self.err(
                            &key("username"),
                            "needs the password: set password_env = \"VARIABLE\" or password_file = \"/path\"",
                        ))
                    }
                    (None, None, None, Some(_)) => {
                        return Err(self.err(&key("password_env"), "needs username"))
                    }
                    (None, None, None, None) => {
                        return Err(self.err(
                            &section,
                            format!("needs credentials: {uses}"),
                        ))
                    }
                    _ => {
                        return Err(self.err(
                            &key("username"),
                            "use either a token header or basic auth, not both",
                        ))
                    }
                }
            }
        };
        let shape = self.pointers(
            &section,
            kind.default_shape(max_bytes),
            Pointers {
                id: r.id,
                subject: r.subject,
                body: r.body,
                tags: r.tags,
                author: r.author,
                updated: r.updated,
            },
        )?;
        let plain = TicketShape::preset(Preset::Plain, input.max_bytes);
        let forward = if same_pointers(&shape, input) {
            Forward::Raw
        } else if same_pointers(input, &plain) {
            Forward::Plain
        } else {
            return Err(self.err(
                &section,
                format!(
                    "triage run reads records with the [input] pointers (id {}, body {}), which {} payloads do not match, and triage ingest can only otherwise write the plain shape: set [input] preset = \"plain\" (the default), or give [{section}] the same pointers as [input]",
                    input.id,
                    input.body,
                    kind.name()
                ),
            ));
        };
        Ok(IngestSource {
            kind,
            auth,
            shape,
            forward,
        })
    }

    /// A header name as configured, checked and lower-cased.
    fn header_name(&self, field: &str, h: &str) -> Result<String, ConfigError> {
        let valid = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(self.err(
                field,
                format!("`{h}` is not an HTTP header name (e.g. \"X-Triage-Token\")"),
            ));
        }
        Ok(h.to_ascii_lowercase())
    }

    fn topic(&self, field: &str, t: &str) -> Result<(), ConfigError> {
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
        let topic = |field: &str, t: &str| self.topic(field, t);
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings from `text`, as if read from `triage.toml`.
    pub(crate) fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(text, Path::new("triage.toml"))
    }

    /// A minimal `[kafka]` section (lines 2 to 7).
    pub(crate) const KAFKA: &str = r#"
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
    fn oversize_modes_set_the_record_and_text_limits() {
        // Default: dead-letter; the record limit is max_ticket_bytes, text is never cut.
        let s = parse(KAFKA).unwrap();
        assert_eq!(s.worker.oversize, Oversize::DeadLetter);
        assert_eq!(s.worker.record_limit(), 1 << 20);
        assert_eq!((s.input.max_bytes, s.input.max_text_bytes), (1 << 20, None));

        let s = parse(&format!(
            "{KAFKA}[worker]\nmax_ticket_bytes = 65536\noversize = \"scan-prefix\"\n"
        ))
        .unwrap();
        assert_eq!(s.worker.oversize, Oversize::ScanPrefix);
        assert_eq!(s.worker.record_limit(), 8 << 20);
        assert_eq!(
            (s.input.max_bytes, s.input.max_text_bytes),
            (8 << 20, Some(65536))
        );

        let s = parse(&format!(
            "{KAFKA}[input]\npreset = \"zendesk\"\n[worker]\noversize = \"scan-prefix\"\nmax_record_bytes = 2097152\n"
        ))
        .unwrap();
        assert_eq!(s.input.body, "/detail/description");
        assert_eq!(
            (s.input.max_bytes, s.input.max_text_bytes),
            (2 << 20, Some(1 << 20))
        );
    }

    #[test]
    fn oversize_errors_say_what_to_change() {
        let cases = [
            (
                "oversize = \"truncate\"\n",
                "triage.toml:9: worker.oversize: unknown variant `truncate`, expected `dead-letter` or `scan-prefix`",
            ),
            (
                "max_record_bytes = 4194304\n",
                "triage.toml:9: worker.max_record_bytes: only applies with worker.oversize = \"scan-prefix\"",
            ),
            (
                "oversize = \"scan-prefix\"\nmax_record_bytes = 1000\n",
                "triage.toml:10: worker.max_record_bytes: must be at least worker.max_ticket_bytes (1048576)",
            ),
        ];
        for (worker, want) in cases {
            let e = parse(&format!("{KAFKA}[worker]\n{worker}"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{worker}\n{e}");
        }
    }

    #[test]
    fn ingest_accepts_what_the_worker_decodes() {
        let jira = "[ingest.jira]\nsecret_env = \"J\"\n";
        // scan-prefix: bodies up to the worker's record limit are taken (the default too).
        let s = parse(&format!(
            "{KAFKA}[worker]\noversize = \"scan-prefix\"\nmax_record_bytes = 4194304\n{INGEST}{jira}"
        ))
        .unwrap();
        assert_eq!(s.ingest.unwrap().max_body_bytes, 4 << 20);
        let e = parse(&format!(
            "{KAFKA}[worker]\noversize = \"scan-prefix\"\n{INGEST}max_body_bytes = 9000000\n{jira}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ingest.max_body_bytes: must not exceed worker.max_record_bytes (8388608)"),
            "{e}"
        );
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
    fn server_log_and_catalogue_sections() {
        let s = parse("").unwrap();
        assert_eq!(s.server.listen, None, "no server unless asked for");
        assert_eq!(s.log.format, LogFormat::Human);
        assert_eq!(s.catalogue, CatalogueSettings::default());
        let s = parse(
            "[server]\nlisten = \"127.0.0.1:9898\"\n[log]\nformat = \"json\"\nlevel = \"triage=debug,warn\"\n[catalogue]\nwatch = false\nwatch_interval_ms = 500\n",
        )
        .unwrap();
        assert_eq!(s.server.listen, Some("127.0.0.1:9898".parse().unwrap()));
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.log.level.as_deref(), Some("triage=debug,warn"));
        assert!(!s.catalogue.watch);
        assert_eq!(s.catalogue.watch_interval, Duration::from_millis(500));

        let e = parse("[server]\nlisten = \"localhost\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:2: server.listen: `localhost` is not"),
            "{e}"
        );
        let e = parse("[log]\nformat = \"xml\"\n").unwrap_err().to_string();
        assert!(e.starts_with("triage.toml:2: log.format: "), "{e}");
        let e = parse("[log]\nlevel = \"=[\"\n").unwrap_err().to_string();
        assert!(e.starts_with("triage.toml:2: log.level: "), "{e}");
        let e = parse("[catalogue]\nwatch_interval_ms = 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:2: catalogue.watch_interval_ms: "),
            "{e}"
        );
    }

    #[test]
    fn kafka_needs_somewhere_to_write() {
        let text = KAFKA.replace("decisions_topic = \"decisions\"\n", "");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("decisions go nowhere"), "{e}");
        assert!(parse(&format!("{text}[sink]\nstdout = true\n")).is_ok());
    }

    const INGEST: &str = "[ingest]\nlisten = \"127.0.0.1:0\"\n";

    #[test]
    fn ingest_defaults_and_plain_shape_for_mixed_sources() {
        let text = format!(
            "{KAFKA}{INGEST}[ingest.zendesk]\nsecret_env = \"TRIAGE_TEST_UNSET_ZD\"\n[ingest.jira]\nsecret_file = \"/nonexistent/jira\"\n"
        );
        // Loading (as `triage run` does) does not read the webhook secrets.
        let s = parse(&text).unwrap();
        let i = s.ingest.as_ref().unwrap();
        assert_eq!(i.topic, "tickets", "defaults to kafka.input_topic");
        assert_eq!(i.max_body_bytes, 1 << 20);
        assert_eq!(i.timestamp_tolerance, Duration::from_secs(300));
        let kinds: Vec<_> = i.sources.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![SourceKind::Zendesk, SourceKind::Jira]);
        assert!(i.sources.iter().all(|s| s.forward == Forward::Plain));
        assert_eq!(i.sources[1].shape.id, "/issue/key");
        // Reading them (as `triage ingest` does) names file, line and key.
        let IngestAuth::ZendeskSignature { secret } = &i.sources[0].auth else {
            panic!("{:?}", i.sources[0].auth)
        };
        let e = secret.read().unwrap_err().to_string();
        assert!(
            e.starts_with("triage.toml:11: ingest.zendesk.secret_env: environment variable TRIAGE_TEST_UNSET_ZD is not set"),
            "{e}"
        );
        let IngestAuth::HubSignature { secret } = &i.sources[1].auth else {
            panic!()
        };
        let e = secret.read().unwrap_err().to_string();
        assert!(
            e.starts_with("triage.toml:13: ingest.jira.secret_file: cannot read /nonexistent/jira"),
            "{e}"
        );
    }

    #[test]
    fn ingest_forwards_raw_payloads_the_worker_reads() {
        let text = format!(
            "{KAFKA}[input]\npreset = \"zendesk\"\n{INGEST}[ingest.zendesk]\nsecret_env = \"X\"\n"
        );
        let s = parse(&text).unwrap();
        assert_eq!(s.ingest.unwrap().sources[0].forward, Forward::Raw);
        // A Jira route next to a worker that reads Zendesk payloads cannot work.
        let e = parse(&format!("{text}[ingest.jira]\nsecret_env = \"Y\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("triage.toml:14: ingest.jira: triage run reads records with the [input] pointers (id /detail/id"), "{e}");
        // The generic route with the plain pointers forwards as received.
        let s = parse(&format!(
            "{KAFKA}{INGEST}[ingest.generic]\nsecret_env = \"G\"\n"
        ))
        .unwrap();
        let g = &s.ingest.unwrap().sources[0];
        assert_eq!(g.forward, Forward::Raw);
        let IngestAuth::Hmac {
            signature_header,
            timestamp_header,
            ..
        } = &g.auth
        else {
            panic!()
        };
        assert_eq!(signature_header, "x-triage-signature");
        assert_eq!(timestamp_header.as_deref(), Some("x-triage-timestamp"));
    }

    #[test]
    fn ingest_shared_secret_sources() {
        let s = parse(&format!(
            "{KAFKA}{INGEST}[ingest.servicenow]\ntoken_header = \"X-Triage-Token\"\ntoken_env = \"T\"\nid = \"/number\"\n[ingest.freshdesk]\nusername = \"fd\"\npassword_file = \"/run/secrets/fd\"\n"
        ))
        .unwrap();
        let i = s.ingest.unwrap();
        assert!(
            matches!(&i.sources[0].auth, IngestAuth::Token { header, .. } if header == "x-triage-token")
        );
        assert_eq!(i.sources[0].shape.id, "/number");
        assert_eq!(i.sources[0].shape.body, "/description");
        assert!(
            matches!(&i.sources[1].auth, IngestAuth::Basic { username, .. } if username == "fd")
        );
        assert_eq!(i.sources[1].shape.id, "/ticket/id");

        let cases = [
            ("[ingest.servicenow]\nsecret_env = \"S\"\n", "triage.toml:11: ingest.servicenow.secret_env: is not used by servicenow webhooks"),
            ("[ingest.jira]\ntoken_header = \"X-T\"\nsecret_env = \"S\"\n", "triage.toml:11: ingest.jira.token_header: is not used by jira webhooks"),
            ("[ingest.freshdesk]\ntoken_header = \"X-T\"\ntoken_env = \"T\"\nusername = \"u\"\npassword_env = \"P\"\n", "triage.toml:13: ingest.freshdesk.username: use either a token header or basic auth, not both"),
            ("[ingest.freshdesk]\ntoken_header = \"X-T\"\n", "triage.toml:11: ingest.freshdesk.token_header: needs the token"),
            ("[ingest.freshdesk]\n", "triage.toml:10: ingest.freshdesk: needs credentials"),
            ("[ingest.freshdesk]\ntoken_header = \"X T\"\ntoken_env = \"T\"\n", "triage.toml:11: ingest.freshdesk.token_header: `X T` is not an HTTP header name"),
            ("[ingest.zendesk]\n", "triage.toml:10: ingest.zendesk: needs the signing secret"),
            ("[ingest.zendesk]\nsecret_env = \"S\"\nsecret_file = \"/f\"\n", "triage.toml:11: ingest.zendesk.secret_env: set secret_env or secret_file, not both"),
            ("[ingest.zendesk]\nsecret_env = \"S\"\nbody = \"detail\"\n", "triage.toml:12: ingest.zendesk.body: `detail` is not a JSON pointer"),
            ("[ingest.zendesk]\nsecret_env = \"S\"\nsecret = \"inline\"\n", "triage.toml:12: ingest.zendesk.secret: unknown field `secret`"),
        ];
        for (extra, want) in cases {
            let e = parse(&format!("{KAFKA}{INGEST}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{extra}\n{e}");
        }
    }

    #[test]
    fn ingest_section_errors() {
        let e = parse(&format!("{INGEST}[ingest.jira]\nsecret_env = \"J\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("triage.toml:1: ingest: needs a [kafka] section"),
            "{e}"
        );
        let e = parse(&format!("{KAFKA}{INGEST}")).unwrap_err().to_string();
        assert!(
            e.starts_with("triage.toml:8: ingest: no source to receive"),
            "{e}"
        );
        let e = parse(&format!(
            "{KAFKA}[ingest]\nlisten = \"localhost\"\n[ingest.jira]\nsecret_env = \"J\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "triage.toml:9: ingest.listen: `localhost` is not an IP address and port"
            ),
            "{e}"
        );
        let e = parse(&format!(
            "{KAFKA}{INGEST}max_body_bytes = 2000000\n[ingest.jira]\nsecret_env = \"J\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("triage.toml:10: ingest.max_body_bytes: must not exceed worker.max_ticket_bytes (1048576)"), "{e}");
        let e = parse(&format!(
            "{KAFKA}{INGEST}produce_timeout_ms = 0\n[ingest.jira]\nsecret_env = \"J\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("triage.toml:10: ingest.produce_timeout_ms: must be at least"),
            "{e}"
        );
        let e = parse(&format!(
            "{KAFKA}{INGEST}topic = \"a b\"\n[ingest.jira]\nsecret_env = \"J\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("triage.toml:10: ingest.topic: `a b` is not a valid topic name"),
            "{e}"
        );
    }

    #[test]
    fn the_example_configuration_is_valid_and_complete() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/triage.example.toml");
        let s = Settings::load(&path).unwrap();
        let i = s.ingest.expect("the example documents [ingest]");
        let kinds: Vec<_> = i.sources.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            SourceKind::ALL.to_vec(),
            "every source is documented"
        );
    }
}
