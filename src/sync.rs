//! Atomics shim: `std`'s atomics normally, loom's in the model checks.
//!
//! The lock-free protocols that loom checks (the circuit breaker's state
//! word and the event loops' park/wake handshake) take their atomics from
//! here, as crossbeam-epoch does with its `primitive` module. Under
//! `--cfg loom` the library's own unit tests are built with loom's types,
//! which only work inside `loom::model`; run just the models then:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 \
//!     cargo test --release --lib --target-dir target/loom loom
//! ```
//!
//! loom is a dev-dependency, so the switch needs `test` as well as `loom`:
//! a plain `cargo build` with `--cfg loom` still uses `std`.

#[cfg(not(all(loom, test)))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(all(loom, test))]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
