//! Pure delivery decisions: when to retry, whether the circuit lets an
//! attempt through, and (the ledger, which uses both) what becomes of a
//! message after each attempt; how long an idle connection may still
//! carry a request (learned from the server), and how a slot backs off
//! when the machine is short of sockets.
//!
//! Nothing here reads a clock or owns a random-number generator: the event
//! loops pass the time (milliseconds since the client started) and a
//! `fastrand::Rng` in, so the tests drive them with a virtual clock and
//! seeded draws, without sleeping.

pub(crate) mod breaker;
pub(crate) mod idle;
pub(crate) mod ledger;
pub(crate) mod retry;
pub(crate) mod shortage;

pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use retry::RetryConfig;
