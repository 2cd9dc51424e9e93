//! Back-pressure per client: `429 Too Many Requests` with `Retry-After` for a client
//! address that keeps failing authentication, for a caller whose actions keep being
//! refused, and for a caller holding too many long-waits at once. The arithmetic is
//! [`crate::core::throttle`]; this holds the tables and reads the clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use super::error::AppError;
use crate::config::Config;
use crate::core::throttle::{Rate, retry_after_secs};

/// Keys remembered at most per table. Full buckets are dropped first; past that a new
/// key is not tracked (it is let through), so a spray of addresses costs bounded memory
/// and never locks out a client the table has no room for.
const MAX_KEYS: usize = 100_000;

/// Milliseconds on a monotonic clock: wall-clock steps must not lift or extend a limit.
fn now_ms() -> i64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    i64::try_from(START.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// One token bucket per key.
pub struct Buckets<K> {
    rate: Rate,
    what: &'static str,
    full_at: Mutex<HashMap<K, i64>>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    fn new(rate: Rate, what: &'static str) -> Self {
        Buckets {
            rate,
            what,
            full_at: Mutex::default(),
        }
    }

    /// `429` if `key` has no token left; looking spends nothing.
    pub fn check(&self, key: &K) -> Result<(), AppError> {
        let now = now_ms();
        let full_at = self.table().get(key).copied().unwrap_or(now);
        match self.rate.wait_ms(full_at, now) {
            0 => Ok(()),
            wait => Err(AppError::TooManyRequests {
                message: format!("too many {}; retry later", self.what),
                retry_after: retry_after_secs(wait),
            }),
        }
    }

    /// Spends a token of `key` (the limited outcome happened).
    pub fn spend(&self, key: K) {
        let now = now_ms();
        let mut t = self.table();
        if t.len() >= MAX_KEYS && !t.contains_key(&key) {
            t.retain(|_, at| !Rate::is_full(*at, now));
            if t.len() >= MAX_KEYS {
                return;
            }
        }
        let at = t.entry(key).or_insert(now);
        *at = self.rate.spend(*at, now);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<K, i64>> {
        self.full_at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Long-waits in progress per caller, capped.
pub struct WaitSlots {
    max: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One long-wait's place; dropping it (however the wait ends) frees it.
pub struct WaitSlot {
    held: Arc<Mutex<HashMap<String, usize>>>,
    caller: String,
}

impl WaitSlots {
    /// A place for one more long-wait of `caller`, or `429` if it holds `max` already.
    pub fn take(&self, caller: &str) -> Result<WaitSlot, AppError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(caller.to_string()).or_insert(0);
        if *n >= self.max {
            return Err(AppError::TooManyRequests {
                message: format!(
                    "{caller} already holds {} long-waits, the most one caller may (`max_waits_per_caller`); retry when one ends",
                    self.max
                ),
                retry_after: 1,
            });
        }
        *n += 1;
        Ok(WaitSlot {
            held: self.held.clone(),
            caller: caller.to_string(),
        })
    }
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.caller);
            }
        }
    }
}

/// The server's limits, shared by every handler.
pub struct Throttle {
    /// Per client address (`None`: not known), spent on each `401`.
    pub failed_auth: Buckets<Option<IpAddr>>,
    /// Per caller name, spent on each refused action.
    pub refused: Buckets<String>,
    pub waits: WaitSlots,
}

impl Throttle {
    pub fn new(cfg: &Config) -> Self {
        let t = cfg.throttle.clone().unwrap_or_default();
        Throttle {
            failed_auth: Buckets::new(t.failed_auth(), "failed authentications from this address"),
            refused: Buckets::new(t.refused(), "refused actions by this caller"),
            waits: WaitSlots {
                max: cfg
                    .max_waits_per_caller
                    .unwrap_or(crate::config::limits::MAX_WAITS_PER_CALLER),
                held: Arc::default(),
            },
        }
    }

    /// Runs an action of `caller` unless its refusals used up its bucket; a refusal
    /// (a 403, 409 or 422 the action answers) spends a token. Checked before the action
    /// runs, so a flood of refused actions writes no audit events past the burst.
    pub async fn action<T>(&self, caller: &str, act: impl Future<Output = Result<T, AppError>>) -> Result<T, AppError> {
        let key = caller.to_string();
        self.refused.check(&key)?;
        let r = act.await;
        if let Err(e) = &r
            && matches!(e.status().as_u16(), 403 | 409 | 422)
        {
            self.refused.spend(key);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_limited_after_its_burst_and_others_are_not() {
        let b = Buckets::new(
            Rate {
                burst: 2,
                per_minute: 1,
            },
            "tries",
        );
        b.spend("a");
        assert!(b.check(&"a").is_ok());
        b.spend("a");
        match b.check(&"a") {
            Err(AppError::TooManyRequests { retry_after, message }) => {
                assert!(retry_after >= 59, "{retry_after}");
                assert!(message.contains("tries"));
            }
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(b.check(&"b").is_ok());
    }

    #[test]
    fn wait_slots_are_counted_per_caller_and_freed_on_drop() {
        let w = WaitSlots {
            max: 2,
            held: Arc::default(),
        };
        let a1 = w.take("a").unwrap();
        let _a2 = w.take("a").unwrap();
        assert!(matches!(w.take("a"), Err(AppError::TooManyRequests { .. })));
        let _b = w.take("b").unwrap();
        drop(a1);
        let _a3 = w.take("a").unwrap();
        assert!(w.take("a").is_err());
    }
}
