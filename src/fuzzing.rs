//! Entry points for the fuzz targets in `fuzz/`, for the codec's property
//! tests (`proto/proptests.rs`) and for the replay of the fuzz corpora
//! under a stable `cargo test` (`fuzzing/corpus.rs`), so CI covers every
//! input the fuzzers kept.
//!
//! **Not public API.** Opened as `notifier::__fuzz` only with the
//! `internals` feature (the fuzz targets are a crate of their own), hidden
//! from the docs and outside semver: it may change or disappear in any
//! release.
//!
//! Each `fuzz_*` function is one whole fuzz target: it panics when a
//! property fails, and returns quietly otherwise.

use crate::endpoint::{Endpoint, Host, Scheme};
use crate::error::ProtocolError;
use crate::proto::response::{ResponseDecoder, Step, MAX_HEAD};

/// The head the `chunked` target puts before its input.
pub const CHUNKED_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

/// The final response head the decoder reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The `timeout` of a `Keep-Alive` header, in seconds.
    pub keep_alive_secs: Option<u64>,
    /// A valid `Retry-After`, in its `Debug` form.
    pub retry_after: Option<String>,
}

/// Where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The response is complete.
    Done {
        /// Whether the connection may carry another request.
        reuse: bool,
        /// Bytes after the response, not consumed.
        leftover: usize,
    },
    /// The decoder refused the input.
    Failed(ProtocolError),
    /// The input ran out inside the response, and no end of stream came.
    NeedMore,
}

/// Everything the decoder reported for one input: comparable, so two ways
/// of reading the same bytes can be checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The final head, once decoded (interim 1xx heads are skipped).
    pub head: Option<Head>,
    /// Where decoding stopped.
    pub end: End,
}

/// Feeds `reads` to a fresh decoder the way a connection does: unconsumed
/// bytes are kept and the next read is appended to them. With `eof`, the
/// stream ends after the last read.
///
/// # Panics
///
/// When the decoder breaks a promise the connection code relies on: it
/// consumes more than it was given, asks for more bytes while those it has
/// still decode further, reports a second head, completes without a head,
/// keeps body bytes, or keeps a head of 64 KiB or more.
pub fn response_outcome(reads: &[&[u8]], eof: bool) -> Outcome {
    let mut decoder = ResponseDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut head: Option<Head> = None;
    for (k, read) in reads.iter().enumerate() {
        buf.extend_from_slice(read);
        loop {
            let (used, step) = match decoder.decode(&buf) {
                Ok(r) => r,
                Err(e) => {
                    return Outcome {
                        head,
                        end: End::Failed(e),
                    }
                }
            };
            assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
            buf.drain(..used);
            match step {
                Step::NeedMore => {
                    // The connection's buffer holds at most one head below
                    // the limit; body bytes are consumed as they come.
                    assert!(buf.len() < MAX_HEAD, "{} bytes kept", buf.len());
                    assert!(
                        head.is_none() || buf.is_empty(),
                        "{} body bytes kept",
                        buf.len()
                    );
                    // Everything decodable was consumed: without more
                    // bytes, another call gets no further.
                    assert_eq!(
                        decoder.decode(&buf),
                        Ok((0, Step::NeedMore)),
                        "NeedMore with {} decodable bytes left",
                        buf.len()
                    );
                    break;
                }
                Step::Head(h) => {
                    assert!(head.is_none(), "a second head: {h:?}");
                    assert!((200..=599).contains(&h.status), "final status {h:?}");
                    head = Some(Head {
                        status: h.status,
                        keep_alive_secs: h.keep_alive_secs,
                        retry_after: h.retry_after.map(|r| format!("{r:?}")),
                    });
                }
                Step::Done { reuse } => {
                    assert!(head.is_some(), "done without a head");
                    assert_eq!(
                        decoder.decode(&buf),
                        Ok((0, Step::Done { reuse })),
                        "a finished decoder must stay finished"
                    );
                    let rest: usize = reads[k + 1..].iter().map(|r| r.len()).sum();
                    return Outcome {
                        head,
                        end: End::Done {
                            reuse,
                            leftover: buf.len() + rest,
                        },
                    };
                }
            }
        }
    }
    let end = if eof {
        match decoder.eof() {
            Ok(Step::Done { reuse }) => End::Done {
                reuse,
                leftover: buf.len(),
            },
            Ok(step) => panic!("end of stream gave {step:?}"),
            Err(e) => End::Failed(e),
        }
    } else {
        End::NeedMore
    };
    Outcome { head, end }
}

/// Splits a fuzz input into read sizes and the payload. A first byte below
/// 0x10 is a count `k`, and the `k` bytes after it are read sizes (each
/// byte plus one), used in turn until the payload runs out. Any other
/// first byte starts the payload, read whole; so a plain response is an
/// input too.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    match data.split_first() {
        Some((&k, rest)) if k < 0x10 => {
            let k = usize::from(k).min(rest.len());
            let (sizes, payload) = rest.split_at(k);
            (sizes.iter().map(|&s| usize::from(s) + 1).collect(), payload)
        }
        _ => (Vec::new(), data),
    }
}

/// `payload` cut into reads of `sizes` in turn; whole when `sizes` is
/// empty.
pub fn reads<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut rest = payload;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(size.clamp(1, rest.len()));
        out.push(read);
        rest = tail;
    }
    out
}

/// Checks that reading `bytes` as `reads` (which must add up to `bytes`)
/// decodes exactly as reading them whole, with and without an end of
/// stream after them, and that the end of stream means what it should.
///
/// # Panics
///
/// When any of that fails.
pub fn check_reads(bytes: &[u8], reads: &[&[u8]]) {
    assert_eq!(reads.concat(), bytes, "the reads must add up to the input");
    for eof in [false, true] {
        let whole = response_outcome(&[bytes], eof);
        let split = response_outcome(reads, eof);
        assert_eq!(
            split,
            whole,
            "reads of {:?} (eof: {eof}) of {}",
            reads.iter().map(|r| r.len()).collect::<Vec<_>>(),
            bytes.escape_ascii()
        );
    }
}

/// Checks what the bytes decode to against itself: the end of stream only
/// completes a body read to the close and otherwise truncates, and a
/// complete response is complete exactly at its last byte.
///
/// # Panics
///
/// When any of that fails.
pub fn check_outcome(bytes: &[u8]) {
    let open = response_outcome(&[bytes], false);
    let closed = response_outcome(&[bytes], true);
    match &open.end {
        End::NeedMore => {
            assert_eq!(closed.head, open.head);
            match closed.end {
                End::Done { reuse, leftover } => {
                    assert!(open.head.is_some(), "completed by EOF without a head");
                    assert_eq!((reuse, leftover), (false, 0), "body to the close");
                }
                End::Failed(e) => assert_eq!(e, ProtocolError::Truncated),
                End::NeedMore => panic!("NeedMore after the end of stream"),
            }
        }
        _ => assert_eq!(closed, open, "EOF after the end changes nothing"),
    }
    if let End::Done { reuse, leftover } = open.end {
        let len = bytes.len() - leftover;
        let exact = response_outcome(&[&bytes[..len]], false);
        assert_eq!(exact.head, open.head);
        assert_eq!(exact.end, End::Done { reuse, leftover: 0 });
        assert_eq!(
            response_outcome(&[&bytes[..len - 1]], false).end,
            End::NeedMore,
            "complete before its last byte"
        );
    }
}

/// Fuzz target `response`: any bytes as a response, in the reads that
/// [`split_input`] makes of the input.
pub fn fuzz_response(data: &[u8]) {
    let (sizes, payload) = split_input(data);
    check_reads(payload, &reads(payload, &sizes));
    check_outcome(payload);
}

/// Fuzz target `chunked`: any bytes as a chunked body after
/// [`CHUNKED_HEAD`], in the reads that [`split_input`] makes of the input.
pub fn fuzz_chunked(data: &[u8]) {
    let (sizes, body) = split_input(data);
    let bytes = [CHUNKED_HEAD, body].concat();
    let mut split = vec![CHUNKED_HEAD];
    split.extend(reads(body, &sizes));
    check_reads(&bytes, &split);
    check_outcome(&bytes);
    let outcome = response_outcome(&[&bytes], false);
    assert_eq!(outcome.head.map(|h| h.status), Some(200));
    if let End::Done { reuse, .. } = outcome.end {
        assert!(
            reuse,
            "a complete chunked HTTP/1.1 body keeps the connection"
        );
    }
}

/// Parses `url` as an endpoint: `Ok` with its fields in one line, or `Err`
/// with the error's text.
pub fn endpoint(url: &str) -> Result<String, String> {
    match Endpoint::parse(url) {
        Ok(e) => Ok(format!(
            "{} host={} port={} authority={} target={}",
            scheme_name(e.scheme),
            match &e.host {
                Host::Ip(ip) => format!("ip:{ip}"),
                Host::Name(name) => format!("name:{name}"),
            },
            e.port,
            e.authority,
            e.target
        )),
        Err(e) => Err(e.to_string()),
    }
}

fn scheme_name(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// Fuzz target `endpoint`: any text as a URL (invalid UTF-8 replaced).
/// Parsing never panics, and what it accepts can go on a request line and
/// in a `Host` header as it is, and parses back to itself.
pub fn fuzz_endpoint(data: &[u8]) {
    let url = String::from_utf8_lossy(data);
    let Ok(e) = Endpoint::parse(&url) else {
        return;
    };
    let sendable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    assert!(e.target.starts_with('/'), "{url:?}: target {:?}", e.target);
    assert!(sendable(&e.target) && !e.target.contains('#'), "{url:?}");
    assert!(e.port != 0, "{url:?}: port 0");
    assert!(!e.authority.is_empty(), "{url:?}: empty authority");
    assert!(
        sendable(&e.authority) && !e.authority.contains(['/', '?', '#', '@']),
        "{url:?}: authority {:?}",
        e.authority
    );
    if let Host::Name(name) = &e.host {
        assert!(!name.is_empty() && sendable(name), "{url:?}: host {name:?}");
    }
    let again = format!("{}://{}{}", scheme_name(e.scheme), e.authority, e.target);
    assert_eq!(
        Endpoint::parse(&again).ok().as_ref(),
        Some(&e),
        "{url:?} re-formatted as {again:?}"
    );
}

#[cfg(test)]
mod corpus;
