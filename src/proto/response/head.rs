//! One response head in two pure steps: [`parse`] turns the bytes into a
//! [`ParsedHead`] (through `httparse`, keeping only the header facts the
//! decoder acts on), and [`framing`] applies the message-body-length rules
//! of RFC 9112 section 6.3 to it: how the body is delimited, and whether
//! the connection may carry another request.
//!
//! Neither keeps state; where one head is in the bytes, how many heads came
//! before it and what happens next are the decoder's business.

use super::MAX_HEADERS;
use crate::error::ProtocolError;
use crate::proto::retry_after::{parse_retry_after, RetryAfter};

/// What a head says that the decoder acts on. Owns no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ParsedHead {
    /// The status code, as received (any three digits).
    pub(super) status: u16,
    /// `HTTP/1.0` rather than `HTTP/1.1`.
    pub(super) http10: bool,
    /// Every `Content-Length` taken together.
    pub(super) content_length: ContentLength,
    /// A `Transfer-Encoding` header is present.
    pub(super) transfer_encoding: bool,
    /// The last non-empty `Transfer-Encoding` header ends in `chunked`.
    pub(super) chunked: bool,
    /// `Connection` names `close`.
    pub(super) close: bool,
    /// `Connection` names `keep-alive`.
    pub(super) keep_alive: bool,
    /// The last `timeout` of a `Keep-Alive` header, in seconds, when it
    /// is a number.
    pub(super) keep_alive_secs: Option<u64>,
    /// The last `Retry-After` header, when it is valid.
    pub(super) retry_after: Option<RetryAfter>,
}

/// The `Content-Length` headers of a head, taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentLength {
    /// No `Content-Length` header.
    Absent,
    /// One length, however often it is repeated.
    Valid(u64),
    /// A value that is not a list of decimal numbers, or two lengths that
    /// differ.
    Invalid,
}

/// How a final response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// Exactly this many bytes (none for `204` and `304`).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Everything until the connection closes.
    UntilClose,
}

/// What [`framing`] decided for a final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Framing {
    pub(super) body: Body,
    /// Whether the connection may carry another request once the body is
    /// read.
    pub(super) reuse: bool,
}

/// Parses the head at the start of `bytes`: its length and what it says,
/// or `None` when `httparse` needs more bytes. Header values that carry no
/// framing (a bad `Retry-After`, a bad `Keep-Alive` timeout) are ignored;
/// a bad `Content-Length` is kept as [`ContentLength::Invalid`] for
/// [`framing`] to refuse, since interim heads are never framed.
pub(super) fn parse(bytes: &[u8]) -> Result<Option<(usize, ParsedHead)>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes).map_err(malformed)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let mut head = ParsedHead {
        // A complete parse always has a code and a version.
        status: response.code.unwrap_or(0),
        http10: response.version == Some(0),
        content_length: ContentLength::Absent,
        transfer_encoding: false,
        chunked: false,
        close: false,
        keep_alive: false,
        keep_alive_secs: None,
        retry_after: None,
    };
    for h in response.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            head.content_length = match (head.content_length, parse_length(h.value)) {
                (ContentLength::Absent, Some(n)) => ContentLength::Valid(n),
                (ContentLength::Valid(l), Some(n)) if l == n => ContentLength::Valid(n),
                _ => ContentLength::Invalid,
            };
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.transfer_encoding = true;
            if let Some(last) = elements(h.value).last() {
                head.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in elements(h.value) {
                head.close |= token.eq_ignore_ascii_case(b"close");
                head.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"retry-after") {
            head.retry_after = parse_retry_after(h.value);
        } else if name.eq_ignore_ascii_case(b"keep-alive") {
            for param in elements(h.value) {
                if param.len() > 8 && param[..8].eq_ignore_ascii_case(b"timeout=") {
                    head.keep_alive_secs = std::str::from_utf8(&param[8..])
                        .ok()
                        .and_then(|s| s.trim_ascii().parse().ok());
                }
            }
        }
    }
    Ok(Some((len, head)))
}

/// The body framing and reuse of a final (2xx to 5xx) response, by
/// RFC 9112 section 6.3: `204` and `304` have no body whatever the
/// headers; then `Transfer-Encoding` ending in `chunked`; then any other
/// `Transfer-Encoding`, read until close; then `Content-Length`; then
/// until close. An HTTP/1.1 connection is kept unless `Connection: close`,
/// an HTTP/1.0 one only with `Connection: keep-alive` (and no `close`);
/// a body read until close, or a chunked body beside a `Content-Length`,
/// never keeps it.
pub(super) fn framing(head: &ParsedHead) -> Result<Framing, ProtocolError> {
    let length = match head.content_length {
        ContentLength::Absent => None,
        ContentLength::Valid(n) => Some(n),
        ContentLength::Invalid => return Err(ProtocolError::BadContentLength),
    };
    if head.http10 && head.transfer_encoding {
        return Err(ProtocolError::TransferEncodingInHttp10);
    }
    let persistent = if head.http10 {
        head.keep_alive && !head.close
    } else {
        !head.close
    };
    let (body, reuse) = if head.status == 204 || head.status == 304 {
        (Body::Length(0), persistent)
    } else if head.transfer_encoding && head.chunked {
        // Content-Length beside chunked is a smuggling signal: honour
        // chunked, then do not trust the connection again.
        (Body::Chunked, persistent && length.is_none())
    } else if head.transfer_encoding {
        (Body::UntilClose, false)
    } else if let Some(n) = length {
        (Body::Length(n), persistent)
    } else {
        (Body::UntilClose, false)
    };
    Ok(Framing { body, reuse })
}

fn malformed(e: httparse::Error) -> ProtocolError {
    match e {
        httparse::Error::TooManyHeaders => ProtocolError::TooManyHeaders,
        httparse::Error::Version => ProtocolError::MalformedHead("not an HTTP/1.x status line"),
        httparse::Error::Status => ProtocolError::MalformedHead("invalid status code"),
        httparse::Error::HeaderName => ProtocolError::MalformedHead("invalid header name"),
        httparse::Error::HeaderValue => ProtocolError::MalformedHead("invalid header value"),
        httparse::Error::NewLine => ProtocolError::MalformedHead("invalid line ending"),
        _ => ProtocolError::MalformedHead("invalid status line or header"),
    }
}

/// Splits a header value into its comma-separated, trimmed elements.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// One `Content-Length` value: a number, or a list of equal numbers.
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut length: Option<u64> = None;
    for e in value.split(|&b| b == b',').map(|e| e.trim_ascii()) {
        if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // All ASCII digits, so the text is valid UTF-8; overflow is an error.
        let n: u64 = std::str::from_utf8(e).ok()?.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/1.1 head with this status and no headers.
    fn head(status: u16) -> ParsedHead {
        ParsedHead {
            status,
            ..parsed(b"HTTP/1.1 200 OK\r\n\r\n")
        }
    }

    fn parsed(bytes: &[u8]) -> ParsedHead {
        match parse(bytes) {
            Ok(Some((len, head))) => {
                assert_eq!(len, bytes.len());
                head
            }
            other => panic!("{other:?}: {}", bytes.escape_ascii()),
        }
    }

    #[test]
    fn parse_keeps_the_header_facts() {
        let h = parsed(
            b"HTTP/1.0 503 Busy\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\
              Transfer-Encoding: gzip, chunked\r\nTransfer-Encoding: \r\n\
              Connection: keep-alive, Close\r\nKeep-Alive: max=5, timeout=30\r\n\
              Retry-After: 120\r\n\r\n",
        );
        assert_eq!(
            h,
            ParsedHead {
                status: 503,
                http10: true,
                content_length: ContentLength::Valid(4),
                transfer_encoding: true,
                chunked: true,
                close: true,
                keep_alive: true,
                keep_alive_secs: Some(30),
                retry_after: Some(RetryAfter::Seconds(120)),
            }
        );
        for lengths in [
            &b"Content-Length: 4\r\nContent-Length: 5\r\n"[..],
            b"Content-Length: 4, 5\r\n",
            b"Content-Length: \r\n",
            b"Content-Length: 4,\r\n",
            b"Content-Length: +4\r\n",
            b"Content-Length: 18446744073709551616\r\n",
        ] {
            let bytes = [b"HTTP/1.1 200 OK\r\n", lengths, b"\r\n"].concat();
            assert_eq!(parsed(&bytes).content_length, ContentLength::Invalid);
        }
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), Ok(None));
    }

    #[test]
    fn framing_follows_the_body_length_rules() {
        use Body::*;
        let cases = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 7", Length(7), true),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close",
                Length(7),
                false,
            ),
            (
                "HTTP/1.1 204 No Content\r\nContent-Length: 7",
                Length(0),
                true,
            ),
            (
                "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked",
                Length(0),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
                Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 7",
                Chunked,
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip",
                UntilClose,
                false,
            ),
            ("HTTP/1.1 200 OK", UntilClose, false),
            ("HTTP/1.0 200 OK\r\nContent-Length: 7", Length(7), false),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 7\r\nConnection: keep-alive",
                Length(7),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive, close",
                UntilClose,
                false,
            ),
        ];
        for (text, body, reuse) in cases {
            let h = parsed(format!("{text}\r\n\r\n").as_bytes());
            assert_eq!(framing(&h), Ok(Framing { body, reuse }), "{text:?}");
        }
    }

    #[test]
    fn framing_refuses_bad_lengths_and_transfer_encoding_in_http10() {
        let bad = ParsedHead {
            content_length: ContentLength::Invalid,
            ..head(204)
        };
        assert_eq!(framing(&bad), Err(ProtocolError::BadContentLength));
        let te10 = ParsedHead {
            http10: true,
            transfer_encoding: true,
            chunked: true,
            ..head(200)
        };
        assert_eq!(framing(&te10), Err(ProtocolError::TransferEncodingInHttp10));
        // A bad length is reported first.
        let both = ParsedHead {
            content_length: ContentLength::Invalid,
            ..te10
        };
        assert_eq!(framing(&both), Err(ProtocolError::BadContentLength));
    }
}
