//! The worker's HTTP endpoints, for Prometheus and for Kubernetes probes:
//!
//! - `GET /metrics`: every metric of [`crate::metrics`], Prometheus text format.
//! - `GET /healthz`: liveness; `200 ok` while the process serves requests at all.
//! - `GET /readyz`: readiness; `200 ready` once the catalogue is loaded and the consumer has
//!   joined its group and been assigned partitions (an empty share counts: a worker beyond the
//!   partition count is idle, not broken), while no sink's circuit breaker is open and no stop
//!   was requested. Otherwise `503` with the reasons, one per line.
//!
//! The server is off unless `[server] listen` is set; it never serves ticket data.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::metrics::{Metrics, CONTENT_TYPE};

/// What `/readyz` looks at besides the metrics; cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// A valid catalogue is in service.
    catalogue: AtomicBool,
    /// The input is ready: the consumer joined its group and got its assignment (a file is
    /// ready once opened).
    input: AtomicBool,
    /// A stop was requested: the worker drains and takes nothing new.
    stopping: AtomicBool,
}

impl Health {
    /// Nothing ready yet.
    pub fn new() -> Health {
        Health::default()
    }

    /// A valid catalogue is in service (a refused reload keeps the old one: still true).
    pub fn catalogue_loaded(&self) {
        self.inner.catalogue.store(true, Ordering::Release);
    }

    /// The consumer has (`true`) or has lost (`false`) its place in the group.
    pub fn input_assigned(&self, assigned: bool) {
        self.inner.input.store(assigned, Ordering::Release);
    }

    /// A stop was requested.
    pub fn stopping(&self) {
        self.inner.stopping.store(true, Ordering::Release);
    }

    /// `Ok` when ready, otherwise why not.
    pub fn readiness(&self, metrics: &Metrics) -> Result<(), Vec<String>> {
        let i = &self.inner;
        let mut why = Vec::new();
        if i.stopping.load(Ordering::Acquire) {
            why.push("stopping: draining the tickets in flight".to_string());
        }
        if !i.catalogue.load(Ordering::Acquire) {
            why.push("no catalogue loaded yet".to_string());
        }
        if !i.input.load(Ordering::Acquire) {
            why.push("the consumer has not joined its group / been assigned partitions".into());
        }
        for sink in metrics.open_circuits() {
            why.push(format!("sink {sink}: circuit open"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }
}

/// The metrics and the health of one worker, handed to the parts that update them.
#[derive(Clone, Default)]
pub struct Telemetry {
    /// The registry and its named methods.
    pub metrics: Metrics,
    /// Readiness flags.
    pub health: Health,
}

/// A running HTTP server; stop it with [`Server::stop`].
pub struct Server {
    /// Where it listens (with the real port when `:0` was asked for).
    addr: SocketAddr,
    /// Turns true to stop serving.
    stop: watch::Sender<bool>,
    /// The serving task.
    task: JoinHandle<()>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (server.listen): {source}")]
pub struct ServerError {
    /// The configured address.
    pub addr: SocketAddr,
    /// Why (address in use, permission denied…).
    #[source]
    pub source: std::io::Error,
}

impl ServerError {
    /// Retrying may help when the address is in use by a process that is going away.
    pub fn is_retryable(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

impl Server {
    /// Listen on `addr` and serve in the background.
    pub async fn start(addr: SocketAddr, telemetry: Telemetry) -> Result<Server, ServerError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError { addr, source })?;
        let app = router(telemetry);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                warn!("the metrics server stopped: {e}");
            }
        });
        info!(address = %local, "serving /metrics, /healthz and /readyz on http://{local}");
        Ok(Server {
            addr: local,
            stop,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving (open connections finish their request).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The routes, for [`Server::start`] and tests.
pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(telemetry)
}

async fn metrics(State(t): State<Telemetry>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], t.metrics.render()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(t): State<Telemetry>) -> Response {
    match t.health.readiness(&t.metrics) {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", why.join("\n")),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: this server has /metrics, /healthz and /readyz\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bare HTTP/1.1 GET: (status, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
        (status, body)
    }

    #[tokio::test]
    async fn probes_follow_the_state() {
        let t = Telemetry::default();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), t.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(
            body.contains("no catalogue") && body.contains("consumer"),
            "{body}"
        );

        t.health.catalogue_loaded();
        t.health.input_assigned(true);
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));

        let sink = t.metrics.sink("webhook");
        sink.circuit_open(true);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(
            (status, body.contains("sink webhook: circuit open")),
            (503, true)
        );
        sink.circuit_open(false);
        assert_eq!(get(addr, "/readyz").await.0, 200);

        t.health.stopping();
        assert_eq!(get(addr, "/readyz").await.0, 503);
        assert_eq!(get(addr, "/healthz").await.0, 200, "alive while draining");

        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("triage_build_info{version=\""), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        server.stop().await;
    }
}
