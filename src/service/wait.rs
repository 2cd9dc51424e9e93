//! Wake-ups and the long-wait: per-request watch channels for waiters, a broadcast of
//! every change for the UI's event stream.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Engine;
use super::error::Result;
use crate::core::api::RequestView;
use crate::core::decide::Status;
use crate::store::RequestRow;

/// A state change broadcast to the UI's event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub status: Status,
    pub version: i64,
}

impl Engine {
    /// A receiver that changes whenever request `id` does. Subscribe before reading, so
    /// no change can slip between the read and the wait.
    pub fn subscribe(&self, id: &str) -> watch::Receiver<i64> {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Drops the channel of `id` once nobody waits on it.
    pub fn unsubscribe(&self, id: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if w.get(id).is_some_and(|s| s.receiver_count() == 0) {
            w.remove(id);
        }
    }

    pub(super) fn publish(&self, row: &RequestRow) {
        self.publish_change(Change {
            id: row.id.clone(),
            status: row.status,
            version: row.version,
        });
    }

    /// Wakes local waiters and the event stream for a change, made here or (through
    /// PostgreSQL LISTEN/NOTIFY) on another replica.
    pub fn publish_change(&self, c: Change) {
        if let Some(s) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).get(&c.id) {
            s.send_if_modified(|v| {
                let newer = c.version > *v;
                if newer {
                    *v = c.version;
                }
                newer
            });
        }
        let _ = self.changes.send(c);
    }

    /// Long-wait: returns as soon as request `id` is no longer at `since` (its version;
    /// without one, as soon as it is not pending), or when `timeout` passes.
    pub async fn wait(
        &self,
        id: &str,
        since: Option<i64>,
        timeout: std::time::Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<RequestView> {
        // Subscribe before the first read so a change between read and wait still wakes us.
        let mut rx = self.subscribe(id);
        // A covered request whose covering decision was not followed (a crash between
        // the two) follows it now, so its gate is never left waiting.
        if let Err(e) = Box::pin(self.catch_up_scope(id, crate::core::duration::now_ms())).await {
            tracing::debug!(request = %id, error = %e, "scope catch-up");
        }
        let _guard = Waiting::new(self);
        let result = self.wait_inner(id, since, timeout, shutdown, &mut rx).await;
        drop(rx);
        self.unsubscribe(id);
        result
    }

    async fn wait_inner(
        &self,
        id: &str,
        since: Option<i64>,
        timeout: std::time::Duration,
        shutdown: &mut watch::Receiver<bool>,
        rx: &mut watch::Receiver<i64>,
    ) -> Result<RequestView> {
        let until = tokio::time::Instant::now() + timeout;
        // What the wait needs between reads: a few words, not the request. The row, its
        // document and votes are read again after every wake-up, so none of them is held
        // while the request waits (thousands of waiters: see docs/performance.md).
        let mut known = since;
        let mut last_read = false;
        loop {
            // Boxed: the store's and the expiry's futures are large, and inline they would
            // size every waiting future.
            let (row, votes) = Box::pin(self.load(id)).await?;
            let base = *known.get_or_insert(row.version);
            let status = row.status;
            let news = row.version != base || (since.is_none() && status != Status::Pending);
            if last_read || news || status.is_terminal() || *shutdown.borrow() {
                return self.view(&row, &votes);
            }
            let due = match status {
                Status::Pending => Some(row.expires_at),
                _ => row.approval_expires_at,
            };
            drop((row, votes));
            let now = crate::core::duration::now_ms();
            if due.is_some_and(|d| now >= d) {
                Box::pin(self.expire(id, now)).await?;
                continue;
            }
            let wake = due
                .map(|d| tokio::time::Instant::now() + std::time::Duration::from_millis((d - now).max(0) as u64))
                .unwrap_or(until)
                .min(until);
            tokio::select! {
                r = rx.changed() => last_read = r.is_err(),
                _ = tokio::time::sleep_until(wake) => last_read = wake >= until,
                _ = shutdown.changed() => {}
            }
        }
    }
}

struct Waiting<'a>(&'a Engine);

impl<'a> Waiting<'a> {
    fn new(e: &'a Engine) -> Self {
        e.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(e)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}
