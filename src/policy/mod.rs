//! Pure delivery decisions: when to retry, whether the circuit lets an
//! attempt through, and (the ledger, which uses both) what becomes of a
//! message after each attempt; and the connections' own: which address a
//! connect tries when (`eyeballs`), when the host name is looked up again
//! (`refresh`), when a connection is re-opened ahead of messages
//! (`redial`), how long an idle connection may still carry a request
//! (learned from the server, `idle`), and how a slot backs off when the
//! machine is short of sockets (`shortage`).
//!
//! Nothing here reads a clock or owns a random-number generator: the event
//! loops and the resolver pass the time (an `Instant`, or milliseconds
//! since the client started) and the random draws in, so the tests drive
//! them with a virtual clock and chosen draws, without sleeping.

pub(crate) mod breaker;
pub(crate) mod eyeballs;
pub(crate) mod idle;
pub(crate) mod ledger;
pub(crate) mod redial;
pub(crate) mod refresh;
pub(crate) mod retry;
pub(crate) mod shortage;

pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use retry::RetryConfig;
