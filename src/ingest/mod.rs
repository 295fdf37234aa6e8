//! `triage ingest`: the front door. Help desks call webhooks; this HTTP server verifies
//! each request, maps its payload to the record `triage run` reads, produces it to the input
//! topic keyed by ticket id (so one ticket's events stay in order on one partition), and
//! answers 2xx only once Kafka has acknowledged it.
//!
//! Routes (one per configured source, see [`config::SourceKind::path`]):
//!
//! | route | authentication |
//! | --- | --- |
//! | `POST /webhooks/zendesk` | `X-Zendesk-Webhook-Signature` over timestamp + body |
//! | `POST /webhooks/jira` | `X-Hub-Signature: sha256=…` over the body |
//! | `POST /webhooks/servicenow` | shared token header, or basic auth |
//! | `POST /webhooks/freshdesk` | shared token header, or basic auth |
//! | `POST /webhooks/generic` | HMAC-SHA256 header over `<timestamp>.<body>` |
//! | `POST /rt/nudge` | none: only a hint to read RT's feed now ([`pull`]) |
//! | `GET /metrics`, `/healthz`, `/readyz` | none |
//!
//! Answers: 200 produced; 400 malformed (not JSON, no ticket id or text); 401 bad or
//! missing credentials, or a signed timestamp outside the tolerance; 404 unknown route;
//! 405 wrong method; 408 body too slow; 409 replay of a signed delivery already accepted
//! (it is on the topic; it is not produced twice); 413 body too large; 503 with
//! `Retry-After` when Kafka did not acknowledge in time or too many requests are in flight.
//! Only 200 means a record was produced.
//!
//! - [`handler`]: one request, start to end.
//! - [`verify`]: the signature and credential schemes.
//! - [`replay`]: bounded memory of accepted signatures.
//! - [`produce`]: the idempotent, `acks=all` producer.
//! - [`metrics`]: `triage_ingest_*` metrics.
//! - [`server`]: connections, timeouts and graceful shutdown.
//! - [`pull`]: help desks that cannot push (Request Tracker): their feed, followed.

pub mod config;
pub mod handler;
pub mod metrics;
pub mod produce;
pub mod pull;
pub mod replay;
pub mod server;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use self::config::Forward;
use crate::config::Settings;
use crate::kafka::{check_connection_async, ConnectError};
pub use handler::Ingest;
use produce::{TicketProducer, TopicState};

/// Why the server cannot start. Never retryable without a change, except
/// [`IngestError::Bind`] when the address is only busy for a moment.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The configuration has no `[ingest]` (or no `[kafka]`) section.
    #[error("{0}")]
    Config(String),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Kafka answered and the topic does not exist.
    #[error("topic {0} does not exist (create it first, e.g. deploy/kafka/kafka.sh topics --create --topic {0} --partitions 3)")]
    MissingTopic(String),
    /// The producer cannot be created (bad client properties).
    #[error("{0}")]
    Producer(String),
    /// The cluster refused the login or the TLS handshake (a cluster that does not answer
    /// is not an error at start-up: requests get 503 until it is back).
    #[error(transparent)]
    Kafka(#[from] ConnectError),
}

impl IngestError {
    /// Whether starting again unchanged may work.
    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::Bind { .. })
    }
}

/// Build the server's state from `settings` (no network yet).
pub fn prepare(settings: &Settings, registry: Registry) -> Result<Arc<Ingest>, IngestError> {
    let (Some(ingest), Some(kafka)) = (&settings.ingest, &settings.kafka) else {
        return Err(IngestError::Config(
            "the configuration has no [ingest] section (see deploy/triage.example.toml)".into(),
        ));
    };
    let producer = TicketProducer::new(kafka, &ingest.topic, ingest.produce_timeout)
        .map_err(IngestError::Producer)?;
    if let Some(rt) = &ingest.rt {
        // Reads the token: a missing one is reported at start-up (and by --check-config).
        crate::sink::rt::feed::RtFeed::new(rt).map_err(|e| IngestError::Config(e.to_string()))?;
    }
    let app = Ingest::new(ingest, settings.worker.record_limit(), producer, registry)?;
    Ok(Arc::new(app))
}

/// Run `triage ingest` as `settings` say until `shutdown` turns true. Logs the address it
/// listens on (`listening addr=…`), which matters when the configured port is 0.
pub async fn run(settings: &Settings, shutdown: watch::Receiver<bool>) -> Result<(), IngestError> {
    let app = prepare(settings, Registry::new())?;
    let ingest = settings.ingest.as_ref().expect("checked by prepare");

    // Wrong credentials or an untrusted certificate are mistakes to fix before serving, and
    // so is a missing topic; an unreachable cluster is not: serve anyway (503 until it is
    // back) so the help desks get answers they retry.
    let kafka = settings.kafka.as_ref().expect("checked by prepare");
    match check_connection_async(kafka, Duration::from_secs(5)).await {
        Err(e) if !e.is_retryable() => return Err(e.into()),
        Err(e) => {
            warn!("Kafka is unreachable ({e}); serving anyway: requests get 503 until it is back")
        }
        Ok(()) => match app.producer.topic_state(Duration::from_secs(5)).await {
            TopicState::Missing => return Err(IngestError::MissingTopic(ingest.topic.clone())),
            TopicState::Unreachable(e) => warn!(
                "Kafka is unreachable ({e}); serving anyway: requests get 503 until it is back"
            ),
            TopicState::Ready => {}
        },
    }

    let listener = TcpListener::bind(ingest.listen)
        .await
        .map_err(|source| IngestError::Bind {
            addr: ingest.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| IngestError::Bind {
        addr: ingest.listen,
        source,
    })?;
    for s in &ingest.sources {
        info!(
            route = s.kind.path(),
            auth = %s.auth.describe(),
            record = match s.forward {
                Forward::Raw => "payload as received",
                Forward::Plain => "plain shape",
            },
            "route"
        );
    }
    info!(%addr, topic = %ingest.topic, "listening");
    let poller = match &ingest.rt {
        None => None,
        Some(rt) => {
            let feed = crate::sink::rt::feed::RtFeed::new(rt)
                .map_err(|e| IngestError::Config(e.to_string()))?;
            let nudge = app.nudge("/rt/nudge").expect("made with the settings");
            let pace = pull::Pace {
                poll_interval: rt.poll_interval,
                batch: rt.batch,
            };
            let cursor = pull::Cursor::new(&rt.cursor_file);
            cursor.load().map_err(IngestError::Config)?;
            let (app, shutdown) = (app.clone(), shutdown.clone());
            Some(tokio::spawn(async move {
                let r = pull::follow(
                    std::sync::Arc::new(feed),
                    &app.producer,
                    cursor,
                    pace,
                    nudge,
                    shutdown,
                )
                .await;
                if let Err(e) = &r {
                    tracing::error!("rt: {e}; no longer following RT's feed");
                }
                r
            }))
        }
    };
    server::serve(listener, app, shutdown).await;
    if let Some(p) = poller {
        match p.await {
            Ok(Err(e)) => return Err(IngestError::Config(e)),
            Err(e) => return Err(IngestError::Config(format!("the RT poller failed: {e}"))),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
}
