//! Internals opened for the benchmarks in `benches/` and `benches/compare`
//! only, as `notifier::__bench` with the `internals` feature. Not public
//! API: no semver guarantee, hidden from the docs.

use std::time::Duration;

use crate::message::Message;
use crate::policy::breaker::Breaker as Inner;
use crate::policy::CircuitBreakerConfig;
use crate::proto::request::{Body, Cursor, RequestEncoder};
use crate::proto::response::{ResponseDecoder, Step};
use crate::runtime::queue::Queue as InnerQueue;

/// The shared circuit breaker, wrapped for the benchmarks.
#[derive(Debug)]
pub struct Breaker(Inner);

impl Breaker {
    /// A closed breaker with this threshold and reset timeout.
    pub fn new(failure_threshold: u32, reset_timeout: Duration) -> Breaker {
        let config = CircuitBreakerConfig::default()
            .failure_threshold(failure_threshold)
            .reset_timeout(reset_timeout);
        Breaker(Inner::new(&config))
    }

    /// One attempt's breaker traffic at `now_ms`: asks to go, then
    /// records the outcome. Returns whether the attempt was allowed.
    #[inline]
    pub fn check_and_record(&self, now_ms: u64, success: bool) -> bool {
        match self.0.allow(now_ms) {
            Some(ticket) if success => {
                self.0.on_success(ticket);
                true
            }
            Some(ticket) => {
                let _transition = self.0.on_failure(ticket, now_ms);
                true
            }
            None => false,
        }
    }
}

/// Encodes the request for a `body` to `http://127.0.0.1:8080/notify` with
/// the default content type into `out` (cleared first), as a connection
/// hands it to the socket.
pub fn encode_request_into(out: &mut Vec<u8>, body: &[u8]) {
    thread_local! {
        static ENCODER: RequestEncoder = RequestEncoder::new(
            "/notify",
            "127.0.0.1:8080",
            crate::DEFAULT_CONTENT_TYPE,
            None,
            &[],
        );
    }
    out.clear();
    ENCODER.with(|encoder| {
        let head = encoder.head(body.len(), None);
        head.with_body(Body::Bytes(body))
            .copy_from(&Cursor::default(), out);
    });
}

/// Decodes one whole response; the final status when it completes.
pub fn decode_response(bytes: &[u8]) -> Option<u16> {
    let mut decoder = ResponseDecoder::default();
    let mut rest = bytes;
    let mut status = None;
    loop {
        let (used, step) = decoder.decode(rest).ok()?;
        rest = &rest[used..];
        match step {
            Step::Head(head) => status = Some(head.status),
            Step::Done { .. } => return status,
            Step::NeedMore => return None,
        }
    }
}

/// Puts the calling thread under Linux's `SCHED_BATCH`, as the event loops
/// run by default (`Builder::batch_scheduling`); whether the kernel
/// accepted.
pub fn batch_current_thread() -> bool {
    crate::runtime::sched::batch_current_thread()
}

/// The client's queue without its event loops, for a benchmark of enqueue
/// and dequeue alone: [`Queue::push`] is what `notify` does (reserve a
/// place in the system, push, look for a parked loop), [`Queue::pop`] what
/// a loop does with a message it takes and finishes (pop, release the
/// place). No loop ever parks, so no push wakes one.
#[derive(Debug)]
pub struct Queue {
    inner: InnerQueue,
    /// Owns the registry the queue's one waker writes to.
    _poll: mio::Poll,
}

impl Queue {
    /// A started queue holding at most `capacity` messages, as a client
    /// with one event loop has.
    pub fn new(capacity: usize) -> std::io::Result<Queue> {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), mio::Token(0))?;
        let inner = InnerQueue::new(capacity, capacity, vec![waker], None, None);
        inner.start();
        Ok(Queue { inner, _poll: poll })
    }

    /// `notify`'s path: accepts `msg`, or hands it back when full.
    #[inline]
    pub fn push(&self, msg: Message) -> Result<(), Message> {
        self.inner.push(msg).map_err(|(_, msg)| msg)
    }

    /// A loop's path: takes the oldest message and ends its stay in the
    /// system.
    #[inline]
    pub fn pop(&self) -> Option<Message> {
        let entry = self.inner.pop()?;
        self.inner.release();
        Some(entry.msg)
    }
}
