//! The `[ingest]` tables: where `triage ingest` listens, its limits, and one route per help desk.
//!
//! Each `[ingest.<source>]` table says how that help desk's requests prove where they come from
//! and where the ticket is in its payload. Secrets stay unread ([`SecretRef`]) until `triage
//! ingest` starts: `triage run` reads the same file and never needs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{
    ConfigError, Ctx, KafkaSettings, Oversize, Pointers, SecretRef, WorkerSettings,
};
use crate::ticket::{Preset, TicketShape};

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

/// `[ingest]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIngest {
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
pub struct RawSource {
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

/// Whether two shapes read the same fields from the same places (size limits aside).
fn same_pointers(a: &TicketShape, b: &TicketShape) -> bool {
    a.id == b.id
        && a.subject == b.subject
        && a.body == b.body
        && a.tags == b.tags
        && a.author == b.author
        && a.updated_stamp == b.updated_stamp
}

impl RawIngest {
    pub(crate) fn validate(
        self,
        ctx: &Ctx<'_>,
        kafka: Option<&KafkaSettings>,
        input: &TicketShape,
        worker: &WorkerSettings,
    ) -> Result<IngestSettings, ConfigError> {
        let Some(kafka) = kafka else {
            return Err(ctx.err(
                "ingest",
                "needs a [kafka] section: triage ingest produces what it receives to Kafka",
            ));
        };
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            ctx.err(
                "ingest.listen",
                format!(
                    "`{}` is not an IP address and port (e.g. \"0.0.0.0:8080\" or \"127.0.0.1:8080\")",
                    self.listen
                ),
            )
        })?;
        let topic = self.topic.unwrap_or_else(|| kafka.input_topic.clone());
        ctx.topic("ingest.topic", &topic)?;
        // What the worker decodes, ingest accepts: with oversize = "dead-letter" that is
        // worker.max_ticket_bytes; with "scan-prefix", worker.max_record_bytes (the worker
        // then scans the beginning of a long ticket).
        let (limit, limit_key) = match worker.oversize {
            Oversize::DeadLetter => (worker.max_ticket_bytes, "worker.max_ticket_bytes"),
            Oversize::ScanPrefix => (worker.max_record_bytes, "worker.max_record_bytes"),
        };
        let max_body_bytes = self.max_body_bytes.unwrap_or(limit);
        if max_body_bytes < 16 {
            return Err(ctx.err("ingest.max_body_bytes", "must be at least 16"));
        }
        if max_body_bytes > limit {
            return Err(ctx.err(
                "ingest.max_body_bytes",
                format!(
                    "must not exceed {limit_key} ({limit}): triage run would dead-letter larger records"
                ),
            ));
        }
        for (field, value) in [
            (
                "ingest.max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("ingest.max_connections", self.max_connections as u64),
            ("ingest.request_timeout_ms", self.request_timeout_ms),
            ("ingest.produce_timeout_ms", self.produce_timeout_ms),
            ("ingest.retry_after_s", self.retry_after_s),
            ("ingest.timestamp_tolerance_s", self.timestamp_tolerance_s),
            (
                "ingest.replay_cache_entries",
                self.replay_cache_entries as u64,
            ),
        ] {
            if value == 0 {
                return Err(ctx.err(field, "must be at least 1"));
            }
        }
        let sources_raw = [
            (SourceKind::Zendesk, self.zendesk),
            (SourceKind::Jira, self.jira),
            (SourceKind::ServiceNow, self.servicenow),
            (SourceKind::Freshdesk, self.freshdesk),
            (SourceKind::Generic, self.generic),
        ];
        let mut sources = Vec::new();
        for (kind, r) in sources_raw {
            if let Some(r) = r {
                sources.push(r.validate(ctx, kind, input, max_body_bytes)?);
            }
        }
        let rt = self.rt.map(|r| r.validate(ctx)).transpose()?;
        if sources.is_empty() && rt.is_none() {
            return Err(ctx.err(
                "ingest",
                "no source to receive: add at least one of [ingest.zendesk], [ingest.jira], [ingest.servicenow], [ingest.freshdesk], [ingest.generic], [ingest.rt]",
            ));
        }
        Ok(IngestSettings {
            listen,
            topic,
            max_body_bytes,
            max_concurrent_requests: self.max_concurrent_requests,
            max_connections: self.max_connections,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            produce_timeout: Duration::from_millis(self.produce_timeout_ms),
            retry_after: Duration::from_secs(self.retry_after_s),
            timestamp_tolerance: Duration::from_secs(self.timestamp_tolerance_s),
            replay_cache_entries: self.replay_cache_entries,
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            sources,
            rt,
        })
    }
}

impl RawSource {
    fn validate(
        self,
        ctx: &Ctx<'_>,
        kind: SourceKind,
        input: &TicketShape,
        max_bytes: usize,
    ) -> Result<IngestSource, ConfigError> {
        let section = format!("ingest.{}", kind.name());
        let key = |k: &str| format!("{section}.{k}");
        // Keys that belong to other kinds of source: refuse them, saying what this one uses.
        let hmac_keys = [
            ("secret_env", self.secret_env.is_some()),
            ("secret_file", self.secret_file.is_some()),
        ];
        let generic_keys = [
            ("signature_header", self.signature_header.is_some()),
            ("timestamp_header", self.timestamp_header.is_some()),
        ];
        let shared_keys = [
            ("token_header", self.token_header.is_some()),
            ("token_env", self.token_env.is_some()),
            ("token_file", self.token_file.is_some()),
            ("username", self.username.is_some()),
            ("password_env", self.password_env.is_some()),
            ("password_file", self.password_file.is_some()),
        ];
        let refuse = |keys: &[(&str, bool)], uses: &str| -> Result<(), ConfigError> {
            match keys.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(ctx.err(
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
                let secret = ctx
                    .secret_pair(&section, "secret", self.secret_env, self.secret_file)?
                    .ok_or_else(|| {
                        ctx.err(
                            &section,
                            "needs the signing secret: set secret_env = \"VARIABLE\" or secret_file = \"/path\"",
                        )
                    })?;
                match kind {
                    SourceKind::Zendesk => IngestAuth::ZendeskSignature { secret },
                    SourceKind::Jira => IngestAuth::HubSignature { secret },
                    _ => {
                        let signature_header = match self.signature_header {
                            Some(h) => header_name(ctx, &key("signature_header"), &h)?,
                            None => "x-triage-signature".into(),
                        };
                        let timestamp_header = match self.timestamp_header {
                            Some(h) if h.is_empty() => None,
                            Some(h) => Some(header_name(ctx, &key("timestamp_header"), &h)?),
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
                let token = ctx.secret_pair(&section, "token", self.token_env, self.token_file)?;
                let password =
                    ctx.secret_pair(&section, "password", self.password_env, self.password_file)?;
                match (self.token_header, token, self.username, password) {
                    (Some(h), Some(token), None, None) => IngestAuth::Token {
                        header: header_name(ctx, &key("token_header"), &h)?,
                        token,
                    },
                    (None, None, Some(u), Some(password)) => {
                        if u.is_empty() || u.contains(':') {
                            return Err(ctx.err(
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
                        return Err(ctx.err(
                            &key("token_header"),
                            "needs the token: set token_env = \"VARIABLE\" or token_file = \"/path\"",
                        ))
                    }
                    (None, Some(_), _, _) => {
                        return Err(ctx.err(
                            &key("token_env"),
                            "needs token_header: the header the token is sent in, e.g. \"X-Triage-Token\"",
                        ))
                    }
                    (None, None, Some(_), None) => {
                        return Err(ctx.err(
                            &key("username"),
                            "needs the password: set password_env = \"VARIABLE\" or password_file = \"/path\"",
                        ))
                    }
                    (None, None, None, Some(_)) => {
                        return Err(ctx.err(&key("password_env"), "needs username"))
                    }
                    (None, None, None, None) => {
                        return Err(ctx.err(
                            &section,
                            format!("needs credentials: {uses}"),
                        ))
                    }
                    _ => {
                        return Err(ctx.err(
                            &key("username"),
                            "use either a token header or basic auth, not both",
                        ))
                    }
                }
            }
        };
        let shape = ctx.pointers(
            &section,
            kind.default_shape(max_bytes),
            Pointers {
                id: self.id,
                subject: self.subject,
                body: self.body,
                tags: self.tags,
                author: self.author,
                updated: self.updated,
            },
        )?;
        let plain = TicketShape::preset(Preset::Plain, input.max_bytes);
        let forward = if same_pointers(&shape, input) {
            Forward::Raw
        } else if same_pointers(input, &plain) {
            Forward::Plain
        } else {
            return Err(ctx.err(
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
}

/// A header name as configured, checked and lower-cased.
fn header_name(ctx: &Ctx<'_>, field: &str, h: &str) -> Result<String, ConfigError> {
    let valid = !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ctx.err(
            field,
            format!("`{h}` is not an HTTP header name (e.g. \"X-Triage-Token\")"),
        ));
    }
    Ok(h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::tests::{parse, KAFKA};
    use crate::config::Settings;

    const INGEST: &str = "[ingest]\nlisten = \"127.0.0.1:0\"\n";

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
