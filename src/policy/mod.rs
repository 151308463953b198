//! Pure delivery decisions: when to retry, whether the circuit lets an
//! attempt through, and (the ledger, which uses both) what becomes of a
//! message after each attempt.
//!
//! Nothing here reads a clock or owns a random-number generator: the event
//! loops pass the time (milliseconds since the client started) and a
//! `fastrand::Rng` in, so the tests drive them with a virtual clock and
//! seeded draws, without sleeping.

pub(crate) mod breaker;
pub(crate) mod ledger;
pub(crate) mod retry;

pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use retry::RetryConfig;
