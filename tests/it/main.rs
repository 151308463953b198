//! The integration tests, one binary: a module per subject, each against
//! the scripted loopback server of [`support`] but `nginx` and `interop`,
//! which run real servers (nginx; Apache httpd, lighttpd, HAProxy).
//!
//! The tests run in parallel threads of this one process, so none may rely
//! on having the process to itself unless it says so:
//!
//! - a test that measures the whole process (`memory`: the resident set)
//!   or loads the machine (`chaos`) runs alone, through `support::alone`;
//!   every server, and every client support builds, holds a share that
//!   keeps such a test waiting, and is kept waiting by it;
//! - clients start through `support::start` (as `support::started` does),
//!   one at a time, so that `tuning` can tell its own client's event-loop
//!   threads in `/proc/self/task` from the others' of the same name;
//! - nothing here sets environment variables, signal handlers, the panic
//!   hook or `support::SERVER_THREAD_START`: `chaos`, `nginx` and
//!   `interop` only read variables.
//!
//! `tests/alloc.rs` stays a binary of its own: its global allocator counts
//! every allocation of the process.

mod support;

mod batching;
mod chaos;
#[cfg(any(feature = "gzip", feature = "zstd"))]
mod compression;
mod delivery;
mod failures;
mod hostile;
mod interop;
mod keepalive;
mod lifecycle;
mod lifetime;
mod memory;
mod nginx;
mod preconnect;
mod resilience;
#[cfg(target_os = "linux")]
mod resources;
mod tls;
mod tuning;
