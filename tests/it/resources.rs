//! Running out of local resources narrows concurrency; it fails no message
//! that a working connection can carry, and counts nothing against the
//! endpoint.
//!
//! Each client runs in a child process, this test binary run again for one
//! `*_child` test alone under `prlimit --nofile`, so that only its own
//! descriptors count against the limit (and exhausting them upsets no
//! other test); the server runs here, in the parent. Linux only
//! (`prlimit` is util-linux's).

use std::error::Error as _;
use std::fs::File;
use std::io;
use std::process::Command;
use std::time::Duration;

use notifier::{CircuitBreakerConfig, CircuitState, Client, FailureKind};

use crate::support::{assert_each_id_once, msg, notify_all, started, wait_until, Server};

/// Where the child sends its messages; set only in the child's
/// environment.
const URL_VAR: &str = "NOTIFIER_CHILD_URL";
/// The child's descriptor limit: about 120 sockets once the standard
/// streams and the event loops' own are open.
const NOFILE: usize = 128;
const WORKERS: usize = 500;
const MESSAGES: usize = 20_000;

/// Runs `child` (a test of this module) in a child process under a limit
/// of [`NOFILE`] descriptors, sending to `server`; panics with its output
/// unless it passes.
fn run_child(child: &str, server: &Server) {
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(exe)
        .args(["--exact", &format!("resources::{child}")])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(URL_VAR, server.url())
        .output()
        .expect("run prlimit (util-linux)");
    let report = format!(
        "{child} {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{report}");
    assert!(output.status.success(), "{report}");
}

/// The endpoint, in a child run by [`run_child`].
fn child_url(parent: &str) -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| panic!("{URL_VAR} is not set: run by {parent}"))
}

#[test]
fn running_out_of_file_descriptors_fails_no_message() {
    // 500 slots, room for about 120 sockets: every slot whose socket
    // cannot be opened gives its message back for a slot with a
    // connection, and rests before it tries again.
    let server = Server::no_content();
    run_child("file_descriptor_limit_child", &server);
    assert_each_id_once(&server.requests(), MESSAGES);
    assert!(
        server.max_open_connections() < NOFILE,
        "{} connections open at once under a limit of {NOFILE} descriptors",
        server.max_open_connections()
    );
}

/// The client's side of [`running_out_of_file_descriptors_fails_no_message`]:
/// delivers [`MESSAGES`] through [`WORKERS`] slots and fails on any
/// failure.
#[test]
#[ignore = "run by running_out_of_file_descriptors_fails_no_message, in a child process"]
fn file_descriptor_limit_child() {
    let url = child_url("running_out_of_file_descriptors_fails_no_message");
    let (client, failures) = started(
        Client::builder(&url)
            .workers(WORKERS)
            .shutdown_timeout(Duration::from_secs(60)),
    );
    notify_all(&client, 0..MESSAGES);
    client.stop();
    let stats = client.stats();
    let failed = failures.take();
    println!(
        "delivered {}, failed {} (first: {:?}), requests {}",
        stats.delivered,
        stats.failed,
        failed
            .first()
            .map(|f| format!("{}: {:?}", f.error, f.error.source())),
        stats.requests
    );
    assert_eq!(
        (stats.accepted, stats.delivered, stats.failed),
        (MESSAGES as u64, MESSAGES as u64, 0),
        "{stats:?}"
    );
}

#[test]
fn with_no_socket_to_be_had_a_message_fails_at_its_timeout_and_the_breaker_hears_nothing() {
    let server = Server::no_content();
    run_child("no_socket_child", &server);
    let ids: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| crate::support::id_of(&r.body))
        .collect();
    assert_eq!(ids, [3], "only the message sent once descriptors were free");
}

/// Linux's `EMFILE`: the process has no file descriptor left.
const EMFILE: i32 = 24;

/// Opens `/dev/null` until the process has no descriptor left; closing the
/// files gives them back.
fn hoard_descriptors() -> Vec<File> {
    let mut hoard = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => hoard.push(file),
            Err(e) if e.raw_os_error() == Some(EMFILE) => return hoard,
            Err(e) => panic!("open /dev/null: {e}"),
        }
    }
}

/// The client's side of
/// [`with_no_socket_to_be_had_a_message_fails_at_its_timeout_and_the_breaker_hears_nothing`]:
/// with every descriptor taken, three messages fail as `Connect` with
/// `EMFILE` under them, one attempt each, after their 300 ms timeout, and
/// a breaker that opens at the first failure stays closed; once the
/// descriptors are free, the next message is delivered.
#[test]
#[ignore = "run by with_no_socket_to_be_had_a_message_fails_at_its_timeout_and_the_breaker_hears_nothing, in a child process"]
fn no_socket_child() {
    let url = child_url(
        "with_no_socket_to_be_had_a_message_fails_at_its_timeout_and_the_breaker_hears_nothing",
    );
    let (client, failures) = started(
        Client::builder(&url)
            .workers(2)
            .timeout(Duration::from_millis(300))
            .circuit_breaker(CircuitBreakerConfig::default().failure_threshold(1)),
    );
    let hoard = hoard_descriptors();
    for i in 0..3 {
        client.notify(msg(i)).expect("notify");
    }
    assert!(
        wait_until(Duration::from_secs(30), || failures.len() == 3),
        "{:?}",
        client.stats()
    );
    let stats = client.stats();
    drop(hoard);
    for f in failures.take() {
        let error = &f.error;
        let cause = error.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(error.kind(), FailureKind::Connect, "{error}");
        assert_eq!(
            cause.and_then(io::Error::raw_os_error),
            Some(EMFILE),
            "{cause:?}"
        );
        assert_eq!(error.attempts(), 1, "{error}");
    }
    assert_eq!(stats.circuit, CircuitState::Closed, "{stats:?}");
    client.notify(msg(3)).expect("notify");
    client.stop();
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.failed), (1, 3), "{stats:?}");
}
