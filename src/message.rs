//! The owned bytes of one notification.

use std::fmt;
use std::ops::Deref;

/// The body of one notification: owned bytes handed through the queue.
///
/// Conversions from owned buffers (`Vec<u8>`, `String`, `Box<[u8]>`) and
/// [`Message::from_static`] take the bytes without copying them; conversions
/// from borrowed slices (`&str`, `&[u8]`) copy once. The client never copies
/// a message again: its bytes go from this value to the socket.
///
/// # Examples
///
/// ```
/// use notifier::Message;
///
/// let m = Message::from(vec![1u8, 2, 3]);
/// assert_eq!(m.as_bytes(), &[1, 2, 3]);
/// assert_eq!(Message::from_static(b"ping").len(), 4);
/// assert_eq!(Message::from("text").into_vec(), b"text".to_vec());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Message(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Owned(Vec<u8>),
    Static(&'static [u8]),
}

impl Message {
    /// Wraps bytes with a `'static` lifetime without copying them.
    pub const fn from_static(bytes: &'static [u8]) -> Message {
        Message(Repr::Static(bytes))
    }

    /// The message's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Static(s) => s,
        }
    }

    /// Takes the bytes back as a vector; copies only a message made by
    /// [`Message::from_static`].
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Static(s) => s.to_vec(),
        }
    }
}

impl Deref for Message {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        let bytes = self.as_bytes();
        let head = &bytes[..bytes.len().min(SHOWN)];
        write!(
            f,
            "Message({} bytes: \"{}",
            bytes.len(),
            head.escape_ascii()
        )?;
        if bytes.len() > SHOWN {
            f.write_str("…")?;
        }
        f.write_str("\")")
    }
}

impl From<Vec<u8>> for Message {
    fn from(v: Vec<u8>) -> Message {
        Message(Repr::Owned(v))
    }
}

impl From<String> for Message {
    fn from(s: String) -> Message {
        Message(Repr::Owned(s.into_bytes()))
    }
}

impl From<Box<[u8]>> for Message {
    fn from(b: Box<[u8]>) -> Message {
        Message(Repr::Owned(b.into_vec()))
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Message {
        Message(Repr::Owned(s.as_bytes().to_vec()))
    }
}

impl From<&[u8]> for Message {
    fn from(s: &[u8]) -> Message {
        Message(Repr::Owned(s.to_vec()))
    }
}

impl From<Message> for Vec<u8> {
    fn from(m: Message) -> Vec<u8> {
        m.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_conversions_keep_the_buffer() {
        let v = vec![7u8; 100];
        let ptr = v.as_ptr();
        let m = Message::from(v);
        assert_eq!(m.as_ptr(), ptr);
        let back = m.into_vec();
        assert_eq!(back.as_ptr(), ptr);

        let b: Box<[u8]> = vec![1u8; 10].into_boxed_slice();
        let ptr = b.as_ptr();
        assert_eq!(Message::from(b).as_ptr(), ptr);

        let s = String::from("hello");
        let ptr = s.as_ptr();
        assert_eq!(Message::from(s).as_ptr(), ptr);
    }

    #[test]
    fn static_messages_are_not_copied() {
        static BYTES: &[u8] = b"static";
        let m = Message::from_static(BYTES);
        assert_eq!(m.as_ptr(), BYTES.as_ptr());
        assert_eq!(&*m, b"static");
    }

    #[test]
    fn debug_is_bounded_and_escaped() {
        let m = Message::from(vec![b'\n'; 100]);
        let s = format!("{m:?}");
        assert!(s.starts_with("Message(100 bytes: \"\\n"));
        assert!(s.ends_with("…\")"));
    }
}
