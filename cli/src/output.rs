//! What the tool prints: on standard error failures, the progress line and
//! the summary; on standard output the summary as JSON, when asked.

use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notifier::{Client, NotificationError, Stats};

use crate::run::Counts;

/// How often the progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// Characters of a failed message that are printed.
const PREVIEW_CHARS: usize = 80;
/// Clears the terminal line the progress line is drawn on.
const CLEAR_LINE: &str = "\r\x1b[K";

/// Writes one line on standard error; a failure to write is ignored (there is
/// nowhere left to report it).
pub(crate) fn say(line: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// The error handler: one line per failed notification, with what lay
/// under it (the error's source chain).
pub(crate) fn report_failure(error: &NotificationError, tty: bool) {
    let status = error
        .status_code()
        .map_or_else(String::new, |status| format!(", status {status}"));
    let mut causes = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    say(format_args!(
        "{}notify: not delivered: {}: {error}{causes} [kind {:?}{status}]",
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

pub(crate) fn clear_progress(tty: bool) {
    if tty {
        let _ = write!(io::stderr().lock(), "{CLEAR_LINE}");
    }
}

/// Messages delivered per second over `secs` (0 over no time at all).
fn rate(stats: &Stats, secs: f64) -> f64 {
    if secs > 0.0 {
        stats.delivered as f64 / secs
    } else {
        0.0
    }
}

pub(crate) fn print_summary(counts: &Counts, stats: &Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let rate = rate(stats, secs);
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

/// The summary as one JSON object on one line of standard output: the
/// fields of [`print_summary`], in its order and with `_` for spaces, and
/// `requests`. Every value is a number (counts, then seconds and a rate with
/// a fraction), so nothing needs escaping.
pub(crate) fn print_summary_json(counts: &Counts, stats: &Stats, elapsed: Duration) {
    let _ = writeln!(
        io::stdout().lock(),
        "{}",
        summary_json(counts, stats, elapsed)
    );
}

fn summary_json(counts: &Counts, stats: &Stats, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    format!(
        "{{\"lines_read\":{},\"empty_skipped\":{},\"sent\":{},\"delivered\":{},\"failed\":{},\
         \"not_sent\":{},\"queue_full_waits\":{},\"retries\":{},\"requests\":{},\
         \"elapsed_s\":{:.6},\"rate_per_s\":{:.1}}}",
        counts.read,
        counts.empty,
        stats.accepted,
        stats.delivered,
        stats.failed,
        counts.unsent,
        stats.rejected,
        stats.retried,
        stats.requests,
        secs,
        rate(stats, secs),
    )
}

/// Redraws a progress line on standard error (a terminal) until finished.
pub(crate) struct Progress {
    done: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Progress {
    pub(crate) fn start(client: Arc<Client>) -> io::Result<Progress> {
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
    pub(crate) fn finish(self) {
        drop(self.done);
        let _ = self.thread.join();
        clear_progress(true);
    }
}
