//! `notify`: sends each line of standard input as one notification.
//!
//! ```text
//! cargo install --path cli    # from the repository's root; installs `notify`
//! notify --url http://127.0.0.1:8080/events < lines.txt
//! tail -F app.log | notify --url https://hooks.example/in \
//!     --header 'Authorization: Bearer TOKEN' --content-type 'text/plain' --retry 3
//! # or, without installing:
//! cargo run --release -p notifier-cli -- --url http://127.0.0.1:8080/events < lines.txt
//! ```
//!
//! # Input
//!
//! Each line is one notification, sent without its line ending (`\n` or
//! `\r\n`); a last line without a line ending is sent too. The bytes are sent
//! as they are: invalid UTF-8 is not checked, replaced or rejected. Empty
//! lines are skipped (counted, not sent): an empty POST is rarely meant, and
//! a trailing blank line is common. Standard input is read on its own thread
//! and handed to the main thread over a bounded channel, so memory stays
//! bounded (the channel, plus the client's `queue_size + workers`), except for
//! the length of one line, which is not limited.
//!
//! # Backpressure
//!
//! When the client is full ([`NotifyError::QueueFull`]), the tool takes the
//! message back and waits (spins briefly, then sleeps about 50 µs between
//! tries) instead of dropping it, so a slow server slows the reading of
//! standard input. The summary counts how many `notify` calls were refused
//! that way.
//!
//! # Signals
//!
//! SIGINT or SIGTERM stops reading: lines not yet handed to the client are
//! not sent (the summary counts the ones already read as "not sent"), and
//! everything the client accepted is delivered or reported before the tool
//! exits. A read of standard input that blocks is left behind. A second
//! SIGINT or SIGTERM exits at once, with status 1, abandoning what was still
//! being delivered.
//!
//! # Output
//!
//! Everything is printed on standard error; standard output stays empty
//! (except for `--help`). Each failed notification is printed on one line:
//! the message (lossy UTF-8, escaped, cut after 80 characters), then the
//! error and its kind and status. The error handler runs on the client's
//! event-loop threads, so a very slow standard error slows delivery. When
//! standard error is a terminal, a progress line is redrawn four times a
//! second. At the end a summary: lines read, empty lines skipped, sent,
//! delivered, failed, not sent, queue-full waits, retries, elapsed time and
//! delivery rate.
//!
//! # Exit status
//!
//! - 0: every line read (empty ones aside) was delivered;
//! - 1: some line failed or was not sent (interrupted), standard input could
//!   not be read, or the client could not be started;
//! - 2: bad arguments (unknown option, bad number, bad URL, bad header),
//!   with a usage message.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notifier::{
    BuildError, Client, Message, NotificationError, NotifyError, RetryConfig, Stats,
    DEFAULT_CONTENT_TYPE, DEFAULT_QUEUE_SIZE, DEFAULT_TIMEOUT, DEFAULT_WORKERS,
};

const USAGE: &str = "\
usage: notify --url URL [OPTIONS] < LINES

Sends each line of standard input as one notification (an HTTP POST to URL).
Lines are sent without their line ending, bytes as they are; empty lines are
skipped. Progress, failures and a summary go to standard error.

options:
  --url URL             http:// or https:// endpoint (required)
  --workers N           simultaneous requests                  (default 10)
  --queue N             messages waiting for a worker          (default 1000)
  --timeout SECS        deadline of one attempt, e.g. 5 or 0.5 (default 30)
  --retry ATTEMPTS      attempts per message, the first included (default 1:
                        no retry); retries connection failures, timeouts, 5xx
  --header 'Name: value'  extra request header; may be repeated
  --content-type CT     Content-Type of every request
                        (default text/plain; charset=utf-8)
  -h, --help            print this help

SIGINT/SIGTERM: stop reading, deliver what was accepted, print the summary;
a second signal exits at once.

exit status: 0 all delivered, 1 some not delivered, 2 bad arguments";

/// Lines read ahead of the main thread.
const LINE_BUFFER: usize = 1024;
/// How often the main thread looks at the signal flag while stdin is idle.
const SIGNAL_POLL: Duration = Duration::from_millis(50);
/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// `QueueFull` answers met by spinning before the tool starts sleeping.
const SPIN_TRIES: u32 = 10;
/// The sleep between tries once spinning is over.
const BACKOFF_SLEEP: Duration = Duration::from_micros(50);
/// Characters of a failed message that are printed.
const PREVIEW_CHARS: usize = 80;
/// Clears the terminal line the progress line is drawn on.
const CLEAR_LINE: &str = "\r\x1b[K";

fn main() -> ExitCode {
    let options = match Options::from_args(std::env::args_os().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => return usage_error(&problem),
    };
    let tty = io::stderr().is_terminal();
    let client = match options.build_client(tty) {
        Ok(client) => Arc::new(client),
        Err(
            e @ (BuildError::EmptyUrl
            | BuildError::InvalidUrl(_)
            | BuildError::UnsupportedScheme(_)
            | BuildError::InvalidHeader(_)),
        ) => return usage_error(&e.to_string()),
        Err(e) => {
            say(format_args!("notify: cannot create the client: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Before anything is read: a signal from now on stops gracefully.
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = register_signals(&stop) {
        say(format_args!("notify: cannot handle SIGINT/SIGTERM: {e}"));
        return ExitCode::FAILURE;
    }
    client.start();
    match run(&client, &stop, tty) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(problem) => {
            say(format_args!("notify: {problem}"));
            ExitCode::FAILURE
        }
    }
}

fn usage_error(problem: &str) -> ExitCode {
    say(format_args!("notify: {problem}\n\n{USAGE}"));
    ExitCode::from(2)
}

/// Writes one line on standard error; a failure to write is ignored (there is
/// nowhere left to report it).
fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// A first SIGINT or SIGTERM sets `stop`; one arriving when `stop` is
/// already set exits the process at once with status 1.
fn register_signals(stop: &Arc<AtomicBool>) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for signal in [SIGINT, SIGTERM] {
        // The shutdown is registered first, so it looks at the flag before
        // the first signal sets it.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(stop))?;
        signal_hook::flag::register(signal, Arc::clone(stop))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// The parsed command line.
#[derive(Debug)]
struct Options {
    url: String,
    workers: usize,
    queue: usize,
    timeout: Duration,
    retry: Option<u32>,
    headers: Vec<(String, String)>,
    content_type: String,
}

impl Options {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    ///
    /// Accepts `--flag VALUE` and `--flag=VALUE`; numbers may contain `_`.
    fn from_args(args: impl IntoIterator<Item = OsString>) -> Result<Option<Options>, String> {
        let mut url = None;
        let mut options = Options {
            url: String::new(),
            workers: DEFAULT_WORKERS,
            queue: DEFAULT_QUEUE_SIZE,
            timeout: DEFAULT_TIMEOUT,
            retry: None,
            headers: Vec::new(),
            content_type: DEFAULT_CONTENT_TYPE.to_owned(),
        };
        let mut args = args.into_iter().map(|arg| {
            arg.into_string()
                .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))
        });
        while let Some(arg) = args.next() {
            let arg = arg?;
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg, None),
            };
            let mut value = || match inline_value.clone() {
                Some(value) => Ok(value),
                None => args
                    .next()
                    .unwrap_or_else(|| Err(format!("{flag} needs a value"))),
            };
            match flag.as_str() {
                "--url" if url.is_some() => return Err("--url given more than once".to_owned()),
                "--url" => url = Some(value()?),
                "--workers" => options.workers = parse_count(&flag, &value()?)?,
                "--queue" => options.queue = parse_count(&flag, &value()?)?,
                "--timeout" => options.timeout = parse_seconds(&flag, &value()?)?,
                "--retry" => options.retry = Some(parse_count(&flag, &value()?)?),
                "--header" => options.headers.push(parse_header(&value()?)?),
                "--content-type" => options.content_type = value()?,
                _ if flag.starts_with('-') => return Err(format!("unknown option {flag:?}")),
                _ => return Err(format!("unexpected argument {flag:?}")),
            }
        }
        options.url = url.ok_or("--url is required")?;
        Ok(Some(options))
    }

    /// The client these options describe, not started. Failures are
    /// printed by its error handler; `tty` says whether a progress line
    /// has to be cleared first.
    fn build_client(&self, tty: bool) -> Result<Client, BuildError> {
        let mut builder = Client::builder(&self.url)
            .workers(self.workers)
            .queue_size(self.queue)
            .timeout(self.timeout)
            .content_type(&self.content_type)
            .error_handler(move |error| report_failure(&error, tty));
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some(attempts) = self.retry {
            builder = builder.retry(RetryConfig::default().max_attempts(attempts));
        }
        builder.build()
    }
}

/// Parses a whole number of at least 1, allowing `_` separators.
fn parse_count<T>(flag: &str, text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
{
    let number: T = text
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a whole number"))?;
    if number < T::from(1) {
        return Err(format!("{flag}: must be at least 1, got {text:?}"));
    }
    Ok(number)
}

/// Parses a positive number of seconds, fractions allowed.
fn parse_seconds(flag: &str, text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|secs| *secs > 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| {
            format!("{flag}: {text:?} is not a number of seconds above 0 (e.g. 5 or 0.5)")
        })
}

/// Splits `Name: value` at its first colon; spaces and tabs around the value
/// are dropped. The client checks the name and value when it is built.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()))
        }
        _ => Err(format!("--header {text:?}: expected 'Name: value'")),
    }
}

// ---------------------------------------------------------------------------
// Reading and sending
// ---------------------------------------------------------------------------

/// What the main loop counted; the client's [`Stats`] count the rest.
#[derive(Debug, Default)]
struct Counts {
    /// Lines taken from standard input, empty ones included.
    read: u64,
    /// Empty lines, not sent.
    empty: u64,
    /// Lines read but never accepted by the client (interrupted).
    unsent: u64,
}

/// Why reading stopped.
enum End {
    /// Standard input ended.
    Eof,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Standard input could not be read.
    ReadError(io::Error),
}

/// Sends every line, stops the client, prints the summary. `Ok(true)` when
/// every line read was delivered.
fn run(client: &Arc<Client>, stop: &AtomicBool, tty: bool) -> Result<bool, String> {
    let started = Instant::now();
    let (lines, reader) = spawn_reader().map_err(|e| format!("cannot spawn a thread: {e}"))?;
    let progress = if tty {
        Some(
            Progress::start(Arc::clone(client))
                .map_err(|e| format!("cannot spawn a thread: {e}"))?,
        )
    } else {
        None
    };

    let mut counts = Counts::default();
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break End::Interrupted;
        }
        match lines.recv_timeout(SIGNAL_POLL) {
            Ok(Ok(line)) => {
                counts.read += 1;
                if line.is_empty() {
                    counts.empty += 1;
                } else if !send(client, line.into(), stop)? {
                    counts.unsent += 1;
                    break End::Interrupted;
                }
            }
            Ok(Err(e)) => break End::ReadError(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break End::Eof,
        }
    };

    match &end {
        End::Eof => {
            // The reader has returned: nothing left to wait for.
            let _ = reader.join();
        }
        End::Interrupted => {
            // What the reader had read ahead is counted, not sent. The
            // reader itself may be blocked in a read: it is left behind,
            // and exits at its next line, or with the process.
            for line in lines.try_iter().flatten() {
                counts.read += 1;
                if line.is_empty() {
                    counts.empty += 1;
                } else {
                    counts.unsent += 1;
                }
            }
            drop(lines);
            let s = client.stats();
            clear_progress(tty);
            say(format_args!(
                "notify: interrupted: stopped reading; waiting for the {} accepted notification(s) \
                 still in the client (a second signal exits at once)",
                s.accepted.saturating_sub(s.delivered + s.failed)
            ));
        }
        End::ReadError(e) => {
            clear_progress(tty);
            say(format_args!("notify: cannot read standard input: {e}"));
        }
    }

    // Delivers (or reports) everything accepted, then joins the loops.
    client.stop();
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.finish();
    }

    let stats = client.stats();
    print_summary(&counts, &stats, elapsed);
    Ok(matches!(end, End::Eof | End::Interrupted)
        && counts.unsent == 0
        && stats.failed == 0
        && stats.delivered == stats.accepted)
}

/// Lines of standard input, each without its line ending, then a read error
/// if there was one.
type Lines = Receiver<io::Result<Vec<u8>>>;

/// Reads standard input on its own thread, one line at a time without its
/// line ending, into a bounded channel; the channel closes at end of input
/// or after a read error (sent as the last item).
fn spawn_reader() -> io::Result<(Lines, JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(LINE_BUFFER);
    let reader = thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
            let mut buf = Vec::with_capacity(1024);
            loop {
                buf.clear();
                let item = match input.read_until(b'\n', &mut buf) {
                    Ok(0) => return,
                    Ok(_) => Ok(strip_line_ending(&buf).to_vec()),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                // The main thread is gone (interrupted): stop reading.
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        })?;
    Ok((rx, reader))
}

/// `line` without a final `\n` or `\r\n`.
fn strip_line_ending(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r', b'\n'] | [rest @ .., b'\n'] => rest,
        _ => line,
    }
}

/// Hands `msg` to the client, waiting while it is full. `Ok(false)` when a
/// signal came first (the message was not sent).
fn send(client: &Client, mut msg: Message, stop: &AtomicBool) -> Result<bool, String> {
    let mut tries = 0u32;
    loop {
        match client.notify(msg) {
            Ok(()) => return Ok(true),
            Err(NotifyError::QueueFull(back)) => msg = back,
            Err(e) => return Err(format!("the client refused a notification: {e}")),
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        if tries < SPIN_TRIES {
            for _ in 0..(1u32 << tries) {
                std::hint::spin_loop();
            }
        } else {
            thread::sleep(BACKOFF_SLEEP);
        }
        tries = tries.saturating_add(1);
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// The error handler: one line per failed notification.
fn report_failure(error: &NotificationError, tty: bool) {
    let status = error
        .status_code()
        .map_or_else(String::new, |status| format!(", status {status}"));
    say(format_args!(
        "{}notify: not delivered: {}: {error} [kind {:?}{status}]",
        if tty { CLEAR_LINE } else { "" },
        preview(error.message()),
        error.kind(),
    ));
}

/// The message as lossy UTF-8, quoted and escaped, cut after
/// [`PREVIEW_CHARS`] characters (then followed by its length).
fn preview(message: &[u8]) -> String {
    // No character takes more than 4 bytes: this prefix holds enough.
    let head = &message[..message.len().min(PREVIEW_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    let mut chars = text.char_indices();
    match chars.nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], message.len()),
        None if head.len() < message.len() => {
            format!("{text:?}… ({} bytes)", message.len())
        }
        None => format!("{text:?}"),
    }
}

fn clear_progress(tty: bool) {
    if tty {
        let _ = write!(io::stderr().lock(), "{CLEAR_LINE}");
    }
}

fn print_summary(counts: &Counts, stats: &Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        stats.delivered as f64 / secs
    } else {
        0.0
    };
    say(format_args!(
        "notify: summary\n\
         \x20 lines read          {:>10}\n\
         \x20 empty, skipped      {:>10}\n\
         \x20 sent                {:>10}\n\
         \x20 delivered           {:>10}\n\
         \x20 failed              {:>10}\n\
         \x20 not sent            {:>10}   (read, then interrupted)\n\
         \x20 queue full, waited  {:>10}   (notify refused by a full queue, then tried again)\n\
         \x20 retries             {:>10}   (attempts after a retryable failure)\n\
         \x20 elapsed             {:>10.3} s\n\
         \x20 rate                {:>10.0} delivered/s",
        counts.read,
        counts.empty,
        stats.accepted,
        stats.delivered,
        stats.failed,
        counts.unsent,
        stats.rejected,
        stats.retried,
        secs,
        rate,
    ));
}

/// Redraws a progress line on standard error (a terminal) until finished.
struct Progress {
    done: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Progress {
    fn start(client: Arc<Client>) -> io::Result<Progress> {
        let (done, finished) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || {
                let mut last = (Instant::now(), client.stats().delivered);
                // Woken early when `done` is dropped.
                while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(PROGRESS_INTERVAL)
                {
                    let s = client.stats();
                    let now = Instant::now();
                    let rate =
                        s.delivered.saturating_sub(last.1) as f64 / (now - last.0).as_secs_f64();
                    last = (now, s.delivered);
                    let _ = write!(
                        io::stderr().lock(),
                        "{CLEAR_LINE}notify: sent {}  delivered {}  failed {}  waiting {}  {:.0}/s",
                        s.accepted,
                        s.delivered,
                        s.failed,
                        s.queued + s.in_flight,
                        rate,
                    );
                }
            })?;
        Ok(Progress { done, thread })
    }

    /// Stops the redraws and clears the line.
    fn finish(self) {
        drop(self.done);
        let _ = self.thread.join();
        clear_progress(true);
    }
}
