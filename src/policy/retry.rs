//! Retry policy: how many attempts, and how long to wait before each retry.
//!
//! The delay is "full jitter" (AWS Architecture Blog, *Exponential Backoff
//! and Jitter*): before retry `n` (counting from 0) the wait is drawn
//! uniformly from `0..=min(max_backoff, initial_backoff · multiplierⁿ)`, so
//! clients that failed together do not retry together. A `Retry-After`
//! header on a 5xx answer raises the wait to at least what the server
//! asked, still capped at `max_backoff`.
//!
//! Everything here is pure: the caller passes the random-number generator,
//! and the server's `Retry-After` already turned into a wait (parsing it
//! is response decoding, in `proto::retry_after`).

use std::time::Duration;

/// When and how often a failed delivery is tried again.
///
/// Only retryable failures are retried (see
/// `NotificationError::is_retryable`): connection, I/O, timeout and
/// protocol failures, and 5xx answers. A message waiting for its retry sits
/// on its event loop's timer, not in a connection slot, so backoff never
/// holds up other messages; it still counts against the client's
/// `queue_size + workers` bound.
///
/// With retry on, delivery is at-least-once: a request whose connection
/// broke after it was written may have reached the server and is sent
/// again.
///
/// Defaults: 3 attempts (the first try and two retries), 100 ms initial
/// backoff, 10 s maximum backoff, multiplier 2.0.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use notifier::RetryConfig;
///
/// // The first try and up to four retries, waiting up to
/// // 50 ms, 100 ms, 200 ms and 400 ms (each drawn at random below that).
/// let retry = RetryConfig::default()
///     .max_attempts(5u32)
///     .initial_backoff(Duration::from_millis(50))
///     .max_backoff(Duration::from_secs(1))
///     .multiplier(2.0);
/// # let _ = retry;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
}

impl Default for RetryConfig {
    /// 3 attempts, 100 ms initial backoff, 10 s maximum, multiplier 2.0.
    fn default() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// Attempts per message, counting the first try: 1 means no retry.
    /// Default 3. Zero is taken as 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use notifier::RetryConfig;
    ///
    /// // Try once, then retry at most once.
    /// let retry = RetryConfig::default().max_attempts(2u32);
    /// # let _ = retry;
    /// ```
    #[must_use]
    pub fn max_attempts(mut self, n: u32) -> RetryConfig {
        self.max_attempts = n.max(1);
        self
    }

    /// The cap on the wait before the first retry; later caps grow by
    /// [`multiplier`](RetryConfig::multiplier). Default 100 ms.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use notifier::RetryConfig;
    ///
    /// let retry = RetryConfig::default().initial_backoff(Duration::from_millis(20));
    /// # let _ = retry;
    /// ```
    #[must_use]
    pub fn initial_backoff(mut self, d: Duration) -> RetryConfig {
        self.initial_backoff = d;
        self
    }

    /// The longest wait before any retry, a server's `Retry-After`
    /// included. Default 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use notifier::RetryConfig;
    ///
    /// // Never wait more than 2 s, whatever the server asks for.
    /// let retry = RetryConfig::default().max_backoff(Duration::from_secs(2));
    /// # let _ = retry;
    /// ```
    #[must_use]
    pub fn max_backoff(mut self, d: Duration) -> RetryConfig {
        self.max_backoff = d;
        self
    }

    /// How much the cap on the wait grows from one retry to the next.
    /// Default 2.0. Values below 1.0, and NaN, are taken as 1.0 (the same
    /// cap for every retry).
    ///
    /// # Examples
    ///
    /// ```
    /// use notifier::RetryConfig;
    ///
    /// let retry = RetryConfig::default().multiplier(1.5);
    /// # let _ = retry;
    /// ```
    #[must_use]
    pub fn multiplier(mut self, m: f64) -> RetryConfig {
        self.multiplier = if m >= 1.0 { m } else { 1.0 };
        self
    }

    /// The wait before the next attempt of a message that has been tried
    /// `attempts_made` times, or `None` when `attempts_made` reached
    /// `max_attempts`.
    ///
    /// `retry_after` is the server's `Retry-After` as a wait (see
    /// [`RetryAfter::delay`](crate::proto::retry_after::RetryAfter::delay));
    /// pass it only for 5xx answers. It raises the jittered wait, capped at
    /// `max_backoff`.
    #[must_use]
    pub(crate) fn next_delay(
        &self,
        attempts_made: u32,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        if attempts_made >= self.max_attempts {
            return None;
        }
        let cap = self.backoff_cap(attempts_made.saturating_sub(1));
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.u64(0..=cap_nanos));
        let asked = retry_after.map_or(Duration::ZERO, |d| d.min(self.max_backoff));
        Some(jittered.max(asked))
    }

    /// `min(max_backoff, initial_backoff · multiplier^retries)`.
    pub(crate) fn backoff_cap(&self, retries: u32) -> Duration {
        if self.initial_backoff >= self.max_backoff {
            // The multiplier is at least 1: the cap is reached at once.
            return self.max_backoff;
        }
        let exp = i32::try_from(retries).unwrap_or(i32::MAX);
        // Nanoseconds are exact in an f64 up to 2^53 (about 104 days), so
        // the first cap is exactly `initial_backoff`.
        let scaled = self.initial_backoff.as_nanos() as f64 * self.multiplier.powi(exp);
        if scaled >= self.max_backoff.as_nanos() as f64 {
            self.max_backoff
        } else {
            // Below `max_backoff`, hence finite and non-negative; NaN
            // (0 · ∞) becomes 0, which is right for a zero initial backoff.
            Duration::from_nanos(scaled as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(0x5eed)
    }

    const DRAWS: usize = if cfg!(miri) { 100 } else { 20_000 };

    #[test]
    fn defaults() {
        let c = RetryConfig::default();
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.initial_backoff, 100 * MS);
        assert_eq!(c.max_backoff, Duration::from_secs(10));
        assert_eq!(c.multiplier, 2.0);
    }

    #[test]
    fn setters_clamp_nonsense() {
        let c = RetryConfig::default().max_attempts(0u32).multiplier(0.5);
        assert_eq!((c.max_attempts, c.multiplier), (1, 1.0));
        assert_eq!(RetryConfig::default().multiplier(f64::NAN).multiplier, 1.0);
        assert_eq!(RetryConfig::default().multiplier(3.0).multiplier, 3.0);
    }

    #[test]
    fn the_cap_grows_by_the_multiplier_up_to_max_backoff() {
        let c = RetryConfig::default();
        let caps: Vec<Duration> = (0..9).map(|n| c.backoff_cap(n)).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            caps,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(10_000),
                ms(10_000)
            ]
        );
        assert_eq!(c.backoff_cap(u32::MAX), Duration::from_secs(10));
        let three = RetryConfig::default().multiplier(3.0);
        assert_eq!(three.backoff_cap(2), ms(900));
        let flat = RetryConfig::default().multiplier(1.0);
        assert_eq!(flat.backoff_cap(1000), ms(100));
        let inf = RetryConfig::default().multiplier(f64::INFINITY);
        assert_eq!(
            (inf.backoff_cap(0), inf.backoff_cap(1)),
            (ms(100), ms(10_000))
        );
        let zero = RetryConfig::default()
            .initial_backoff(Duration::ZERO)
            .multiplier(f64::INFINITY);
        assert_eq!(zero.backoff_cap(5), Duration::ZERO);
        let inverted = RetryConfig::default()
            .initial_backoff(Duration::from_secs(60))
            .max_backoff(Duration::from_secs(1));
        assert_eq!(inverted.backoff_cap(0), Duration::from_secs(1));
        let huge = RetryConfig::default().max_backoff(Duration::MAX);
        assert_eq!(huge.backoff_cap(200), Duration::MAX);
    }

    /// Full jitter: every draw lies in `0..=cap`, and the draws spread
    /// over the whole range (some near zero, some near the cap).
    #[test]
    fn jitter_stays_within_zero_and_the_cap() {
        let c = RetryConfig::default().max_attempts(10u32);
        let mut rng = rng();
        for attempts_made in 1..10 {
            let cap = c.backoff_cap(attempts_made - 1);
            let draws: Vec<Duration> = (0..DRAWS)
                .map(|_| {
                    c.next_delay(attempts_made, None, &mut rng)
                        .expect("not exhausted")
                })
                .collect();
            let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
            assert!(*hi <= cap, "attempt {attempts_made}: {hi:?} > {cap:?}");
            assert!(*lo < cap / 50, "attempt {attempts_made}: min {lo:?}");
            assert!(*hi > cap - cap / 50, "attempt {attempts_made}: max {hi:?}");
            let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
            assert!(
                mean > cap * 45 / 100 && mean < cap * 55 / 100,
                "attempt {attempts_made}: mean {mean:?} of cap {cap:?}"
            );
        }
    }

    #[test]
    fn the_first_retry_is_capped_by_initial_backoff() {
        let c = RetryConfig::default();
        let mut rng = rng();
        for _ in 0..DRAWS {
            assert!(c.next_delay(1, None, &mut rng).expect("retry") <= 100 * MS);
        }
    }

    #[test]
    fn same_seed_same_delays() {
        let c = RetryConfig::default();
        let (mut a, mut b) = (rng(), rng());
        for n in 1..3 {
            assert_eq!(c.next_delay(n, None, &mut a), c.next_delay(n, None, &mut b));
        }
    }

    #[test]
    fn attempts_run_out_at_max_attempts() {
        let c = RetryConfig::default();
        let mut rng = rng();
        assert!(c.next_delay(1, None, &mut rng).is_some());
        assert!(c.next_delay(2, None, &mut rng).is_some());
        assert_eq!(c.next_delay(3, None, &mut rng), None);
        assert_eq!(c.next_delay(u32::MAX, None, &mut rng), None);
        let once = RetryConfig::default().max_attempts(1u32);
        assert_eq!(once.next_delay(1, None, &mut rng), None);
        let zero = RetryConfig::default().max_attempts(0u32);
        assert_eq!(zero.next_delay(1, None, &mut rng), None);
    }

    #[test]
    fn retry_after_raises_the_delay() {
        let c = RetryConfig::default();
        let mut rng = rng();
        // The jitter is at most 100 ms: the server's 3 s wins.
        let asked = Some(Duration::from_secs(3));
        assert_eq!(
            c.next_delay(1, asked, &mut rng),
            Some(Duration::from_secs(3))
        );
        // Below the jitter it is a floor, not a replacement.
        for _ in 0..DRAWS {
            let d = c.next_delay(1, Some(40 * MS), &mut rng).expect("retry");
            assert!(d >= 40 * MS && d <= 100 * MS, "{d:?}");
        }
        assert_eq!(
            c.next_delay(2, Some(Duration::ZERO), &mut rng)
                .map(|d| d <= 200 * MS),
            Some(true)
        );
    }

    #[test]
    fn retry_after_is_capped_by_max_backoff() {
        let c = RetryConfig::default();
        let mut rng = rng();
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            c.next_delay(1, hour, &mut rng),
            Some(Duration::from_secs(10))
        );
        let far = Duration::from_secs(u64::MAX);
        assert_eq!(
            c.next_delay(2, Some(far), &mut rng),
            Some(Duration::from_secs(10))
        );
        // It never revives a message whose attempts ran out.
        assert_eq!(c.next_delay(3, hour, &mut rng), None);
    }
}
