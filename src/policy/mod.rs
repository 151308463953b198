//! Pure delivery decisions: when to retry, and whether the circuit lets an
//! attempt through.
//!
//! Nothing here reads a clock or owns a random-number generator: the event
//! loops pass the time (milliseconds since the client started) and a
//! `fastrand::Rng` in, so the tests drive them with a virtual clock and
//! seeded draws, without sleeping.

pub(crate) mod breaker;
pub(crate) mod retry;

pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use retry::RetryConfig;

/// Internals opened for `benches/breaker.rs` only. Not public API: no
/// semver guarantee, hidden from the docs.
#[doc(hidden)]
pub mod __bench {
    use std::time::Duration;

    use super::breaker::Breaker as Inner;
    use super::CircuitBreakerConfig;

    /// The shared circuit breaker, wrapped for the benchmarks.
    #[derive(Debug)]
    pub struct Breaker(Inner);

    impl Breaker {
        /// A closed breaker with this threshold and reset timeout.
        pub fn new(failure_threshold: u32, reset_timeout: Duration) -> Breaker {
            let config = CircuitBreakerConfig::default()
                .failure_threshold(failure_threshold)
                .reset_timeout(reset_timeout);
            Breaker(Inner::new(&config))
        }

        /// One attempt's breaker traffic at `now_ms`: asks to go, then
        /// records the outcome. Returns whether the attempt was allowed.
        #[inline]
        pub fn check_and_record(&self, now_ms: u64, success: bool) -> bool {
            match self.0.allow(now_ms) {
                Some(ticket) if success => {
                    self.0.on_success(ticket);
                    true
                }
                Some(ticket) => {
                    self.0.on_failure(ticket, now_ms);
                    true
                }
                None => false,
            }
        }
    }
}
