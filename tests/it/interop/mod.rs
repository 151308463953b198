//! Interop with real servers from the distribution's packages, besides
//! nginx (`crate::nginx`): [`apache`] httpd, [`lighttpd`], and
//! [`haproxy`] in front of nginx. Each test starts its server from the
//! test itself (its own configuration in a temp dir, on loopback ports
//! that were free, killed on drop), with aggressive keep-alive limits: a
//! connection closed after 7 or 8 requests, and after 1 s idle. Through a
//! default client (10 workers, no retry) it delivers [`MESSAGES`] in bursts,
//! with idle gaps longer than the server's idle timeout between them, and
//! counts every message at the server, in its access log: every id exactly
//! once, all delivered, none failed.
//!
//! This module is also the harness the nginx test shares: finding the
//! programs (or skipping loudly, or failing when the test's
//! `NOTIFIER_REQUIRE_*` variable is set), a temp dir, a [`Daemon`] started
//! on free ports and waited for, and the access-log tally.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notifier::{Client, Stats};

use crate::support::{assert_each_body_once, notify_all, started, wait_until, Failure};

mod apache;
mod haproxy;
mod lighttpd;

/// Messages each test delivers.
pub(crate) const MESSAGES: usize = 10_000;
/// How long a server gets to start listening.
const STARTUP: Duration = Duration::from_secs(20);
/// How long one burst may take to be delivered (it takes well under a
/// second).
const BURST_LIMIT: Duration = Duration::from_secs(20);
/// How long a server may take to write its last access-log lines once the
/// client has its responses (lighttpd flushes its log every 4 s).
const LOG_LIMIT: Duration = Duration::from_secs(10);

/// A program or file a test needs, and where to look for it: a bare name
/// is looked for on `PATH`, a path is taken as it is.
pub(crate) struct Needed {
    /// What the skip message calls it.
    pub(crate) what: &'static str,
    /// Names and paths, in the order tried.
    pub(crate) candidates: &'static [&'static str],
}

/// The first of `needed`'s candidates that is a file.
fn find(needed: &Needed) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    needed.candidates.iter().find_map(|candidate| {
        if candidate.contains('/') {
            Some(PathBuf::from(candidate)).filter(|p| p.is_file())
        } else {
            std::env::split_paths(&path)
                .map(|dir| dir.join(candidate))
                .find(|p| p.is_file())
        }
    })
}

/// Finds everything `test` needs. When something is missing: panics if
/// `require_var` is set (CI sets it, after installing the packages);
/// otherwise says so loudly on stderr and gives `None`, and the test
/// passes without running.
pub(crate) fn find_all<const N: usize>(
    test: &str,
    require_var: &str,
    needed: [&Needed; N],
) -> Option<[PathBuf; N]> {
    let found = needed.map(find);
    let Some(missing) = needed.iter().zip(&found).find(|(_, f)| f.is_none()) else {
        return Some(found.map(Option::unwrap));
    };
    let missing = missing.0.what;
    assert!(
        std::env::var_os(require_var).is_none(),
        "{missing} not found, and {require_var} is set: the {test} test must run"
    );
    let banner = "!".repeat(70);
    eprintln!(
        "\n{banner}\n!! {missing} not found: SKIPPING {test} test; CI installs it\n{banner}\n"
    );
    None
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs a command to completion; panics with its output when it fails.
pub(crate) fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch directory, removed on drop unless the test is failing.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A new directory `notifier-{name}-…` in the system's temp dir.
    pub(crate) fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("notifier-{name}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A server process a test started: one process (no workers of its own to
/// outlive it), in the foreground, its stdout in `{dir}/{name}.out` and its
/// stderr in `{dir}/{name}.err`. Killed on drop, also when the test panics.
pub(crate) struct Daemon {
    child: Child,
    ports: Vec<u16>,
}

impl Daemon {
    /// Starts the command that `launch` makes (after writing its
    /// configuration) for `ports` ports that are free, and waits until all
    /// of them accept connections. When the process exits first (another
    /// process took a port meanwhile), tries again with other ports, five
    /// times at most, then panics with the server's output and its error
    /// log in `dir`, `log`, if it has one.
    pub(crate) fn start(
        name: &str,
        dir: &Path,
        ports: usize,
        log: Option<&str>,
        mut launch: impl FnMut(&[u16]) -> Command,
    ) -> Daemon {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let log = log.map(|log| dir.join(log));
        let mut last_words = String::new();
        for _try in 0..5 {
            let ports: Vec<u16> = (0..ports).map(|_| free_port()).collect();
            let mut command = launch(&ports);
            if let Some(log) = &log {
                let _ = fs::remove_file(log);
            }
            let create = |path: &Path| File::create(path).expect("create an output file");
            let child = command
                .stdin(Stdio::null())
                .stdout(create(&out))
                .stderr(create(&err))
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
            let mut daemon = Daemon { child, ports };
            if daemon.wait_listening(name) {
                return daemon;
            }
            last_words = [Some(&out), Some(&err), log.as_ref()]
                .into_iter()
                .flatten()
                .map(|path| fs::read_to_string(path).unwrap_or_default())
                .collect();
        }
        panic!("{name} did not start; its output and error log:\n{last_words}");
    }

    /// [`Daemon::start`] for a server on one port that takes its
    /// configuration file with `-f`: writes what `render` makes for the
    /// port to `{dir}/{config}`, and runs `program` with `args` and
    /// `-f {dir}/{config}`.
    pub(crate) fn configured(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        config: &str,
        log: Option<&str>,
        render: impl Fn(u16) -> String,
    ) -> Daemon {
        let config = dir.join(config);
        Daemon::start(name, dir, 1, log, |ports| {
            fs::write(&config, render(ports[0]))
                .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
            let mut command = Command::new(program);
            command.args(args).arg("-f").arg(&config);
            command
        })
    }

    /// Waits until every port accepts; false when the process exited first.
    fn wait_listening(&mut self, name: &str) -> bool {
        let deadline = Instant::now() + STARTUP;
        let accepts = |port: u16| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        };
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.ports.iter().all(|&port| accepts(port)) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not listening after {STARTUP:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `i`th port it was started on.
    pub(crate) fn port(&self, i: usize) -> u16 {
        self.ports[i]
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a test sends its [`MESSAGES`]: in `bursts` equal bursts, each
/// delivered before an idle `gap`, longer than the server's idle timeout,
/// so that the server closes the idle connections before the next burst.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) bursts: usize,
    pub(crate) gap: Duration,
}

/// What became of the messages, as the client saw it.
struct Delivery {
    stats: Stats,
    failures: Vec<Failure>,
    took: Duration,
}

/// Sends `msg(0)..msg(MESSAGES)` to `url` through a default client (10
/// workers, no retry) as `plan` says, waiting for each burst to be
/// delivered, then stops the client.
fn deliver(url: &str, plan: Plan) -> Delivery {
    let started_at = Instant::now();
    let (client, failures) = started(Client::builder(url));
    let per_burst = MESSAGES / plan.bursts;
    for burst in 0..plan.bursts {
        if burst > 0 {
            thread::sleep(plan.gap);
        }
        notify_all(&client, burst * per_burst..(burst + 1) * per_burst);
        assert!(
            client.flush(BURST_LIMIT),
            "burst {burst} not delivered within {BURST_LIMIT:?}: {:?}",
            client.stats()
        );
    }
    client.stop();
    Delivery {
        stats: client.stats(),
        failures: failures.take(),
        took: started_at.elapsed(),
    }
}

impl Delivery {
    /// The failures by kind, with the first error of each kind.
    fn failure_kinds(&self) -> String {
        let mut kinds: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for failure in &self.failures {
            kinds
                .entry(format!("{:?}", failure.error.kind()))
                .or_insert_with(|| (0, failure.error.to_string()))
                .0 += 1;
        }
        if kinds.is_empty() {
            return "none".to_owned();
        }
        let mut out = String::new();
        for (kind, (count, first)) in kinds {
            let _ = write!(out, "{count} {kind} (first: {first}); ");
        }
        out
    }
}

/// What a server's access log says: one line per request, as the tests
/// configure it, `<body> <connection> <request's number on it> <status>`.
struct Tally {
    /// Where the log is, for the report.
    what: String,
    /// The bodies, one per request logged.
    bodies: Vec<String>,
    /// Requests by status.
    statuses: BTreeMap<String, usize>,
    /// How many requests each connection carried.
    per_connection: Vec<u64>,
}

impl Tally {
    /// Reads `log` once it has [`MESSAGES`] lines, or after [`LOG_LIMIT`]
    /// (a server writes a request's line after its response). `first` is
    /// the number the server gives a connection's first request (0 or 1):
    /// such a request starts a new connection, also where a client port
    /// comes again.
    fn read(what: &str, log: &Path, first: u64) -> Tally {
        let read = || fs::read_to_string(log).unwrap_or_default();
        wait_until(LOG_LIMIT, || read().lines().count() >= MESSAGES);
        let mut tally = Tally {
            what: what.to_owned(),
            bodies: Vec::new(),
            statuses: BTreeMap::new(),
            per_connection: Vec::new(),
        };
        let mut open: HashMap<String, u64> = HashMap::new();
        for line in read().lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [body, connection, nth, status] = fields[..] else {
                panic!("{what}: unexpected log line {line:?}");
            };
            let nth: u64 = nth
                .parse()
                .unwrap_or_else(|_| panic!("{what}: unexpected log line {line:?}"));
            if nth == first {
                tally
                    .per_connection
                    .extend(open.insert(connection.to_owned(), 1));
            } else {
                *open.entry(connection.to_owned()).or_default() += 1;
            }
            *tally.statuses.entry(status.to_owned()).or_default() += 1;
            tally.bodies.push(body.to_owned());
        }
        tally.per_connection.extend(open.into_values());
        tally
    }

    /// The requests and their statuses, the connections, and how many of
    /// them carried the most requests (the server's limit, once reached)
    /// or ended earlier: closed idle, at the end, or by the client.
    fn summary(&self) -> String {
        let most = self.per_connection.iter().copied().max().unwrap_or(0);
        let full = self.per_connection.iter().filter(|&&n| n == most).count();
        format!(
            "{}: {} requests logged {:?}, on {} connections: {full} with {most} requests, {} with fewer",
            self.what,
            self.bodies.len(),
            self.statuses,
            self.per_connection.len(),
            self.per_connection.len() - full,
        )
    }
}

/// An access log that counts the messages, one line per request as
/// [`Tally`] reads it.
pub(crate) struct Log {
    /// What the report calls it.
    pub(crate) what: &'static str,
    /// Its file in the test's directory.
    pub(crate) file: &'static str,
    /// The number the server gives a connection's first request (0 or 1).
    pub(crate) first: u64,
}

/// Delivers [`MESSAGES`] to `http://127.0.0.1:{port}/notify` as `plan`
/// says, reads `logs` in `dir`, and [`check`]s what became of them.
pub(crate) fn deliver_and_count(test: &str, port: u16, plan: Plan, dir: &Path, logs: &[Log]) {
    let delivery = deliver(&format!("http://127.0.0.1:{port}/notify"), plan);
    let tallies: Vec<Tally> = logs
        .iter()
        .map(|log| Tally::read(log.what, &dir.join(log.file), log.first))
        .collect();
    check(test, &delivery, &tallies);
}

/// Says what became of the messages (the client's counts, the failures by
/// kind, what each server log counted, and how long it took), then checks
/// that all were delivered and none failed, and that each log has every
/// message exactly once.
fn check(test: &str, delivery: &Delivery, logs: &[Tally]) {
    let stats = &delivery.stats;
    let mut report = format!(
        "{test} interop: {} accepted, {} delivered, {} failed (failures: {}) in {:?}",
        stats.accepted,
        stats.delivered,
        stats.failed,
        delivery.failure_kinds(),
        delivery.took
    );
    for log in logs {
        let _ = write!(report, "\n  {}", log.summary());
    }
    eprintln!("{report}");
    assert!(delivery.failures.is_empty(), "{report}");
    let total = MESSAGES as u64;
    assert_eq!(
        (stats.accepted, stats.delivered, stats.failed),
        (total, total, 0),
        "{report}"
    );
    for log in logs {
        assert_each_body_once(log.bodies.iter().map(String::as_bytes), MESSAGES);
    }
}
