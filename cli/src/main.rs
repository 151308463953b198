//! `notify`: sends each line of standard input as one notification.
//!
//! ```text
//! cargo install --path cli --locked   # from the repository's root; installs `notify`
//! notify --url http://127.0.0.1:8080/events < lines.txt
//! tail -F app.log | notify --url https://hooks.example/in \
//!     --header 'Authorization: Bearer TOKEN' --content-type 'text/plain' --retry 3
//! notify --url https://hooks.internal:8443/in --cacert internal-ca.pem \
//!     --stats-json < lines.txt > stats.json
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
//! With `--batch ndjson|json-array|concat`, a request carries as many lines
//! as are waiting (up to 500, or 1 MiB of body), framed as asked.
//! Lines are not checked: with `json-array` each should itself be a JSON
//! value. A failed batch reports each of its lines. `--gzip` compresses
//! each request body (`Content-Encoding: gzip`), once per batch.
//!
//! # TLS
//!
//! `https://` URLs trust the Mozilla roots (`webpki-roots`) and the operating
//! system's store (the library's `native-roots` feature: on Linux the
//! distribution's bundle, or the files `SSL_CERT_FILE` / `SSL_CERT_DIR`
//! name). `--cacert FILE` adds the PEM certificates of `FILE` to those, for
//! a server behind a private CA; it may be repeated. A file that cannot be
//! read or holds no usable certificate is a bad argument (status 2). A
//! server whose certificate none of them vouches for fails each message as
//! kind `Tls` (`UnknownIssuer`), which is not retried.
//!
//! # Backpressure
//!
//! When the client is full
//! ([`NotifyError::QueueFull`](notifier::NotifyError::QueueFull)), the tool
//! takes the message back and waits (spins briefly, then sleeps about 50 µs
//! between tries) instead of dropping it, so a slow server slows the reading
//! of standard input. The summary counts how many `notify` calls were refused
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
//! (except for `--help` and `--stats-json`). Each failed notification is
//! printed on one line:
//! the message (lossy UTF-8, escaped, cut after 80 characters), then the
//! error and its kind and status. The error handler runs on the client's
//! event-loop threads, so a very slow standard error slows delivery. When
//! standard error is a terminal, a progress line is redrawn four times a
//! second. At the end a summary: lines read, empty lines skipped, sent,
//! delivered, failed, not sent, queue-full waits, retries, elapsed time and
//! delivery rate.
//!
//! With `--stats-json` the summary is instead one JSON object on one line,
//! on standard output, so that a script can read it apart from the failures
//! and notices on standard error (`notify … --stats-json | jq .delivered`):
//!
//! ```text
//! {"lines_read":3,"empty_skipped":0,"sent":3,"delivered":3,"failed":0,"not_sent":0,"queue_full_waits":0,"retries":0,"requests":3,"elapsed_s":0.012034,"rate_per_s":249.3}
//! ```
//!
//! Its fields are those of the summary, `requests` (HTTP requests sent,
//! fewer than `sent` with `--batch`) added; all are numbers. It is printed
//! on an interruption too, but not when a second signal exits at once.
//!
//! # Exit status
//!
//! - 0: every line read (empty ones aside) was delivered;
//! - 1: some line failed or was not sent (interrupted), standard input could
//!   not be read, or the client could not be started;
//! - 2: bad arguments (unknown option, bad number, bad URL, bad header),
//!   with a usage message.

mod options;
mod output;
mod run;
mod tls;

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use notifier::BuildError;

use crate::options::Options;
use crate::output::say;

const USAGE: &str = "\
usage: notify --url URL [OPTIONS] < LINES

Sends each line of standard input as one notification (an HTTP POST to URL).
Lines are sent without their line ending, bytes as they are; empty lines are
skipped. Progress, failures and a summary go to standard error (the summary
to standard output as JSON with --stats-json).

options:
  --url URL             http:// or https:// endpoint (required)
  --workers N           simultaneous requests                  (default 10)
  --queue N             messages waiting for a worker          (default 1000)
  --timeout SECS        deadline of one attempt, e.g. 5 or 0.5 (default 30)
  --retry ATTEMPTS      attempts per message, the first included (default 1:
                        no retry); retries connection failures, timeouts, 5xx
  --header 'Name: value'  extra request header; may be repeated
  --content-type CT     Content-Type of every request (default
                        text/plain; charset=utf-8, or the --batch framing's)
  --batch FRAMING       carry many lines in one request: ndjson (each line
                        followed by \n), json-array ([l1,l2,...]) or concat
                        (lines back to back); up to 500 lines or 1 MiB each
  --gzip                compress each request body (Content-Encoding: gzip)
  --cacert FILE         also trust the PEM certificates in FILE (a private
                        CA) besides the Mozilla and system roots; may be
                        repeated
  --stats-json          print the final summary as one JSON line on standard
                        output instead of the text summary on standard error
  -h, --help            print this help

SIGINT/SIGTERM: stop reading, deliver what was accepted, print the summary;
a second signal exits at once.

exit status: 0 all delivered, 1 some not delivered, 2 bad arguments";

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
    match run::run(&client, &stop, tty, options.stats_json) {
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
