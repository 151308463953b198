//! Sans-IO HTTP/1.1: a request encoder and a response decoder that take and
//! give bytes. Nothing here touches a socket or a clock, which is what makes
//! the protocol code testable split by split and fuzzable.

pub(crate) mod compress;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry_after;

#[cfg(test)]
mod proptests;
