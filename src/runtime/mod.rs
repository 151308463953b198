//! The only place with sockets, threads and clocks: the shared queue and
//! the event loops that drain it.

pub(crate) mod event_loop;
pub(crate) mod park;
pub(crate) mod queue;
pub(crate) mod slot;
pub(crate) mod timers;
