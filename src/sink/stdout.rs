//! Decisions on standard output, one JSON line each (the `triage classify` shape).

use std::io::{self, Write};

use async_trait::async_trait;

use super::{Delivery, SinkError, TicketSink};

/// Writes each decision as one line of JSON on standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    /// Serialises whole lines: concurrent tickets never interleave their output.
    lock: std::sync::Mutex<()>,
}

impl StdoutSink {
    /// A sink on this process's standard output.
    pub fn new() -> StdoutSink {
        StdoutSink::default()
    }
}

#[async_trait]
impl TicketSink for StdoutSink {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn post(&self, d: Delivery<'_>) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(d.decision)
            .map_err(|e| SinkError::permanent(format!("cannot encode the decision: {e}")))?;
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // Standard output is line buffered: the line is written through before this returns.
        match io::stdout().lock().write_all(&line) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(SinkError::Fatal {
                message: "standard output was closed".into(),
            }),
            Err(e) => Err(SinkError::retry(format!(
                "cannot write to standard output: {e}"
            ))),
        }
    }

    async fn flush(&self) -> Result<(), SinkError> {
        io::stdout()
            .lock()
            .flush()
            .map_err(|e| SinkError::retry(format!("cannot flush standard output: {e}")))
    }
}
