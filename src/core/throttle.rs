//! Rate limits as token buckets: `burst` tokens, one more every `60 s / per_minute`.
//!
//! A bucket is kept as one number, the time it will be full again (the "theoretical
//! arrival time" of GCRA), so the arithmetic is exact integers and a full bucket needs no
//! entry at all. Looking ([`Rate::wait_ms`]) never spends: callers spend only on the
//! outcome being limited (a failed authentication, a refused action), so a client that
//! succeeds is never slowed.

use serde::{Deserialize, Serialize};

/// `burst` at once, then `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

impl Rate {
    /// Both must be at least 1: a limit that allows nothing would stop every pipeline.
    pub fn check(&self, field: &str) -> Result<(), String> {
        if self.burst == 0 || self.per_minute == 0 {
            return Err(format!(
                "{field}: burst and per_minute must be at least 1 (got burst {}, per_minute {})",
                self.burst, self.per_minute
            ));
        }
        Ok(())
    }

    /// Milliseconds per token (at least 1).
    fn interval_ms(&self) -> i64 {
        (60_000 / i64::from(self.per_minute.max(1))).max(1)
    }

    /// How long from `now` until a bucket full again at `full_at` holds a token: 0 if it
    /// holds one now. `full_at` of a key never seen is anything `<= now`.
    pub fn wait_ms(&self, full_at: i64, now: i64) -> i64 {
        let slack = i64::from(self.burst.max(1) - 1) * self.interval_ms();
        full_at.saturating_sub(now).saturating_sub(slack).max(0)
    }

    /// `full_at` after spending one token at `now`.
    pub fn spend(&self, full_at: i64, now: i64) -> i64 {
        full_at.max(now).saturating_add(self.interval_ms())
    }

    /// Whether a bucket full again at `full_at` is full at `now` (its entry can go).
    pub fn is_full(full_at: i64, now: i64) -> bool {
        full_at <= now
    }
}

/// `Retry-After` seconds for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait_ms: i64) -> u64 {
    u64::try_from(wait_ms.max(1)).unwrap_or(1).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate {
        burst: 3,
        per_minute: 60,
    };

    #[test]
    fn a_fresh_key_may_go_and_burst_is_spent_one_by_one() {
        let mut at = 0;
        for _ in 0..3 {
            assert_eq!(R.wait_ms(at, 0), 0);
            at = R.spend(at, 0);
        }
        assert_eq!(R.wait_ms(at, 0), 1000, "the fourth waits one interval");
        assert_eq!(R.wait_ms(at, 999), 1);
        assert_eq!(R.wait_ms(at, 1000), 0, "one token back after one interval");
        assert!(!Rate::is_full(at, 2999));
        assert!(Rate::is_full(at, 3000), "all back after burst intervals");
    }

    #[test]
    fn spending_while_empty_pushes_the_wait_out() {
        let mut at = 0;
        for _ in 0..5 {
            at = R.spend(at, 0);
        }
        assert_eq!(R.wait_ms(at, 0), 3000);
    }

    #[test]
    fn an_old_bucket_is_full_again_not_in_credit() {
        let at = R.spend(0, 0);
        let later = 1_000_000;
        let mut at2 = at;
        for _ in 0..3 {
            assert_eq!(R.wait_ms(at2, later), 0);
            at2 = R.spend(at2, later);
        }
        assert!(R.wait_ms(at2, later) > 0, "a long quiet spell gives burst, not more");
    }

    #[test]
    fn burst_one_allows_one_per_interval() {
        let r = Rate {
            burst: 1,
            per_minute: 2,
        };
        let at = r.spend(0, 0);
        assert_eq!(r.wait_ms(at, 0), 30_000);
        assert_eq!(r.wait_ms(at, 30_000), 0);
    }

    #[test]
    fn extremes_do_not_overflow_or_divide_by_zero() {
        let huge = Rate {
            burst: u32::MAX,
            per_minute: u32::MAX,
        };
        assert!(huge.wait_ms(i64::MAX, i64::MIN) > 0);
        assert_eq!(huge.spend(i64::MAX, 0), i64::MAX);
        let zero = Rate {
            burst: 0,
            per_minute: 0,
        };
        assert!(zero.check("throttle.x").unwrap_err().contains("throttle.x"));
        assert!(zero.wait_ms(zero.spend(i64::MAX, 0), 0) >= 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1000), 1);
        assert_eq!(retry_after_secs(1001), 2);
    }
}
