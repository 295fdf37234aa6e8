//! The HTTP/1.1 server: accepts connections (at most `max_connections` open), gives clients
//! `request_timeout` to send their headers, hands requests to the [`Ingest`] handler, and on
//! shutdown stops accepting, lets requests in flight finish (closing idle keep-alive
//! connections) within the drain timeout, and flushes the producer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use super::handler::Ingest;
use super::produce::TopicState;

/// Resolves once `shutdown` turns true (never, if its sender is gone without saying so).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Serve `app` on `listener` until `shutdown` turns true; then drain.
pub async fn serve(listener: TcpListener, app: Arc<Ingest>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(app.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(app.request_timeout)
        .keep_alive(true);

    // Readiness: look at the topic now and then (often while it is not ready).
    let probe = tokio::spawn(probe(app.clone(), shutdown.clone()));

    loop {
        // A connection slot first: beyond the limit, clients wait in the listen backlog.
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            p = connections.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = app.clone();
        let service = service_fn(move |req| handler.clone().handle(req));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%peer, "connection ended: {e}");
            }
            drop(permit);
        });
    }

    // Drain: no new connections; requests in flight finish, idle connections close.
    drop(listener);
    app.stopping.store(true, Ordering::Release);
    info!(
        in_flight = app.metrics().requests_in_flight(),
        "no longer accepting connections; finishing the requests in flight"
    );
    tokio::select! {
        _ = graceful.shutdown() => debug!("every connection closed"),
        _ = tokio::time::sleep(app.drain_timeout) => warn!(
            "drain timeout reached; requests still in flight are dropped unanswered (the help desk retries them)"
        ),
    }
    probe.abort();
    app.producer.flush(Duration::from_secs(5)).await;
    info!("stopped");
}

async fn probe(app: Arc<Ingest>, mut shutdown: watch::Receiver<bool>) {
    let mut last: Option<TopicState> = None;
    loop {
        let state = app.producer.topic_state(Duration::from_secs(3)).await;
        if last.as_ref() != Some(&state) {
            match &state {
                TopicState::Ready => info!(topic = app.producer.topic(), "Kafka topic is ready"),
                TopicState::Missing => warn!(
                    topic = app.producer.topic(),
                    "the topic does not exist: requests get 503 until it is created"
                ),
                TopicState::Unreachable(e) => {
                    warn!("Kafka is unreachable ({e}): requests get 503 until it is back")
                }
            }
        }
        let wait = if state == TopicState::Ready {
            Duration::from_secs(5)
        } else {
            Duration::from_secs(1)
        };
        app.set_readiness(state.clone());
        last = Some(state);
        tokio::select! {
            _ = stopped(&mut shutdown) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
