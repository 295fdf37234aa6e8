//! Stop requests: the first SIGTERM or SIGINT turns a shutdown token, which the worker and
//! `triage ingest` take as an argument; the second is reported to the caller, which decides
//! what to do (the binary exits at once, status 130). Nothing here ends the process.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};
use tracing::info;

/// The process's stop signals, listened to from [`Signals::listen`] on.
pub struct Signals {
    /// Turns `true` on the first SIGTERM or SIGINT.
    requested: watch::Receiver<bool>,
    /// Fires on the second.
    again: oneshot::Receiver<()>,
}

impl Signals {
    /// Listen for SIGTERM and SIGINT. Must be called inside the runtime.
    pub fn listen() -> std::io::Result<Signals> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, requested) = watch::channel(false);
        let (again_tx, again) = oneshot::channel();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            info!("stop requested: finishing the tickets in flight (signal again to stop at once)");
            let _ = tx.send(true);
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = again_tx.send(());
        });
        Ok(Signals { requested, again })
    }

    /// The shutdown token: a watch that turns `true` on the first signal.
    pub fn token(&self) -> watch::Receiver<bool> {
        self.requested.clone()
    }

    /// Resolves on the second signal (never, if the listener is gone).
    pub async fn second(self) {
        if self.again.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
