//! Diagnostics through the `tracing` crate, with the `tracing` feature:
//! connections opened, closed and failed, TLS failures, retries
//! scheduled, circuit-breaker transitions, name resolutions. Without the
//! feature the macros expand to nothing, their arguments are not even
//! evaluated, and the crate has no such dependency.
//!
//! Events go to the target `notifier`, connection events at `debug`,
//! failures and the circuit opening at `warn`.

/// A `debug` event, as `tracing::debug!` takes it.
#[cfg(feature = "tracing")]
macro_rules! log_debug {
    ($($event:tt)*) => { ::tracing::debug!(target: "notifier", $($event)*) };
}

/// A `warn` event, as `tracing::warn!` takes it.
#[cfg(feature = "tracing")]
macro_rules! log_warn {
    ($($event:tt)*) => { ::tracing::warn!(target: "notifier", $($event)*) };
}

/// Nothing: the `tracing` feature is off.
#[cfg(not(feature = "tracing"))]
macro_rules! log_debug {
    ($($event:tt)*) => {};
}

/// Nothing: the `tracing` feature is off.
#[cfg(not(feature = "tracing"))]
macro_rules! log_warn {
    ($($event:tt)*) => {};
}

pub(crate) use {log_debug, log_warn};
