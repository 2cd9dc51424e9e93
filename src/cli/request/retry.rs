//! Retrying a call through network trouble, with the gate's backoff.

use std::time::{Duration, Instant};

use super::Signals;
use crate::client::ClientError;
use crate::core::backoff::Backoff;

/// The gate's retry pauses: 200 ms doubling to 10 s, jittered.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The retries of one call so far.
#[derive(Default)]
pub(super) struct Retries(u32);

impl Retries {
    /// The pause before the next retry.
    pub(super) fn next(&mut self) -> Duration {
        let pause = RETRY.jittered(self.0, &mut rand::thread_rng());
        self.0 = self.0.saturating_add(1);
        pause
    }
}

/// Retries a call through transient errors within the budget. `Err(None)`: interrupted.
pub(super) async fn retry<F, Fut, T>(signals: &mut Signals, budget: Duration, f: F) -> Result<T, Option<ClientError>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let start = Instant::now();
    let mut retries = Retries::default();
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && start.elapsed() < budget => {
                // A server that says how long to wait (429, 503) is believed, up to a
                // minute: its limit will not have lifted sooner.
                let asked = e.retry_after().unwrap_or_default().min(Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep(retries.next().max(asked)) => {}
                    _ = signals.recv() => return Err(None),
                }
            }
            Err(e) => return Err(Some(e)),
        }
    }
}
