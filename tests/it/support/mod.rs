//! Test support: a scripted loopback HTTP/1.1 server, plain or over TLS, and
//! helpers to drive a [`Client`](notifier::Client) and check what became of
//! its messages. By job:
//!
//! - [`server`]: the scripted [`Server`], the [`Request`]s it records and
//!   the [`Action`] (or [`Step`]s) its script answers each with;
//! - [`raw`]: the same server handing each connection whole to a script
//!   ([`RawConn`]);
//! - [`gated`]: the same server holding every request until the test
//!   opens its gate ([`Gated`]);
//! - [`tls`]: the same server over TLS ([`tls::TlsServer`]), and a test CA;
//! - [`drive`]: starting clients and sending test messages through them;
//! - [`loops`]: client builds one at a time, so that a test can find its
//!   own client's event-loop threads;
//! - [`alone`]: running the tests that measure the whole process (or load
//!   the machine) while no other test runs;
//! - [`failures`]: what reaches the error handler ([`Failures`]), and the
//!   checks that every accepted message ended exactly once.

use std::sync::OnceLock;

mod alone;
mod drive;
mod failures;
mod gated;
mod loops;
mod raw;
mod server;
pub(crate) mod tls;

pub(crate) use alone::alone;
pub(crate) use drive::{
    deliver_across_idle_closes, id_of, msg, notify_all, notify_retrying, quick_retry, recording,
    send_all, started, wait_until,
};
pub(crate) use failures::{
    assert_all_delivered, assert_balanced, assert_each_body_once, assert_each_ended,
    assert_each_id_once, Failure, Failures,
};
pub(crate) use gated::Gated;
pub(crate) use loops::{build, build_finding_loops};
pub(crate) use raw::RawConn;
pub(crate) use server::{
    lock, response, Action, ConnInfo, Ending, Request, Server, Step, NO_CONTENT,
};

/// Run first on every server thread, when set: a test binary that counts
/// allocations sets it (once) to leave the server's own out of the count.
pub(crate) static SERVER_THREAD_START: OnceLock<fn()> = OnceLock::new();
