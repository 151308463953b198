//! Request encoding: everything but the body length is fixed for the life of
//! a client, so the head is built once and each request only adds its
//! `Content-Length` digits. The body is either bytes as they are (one
//! message, or a compressed batch) or a batch framed around its messages'
//! own buffers. A request is handed out as slices for vectored writes,
//! with a cursor through them: encoding one allocates and copies nothing.

use std::io::IoSlice;

use crate::message::Message;

/// The request head shared by every request of a client:
/// `POST <target> HTTP/1.1`, `Host`, `Content-Type`, `Content-Encoding`
/// when bodies are compressed, and the user's headers. Each request adds
/// its `Idempotency-Key` (when keys are on) and its `Content-Length`.
#[derive(Debug)]
pub(crate) struct RequestEncoder {
    prefix: Box<[u8]>,
}

impl RequestEncoder {
    /// Builds the fixed head. Inputs are validated by the builder: no CR, LF
    /// or NUL anywhere, header names are tokens.
    pub(crate) fn new(
        target: &str,
        authority: &str,
        content_type: &str,
        content_encoding: Option<&str>,
        headers: &[(String, String)],
    ) -> RequestEncoder {
        let mut p = Vec::with_capacity(128);
        for part in [
            "POST ",
            target,
            " HTTP/1.1\r\nHost: ",
            authority,
            "\r\nContent-Type: ",
            content_type,
            "\r\n",
        ] {
            p.extend_from_slice(part.as_bytes());
        }
        if let Some(encoding) = content_encoding {
            p.extend_from_slice(b"Content-Encoding: ");
            p.extend_from_slice(encoding.as_bytes());
            p.extend_from_slice(b"\r\n");
        }
        for (name, value) in headers {
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(b": ");
            p.extend_from_slice(value.as_bytes());
            p.extend_from_slice(b"\r\n");
        }
        RequestEncoder {
            prefix: p.into_boxed_slice(),
        }
    }

    /// The head for a body of `len` bytes, with an `Idempotency-Key`
    /// header when `key` is given.
    pub(crate) fn head(&self, len: usize, key: Option<RequestKey>) -> RequestHead<'_> {
        RequestHead {
            prefix: &self.prefix,
            key: key.map(KeyLine::new),
            length: LengthLine::new(len),
            body_len: len,
        }
    }
}

/// What makes a request's `Idempotency-Key`: the client's random 64 bits
/// and the request's own 64 (which event loop formed it, and its count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestKey {
    pub(crate) client: u64,
    pub(crate) request: u64,
}

/// `Idempotency-Key: "<32 hex digits>"\r\n` on the stack: the header's
/// value is a structured-field string.
#[derive(Debug, Clone, Copy)]
struct KeyLine {
    buf: [u8; KeyLine::LEN],
}

impl KeyLine {
    const NAME: &'static [u8] = b"Idempotency-Key: \"";
    const LEN: usize = KeyLine::NAME.len() + 32 + 3;

    fn new(key: RequestKey) -> KeyLine {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; KeyLine::LEN];
        buf[..KeyLine::NAME.len()].copy_from_slice(KeyLine::NAME);
        let digits = &mut buf[KeyLine::NAME.len()..KeyLine::NAME.len() + 32];
        let value = (u128::from(key.client) << 64) | u128::from(key.request);
        for (i, d) in digits.iter_mut().enumerate() {
            // A nibble is below 16.
            *d = HEX[((value >> (124 - 4 * i)) & 0xf) as usize];
        }
        buf[KeyLine::LEN - 3..].copy_from_slice(b"\"\r\n");
        KeyLine { buf }
    }
}

/// `Content-Length: <digits>\r\n\r\n` on the stack: the head's last line
/// and its end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LengthLine {
    buf: [u8; LengthLine::LEN],
    start: u8,
}

impl LengthLine {
    const NAME: &'static [u8] = b"Content-Length: ";
    /// The name, at most 20 digits (a `u64`'s), and CRLF CRLF.
    const LEN: usize = LengthLine::NAME.len() + 20 + 4;

    fn new(mut len: usize) -> LengthLine {
        let mut buf = [0u8; LengthLine::LEN];
        let end = LengthLine::LEN - 4;
        buf[end..].copy_from_slice(b"\r\n\r\n");
        let mut i = end;
        loop {
            i -= 1;
            // `len % 10` is below 10, so the cast cannot truncate.
            buf[i] = b'0' + (len % 10) as u8;
            len /= 10;
            if len == 0 {
                break;
            }
        }
        // At least the name's length is left before the digits, since a
        // usize has at most 20 of them; the start fits in a u8.
        let start = i - LengthLine::NAME.len();
        buf[start..i].copy_from_slice(LengthLine::NAME);
        LengthLine {
            buf,
            start: start as u8,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// The bytes before, between and after a batch's messages. Without
/// batching all three are empty and a body is its one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    pub(crate) prefix: Box<[u8]>,
    pub(crate) separator: Box<[u8]>,
    pub(crate) suffix: Box<[u8]>,
}

impl Framing {
    /// How many bytes a message of `len` adds to a body of `n` messages
    /// (saturating: no body that large fits in memory anyway).
    pub(crate) fn added(&self, n: usize, len: usize) -> usize {
        let framing = if n == 0 {
            self.prefix.len() + self.suffix.len()
        } else {
            self.separator.len()
        };
        framing.saturating_add(len)
    }

    /// The body's bytes for `msgs`, in order, as slices (empty ones
    /// included).
    pub(crate) fn parts<'a>(&'a self, msgs: &'a [Message]) -> impl Iterator<Item = &'a [u8]> {
        let n = msgs.len();
        (0..2 * n + 1).map(move |i| self.part(msgs, i))
    }

    /// Body part `i` of `2 n + 1`: the prefix, then each message with a
    /// separator between, then the suffix.
    fn part<'a>(&'a self, msgs: &'a [Message], i: usize) -> &'a [u8] {
        if i == 0 {
            &self.prefix
        } else if i == 2 * msgs.len() {
            &self.suffix
        } else if i % 2 == 1 {
            &msgs[i / 2]
        } else {
            &self.separator
        }
    }
}

#[cfg(test)]
impl Framing {
    /// `BatchConfig::ndjson`'s framing.
    pub(crate) fn ndjson() -> Framing {
        Framing {
            prefix: Box::new([]),
            separator: b"\n".to_vec().into(),
            suffix: b"\n".to_vec().into(),
        }
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    /// Bytes sent as they are: a compressed body.
    Bytes(&'a [u8]),
    /// Messages sent from their own buffers, framed.
    Framed(&'a Framing, &'a [Message]),
}

impl<'a> Body<'a> {
    fn parts(&self) -> usize {
        match self {
            Body::Bytes(_) => 1,
            Body::Framed(_, msgs) => 2 * msgs.len() + 1,
        }
    }

    fn part(&self, i: usize) -> &'a [u8] {
        match *self {
            Body::Bytes(bytes) => bytes,
            Body::Framed(framing, msgs) => framing.part(msgs, i),
        }
    }
}

/// One request's head: the shared prefix, this request's key line (if
/// any) and its length line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestHead<'a> {
    prefix: &'a [u8],
    key: Option<KeyLine>,
    length: LengthLine,
    body_len: usize,
}

impl<'a> RequestHead<'a> {
    /// The head followed by `body`, which must be as long as the head says.
    pub(crate) fn with_body<'b>(&'b self, body: Body<'b>) -> RequestBytes<'b> {
        let key: &[u8] = self.key.as_ref().map_or(&[], |k| &k.buf);
        RequestBytes {
            prefix: self.prefix,
            key,
            length: self.length.as_bytes(),
            body,
            len: self.prefix.len() + key.len() + self.length.as_bytes().len() + self.body_len,
        }
    }
}

/// How far a request has been written: the part under way, the bytes of
/// it already taken, and the bytes taken in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    part: usize,
    offset: usize,
    written: usize,
}

impl Cursor {
    /// Bytes taken so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> usize {
        self.written
    }
}

/// A whole request as a sequence of byte slices: the head's three (the
/// key line empty without a key), then the body's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestBytes<'a> {
    prefix: &'a [u8],
    key: &'a [u8],
    length: &'a [u8],
    body: Body<'a>,
    len: usize,
}

impl<'a> RequestBytes<'a> {
    /// Total length of the request.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `cursor` is at the end.
    pub(crate) fn is_done(&self, cursor: &Cursor) -> bool {
        cursor.written >= self.len
    }

    fn parts(&self) -> usize {
        3 + self.body.parts()
    }

    fn part(&self, i: usize) -> &'a [u8] {
        match i {
            0 => self.prefix,
            1 => self.key,
            2 => self.length,
            _ => self.body.part(i - 3),
        }
    }

    /// The non-empty slices from `cursor` on, in order, as long as they go.
    pub(crate) fn remaining(&self, cursor: &Cursor) -> impl Iterator<Item = &'a [u8]> {
        let this = *self;
        let (first, skip) = (cursor.part, cursor.offset);
        (first..self.parts())
            .map(move |i| {
                let part = this.part(i);
                if i == first {
                    &part[skip.min(part.len())..]
                } else {
                    part
                }
            })
            .filter(|s| !s.is_empty())
    }

    /// Fills `out` with the slices from `cursor` on, for a vectored write;
    /// how many it filled. A request with more parts than `out` holds is
    /// written in several calls.
    pub(crate) fn slices<'s>(&'s self, cursor: &Cursor, out: &mut [IoSlice<'s>]) -> usize {
        let mut n = 0;
        for (slot, slice) in out.iter_mut().zip(self.remaining(cursor)) {
            *slot = IoSlice::new(slice);
            n += 1;
        }
        n
    }

    /// Whether a vectored write from `cursor` fits in `n` slices.
    pub(crate) fn fits_in(&self, cursor: &Cursor, n: usize) -> bool {
        self.parts() - cursor.part <= n
    }

    /// Moves `cursor` past `k` more bytes taken.
    pub(crate) fn advance(&self, cursor: &mut Cursor, mut k: usize) {
        cursor.written += k;
        while k > 0 && cursor.part < self.parts() {
            let left = self.part(cursor.part).len() - cursor.offset;
            if k < left {
                cursor.offset += k;
                return;
            }
            k -= left;
            cursor.part += 1;
            cursor.offset = 0;
        }
        // Step past empty parts, so that `part` names one with bytes left.
        while cursor.part < self.parts() && self.part(cursor.part).len() == cursor.offset {
            cursor.part += 1;
            cursor.offset = 0;
        }
    }

    /// Appends the bytes from `cursor` on to `out`.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn copy_from(&self, cursor: &Cursor, out: &mut Vec<u8>) {
        for slice in self.remaining(cursor) {
            out.extend_from_slice(slice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(enc: &RequestEncoder, body: &[u8]) -> Vec<u8> {
        let head = enc.head(body.len(), None);
        let mut out = Vec::new();
        head.with_body(Body::Bytes(body))
            .copy_from(&Cursor::default(), &mut out);
        out
    }

    #[test]
    fn encodes_the_whole_request() {
        let enc = RequestEncoder::new(
            "/hook?x=1",
            "example.com:8080",
            "application/json",
            None,
            &[("X-Api-Key".into(), "secret".into())],
        );
        assert_eq!(
            encode(&enc, b"{\"a\":1}"),
            b"POST /hook?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\
              Content-Type: application/json\r\nX-Api-Key: secret\r\n\
              Content-Length: 7\r\n\r\n{\"a\":1}"
                .to_vec()
        );
    }

    #[test]
    fn a_compressed_body_says_its_encoding() {
        let enc = RequestEncoder::new("/", "h", "application/x-ndjson", Some("gzip"), &[]);
        assert_eq!(
            encode(&enc, b"xyz"),
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-ndjson\r\n\
              Content-Encoding: gzip\r\nContent-Length: 3\r\n\r\nxyz"
                .to_vec()
        );
    }

    #[test]
    fn a_key_goes_before_the_length_as_a_quoted_string() {
        let enc = RequestEncoder::new("/", "h", "text/plain", None, &[]);
        let key = RequestKey {
            client: 0x0123_4567_89ab_cdef,
            request: 0xfedc_ba98_7654_3210,
        };
        let head = enc.head(2, Some(key));
        let mut out = Vec::new();
        head.with_body(Body::Bytes(b"hi"))
            .copy_from(&Cursor::default(), &mut out);
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n\
              Idempotency-Key: \"0123456789abcdeffedcba9876543210\"\r\n\
              Content-Length: 2\r\n\r\nhi"
                .to_vec()
        );
    }

    #[test]
    fn length_line_for_edge_values() {
        for (len, text) in [
            (0usize, "0"),
            (9, "9"),
            (10, "10"),
            (1_000_000, "1000000"),
            (usize::MAX, "18446744073709551615"),
        ] {
            assert_eq!(
                LengthLine::new(len).as_bytes(),
                format!("Content-Length: {text}\r\n\r\n").as_bytes()
            );
        }
    }

    #[test]
    fn a_framed_body_is_its_messages_with_the_framing_around_them() {
        let array = Framing {
            prefix: b"[".to_vec().into(),
            separator: b",".to_vec().into(),
            suffix: b"]".to_vec().into(),
        };
        let msgs = [Message::from("1"), Message::from("{}"), Message::from("3")];
        for (framing, want) in [
            (array, &b"[1,{},3]"[..]),
            (Framing::ndjson(), b"1\n{}\n3\n"),
            (Framing::default(), b"1{}3"),
        ] {
            let body: Vec<u8> = framing.parts(&msgs).flatten().copied().collect();
            assert_eq!(body, want);
            let len: usize = (0..msgs.len())
                .map(|n| framing.added(n, msgs[n].len()))
                .sum();
            assert_eq!(body.len(), len);
        }
        let one: Vec<u8> = Framing::ndjson()
            .parts(&msgs[..1])
            .flatten()
            .copied()
            .collect();
        assert_eq!(one, b"1\n", "a batch of one is framed like any other");
    }

    #[test]
    fn every_offset_and_slice_budget_rebuilds_the_tail() {
        let enc = RequestEncoder::new("/", "h", "text/plain", None, &[]);
        let msgs: Vec<Message> = ["a", "", "bcd", "e"]
            .into_iter()
            .map(Message::from)
            .collect();
        let framing = Framing::ndjson();
        let len = (0..msgs.len())
            .map(|n| framing.added(n, msgs[n].len()))
            .sum();
        let head = enc.head(len, None);
        let req = head.with_body(Body::Framed(&framing, &msgs));
        let mut whole = Vec::new();
        req.copy_from(&Cursor::default(), &mut whole);
        assert_eq!(req.len(), whole.len());
        for offset in 0..=whole.len() {
            let mut cursor = Cursor::default();
            req.advance(&mut cursor, offset);
            let mut tail = Vec::new();
            req.copy_from(&cursor, &mut tail);
            assert_eq!(tail, &whole[offset..], "offset {offset}");
            // Writing the rest two slices at a time ends where it should.
            let mut out = Vec::new();
            while !req.is_done(&cursor) {
                let mut slices = [IoSlice::new(&[]); 2];
                let n = req.slices(&cursor, &mut slices);
                assert!(n > 0, "bytes left but no slice at {cursor:?}");
                let k: usize = slices[..n].iter().map(|s| s.len()).sum();
                for s in &slices[..n] {
                    out.extend_from_slice(s);
                }
                req.advance(&mut cursor, k);
            }
            assert_eq!(out, &whole[offset..], "offset {offset}");
            assert_eq!(cursor.written(), whole.len());
        }
    }
}
