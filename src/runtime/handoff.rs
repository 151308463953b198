//! Requests that a slot could not send for want of a socket (see
//! [`shortage`](crate::policy::shortage)), waiting for a slot that can
//! carry them: one with a connection, or one that can open a socket again.
//!
//! Every loop takes from here, whichever gave the request back: one loop
//! may hold every connection the process could open while another holds
//! none, and a request stranded on the second must reach the first. A
//! request keeps its attempt's deadline; the loop that finds it due books
//! it as failed.
//!
//! This is the rare path, taken only while the machine is short of
//! sockets: a mutex, and beside it a count that the loops read (one
//! relaxed load) to skip the mutex when nothing waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::runtime::slot::Unsent;

/// The requests waiting for a slot, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// How many wait: `list`'s length, readable without the lock.
    waiting: AtomicUsize,
    list: Mutex<VecDeque<Unsent>>,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Unsent>> {
        // A panic while the list was held left it whole: every change to
        // it is one push or one remove.
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a request; whether none waited before it (the loops may then
    /// be parked with free slots, and must be woken).
    pub(crate) fn push(&self, unsent: Unsent) -> bool {
        let mut list = self.lock();
        list.push_back(unsent);
        self.waiting.store(list.len(), Ordering::Release);
        list.len() == 1
    }

    /// The oldest request waiting.
    pub(crate) fn pop(&self) -> Option<Unsent> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut list = self.lock();
        let unsent = list.pop_front();
        self.waiting.store(list.len(), Ordering::Release);
        unsent
    }

    /// The oldest request whose deadline has passed at `now`.
    pub(crate) fn pop_due(&self, now: Instant) -> Option<Unsent> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut list = self.lock();
        let due = list
            .iter()
            .position(|u| u.deadline().is_some_and(|d| d <= now))?;
        let unsent = list.remove(due);
        self.waiting.store(list.len(), Ordering::Release);
        unsent
    }

    /// The earliest deadline of the requests waiting.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.lock().iter().filter_map(Unsent::deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::message::Message;
    use crate::runtime::job::Job;

    fn unsent(body: &str, deadline: Option<Instant>) -> Unsent {
        Unsent::out_of_files(Job::single(Message::from(body)), deadline)
    }

    fn body(unsent: Unsent) -> Vec<u8> {
        let mut job = unsent.into_job();
        job.drain()
            .map(Message::into_vec)
            .collect::<Vec<_>>()
            .concat()
    }

    #[test]
    fn requests_come_out_oldest_first_and_the_first_in_says_to_wake_the_loops() {
        let handoff = Handoff::default();
        assert!(handoff.pop().is_none());
        assert!(handoff.push(unsent("a", None)), "the first wakes the loops");
        assert!(!handoff.push(unsent("b", None)), "the loops are awake");
        assert_eq!(handoff.pop().map(body), Some(b"a".to_vec()));
        assert_eq!(handoff.pop().map(body), Some(b"b".to_vec()));
        assert!(handoff.pop().is_none());
        assert!(handoff.push(unsent("c", None)), "empty again: wakes them");
    }

    #[test]
    fn the_due_come_out_by_deadline_whatever_their_place() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        let handoff = Handoff::default();
        assert_eq!(handoff.next_deadline(), None);
        let _ = handoff.push(unsent("late", at(30)));
        let _ = handoff.push(unsent("never", None));
        let _ = handoff.push(unsent("soon", at(10)));
        assert_eq!(handoff.next_deadline(), at(10));
        assert!(handoff.pop_due(t0).is_none(), "none due yet");
        let due = |ms| handoff.pop_due(t0 + Duration::from_millis(ms)).map(body);
        assert_eq!(due(10), Some(b"soon".to_vec()));
        assert_eq!(due(10), None);
        assert_eq!(handoff.next_deadline(), at(30));
        assert_eq!(due(u64::from(u32::MAX)), Some(b"late".to_vec()));
        assert_eq!(due(u64::from(u32::MAX)), None, "no deadline: never due");
        assert_eq!(handoff.next_deadline(), None);
        assert_eq!(handoff.pop().map(body), Some(b"never".to_vec()));
    }
}
