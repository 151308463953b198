//! Batching: many messages carried in one request body.

use std::fmt;
use std::time::Duration;

/// Default most messages in one batch.
pub const DEFAULT_BATCH_MESSAGES: usize = 500;
/// Default most body bytes in one batch, framing included, before
/// compression.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// The most messages a batch may be set to hold.
pub const MAX_BATCH_MESSAGES: usize = 1 << 16;
/// The most body bytes a batch may be set to hold.
pub const MAX_BATCH_BYTES: usize = 1 << 30;
/// The longest a batch may be set to linger.
pub const MAX_LINGER: Duration = Duration::from_secs(60);

/// How messages are gathered into one request body; see
/// [`Builder::batch`](crate::Builder::batch).
///
/// A batch is the queued messages a free connection takes at once: up to
/// [`max_messages`](BatchConfig::max_messages) of them, in queue order,
/// whose framed body fits [`max_bytes`](BatchConfig::max_bytes). With the
/// default [`linger`](BatchConfig::linger) of zero a connection never
/// waits: at low load a batch holds one message, and under load batches
/// fill by themselves.
///
/// The framing is the bytes before, between and after the messages. The
/// messages are opaque bytes: nothing checks that they are JSON, and a
/// message that itself contains the separator (a newline inside an NDJSON
/// line) is sent as it is; keeping it out is the caller's business.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use notifier::{BatchConfig, Client};
///
/// let client = Client::builder("http://127.0.0.1:9200/_bulk")
///     .batch(BatchConfig::ndjson().max_messages(1000).linger(Duration::from_millis(5)))
///     .build()?;
/// # Ok::<(), notifier::BuildError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BatchConfig {
    pub(crate) prefix: Box<[u8]>,
    pub(crate) separator: Box<[u8]>,
    pub(crate) suffix: Box<[u8]>,
    /// The framing's content type; `None` keeps the client's.
    pub(crate) content_type: Option<&'static str>,
    pub(crate) max_messages: usize,
    pub(crate) max_bytes: usize,
    pub(crate) linger: Duration,
}

impl BatchConfig {
    fn framed(
        prefix: &[u8],
        separator: &[u8],
        suffix: &[u8],
        content_type: Option<&'static str>,
    ) -> BatchConfig {
        BatchConfig {
            prefix: prefix.into(),
            separator: separator.into(),
            suffix: suffix.into(),
            content_type,
            max_messages: DEFAULT_BATCH_MESSAGES,
            max_bytes: DEFAULT_BATCH_BYTES,
            linger: Duration::ZERO,
        }
    }

    /// Newline-delimited: each message followed by `\n`
    /// (`Content-Type: application/x-ndjson`).
    pub fn ndjson() -> BatchConfig {
        BatchConfig::framed(b"", b"\n", b"\n", Some("application/x-ndjson"))
    }

    /// A JSON array: `[m1,m2,…]` (`Content-Type: application/json`).
    pub fn json_array() -> BatchConfig {
        BatchConfig::framed(b"[", b",", b"]", Some("application/json"))
    }

    /// The messages back to back, nothing between them (Splunk HEC's
    /// event batches); the client's content type.
    pub fn concatenated() -> BatchConfig {
        BatchConfig::framed(b"", b"", b"", None)
    }

    /// Any framing: `prefix m1 separator m2 … suffix` (a Loki push body,
    /// say); the client's content type.
    pub fn custom(prefix: &[u8], separator: &[u8], suffix: &[u8]) -> BatchConfig {
        BatchConfig::framed(prefix, separator, suffix, None)
    }

    /// The most messages in one request; default 500, at most
    /// [`MAX_BATCH_MESSAGES`]. Zero is ignored.
    pub fn max_messages(mut self, n: usize) -> BatchConfig {
        if n > 0 {
            self.max_messages = n;
        }
        self
    }

    /// The most body bytes in one request, framing included and before
    /// compression; default 1 MiB, at most [`MAX_BATCH_BYTES`]. A message
    /// larger than this goes alone, never split. Zero is ignored.
    pub fn max_bytes(mut self, n: usize) -> BatchConfig {
        if n > 0 {
            self.max_bytes = n;
        }
        self
    }

    /// How long a connection holding fewer than `max_messages` waits for
    /// more, counted from the batch's first message; default zero (send
    /// what is queued now), at most [`MAX_LINGER`].
    /// [`Client::flush`](crate::Client::flush) and
    /// [`Client::stop`](crate::Client::stop) cut it short: the batch goes
    /// at once with what it holds, topped up from the queue.
    pub fn linger(mut self, d: Duration) -> BatchConfig {
        self.linger = d;
        self
    }
}

impl fmt::Debug for BatchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchConfig")
            .field("prefix", &self.prefix.escape_ascii().to_string())
            .field("separator", &self.separator.escape_ascii().to_string())
            .field("suffix", &self.suffix.escape_ascii().to_string())
            .field("max_messages", &self.max_messages)
            .field("max_bytes", &self.max_bytes)
            .field("linger", &self.linger)
            .finish()
    }
}
