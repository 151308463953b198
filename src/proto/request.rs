//! Request encoding: everything but the body length is fixed for the life of
//! a client, so the head is built once and each request only adds its
//! `Content-Length` digits. Encoding a request allocates nothing.

use std::io::IoSlice;

/// The request head shared by every request of a client:
/// `POST <target> HTTP/1.1`, `Host`, `Content-Type`, the user's headers, and
/// the `Content-Length: ` name waiting for its value.
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
        for (name, value) in headers {
            p.extend_from_slice(name.as_bytes());
            p.extend_from_slice(b": ");
            p.extend_from_slice(value.as_bytes());
            p.extend_from_slice(b"\r\n");
        }
        p.extend_from_slice(b"Content-Length: ");
        RequestEncoder {
            prefix: p.into_boxed_slice(),
        }
    }

    /// The head for a body of `len` bytes.
    pub(crate) fn head(&self, len: usize) -> RequestHead<'_> {
        RequestHead {
            prefix: &self.prefix,
            length: LengthLine::new(len),
        }
    }
}

/// `<digits>\r\n\r\n` on the stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LengthLine {
    buf: [u8; 24],
    start: u8,
}

impl LengthLine {
    fn new(mut len: usize) -> LengthLine {
        let mut buf = [0u8; 24];
        buf[20..].copy_from_slice(b"\r\n\r\n");
        let mut i = 20;
        loop {
            i -= 1;
            // `len % 10` is below 10, so the cast cannot truncate.
            buf[i] = b'0' + (len % 10) as u8;
            len /= 10;
            if len == 0 {
                break;
            }
        }
        // `i` is at least 0 since a usize has at most 20 decimal digits.
        LengthLine {
            buf,
            start: i as u8,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// One request's head: the shared prefix and this request's length line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestHead<'a> {
    prefix: &'a [u8],
    length: LengthLine,
}

/// A whole request as three byte slices, with progress through them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestBytes<'a> {
    parts: [&'a [u8]; 3],
}

impl<'a> RequestHead<'a> {
    /// The head followed by `body`.
    pub(crate) fn with_body<'b>(&'b self, body: &'b [u8]) -> RequestBytes<'b> {
        RequestBytes {
            parts: [self.prefix, self.length.as_bytes(), body],
        }
    }
}

impl<'a> RequestBytes<'a> {
    /// Total length of the request.
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// The bytes from `offset` on, as at most three slices for a vectored
    /// write. Returns how many of `out` were filled.
    pub(crate) fn slices_from<'s>(
        &'s self,
        mut offset: usize,
        out: &mut [IoSlice<'s>; 3],
    ) -> usize {
        let mut n = 0;
        for part in self.parts {
            if offset >= part.len() {
                offset -= part.len();
                continue;
            }
            out[n] = IoSlice::new(&part[offset..]);
            offset = 0;
            n += 1;
        }
        n
    }

    /// Appends the bytes from `offset` on to `out`.
    #[cfg(test)]
    pub(crate) fn copy_from(&self, offset: usize, out: &mut Vec<u8>) {
        let mut slices = [IoSlice::new(&[]); 3];
        let n = self.slices_from(offset, &mut slices);
        for s in &slices[..n] {
            out.extend_from_slice(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(enc: &RequestEncoder, body: &[u8]) -> Vec<u8> {
        let head = enc.head(body.len());
        let mut out = Vec::new();
        head.with_body(body).copy_from(0, &mut out);
        out
    }

    #[test]
    fn encodes_the_whole_request() {
        let enc = RequestEncoder::new(
            "/hook?x=1",
            "example.com:8080",
            "application/json",
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
                format!("{text}\r\n\r\n").as_bytes()
            );
        }
    }

    #[test]
    fn slices_from_every_offset_rebuild_the_tail() {
        let enc = RequestEncoder::new("/", "h", "text/plain", &[]);
        let head = enc.head(5);
        let req = head.with_body(b"hello");
        let mut whole = Vec::new();
        req.copy_from(0, &mut whole);
        assert_eq!(req.len(), whole.len());
        for offset in 0..=whole.len() {
            let mut tail = Vec::new();
            req.copy_from(offset, &mut tail);
            assert_eq!(tail, &whole[offset..], "offset {offset}");
        }
    }
}
