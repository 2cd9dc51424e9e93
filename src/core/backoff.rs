//! Capped exponential backoff: how long to pause before retrying something that failed.
//! Pure: the caller counts the retries and passes the random source in.

use std::time::Duration;

use rand::Rng;

/// `base` doubling with each retry, never above `max` (and never under 1 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The full pause before retry `retry` (0 for the first): `base` × 2^`retry`, capped
    /// at `max`, in whole milliseconds.
    pub fn pause(&self, retry: u32) -> Duration {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let full = ms(self.base)
            .saturating_mul(1u64 << retry.min(63))
            .min(ms(self.max))
            .max(1);
        Duration::from_millis(full)
    }

    /// [`Backoff::pause`] jittered into its upper half (uniformly, whole milliseconds), so
    /// that clients or rows that failed together do not retry in lockstep.
    pub fn jittered(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let full = self.pause(retry).as_millis() as u64;
        Duration::from_millis(rng.gen_range(full / 2..=full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_caps_and_jitters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let b = Backoff::new(ms(1000), ms(300_000));
        for (retry, full) in [
            (0, 1000),
            (1, 2000),
            (2, 4000),
            (8, 256_000),
            (9, 300_000),
            (499, 300_000),
        ] {
            assert_eq!(b.pause(retry), ms(full));
            for _ in 0..50 {
                let d = b.jittered(retry, &mut rng);
                assert!(
                    (ms(full / 2)..=ms(full)).contains(&d),
                    "retry {retry}: {d:?} not in {}..={full} ms",
                    full / 2
                );
            }
        }
        assert!(Backoff::new(ms(1), ms(1)).jittered(0, &mut rng) <= ms(1));
        assert_eq!(Backoff::new(Duration::ZERO, ms(5)).pause(3), ms(1), "never a busy loop");
    }

    /// The gate's retries: 200 ms doubling to 10 s; the listener's reconnects: 100 ms to 10 s.
    #[test]
    fn the_callers_schedules() {
        let gate = Backoff::new(ms(200), ms(10_000));
        let got: Vec<u64> = (0..8).map(|r| gate.pause(r).as_millis() as u64).collect();
        assert_eq!(got, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        let listener = Backoff::new(ms(100), ms(10_000));
        let got: Vec<u64> = (0..9).map(|r| listener.pause(r).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(listener.pause(u32::MAX), ms(10_000));
    }
}
