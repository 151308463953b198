//! The `notify` binary (`cli/src/main.rs`), run as a program against the
//! root package's scripted loopback server (`tests/support/`): every line
//! arrives once with the headers and content type asked for, bad arguments
//! give status 2 and the usage, failures give status 1 and are printed, and
//! SIGTERM stops gracefully. Over HTTPS to a server behind a test CA, the
//! CA is trusted through `--cacert` or the system's roots (`SSL_CERT_FILE`),
//! and refused without either; `--stats-json` prints the summary as one
//! JSON line on stdout.
//!
//! Cargo builds the binary before this test and names it in
//! `CARGO_BIN_EXE_notify`. Every wait on a child process is bounded; a child
//! still running when its test ends is killed.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::tls::TlsServer;
use support::{
    assert_each_body_once, assert_each_id_once, msg, response, wait_until, Action, Server,
};

/// The longest one run of `notify` may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Output read from a child's pipe on a thread of its own.
struct Capture {
    text: Arc<Mutex<Vec<u8>>>,
    eof: Receiver<()>,
}

impl Capture {
    fn start(mut pipe: impl Read + Send + 'static) -> Capture {
        let text = Arc::new(Mutex::new(Vec::new()));
        let (tx, eof) = mpsc::channel();
        let sink = Arc::clone(&text);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
            drop(tx);
        });
        Capture { text, eof }
    }

    /// What was read so far, as lossy UTF-8.
    fn so_far(&self) -> String {
        let text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Everything, once the pipe closed (or what came within `timeout`).
    fn finish(self, timeout: Duration) -> String {
        let _ = self.eof.recv_timeout(timeout);
        self.so_far()
    }
}

/// How a child ended, with what it printed.
#[derive(Debug)]
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    /// The exit code; panics, showing stderr, when there is none (killed by
    /// a signal).
    fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("no exit code ({}); stderr:\n{}", self.status, self.stderr))
    }

    /// The number on the summary line labelled `label`.
    fn summary(&self, label: &str) -> u64 {
        let summary = self
            .stderr
            .split_once("notify: summary\n")
            .unwrap_or_else(|| panic!("no summary in stderr:\n{}", self.stderr))
            .1;
        summary
            .lines()
            .find_map(|line| {
                let rest = line.trim_start().strip_prefix(label)?;
                rest.starts_with(' ').then_some(rest)
            })
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{summary}"))
    }
}

/// A child process with its pipes; killed if dropped before it ended.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Capture>,
    stderr: Option<Capture>,
    /// Keeps stdin open while set (see [`Running::feed`]).
    hold: Option<mpsc::Sender<()>>,
    waited: bool,
}

impl Running {
    /// Starts `notify` with `args`, every standard stream piped.
    fn notify(args: &[&str]) -> Running {
        Running::notify_with_env(args, &[])
    }

    /// Like [`Running::notify`], with the environment variables `env` set.
    /// The ones that name roots for the system's store (`SSL_CERT_FILE`,
    /// `SSL_CERT_DIR`) are removed unless `env` sets them, so that what the
    /// child trusts does not depend on the test's environment.
    fn notify_with_env(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_notify"));
        command
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        command.envs(env.iter().copied());
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn notify");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(Capture::start);
        let stderr = child.stderr.take().map(Capture::start);
        Running {
            child,
            stdin,
            stdout,
            stderr,
            hold: None,
            waited: false,
        }
    }

    /// Writes `input` to the child's stdin on a thread, since the child may
    /// stop reading early (a usage error, a signal); then closes stdin, or
    /// with `keep_open` holds it open until the child has ended.
    fn feed(&mut self, input: &[u8], keep_open: bool) {
        let Some(mut stdin) = self.stdin.take() else {
            return;
        };
        let input = input.to_vec();
        let (hold, release) = mpsc::channel::<()>();
        if keep_open {
            self.hold = Some(hold);
        }
        thread::spawn(move || {
            let _ = stdin.write_all(&input);
            // Returns when `hold` is dropped: at once unless kept.
            let _ = release.recv();
        });
    }

    /// What the child wrote on stderr so far.
    fn stderr_so_far(&self) -> String {
        self.stderr
            .as_ref()
            .map_or_else(String::new, Capture::so_far)
    }

    /// Sends `signal` (a name such as `TERM`) to the child.
    #[cfg(unix)]
    fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .args(["-c", r#"kill -s "$0" "$1""#, signal])
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed: {status}");
    }

    /// Waits for the child to end, for at most `timeout`: past it the child
    /// is killed and the test fails, showing its stderr.
    fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.waited = true;
                panic!(
                    "still running after {timeout:?}; stderr so far:\n{}",
                    self.stderr_so_far()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.waited = true;
        drop(self.stdin.take());
        drop(self.hold.take());
        let pipes = Duration::from_secs(5);
        Output {
            status,
            stdout: self
                .stdout
                .take()
                .map_or_else(String::new, |c| c.finish(pipes)),
            stderr: self
                .stderr
                .take()
                .map_or_else(String::new, |c| c.finish(pipes)),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `notify` with `args` on `input` (stdin closed after it) and
/// waits for it to end.
fn run_notify(args: &[&str], input: &[u8]) -> Output {
    let mut running = Running::notify(args);
    running.feed(input, false);
    running.wait(RUN_TIMEOUT)
}

/// Runs `notify` with `args` and the environment `env` (see
/// [`Running::notify_with_env`]) on `input`, and waits for it to end.
fn run_notify_with_env(args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    let mut running = Running::notify_with_env(args, env);
    running.feed(input, false);
    running.wait(RUN_TIMEOUT)
}

/// `msg(0)..msg(n)`, one per line.
fn numbered_lines(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("{}\n", msg(i)).into_bytes())
        .collect()
}

#[test]
fn every_line_arrives_once_with_the_headers_and_content_type() {
    const N: usize = 1000;
    let server = Server::no_content();
    let url = server.url();
    // A small queue: `notify` meets QueueFull and has to wait.
    let out = run_notify(
        &[
            "--url",
            &url,
            "--workers",
            "4",
            "--queue",
            "8",
            "--timeout",
            "20",
            "--header",
            "X-Token: secret",
            "--header=X-Trace:  a b\t",
            "--content-type",
            "application/x-ndjson",
        ],
        &numbered_lines(N),
    );
    assert_eq!(out.code(), 0, "stderr:\n{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(!out.stderr.contains("not delivered"), "{}", out.stderr);
    for (label, value) in [
        ("lines read", N),
        ("empty, skipped", 0),
        ("sent", N),
        ("delivered", N),
        ("failed", 0),
        ("not sent", 0),
    ] {
        assert_eq!(out.summary(label), value as u64, "{label}:\n{}", out.stderr);
    }

    let requests = server.requests();
    assert_each_id_once(&requests, N);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/notify");
        assert_eq!(request.header_count("content-type"), 1, "{request:?}");
        assert_eq!(request.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(request.header("x-token"), Some("secret"));
        assert_eq!(request.header("x-trace"), Some("a b"));
        assert_eq!(request.header("host"), Some(server.authority().as_str()));
    }
}

#[test]
fn line_endings_are_stripped_empty_lines_skipped_and_bytes_sent_as_they_are() {
    let server = Server::no_content();
    let url = server.url();
    let input: &[u8] =
        b"first\n\nsecond\r\n\xff\xfe not UTF-8\n\r\ninner\rcarriage return\nlast, no newline";
    // One worker: bodies arrive in input order.
    let out = run_notify(&["--url", &url, "--workers", "1"], input);
    assert_eq!(out.code(), 0, "stderr:\n{}", out.stderr);
    let bodies: Vec<Vec<u8>> = server.requests().into_iter().map(|r| r.body).collect();
    let expected: [&[u8]; 5] = [
        b"first",
        b"second",
        b"\xff\xfe not UTF-8",
        b"inner\rcarriage return",
        b"last, no newline",
    ];
    assert_eq!(bodies, expected);
    assert_eq!(out.summary("lines read"), 7, "{}", out.stderr);
    assert_eq!(out.summary("empty, skipped"), 2, "{}", out.stderr);
    assert_eq!(out.summary("delivered"), 5, "{}", out.stderr);
    let requests = server.requests();
    assert_eq!(
        requests[0].header("content-type"),
        Some("text/plain; charset=utf-8"),
        "the library's default"
    );
}

#[test]
fn batch_carries_many_lines_per_request_in_the_framing_asked_for() {
    const N: usize = 2000;
    for (framing, content_type) in [
        ("ndjson", "application/x-ndjson"),
        ("json-array", "application/json"),
    ] {
        let server = Server::no_content();
        let url = server.url();
        let out = run_notify(&["--url", &url, "--batch", framing], &numbered_lines(N));
        assert_eq!(out.code(), 0, "{framing}: stderr:\n{}", out.stderr);
        assert_eq!(out.summary("delivered"), N as u64, "{}", out.stderr);
        let requests = server.requests();
        let mut bodies = Vec::new();
        for request in &requests {
            assert_eq!(request.header("content-type"), Some(content_type));
            let body = std::str::from_utf8(&request.body).expect("the lines are text");
            let inner = match framing {
                "ndjson" => body.strip_suffix('\n').expect("ends with a newline"),
                _ => body
                    .strip_prefix('[')
                    .and_then(|b| b.strip_suffix(']'))
                    .expect("an array"),
            };
            let separator = if framing == "ndjson" { '\n' } else { ',' };
            bodies.extend(inner.split(separator).map(|m| m.as_bytes().to_vec()));
        }
        assert_eq!(bodies.len(), N, "{framing}: every line once");
        assert_each_body_once(bodies.iter().map(|b| &b[..]), N);
    }
    // Compressed: the body decodes to the same framing.
    let server = Server::no_content();
    let url = server.url();
    let out = run_notify(
        &["--url", &url, "--batch", "ndjson", "--gzip"],
        &numbered_lines(N),
    );
    assert_eq!(out.code(), 0, "--gzip: stderr:\n{}", out.stderr);
    let mut lines = Vec::new();
    for request in &server.requests() {
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&request.body[..]),
            &mut body,
        )
        .expect("a gzip body");
        let body = body
            .strip_suffix(b"\n")
            .expect("ends with a newline")
            .to_vec();
        lines.extend(body.split(|&b| b == b'\n').map(<[u8]>::to_vec));
    }
    assert_each_body_once(lines.iter().map(|b| &b[..]), N);

    let out = run_notify(&["--url", "http://127.0.0.1:9/", "--batch", "xml"], b"");
    assert_eq!(out.code(), 2, "an unknown framing is a usage error");
    assert!(out.stderr.contains("--batch \"xml\""), "{}", out.stderr);
}

#[test]
fn bad_arguments_exit_2_with_the_usage() {
    let server = Server::no_content();
    let url = server.url();
    let url = url.as_str();
    let cases: &[(&[&str], &str)] = &[
        (&[], "--url is required"),
        (&["--url", "ftp://example.com/"], "unsupported URL scheme"),
        (&["--url", "http://"], "invalid endpoint URL"),
        (&["--url", "not a url"], "URL"),
        (&["--url", ""], "URL is empty"),
        (&["--url", url, "--url", url], "more than once"),
        (&["--url", url, "--bogus"], "unknown option \"--bogus\""),
        (&["--url", url, "stray"], "unexpected argument \"stray\""),
        (&["--url", url, "--workers"], "--workers needs a value"),
        (&["--url", url, "--workers", "ten"], "not a whole number"),
        (&["--url", url, "--workers", "0"], "at least 1"),
        (&["--url", url, "--queue", "-1"], "not a whole number"),
        (&["--url", url, "--retry", "0"], "at least 1"),
        (&["--url", url, "--timeout", "soon"], "seconds"),
        (&["--url", url, "--timeout", "0"], "seconds"),
        (&["--url", url, "--timeout=-1"], "seconds"),
        (
            &["--url", url, "--header", "no colon"],
            "expected 'Name: value'",
        ),
        (
            &["--url", url, "--header", ": value"],
            "expected 'Name: value'",
        ),
        (&["--url", url, "--header", "Bad Name: x"], "invalid header"),
        (
            &["--url", url, "--header", "Content-Length: 5"],
            "invalid header",
        ),
        (
            &["--url", url, "--content-type", "a\r\nb: c"],
            "invalid header",
        ),
    ];
    for (args, expected) in cases {
        let out = run_notify(args, b"must not be sent\n");
        assert_eq!(out.code(), 2, "{args:?}: stderr:\n{}", out.stderr);
        assert!(
            out.stderr.contains(expected),
            "{args:?}: expected {expected:?} in stderr:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("usage: notify --url URL"),
            "{args:?}: no usage in stderr:\n{}",
            out.stderr
        );
        assert_eq!(out.stdout, "", "{args:?}");
    }
    assert_eq!(
        server.request_count(),
        0,
        "a bad command line sent something"
    );

    let help = run_notify(&["--help"], b"");
    assert_eq!(help.code(), 0, "{}", help.stderr);
    assert!(
        help.stdout.starts_with("usage: notify --url URL"),
        "{help:?}"
    );
}

#[test]
fn a_failing_server_gives_status_1_and_each_failure_on_stderr() {
    let server = Server::always(Action::Reply(response(
        500,
        "Internal Server Error",
        &[],
        b"down",
    )));
    let url = server.url();
    let long = "x".repeat(500);
    let input = format!("{}\n{}\n{}\n{long}\n", msg(0), msg(1), msg(2));
    let out = run_notify(&["--url", &url, "--retry", "2"], input.as_bytes());
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    let failures: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("notify: not delivered: "))
        .collect();
    assert_eq!(failures.len(), 4, "stderr:\n{}", out.stderr);
    for i in 0..3 {
        let line = failures
            .iter()
            .find(|l| l.contains(&format!("\"{}\"", msg(i))))
            .unwrap_or_else(|| panic!("no failure for {}:\n{}", msg(i), out.stderr));
        assert!(
            line.contains("server answered 500") && line.contains("(2 attempts)"),
            "{line}"
        );
        assert!(line.ends_with("[kind Status, status 500]"), "{line}");
    }
    // The long message is cut, and its length given.
    let cut = format!("\"{}\"… (500 bytes)", "x".repeat(80));
    assert!(
        failures.iter().any(|l| l.contains(&cut)),
        "stderr:\n{}",
        out.stderr
    );
    assert_eq!(out.summary("sent"), 4, "{}", out.stderr);
    assert_eq!(out.summary("delivered"), 0, "{}", out.stderr);
    assert_eq!(out.summary("failed"), 4, "{}", out.stderr);
    assert_eq!(out.summary("retries"), 4, "{}", out.stderr);
    assert_eq!(server.request_count(), 8, "two attempts each");
}

#[test]
fn an_unreachable_server_gives_status_1() {
    // Bound, then closed: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let out = run_notify(&["--url", &url, "--timeout", "5"], b"one\ntwo\n");
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    assert_eq!(out.summary("failed"), 2, "{}", out.stderr);
    assert!(out.stderr.contains("[kind Connect]"), "{}", out.stderr);
}

/// SIGTERM while stdin is still open and responses are slow: `notify`
/// stops reading (the blocked read is left behind), delivers everything it
/// had accepted, prints the summary and exits.
#[cfg(unix)]
#[test]
fn sigterm_delivers_what_was_accepted_then_exits() {
    const N: usize = 20;
    let server = Server::start(|_, _| {
        thread::sleep(Duration::from_millis(100));
        Action::no_content()
    });
    let url = server.url();
    let mut running = Running::notify(&["--url", &url, "--workers", "2"]);
    running.feed(&numbered_lines(N), true);
    // The first request means the signal handlers are in place.
    assert!(
        server.wait_for_requests(1, RUN_TIMEOUT),
        "no request; stderr:\n{}",
        running.stderr_so_far()
    );
    running.signal("TERM");
    let out = running.wait(RUN_TIMEOUT);

    assert!(out.stderr.contains("notify: interrupted"), "{}", out.stderr);
    let (sent, delivered, unsent) = (
        out.summary("sent"),
        out.summary("delivered"),
        out.summary("not sent"),
    );
    assert_eq!(
        delivered, sent,
        "everything accepted is delivered:\n{}",
        out.stderr
    );
    assert_eq!(out.summary("failed"), 0, "{}", out.stderr);
    assert_eq!(out.summary("lines read"), sent + unsent, "{}", out.stderr);
    assert!(sent >= 1, "{}", out.stderr);
    assert_eq!(
        out.code(),
        if unsent == 0 { 0 } else { 1 },
        "{}",
        out.stderr
    );
    let requests = server.requests();
    assert_eq!(requests.len() as u64, delivered);
    let mut ids: Vec<usize> = requests.iter().map(|r| support::id_of(&r.body)).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, delivered, "each delivered once");
    assert!(ids.iter().all(|&id| id < N));
}

/// A second signal during the graceful stop exits at once with status 1,
/// abandoning what the server never answered.
#[cfg(unix)]
#[test]
fn a_second_signal_exits_at_once() {
    let server = Server::stalled();
    let url = server.url();
    let mut running = Running::notify(&["--url", &url, "--timeout", "600"]);
    running.feed(b"a\nb\nc\n", true);
    assert!(
        server.wait_for_requests(1, RUN_TIMEOUT),
        "no request; stderr:\n{}",
        running.stderr_so_far()
    );
    running.signal("INT");
    assert!(
        wait_until(RUN_TIMEOUT, || running
            .stderr_so_far()
            .contains("notify: interrupted")),
        "the first signal was not handled; stderr:\n{}",
        running.stderr_so_far()
    );
    running.signal("INT");
    let out = running.wait(Duration::from_secs(20));
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    assert!(!out.stderr.contains("notify: summary"), "{}", out.stderr);
}

/// A file in Cargo's scratch directory for this package's integration
/// tests, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    /// Writes `contents` to a file named after `name` and this process.
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("notify-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write a scratch file");
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 scratch path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `der` as a PEM `CERTIFICATE` block: base64 in lines of 64 characters.
fn pem_certificate(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::new();
    for chunk in der.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let bits = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[test]
fn pem_certificate_is_base64_with_padding() {
    // RFC 4648's test vectors, inside the PEM armour.
    for (der, base64) in [
        (&b"f"[..], "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(
            pem_certificate(der),
            format!("-----BEGIN CERTIFICATE-----\n{base64}\n-----END CERTIFICATE-----\n")
        );
    }
}

/// The test server's CA certificate in a PEM file, as an operator would
/// hand it to `--cacert`.
fn ca_file(server: &TlsServer, name: &str) -> TempFile {
    TempFile::new(name, pem_certificate(&server.ca().cert()).as_bytes())
}

#[test]
fn https_to_a_private_ca_is_delivered_with_cacert() {
    const N: usize = 200;
    let server = TlsServer::no_content();
    let ca = ca_file(&server, "private-ca.pem");
    // Another file first: --cacert may be repeated, and each adds roots.
    let other = TlsServer::no_content();
    let other_ca = ca_file(&other, "other-ca.pem");
    let url = server.url();
    let out = run_notify(
        &[
            "--url",
            &url,
            "--cacert",
            other_ca.path(),
            "--cacert",
            ca.path(),
        ],
        &numbered_lines(N),
    );
    assert_eq!(out.code(), 0, "stderr:\n{}", out.stderr);
    assert_eq!(out.summary("delivered"), N as u64, "{}", out.stderr);
    assert_each_id_once(&server.requests(), N);
    let handshakes = server.handshakes();
    assert!(server.full_handshakes() >= 1, "{handshakes:?}");
    assert_eq!(server.failed_handshakes(), 0, "{handshakes:?}");
    for handshake in handshakes {
        assert_eq!(handshake.alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN");
    }
}

#[test]
fn https_to_a_private_ca_fails_as_tls_without_cacert() {
    let server = TlsServer::no_content();
    let url = server.url();
    let out = run_notify(&["--url", &url, "--retry", "3"], b"one\ntwo\n");
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    assert_eq!(out.summary("failed"), 2, "{}", out.stderr);
    assert_eq!(out.summary("delivered"), 0, "{}", out.stderr);
    assert_eq!(out.summary("retries"), 0, "a TLS failure is not retried");
    let failures: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("notify: not delivered: "))
        .collect();
    assert_eq!(failures.len(), 2, "stderr:\n{}", out.stderr);
    for line in failures {
        assert!(line.contains("UnknownIssuer"), "{line}");
        assert!(line.ends_with("[kind Tls]"), "{line}");
    }
    assert_eq!(
        server.request_count(),
        0,
        "no request over an untrusted connection"
    );
    // The server's connection thread records the refused handshake on its
    // own time, possibly after the tool has exited.
    assert!(
        wait_until(Duration::from_secs(10), || server.failed_handshakes() >= 1),
        "{:?}",
        server.handshakes()
    );
}

#[test]
fn ssl_cert_file_is_trusted_through_the_system_roots() {
    // The operating system's store (rustls-native-certs) reads the file
    // SSL_CERT_FILE names instead of the distribution's bundle.
    const N: usize = 50;
    let server = TlsServer::no_content();
    let ca = ca_file(&server, "ssl-cert-file.pem");
    let url = server.url();
    let out = run_notify_with_env(
        &["--url", &url],
        &[("SSL_CERT_FILE", ca.path())],
        &numbered_lines(N),
    );
    assert_eq!(out.code(), 0, "stderr:\n{}", out.stderr);
    assert_each_id_once(&server.requests(), N);
}

#[test]
fn a_bad_cacert_file_exits_2_naming_it() {
    let missing = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("notify-cli-{}-missing.pem", std::process::id()));
    let missing = missing.to_str().expect("a UTF-8 scratch path");
    let empty = TempFile::new("no-certificate.pem", b"not PEM at all\n");
    let broken = TempFile::new(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    for (path, expected) in [
        (missing, "No such file"),
        (empty.path(), "no PEM certificate"),
        (broken.path(), "a certificate in it"),
    ] {
        let out = run_notify(
            &["--url", "https://127.0.0.1:9/", "--cacert", path],
            b"must not be sent\n",
        );
        assert_eq!(out.code(), 2, "{path}: stderr:\n{}", out.stderr);
        assert!(
            out.stderr.contains(&format!("--cacert {path}: ")) && out.stderr.contains(expected),
            "{path}: expected {expected:?} in stderr:\n{}",
            out.stderr
        );
    }
}

/// A flat JSON object whose values are all numbers, parsed strictly (RFC
/// 8259's number grammar, keys without escapes, no space): its keys and
/// values in order. Panics, saying where, on anything else.
fn parse_flat_json(text: &str) -> Vec<(String, f64)> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not an object: {text:?}"));
    inner
        .split(',')
        .map(|pair| {
            let (key, value) = pair
                .split_once(':')
                .unwrap_or_else(|| panic!("no ':' in {pair:?} of {text:?}"));
            let key = key
                .strip_prefix('"')
                .and_then(|k| k.strip_suffix('"'))
                .filter(|k| !k.is_empty() && !k.contains(['"', '\\']))
                .unwrap_or_else(|| panic!("bad key {key:?} in {text:?}"));
            assert!(is_json_number(value), "bad number {value:?} in {text:?}");
            (key.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Whether `text` is a JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)?
/// ([eE] [+-]? [0-9]+)?`.
fn is_json_number(text: &str) -> bool {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let rest = text.strip_prefix('-').unwrap_or(text);
    let int = digits(rest);
    if int == 0 || (int > 1 && rest.starts_with('0')) {
        return false;
    }
    let mut rest = &rest[int..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = digits(fraction);
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    if let Some(exponent) = rest.strip_prefix(['e', 'E']) {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        let n = digits(exponent);
        if n == 0 {
            return false;
        }
        rest = &exponent[n..];
    }
    rest.is_empty()
}

#[test]
fn the_flat_json_parser_refuses_what_is_not_json() {
    assert_eq!(
        parse_flat_json(r#"{"a":1,"b":-0.5,"c":2e3}"#),
        [
            ("a".to_owned(), 1.0),
            ("b".to_owned(), -0.5),
            ("c".to_owned(), 2000.0)
        ]
    );
    for bad in ["01", "1.", ".5", "-", "1e", "+1", "NaN", "inf", "1 ", "0x1"] {
        assert!(!is_json_number(bad), "{bad:?}");
    }
    for bad in [
        r#"{"a":1,}"#,
        r#"{a:1}"#,
        r#"{"a":"1"}"#,
        r#""a":1"#,
        r#"{"a"1}"#,
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_flat_json(bad)).is_err(),
            "{bad:?} parsed"
        );
    }
}

#[test]
fn stats_json_prints_the_summary_as_one_json_line_on_stdout() {
    const N: usize = 100;
    // One message fails (a 500 to each of its two attempts); the rest are
    // delivered.
    let server = Server::start(|request, _| {
        if request.body == b"doomed" {
            Action::Reply(response(500, "Internal Server Error", &[], b""))
        } else {
            Action::no_content()
        }
    });
    let url = server.url();
    let mut input = numbered_lines(N);
    input.extend_from_slice(b"\n\ndoomed\n");
    let out = run_notify(&["--url", &url, "--retry", "2", "--stats-json"], &input);
    assert_eq!(out.code(), 1, "stderr:\n{}", out.stderr);
    assert!(
        !out.stderr.contains("notify: summary"),
        "the text summary is replaced:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("notify: not delivered: \"doomed\""))
            .count(),
        1,
        "the failure stays on stderr:\n{}",
        out.stderr
    );
    let line = out
        .stdout
        .strip_suffix('\n')
        .filter(|line| !line.contains('\n'))
        .unwrap_or_else(|| panic!("not one line on stdout: {:?}", out.stdout));
    let fields = parse_flat_json(line);
    let keys: Vec<&str> = fields.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "lines_read",
            "empty_skipped",
            "sent",
            "delivered",
            "failed",
            "not_sent",
            "queue_full_waits",
            "retries",
            "requests",
            "elapsed_s",
            "rate_per_s",
        ]
    );
    let field = |name: &str| fields.iter().find(|(key, _)| key == name).expect(name).1;
    for (name, value) in [
        ("lines_read", N + 3),
        ("empty_skipped", 2),
        ("sent", N + 1),
        ("delivered", N),
        ("failed", 1),
        ("not_sent", 0),
        ("retries", 1),
        ("requests", server.request_count()),
    ] {
        assert_eq!(field(name), value as f64, "{name}: {line}");
    }
    assert_eq!(server.request_count(), N + 2, "the doomed message twice");
    let elapsed = field("elapsed_s");
    assert!(elapsed > 0.0, "{line}");
    let rate = field("rate_per_s");
    assert!(
        (rate - N as f64 / elapsed).abs() <= 0.05 + rate * 1e-3,
        "rate {rate} is delivered / elapsed: {line}"
    );
}
