//! Reading standard input and handing each line to the client.

use std::io::{self, BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notifier::{Client, Message, NotifyError};

use crate::output::{clear_progress, print_summary, print_summary_json, say, Progress};

/// Lines read ahead of the main thread.
const LINE_BUFFER: usize = 1024;
/// How often the main thread looks at the signal flag while stdin is idle.
const SIGNAL_POLL: Duration = Duration::from_millis(50);
/// `QueueFull` answers met by spinning before the tool starts sleeping.
const SPIN_TRIES: u32 = 10;
/// The sleep between tries once spinning is over.
const BACKOFF_SLEEP: Duration = Duration::from_micros(50);

/// What the main loop counted; the client's [`Stats`](notifier::Stats)
/// count the rest.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Lines taken from standard input, empty ones included.
    pub(crate) read: u64,
    /// Empty lines, not sent.
    pub(crate) empty: u64,
    /// Lines read but never accepted by the client (interrupted).
    pub(crate) unsent: u64,
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

/// Sends every line, stops the client, prints the summary (as a JSON line on
/// standard output with `json`). `Ok(true)` when every line read was
/// delivered.
pub(crate) fn run(
    client: &Arc<Client>,
    stop: &AtomicBool,
    tty: bool,
    json: bool,
) -> Result<bool, String> {
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
    if json {
        print_summary_json(&counts, &stats, elapsed);
    } else {
        print_summary(&counts, &stats, elapsed);
    }
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
