//! The client handle: start / notify / flush / stop / stats, over the
//! runtime that does the work.

use std::fmt;
use std::time::Duration;

use crate::builder::Builder;
use crate::error::{BuildError, NotifyError};
use crate::message::Message;
use crate::runtime::queue::Refused;
use crate::runtime::Runtime;
use crate::stats::Stats;

/// Sends notifications to one HTTP endpoint from background event loops.
///
/// `Client` is `Send + Sync`: share it with an `Arc` and call
/// [`notify`](Client::notify) from any number of threads. `notify` puts the
/// message in a bounded lock-free queue and returns; it never waits for the
/// network and, while the event loops are busy, makes no syscall.
///
/// # Delivery
///
/// Every accepted message ends exactly once: delivered (the server answered
/// 2xx) or handed to the error handler. Without retry a message is sent at
/// most once: a request written to a connection that then fails before any
/// response byte is reported as [`FailureKind::Io`](crate::FailureKind::Io),
/// not sent again, since the server may have acted on it. Messages are
/// taken from the queue in order but delivered over several connections at
/// once, so they may arrive out of order; use `workers(1)` for order.
///
/// # Examples
///
/// ```no_run
/// use notifier::Client;
///
/// let client = Client::new("http://127.0.0.1:8080/hook")?;
/// client.start();
/// if let Err(e) = client.notify("price update") {
///     eprintln!("not sent: {e}");
/// }
/// client.stop(); // delivers what was accepted, then joins the loops
/// # Ok::<(), notifier::BuildError>(())
/// ```
pub struct Client {
    runtime: Runtime,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", self.runtime.config())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `url` with every default (10 workers, a queue of 1000,
    /// a 30 s timeout). Equivalent to `Client::builder(url).build()`.
    pub fn new(url: &str) -> Result<Client, BuildError> {
        Client::builder(url).build()
    }

    /// A builder for a client of `url`.
    pub fn builder(url: &str) -> Builder {
        Builder::new(url)
    }

    /// Starts the event loops. Calling it again, or after
    /// [`stop`](Client::stop), has no effect. It never fails and never
    /// panics: the loops' threads were spawned by the build, and wait for
    /// this call.
    pub fn start(&self) {
        self.runtime.start();
    }

    /// Hands `msg` to the client for delivery and returns at once.
    ///
    /// Fails, handing the message back, when the client is not started,
    /// is stopped, or already holds `queue_size + workers` messages
    /// (queued or in flight; `queue_size + workers × max_messages` with
    /// [`Builder::batch`]): that is backpressure, and the caller decides
    /// whether to drop, retry later or block.
    ///
    /// `notify` takes no lock and makes no syscall except to wake an event
    /// loop that had nothing to do (one `eventfd` write).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use notifier::{Client, NotifyError};
    ///
    /// let client = Client::new("http://127.0.0.1:8080/")?;
    /// client.start();
    /// match client.notify(b"tick".as_slice()) {
    ///     Ok(()) => {}
    ///     Err(NotifyError::QueueFull(msg)) => { /* keep `msg` for later */ }
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # Ok::<(), notifier::BuildError>(())
    /// ```
    pub fn notify(&self, msg: impl Into<Message>) -> Result<(), NotifyError> {
        self.runtime
            .push(msg.into())
            .map_err(|(why, msg)| match why {
                Refused::NotStarted => NotifyError::NotStarted(msg),
                Refused::Full => NotifyError::QueueFull(msg),
                Refused::Stopped => NotifyError::Stopped(msg),
            })
    }

    /// Waits until every message accepted before the call is delivered or
    /// handed to the error handler, for at most `timeout`. Returns whether
    /// they all were. Messages accepted meanwhile are not waited for.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.runtime.flush(timeout)
    }

    /// Stops accepting messages, delivers everything already accepted
    /// (bounded by the builder's `shutdown_timeout`, past which the rest
    /// goes to the error handler as `Shutdown`), then joins the event
    /// loops. Idempotent; a stopped client cannot be restarted.
    ///
    /// Called from the error handler (an event-loop thread) it starts the
    /// shutdown but does not wait for it.
    pub fn stop(&self) {
        self.runtime.stop();
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> Stats {
        self.runtime.stats()
    }
}

impl Builder {
    /// Validates the configuration and creates the client, not started.
    ///
    /// The event-loop threads are spawned here and wait for
    /// [`Client::start`]; a thread or poll instance the operating system
    /// cannot create is [`BuildError::Io`].
    pub fn build(self) -> Result<Client, BuildError> {
        Ok(Client {
            runtime: Runtime::new(self.into_config()?)?,
        })
    }
}

impl Drop for Client {
    /// Same as [`Client::stop`].
    fn drop(&mut self) {
        self.stop();
    }
}
