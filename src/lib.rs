//! notifier
mod endpoint;
mod error;
mod message;
mod proto;
pub use error::*;
pub use message::Message;
