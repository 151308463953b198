//! The Go seed's pattern as a peer: `go/notify.go`, built with the Go
//! toolchain on `PATH` when the harness starts and run as a child process,
//! one per run, against the same sink as every other client.
//!
//! The harness drives it over its stdin and stdout, a line each way per
//! command (`go/notify.go` describes them): a phase is one `run` command,
//! and the child sends the phase's messages itself, paced by its own loop
//! (the harness's schedule, kept with `time.Sleep`), measures its own
//! `Notify` calls and answers with their p50/p99/p99.9. The sink measures
//! notify → receipt from the send time in each body, which the child
//! stamps on the harness's clock: the harness passes [`epoch`] as a
//! reading of CLOCK_MONOTONIC, which Go's monotonic time also reads.
//!
//! Its CPU time is the child's own `getrusage(RUSAGE_SELF)`, every thread,
//! asked for with a `cpu` command before and after what is measured; the
//! harness adds it to what its own process spent (less the sink's and the
//! proxy's threads, as for every client). Its allocations are Go's and are
//! not counted.
//!
//! [`epoch`]: crate::probe::epoch

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use notifier::DEFAULT_CONTENT_TYPE;

use crate::clients::Settings;
use crate::probe::epoch_monotonic_ns;

/// The Go program's package directory.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/go");

/// The Go peer's program, built.
pub(crate) struct GoProgram {
    binary: PathBuf,
    /// What `go version` says.
    pub(crate) version: String,
}

impl GoProgram {
    /// Builds `go/notify.go` next to this executable (in `target/`), or
    /// says why it cannot: no `go` on `PATH`, or a failed build. Nothing
    /// is downloaded: the program needs the standard library only.
    pub(crate) fn build() -> Result<GoProgram, String> {
        let dir = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .parent()
            .map(Path::to_path_buf)
            .ok_or("this executable has no directory")?;
        let binary = dir.join("compare-go-notify");
        let go = |args: &[&str]| {
            let mut command = Command::new("go");
            command
                .args(args)
                .current_dir(SOURCE)
                .env("GOPROXY", "off")
                .env("GOTOOLCHAIN", "local")
                .stdin(Stdio::null());
            if std::env::var_os("GOCACHE").is_none() && std::env::var_os("HOME").is_none() {
                command.env("GOCACHE", dir.join("go-cache"));
            }
            match command.output() {
                Ok(out) if out.status.success() => {
                    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
                }
                Ok(out) => Err(format!(
                    "go {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Err("no Go toolchain on PATH (on Debian: apt-get install golang-go)".to_owned())
                }
                Err(e) => Err(format!("cannot run go: {e}")),
            }
        };
        let version = go(&["version"])?;
        let out = binary.to_str().ok_or("the target directory is not UTF-8")?;
        go(&["build", "-o", out, "."])?;
        Ok(GoProgram { binary, version })
    }
}

/// The Go peer, running.
pub(crate) struct GoPeer {
    child: Child,
    /// `None` once closed: the child then stops.
    commands: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
}

/// What the child measured over a `run`.
pub(crate) struct GoRun {
    /// `Notify` p50, p99, p99.9, ns: the calls that accepted a message.
    pub(crate) notify: [f64; 3],
    /// How late the paced sends were, p50, ns.
    pub(crate) late: Option<f64>,
}

impl GoPeer {
    /// Starts the child for the client described by `s`.
    pub(crate) fn start(program: &GoProgram, s: &Settings) -> Result<GoPeer, String> {
        let mut child = Command::new(&program.binary)
            .arg(format!("-url={}", s.url))
            .arg(format!("-workers={}", s.workers))
            .arg(format!("-queue={}", s.queue))
            .arg(format!("-size={}", s.size))
            .arg(format!("-content-type={DEFAULT_CONTENT_TYPE}"))
            .arg(format!("-epoch-mono-ns={}", epoch_monotonic_ns()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the Go peer: {e}"))?;
        let (commands, replies) = (child.stdin.take(), child.stdout.take());
        Ok(GoPeer {
            child,
            commands,
            replies: BufReader::new(replies.ok_or("the Go peer has no stdout")?),
        })
    }

    /// Sends `messages`, one every `interval_ns` (paced) or as fast as the
    /// queue takes them; returns once all are handed over.
    pub(crate) fn run(&mut self, messages: u64, interval_ns: Option<f64>) -> Result<GoRun, String> {
        let reply = self.ask(&format!("run {messages} {}", interval_ns.unwrap_or(0.0)))?;
        let field = |key| {
            number(&reply, key).ok_or_else(|| format!("the Go peer's reply lacks {key}: {reply}"))
        };
        Ok(GoRun {
            notify: [
                field("notify_p50_ns")?,
                field("notify_p99_ns")?,
                field("notify_p999_ns")?,
            ],
            late: number(&reply, "late_p50_ns"),
        })
    }

    /// The child's CPU time so far, every thread.
    pub(crate) fn cpu(&mut self) -> Result<Duration, String> {
        let reply = self.ask("cpu")?;
        number(&reply, "cpu_ns")
            .filter(|&ns| ns >= 0.0)
            .map(|ns| Duration::from_nanos(ns as u64))
            .ok_or_else(|| format!("the Go peer cannot read its CPU time: {reply}"))
    }

    /// Stops the child once it has delivered what it holds, adding its
    /// failures to `s.failures`.
    pub(crate) fn shutdown(mut self, s: &Settings) -> Result<(), String> {
        self.commands = None;
        let reply = self.reply()?;
        let status = self
            .child
            .wait()
            .map_err(|e| format!("cannot wait for the Go peer: {e}"))?;
        if !status.success() {
            return Err(format!("the Go peer exited with {status}"));
        }
        let failures = number(&reply, "failures").unwrap_or(0.0) as u64;
        s.failures.fetch_add(failures, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `command` and reads the reply.
    fn ask(&mut self, command: &str) -> Result<String, String> {
        let commands = self.commands.as_mut().ok_or("the Go peer is stopping")?;
        writeln!(commands, "{command}")
            .and_then(|()| commands.flush())
            .map_err(|e| format!("cannot write to the Go peer: {e}"))?;
        self.reply()
    }

    /// The child's next line.
    fn reply(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.replies.read_line(&mut line) {
            Ok(0) => Err("the Go peer exited".to_owned()),
            Ok(_) => Ok(line),
            Err(e) => Err(format!("cannot read the Go peer's reply: {e}")),
        }
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        // After `shutdown` the child is gone and this does nothing; on an
        // error path it ends a child that may still be sending.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number under `key` in a flat JSON object of numbers, as the child
/// writes them.
fn number(reply: &str, key: &str) -> Option<f64> {
    let at = reply.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &reply[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}
