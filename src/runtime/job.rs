//! A job: the messages one request carries (one, or a batch), their
//! request's books, and the compressed body when there is one. A job is
//! the unit of attempt, retry, breaker accounting and timeout.
//!
//! Jobs are recycled: an ended job goes back to its loop's [`Spare`] with
//! its buffers, so that forming a batch allocates nothing once the loop
//! has warmed up.

use std::io;
use std::time::Instant;

use crate::message::Message;
use crate::policy::ledger::Record;
use crate::proto::compress::Compressor;
use crate::proto::request::{Body, Framing};

/// Messages a job holds before it makes room for a whole batch: a job
/// that only ever carries one message (batching off, or light load) stays
/// small.
const FEW: usize = 4;

/// The messages of one request, with its books.
#[derive(Debug, Default)]
pub(crate) struct Job {
    /// In queue order; never empty once formed.
    msgs: Vec<Message>,
    record: Record,
    /// The framed body's length, before compression.
    body_len: usize,
    /// The compressed body when `packed`, made once when the job is formed
    /// and sent again as it is by every retry; the buffer is kept empty
    /// otherwise.
    compressed: Vec<u8>,
    packed: bool,
    /// When each message expires, in step with `msgs`; empty without a
    /// TTL.
    expiries: Vec<Instant>,
    /// The request's half of its idempotency key, set when it is formed.
    key: u64,
}

impl Job {
    /// A job of one message.
    #[cfg(test)]
    pub(crate) fn single(msg: Message) -> Job {
        let mut job = Job::default();
        job.push(&Framing::default(), msg, None, 1);
        job
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Whether a message of `len` bytes fits the body's `max_bytes`. The
    /// first message always does: a message larger than the bound goes
    /// alone, never split.
    pub(crate) fn fits(&self, framing: &Framing, max_bytes: usize, len: usize) -> bool {
        self.is_empty()
            || self
                .body_len
                .checked_add(framing.added(self.len(), len))
                .is_some_and(|total| total <= max_bytes)
    }

    /// Adds `msg` at the end of a batch of at most `most` messages. A job
    /// that outgrows a few messages makes room for `most` at once: two
    /// allocations in its life at most, however its batches vary, rather
    /// than one per doubling whenever a larger batch first comes its way.
    /// `expires` is the message's end under a TTL: either every message of
    /// a client has one or none has.
    pub(crate) fn push(
        &mut self,
        framing: &Framing,
        msg: Message,
        expires: Option<Instant>,
        most: usize,
    ) {
        let len = self.msgs.len();
        if len == self.msgs.capacity() && len >= FEW {
            self.msgs.reserve_exact(most.saturating_sub(len).max(1));
        }
        if let Some(at) = expires {
            if len == self.expiries.capacity() && len >= FEW {
                self.expiries.reserve_exact(most.saturating_sub(len).max(1));
            }
            self.expiries.push(at);
        }
        self.body_len = self.body_len.saturating_add(framing.added(len, msg.len()));
        self.msgs.push(msg);
        debug_assert!(self.expiries.is_empty() || self.expiries.len() == self.msgs.len());
    }

    /// Takes out the messages whose TTL has passed at `now`, each with its
    /// place in the job, keeping the others in order; the body is framed
    /// anew (and compressed anew when it goes). Returns how many it took.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        framing: &Framing,
        mut expired: impl FnMut(usize, Message),
    ) -> usize {
        if !self.expiries.iter().any(|&at| at <= now) {
            return 0;
        }
        let mut kept = 0;
        for i in 0..self.msgs.len() {
            if self.expiries[i] <= now {
                let msg = std::mem::replace(&mut self.msgs[i], Message::from_static(b""));
                expired(i, msg);
            } else {
                self.msgs.swap(kept, i);
                self.expiries.swap(kept, i);
                kept += 1;
            }
        }
        let taken = self.msgs.len() - kept;
        self.msgs.truncate(kept);
        self.expiries.truncate(kept);
        self.body_len = (0..kept).fold(0usize, |sum, n| {
            sum.saturating_add(framing.added(n, self.msgs[n].len()))
        });
        self.compressed.clear();
        self.packed = false;
        taken
    }

    /// The request's half of its idempotency key.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Names the job as a new request.
    pub(crate) fn set_key(&mut self, key: u64) {
        self.key = key;
    }

    /// Compresses the framed body into the job's reused buffer, once.
    pub(crate) fn pack(
        &mut self,
        compressor: &mut Compressor,
        framing: &Framing,
    ) -> io::Result<()> {
        if !self.packed {
            compressor.compress(framing.parts(&self.msgs), &mut self.compressed)?;
            self.packed = true;
        }
        Ok(())
    }

    /// The body as it goes on the wire, and its length.
    pub(crate) fn body<'a>(&'a self, framing: &'a Framing) -> (usize, Body<'a>) {
        if self.packed {
            (self.compressed.len(), Body::Bytes(&self.compressed))
        } else {
            (self.body_len, Body::Framed(framing, &self.msgs))
        }
    }

    pub(crate) fn record(&mut self) -> &mut Record {
        &mut self.record
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.record.attempts()
    }

    /// Takes the messages out in order; the job is left empty, its buffers
    /// kept.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, Message> {
        self.body_len = 0;
        self.record = Record::default();
        self.compressed.clear();
        self.packed = false;
        self.expiries.clear();
        self.msgs.drain(..)
    }
}

/// A loop's ended jobs, kept for their buffers.
#[derive(Debug)]
pub(crate) struct Spare {
    jobs: Vec<Job>,
    /// Jobs kept at most: enough for every slot, the batch being formed
    /// and the one a message that did not fit it starts. More are alive only while retries wait; those are freed
    /// when they end rather than kept for ever.
    keep: usize,
}

impl Spare {
    pub(crate) fn new(slots: usize) -> Spare {
        Spare {
            jobs: Vec::with_capacity(slots + 2),
            keep: slots + 2,
        }
    }

    /// An empty job, recycled when one is kept.
    pub(crate) fn get(&mut self) -> Job {
        self.jobs.pop().unwrap_or_default()
    }

    /// Keeps an ended job, emptied, for its buffers: its books start
    /// afresh.
    pub(crate) fn put(&mut self, mut job: Job) {
        debug_assert!(job.is_empty());
        drop(job.drain());
        if self.jobs.len() < self.keep {
            self.jobs.push(job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ledger::Ledger;

    #[test]
    fn a_batch_fills_to_its_bytes_and_a_larger_first_message_goes_alone() {
        let framing = Framing::ndjson();
        let mut job = Job::default();
        assert!(job.fits(&framing, 4, 100), "a first message always fits");
        job.push(&framing, Message::from("ab"), None, 10);
        // "ab\n" is 3 bytes; "c" adds "\nc": 5 > 4.
        assert!(!job.fits(&framing, 4, 1));
        assert!(job.fits(&framing, 5, 1));
        job.push(&framing, Message::from("c"), None, 10);
        let (len, body) = job.body(&framing);
        assert_eq!(len, 5);
        assert!(matches!(body, Body::Framed(_, msgs) if msgs.len() == 2));
        assert!(!job.fits(&framing, usize::MAX, usize::MAX), "no overflow");
    }

    #[test]
    fn an_ended_job_gives_its_messages_in_order_and_keeps_its_buffers() {
        let framing = Framing::ndjson();
        let mut spare = Spare::new(1);
        let mut job = spare.get();
        for m in ["1", "2", "3", "4", "5", "6"] {
            job.push(&framing, Message::from(m), None, 100);
        }
        assert_eq!(
            job.msgs.capacity(),
            100,
            "room made for a whole batch at once"
        );
        Ledger::new(None, None)
            .admit(job.record(), 0)
            .expect("no breaker");
        assert_eq!(job.attempts(), 1);
        let capacity = job.msgs.capacity();
        let out: Vec<Vec<u8>> = job.drain().map(Message::into_vec).collect();
        let want: Vec<Vec<u8>> = (1..=6).map(|i| i.to_string().into_bytes()).collect();
        assert_eq!(out, want);
        assert_eq!((job.len(), job.body_len, job.attempts()), (0, 0, 0));
        spare.put(job);
        let again = spare.get();
        assert_eq!(again.msgs.capacity(), capacity, "recycled, not new");
        for _ in 0..4 {
            spare.put(Job::default());
        }
        assert_eq!(spare.jobs.len(), 3, "keeps no more than slots + 2");
    }

    #[test]
    fn expired_messages_leave_a_job_in_order_and_the_rest_stay_in_order() {
        let framing = Framing::ndjson();
        let t0 = Instant::now();
        let mut job = Job::default();
        for (m, ms) in [("a", 5), ("b", 1), ("c", 9), ("d", 1), ("e", 7)] {
            let at = t0 + std::time::Duration::from_millis(ms);
            job.push(&framing, Message::from(m), Some(at), 10);
        }
        assert_eq!(job.expire(t0, &framing, |_, _| panic!("none yet")), 0);
        let mut gone = Vec::new();
        let now = t0 + std::time::Duration::from_millis(5);
        let taken = job.expire(now, &framing, |i, m| gone.push((i, m.into_vec())));
        assert_eq!(taken, 3);
        assert_eq!(
            gone,
            [(0, b"a".to_vec()), (1, b"b".to_vec()), (3, b"d".to_vec())]
        );
        let kept: Vec<Vec<u8>> = job.msgs.iter().map(|m| m.to_vec()).collect();
        assert_eq!(kept, [b"c".to_vec(), b"e".to_vec()]);
        let (len, _) = job.body(&framing);
        assert_eq!(len, b"c\ne\n".len(), "the body framed anew");
        assert_eq!(job.expiries.len(), 2);
    }
}
