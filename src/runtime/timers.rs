//! Messages waiting for a retry, ordered by when they are due. They sit
//! here, on their loop's timer, not in a connection slot, so a backoff
//! never holds up other messages.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::runtime::job::Job;

struct Waiting {
    /// `None`: a wait too long to represent, never due.
    at: Option<Instant>,
    /// Breaks ties in arrival order.
    seq: u64,
    job: Job,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        // Never-due waits sort after every due time.
        (self.at.is_none(), self.at, self.seq).cmp(&(other.at.is_none(), other.at, other.seq))
    }
}

/// A min-heap of retries by due time.
#[derive(Default)]
pub(crate) struct RetryTimers {
    heap: BinaryHeap<Reverse<Waiting>>,
    seq: u64,
}

impl RetryTimers {
    /// Queues `job` to be retried at `at` (`None`: never due, ended only
    /// by shutdown or an open circuit).
    pub(crate) fn push(&mut self, at: Option<Instant>, job: Job) {
        self.seq += 1;
        self.heap.push(Reverse(Waiting {
            at,
            seq: self.seq,
            job,
        }));
    }

    /// The earliest due time.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().and_then(|w| w.0.at)
    }

    /// The earliest retry, if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Job> {
        if self.next_due()? > now {
            return None;
        }
        self.pop()
    }

    /// The earliest retry, due or not.
    pub(crate) fn pop(&mut self) -> Option<Job> {
        self.heap.pop().map(|w| w.0.job)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use std::time::Duration;

    #[test]
    fn due_retries_come_out_in_time_order_and_never_due_ones_last() {
        let t0 = Instant::now();
        let mut timers = RetryTimers::default();
        for (ms, body) in [(30, "c"), (10, "a"), (20, "b"), (10, "a2")] {
            timers.push(
                Some(t0 + Duration::from_millis(ms)),
                Job::single(Message::from(body)),
            );
        }
        timers.push(None, Job::single(Message::from("never")));
        assert_eq!(timers.next_due(), Some(t0 + Duration::from_millis(10)));
        assert!(timers.pop_due(t0).is_none(), "nothing is due yet");
        let due = |timers: &mut RetryTimers, ms| {
            timers
                .pop_due(t0 + Duration::from_millis(ms))
                .map(|mut j| j.drain().map(Message::into_vec).collect::<Vec<_>>())
        };
        assert_eq!(due(&mut timers, 15), Some(vec![b"a".to_vec()]));
        assert_eq!(
            due(&mut timers, 15),
            Some(vec![b"a2".to_vec()]),
            "ties keep arrival order"
        );
        assert_eq!(due(&mut timers, 15), None);
        assert_eq!(due(&mut timers, 30), Some(vec![b"b".to_vec()]));
        assert_eq!(
            timers
                .pop()
                .map(|mut j| j.drain().map(Message::into_vec).collect::<Vec<_>>()),
            Some(vec![b"c".to_vec()])
        );
        assert_eq!(timers.next_due(), None, "a never-due wait has no due time");
        assert_eq!(due(&mut timers, u64::from(u32::MAX)), None);
        assert_eq!(
            timers
                .pop()
                .map(|mut j| j.drain().map(Message::into_vec).collect::<Vec<_>>()),
            Some(vec![b"never".to_vec()])
        );
        assert!(timers.is_empty());
    }
}
