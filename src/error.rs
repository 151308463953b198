//! Errors: building a client, handing it a message, and delivering one.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::message::Message;

/// Why [`Builder::build`](crate::Builder::build) refused a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL was the empty string.
    #[error("the endpoint URL is empty")]
    EmptyUrl,
    /// The URL could not be parsed; the text says where.
    #[error("invalid endpoint URL: {0}")]
    InvalidUrl(String),
    /// The URL's scheme is neither `http` nor `https`.
    #[error("unsupported URL scheme {0:?} (supported: http, https)")]
    UnsupportedScheme(String),
    /// A header name or value, or the content type, cannot be sent.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A setting is past its bound (more workers, a larger queue or more
    /// threads than a client may have); the text names it.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// The event-loop threads or their poll instances could not be created.
    #[error("cannot create the event loops: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Client::notify`](crate::Client::notify) did not accept a message.
///
/// Every variant hands the message back unharmed, like crossbeam's
/// `ArrayQueue::push` returning the value it could not store.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// [`Client::start`](crate::Client::start) has not been called yet.
    #[error("client not started")]
    NotStarted(Message),
    /// The client already holds `queue_size + workers` messages (queued, in
    /// flight or waiting for a retry; `queue_size + workers × max_messages`
    /// with batching).
    #[error("notification queue is full")]
    QueueFull(Message),
    /// [`Client::stop`](crate::Client::stop) has been called.
    #[error("client stopped")]
    Stopped(Message),
}

impl NotifyError {
    /// Takes back the message that was not accepted.
    pub fn into_message(self) -> Message {
        match self {
            NotifyError::NotStarted(m) | NotifyError::QueueFull(m) | NotifyError::Stopped(m) => m,
        }
    }

    /// The message that was not accepted.
    pub fn message(&self) -> &Message {
        match self {
            NotifyError::NotStarted(m) | NotifyError::QueueFull(m) | NotifyError::Stopped(m) => m,
        }
    }
}

/// The class of a delivery failure; see [`NotificationError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The TCP connection could not be opened: refused, unreachable, or
    /// no address for the host name (its lookup failed, or had not ended
    /// within the attempt's timeout); or, while the machine was out of
    /// sockets, no worker could carry the message within its `timeout`.
    Connect,
    /// The TLS handshake failed: the server's certificate was not trusted or
    /// not for this host, or the server rejected the handshake with an
    /// alert. A connection cut during the handshake is [`FailureKind::Io`]. Not
    /// retryable: trying again meets the same certificate.
    Tls,
    /// The attempt did not finish within the client's `timeout`.
    Timeout,
    /// The connection failed while the request was written or before any
    /// response byte arrived (reset, unexpected EOF).
    Io,
    /// The server's response broke HTTP/1.1 framing rules or the client's
    /// limits.
    Protocol,
    /// The server answered with a status other than 2xx.
    Status,
    /// The circuit breaker is open: the attempt was refused without
    /// touching the network. Not retried.
    CircuitOpen,
    /// The client stopped with `shutdown_timeout` before the message was
    /// delivered.
    Shutdown,
    /// The event loop that held the message died of a panic (a bug in this
    /// crate; panics in the error handler are caught and do not count). The
    /// other loops carry on. When the last loop dies the client stops
    /// (`notify` returns `Stopped`) and the queued messages fail this way
    /// too, handed to the handler by the dying loop or, for any accepted
    /// after it looked, by `stop`.
    Internal,
    /// The message was not delivered within the client's
    /// [`message_ttl`](crate::Builder::message_ttl) of its `notify`, and
    /// was not sent (or not sent again) once it had passed.
    /// [`attempts`](NotificationError::attempts) are the tries made before.
    Expired,
    /// The queue was full and the client drops the oldest queued message
    /// to take a new one ([`Overflow::DropOldest`](crate::Overflow)).
    Dropped,
}

/// What a failed attempt tells the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerVerdict {
    /// A sign the endpoint is unwell: counts toward opening the circuit.
    Failure,
    /// Says nothing of the endpoint's health (a 4xx, a refusal, shutdown).
    Neutral,
}

/// How a failure is treated: whether trying again may succeed, and what it
/// tells the circuit breaker. The one place that decides both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) retryable: bool,
    pub(crate) breaker: BreakerVerdict,
}

impl FailureKind {
    /// The classification of a failure of this kind with this status:
    ///
    /// | kind | retryable | breaker |
    /// |---|---|---|
    /// | Connect, Io, Timeout, Protocol | yes | failure |
    /// | Status 5xx | yes | failure |
    /// | Tls | no | failure |
    /// | Status other than 5xx | no | neutral |
    /// | CircuitOpen, Shutdown, Internal, Expired, Dropped | no | neutral |
    pub(crate) fn class(self, status: Option<u16>) -> Class {
        use BreakerVerdict::{Failure, Neutral};
        let (retryable, breaker) = match self {
            FailureKind::Connect
            | FailureKind::Io
            | FailureKind::Timeout
            | FailureKind::Protocol => (true, Failure),
            FailureKind::Status if matches!(status, Some(500..=599)) => (true, Failure),
            FailureKind::Tls => (false, Failure),
            FailureKind::Status
            | FailureKind::CircuitOpen
            | FailureKind::Shutdown
            | FailureKind::Internal
            | FailureKind::Expired
            | FailureKind::Dropped => (false, Neutral),
        };
        Class { retryable, breaker }
    }

    fn describe(self) -> &'static str {
        match self {
            FailureKind::Connect => "cannot connect",
            FailureKind::Tls => "TLS handshake failed",
            FailureKind::Timeout => "timed out",
            FailureKind::Io => "connection failed",
            FailureKind::Protocol => "invalid response",
            FailureKind::Status => "server answered",
            FailureKind::CircuitOpen => "circuit breaker open",
            FailureKind::Shutdown => "client shut down before delivery",
            FailureKind::Internal => "event loop died",
            FailureKind::Expired => "expired before delivery",
            FailureKind::Dropped => "dropped from a full queue",
        }
    }
}

/// A response the client refused to accept as HTTP/1.1, or one past the
/// client's limits. The source of a [`FailureKind::Protocol`] failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The status line or a header line does not parse.
    #[error("malformed response head: {0}")]
    MalformedHead(&'static str),
    /// Status line and headers exceed 64 KiB.
    #[error("response head larger than 64 KiB")]
    HeadTooLarge,
    /// More than 100 header lines.
    #[error("more than 100 response headers")]
    TooManyHeaders,
    /// A status code outside 100–599.
    #[error("status code {0} out of range")]
    BadStatus(u16),
    /// `101 Switching Protocols` to a POST the client never asked to upgrade.
    #[error("unexpected 101 Switching Protocols")]
    UnexpectedSwitchingProtocols,
    /// More than 10 interim (1xx) responses before the final one.
    #[error("more than 10 interim responses")]
    TooManyInterim,
    /// A Content-Length that is not a number, or several that disagree.
    #[error("invalid or conflicting Content-Length")]
    BadContentLength,
    /// An HTTP/1.0 response with Transfer-Encoding.
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    /// A chunk-size line that is not hexadecimal or overflows.
    #[error("invalid chunk size")]
    BadChunkSize,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not terminated by CRLF")]
    BadChunkEnd,
    /// Chunk extensions or trailers larger than 16 KiB.
    #[error("chunk extensions or trailers larger than 16 KiB")]
    ChunkMetadataTooLarge,
    /// The body ran past the 1 MiB the client reads to keep a connection.
    #[error("response body larger than 1 MiB")]
    BodyTooLarge,
    /// The connection closed before the framing said the body ended.
    #[error("response truncated")]
    Truncated,
}

/// What lies under a failure, given as its `source()`.
#[derive(Debug)]
pub(crate) enum Cause {
    None,
    Io(io::Error),
    /// One I/O error under every message of a failed batch.
    SharedIo(Arc<io::Error>),
    Tls(rustls::Error),
    Protocol(ProtocolError),
}

impl Cause {
    /// The same cause, cheap to clone: an I/O error is put behind an
    /// `Arc` (once per failed batch; the rest clone as they are).
    fn shared(self) -> Cause {
        match self {
            Cause::Io(e) => Cause::SharedIo(Arc::new(e)),
            other => other,
        }
    }

    /// A copy of a cause made by [`Cause::shared`].
    fn copy(&self) -> Cause {
        match self {
            Cause::None => Cause::None,
            Cause::Io(e) => Cause::Io(io::Error::new(e.kind(), e.to_string())),
            Cause::SharedIo(e) => Cause::SharedIo(Arc::clone(e)),
            Cause::Tls(e) => Cause::Tls(e.clone()),
            Cause::Protocol(e) => Cause::Protocol(e.clone()),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) status: Option<u16>,
    pub(crate) cause: Cause,
    /// The wait the response's `Retry-After` asked for, whatever its
    /// status; only a 5xx's is heeded.
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure of `kind` with nothing under it.
    pub(crate) fn of(kind: FailureKind) -> Failure {
        Failure::caused(kind, Cause::None)
    }

    /// A failure of `kind` with `cause` under it.
    pub(crate) fn caused(kind: FailureKind, cause: Cause) -> Failure {
        Failure {
            kind,
            status: None,
            cause,
            retry_after: None,
        }
    }

    /// An answer with a status other than 2xx.
    pub(crate) fn status(status: u16, retry_after: Option<std::time::Duration>) -> Failure {
        Failure {
            kind: FailureKind::Status,
            status: Some(status),
            cause: Cause::None,
            retry_after,
        }
    }

    /// Its classification.
    pub(crate) fn class(&self) -> Class {
        self.kind.class(self.status)
    }

    /// The same failure for each of `n` messages of a batch, the cause
    /// shared by all.
    pub(crate) fn for_each_of(self, n: usize) -> impl Iterator<Item = Failure> {
        let Failure {
            kind,
            status,
            cause,
            retry_after,
        } = self;
        let cause = if n > 1 { cause.shared() } else { cause };
        let mut cause = Some(cause);
        (0..n).map(move |i| {
            let cause = if i + 1 == n {
                cause.take().unwrap_or(Cause::None)
            } else {
                cause.as_ref().map_or(Cause::None, Cause::copy)
            };
            Failure {
                kind,
                status,
                cause,
                retry_after,
            }
        })
    }
}

/// A notification that could not be delivered, handed to the error handler
/// by value together with the message.
///
/// `Display` says what failed, the status and the attempts made
/// (`notification failed: server answered 503 (3 attempts)`); what lay
/// under it (the I/O error, the TLS error, the HTTP rule the response
/// broke) is its [`source`](std::error::Error::source), not repeated in
/// the text. Print the source chain to see both.
#[derive(Debug)]
pub struct NotificationError {
    message: Message,
    kind: FailureKind,
    status: Option<u16>,
    attempts: u32,
    cause: Cause,
    /// The message's place in its batch and the batch's length.
    batch: Option<(usize, usize)>,
}

impl NotificationError {
    pub(crate) fn new(
        message: Message,
        failure: Failure,
        attempts: u32,
        batch: Option<(usize, usize)>,
    ) -> NotificationError {
        NotificationError {
            message,
            kind: failure.kind,
            status: failure.status,
            attempts,
            cause: failure.cause,
            batch,
        }
    }

    /// The message's place (from 0) in the batch it failed with, in queue
    /// order. Every message of a failed batch is handed over, each with its
    /// own index. `None` when the message failed outside any request:
    /// batching is off, or it expired, was dropped or was given up while
    /// queued or being gathered into a batch.
    pub fn batch_index(&self) -> Option<usize> {
        self.batch.map(|(index, _)| index)
    }

    /// How many messages the batch it failed with carried; `None` when
    /// [`batch_index`](NotificationError::batch_index) is.
    pub fn batch_len(&self) -> Option<usize> {
        self.batch.map(|(_, len)| len)
    }

    /// The bytes of the message that was not delivered.
    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// Takes the message back, to store or re-send it.
    pub fn into_message(self) -> Message {
        self.message
    }

    /// The status the server answered with, when it answered.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The class of the failure.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Whether trying again could succeed: connection, I/O, timeout and
    /// protocol failures and 5xx answers are retryable; TLS failures, other
    /// statuses, an open circuit and shutdown are not.
    pub fn is_retryable(&self) -> bool {
        self.kind.class(self.status).retryable
    }

    /// How many attempts were made for this message, counting one the
    /// circuit breaker refused. Automatic re-sends on a fresh connection
    /// after a reused one proved closed are not attempts.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl fmt::Display for NotificationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "notification failed: {}", self.kind.describe())?;
        if let Some(status) = self.status {
            write!(f, " {status}")?;
        }
        write!(
            f,
            " ({} attempt{}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )?;
        if let Some((index, len)) = self.batch {
            write!(f, "; index {index} of a batch of {len}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for NotificationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::None => None,
            Cause::Io(e) => Some(e),
            Cause::SharedIo(e) => Some(&**e),
            Cause::Tls(e) => Some(e),
            Cause::Protocol(e) => Some(e),
        }
    }
}
