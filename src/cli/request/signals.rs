//! SIGINT and SIGTERM: a gate stopped while it waits cancels its request.

use crate::cli::Failure;

/// SIGINT and SIGTERM, as one stream.
pub(super) struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(super) fn new() -> Result<Signals, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = signal(SignalKind::terminate()).map_err(|e| Failure::usage(format!("signals: {e}")))?;
            let int = signal(SignalKind::interrupt()).map_err(|e| Failure::usage(format!("signals: {e}")))?;
            Ok(Signals { term, int })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    pub(super) async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
