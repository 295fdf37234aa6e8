//! `triage.toml` -> [`Settings`]: what the worker reads, where it writes, and its limits.
//!
//! Every key is documented in `deploy/triage.example.toml`. Unknown keys are errors, and every
//! error names the file, the line and the key (`triage.toml:12: kafka.group_id: …`). Secrets
//! (SASL passwords, key passphrases, tokens) are never written in the file itself: the file
//! names an environment variable or a file to read them from, and [`Secret`] keeps them out of
//! `Debug` output. The `[ingest]` section configures `triage ingest`, the webhook receiver;
//! its secrets stay unread ([`SecretRef`]) until that command starts.
//!
//! This module reads the sections every part of triage shares (`[kafka]`, `[input]`,
//! `[worker]`, `[server]`, `[log]`, `[catalogue]`) and places the others in [`Settings`]; those
//! are read and checked next to the code that uses them: `[sink]` in [`crate::sink`] (each
//! sink's table in its own `config.rs`), `[ingest]` in [`crate::ingest::config`]. What all the
//! checks share is here:
//! - `locate.rs`: the `Ctx` every check reports through, which finds the line of a key.
//! - `secret.rs`: [`Secret`] and [`SecretRef`], read from an environment variable or a file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

// The sections other parts of triage own: this module only places them in `Settings`.
use crate::ingest::config::{IngestSettings, RawIngest};
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
pub(crate) struct Pointers {
    pub(crate) id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) tags: Option<String>,
    pub(crate) author: Option<String>,
    pub(crate) updated: Option<String>,
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
    /// `[sink.*]`) are read from their variables and files now; the secrets of `[ingest]` only
    /// when `triage ingest` starts ([`SecretRef::read`]).
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
            Some(i) => Some(i.validate(self, kafka.as_ref(), &input, &worker)?),
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
    pub(crate) fn pointers(
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

    /// A Kafka topic name, checked.
    pub(crate) fn topic(&self, field: &str, t: &str) -> Result<(), ConfigError> {
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
}
