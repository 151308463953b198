//! Response decoding: status line and headers through `httparse`, then the
//! body framing of RFC 9112 §6.3 (length, chunked, or until close).
//!
//! The decoder owns no buffer. The caller keeps the bytes it has read and
//! passes the unconsumed ones to [`ResponseDecoder::decode`], which says how
//! many it consumed and what happened. While a head is incomplete nothing is
//! consumed, so the caller's buffer holds at most one head (64 KiB); body
//! bytes are consumed as they come and never held.

use crate::error::ProtocolError;
use crate::policy::retry::{parse_retry_after, RetryAfter};

/// Largest status line + headers accepted.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most header lines accepted in one response.
pub(crate) const MAX_HEADERS: usize = 100;
/// Most bytes of chunk metadata accepted in one response: extensions,
/// trailers, whitespace after a chunk size, and a size's leading zeros past
/// the 16 digits a `u64` needs.
pub(crate) const MAX_CHUNK_META: usize = 16 * 1024;
/// Most body bytes read (and discarded) to keep a connection.
pub(crate) const MAX_BODY: u64 = 1024 * 1024;
/// Most interim (1xx) responses accepted before the final one.
pub(crate) const MAX_INTERIM: u32 = 10;

/// The final response's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    /// The `timeout` of a `Keep-Alive` header, in seconds.
    pub(crate) keep_alive_secs: Option<u64>,
    /// A valid `Retry-After` header.
    pub(crate) retry_after: Option<RetryAfter>,
}

/// What one call to [`ResponseDecoder::decode`] produced.
///
/// A caller decodes until it gets [`Step::NeedMore`] (read more bytes) or
/// [`Step::Done`] (the response is over); after [`Step::Head`] it calls
/// again with the bytes left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Step {
    /// Everything decodable in the bytes given was consumed: read more,
    /// keeping the unconsumed ones, which are then only the start of a head
    /// that is not complete yet (none at all once the final head is
    /// decoded). Calling again before more bytes arrive consumes nothing.
    NeedMore,
    /// The final response's head. Its body follows. Interim (1xx) heads
    /// before it are consumed without a step of their own.
    Head(Head),
    /// The response is complete. `reuse` says whether the connection may
    /// carry another request.
    Done { reuse: bool },
}

/// What one head in the input decoded to.
#[derive(Debug)]
enum HeadStep {
    /// No complete head yet; nothing consumed.
    Incomplete,
    /// An interim (1xx) head of this many bytes.
    Interim(usize),
    /// The final head, of this many bytes.
    Final(usize, Head),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { value: u64, digits: u32 },
    SizeSpace { value: u64 },
    Extension { value: u64 },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    EndLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Decodes one response. Make a new one for each request.
#[derive(Debug)]
pub(crate) struct ResponseDecoder {
    state: State,
    reuse: bool,
    interim: u32,
    /// How far the current head has been searched for its end.
    scanned: usize,
    /// How many CR and LF bytes start the current head: the empty lines
    /// httparse skips before a status line.
    lead: usize,
    body: u64,
    meta: usize,
    started: bool,
}

impl Default for ResponseDecoder {
    fn default() -> Self {
        ResponseDecoder {
            state: State::Head,
            reuse: false,
            interim: 0,
            scanned: 0,
            lead: 0,
            body: 0,
            meta: 0,
            started: false,
        }
    }
}

/// Whether `bytes` contain the blank line that ends a head.
fn has_head_end(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
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

fn parse_length(value: &[u8]) -> Result<u64, ProtocolError> {
    let mut any = false;
    let mut length: Option<u64> = None;
    for e in value.split(|&b| b == b',').map(|e| e.trim_ascii()) {
        if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
            return Err(ProtocolError::BadContentLength);
        }
        // All ASCII digits, so the text is valid UTF-8; overflow is an error.
        let n: u64 = std::str::from_utf8(e)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ProtocolError::BadContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(ProtocolError::BadContentLength);
        }
        length = Some(n);
        any = true;
    }
    match (any, length) {
        (true, Some(n)) => Ok(n),
        _ => Err(ProtocolError::BadContentLength),
    }
}

impl ResponseDecoder {
    /// Whether any response byte has been seen.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Whether the final head has been decoded.
    #[cfg(test)]
    pub(crate) fn has_head(&self) -> bool {
        !matches!(self.state, State::Head)
    }

    /// Decodes from `input`, the bytes received and not yet consumed.
    /// Returns how many bytes were consumed and what they produced.
    ///
    /// The caller drops the consumed bytes and acts on the step: on
    /// [`Step::Head`] it calls again with the rest; on [`Step::NeedMore`]
    /// it reads more bytes first, as nothing in the rest can be decoded
    /// without them (interim 1xx responses are skipped within the call, so
    /// the rest is at most an incomplete head). After [`Step::Done`] the
    /// decoder is finished; bytes left over do not belong to this response.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<(usize, Step), ProtocolError> {
        self.started |= !input.is_empty();
        match self.state {
            State::Head => {
                // Interim heads go by here, so one call reaches the final
                // head or the end of the bytes.
                let mut used = 0;
                loop {
                    match self.decode_head(&input[used..])? {
                        HeadStep::Incomplete => return Ok((used, Step::NeedMore)),
                        HeadStep::Interim(len) => used += len,
                        HeadStep::Final(len, head) => return Ok((used + len, Step::Head(head))),
                    }
                }
            }
            State::Length(remaining) => {
                if remaining == 0 {
                    return Ok((0, self.finish()));
                }
                let take = remaining.min(input.len() as u64);
                self.count_body(take)?;
                self.state = State::Length(remaining - take);
                // `take` is at most `input.len()`, so it fits in usize.
                let take = take as usize;
                if remaining == take as u64 {
                    Ok((take, self.finish()))
                } else {
                    Ok((take, Step::NeedMore))
                }
            }
            State::UntilClose => {
                self.count_body(input.len() as u64)?;
                Ok((input.len(), Step::NeedMore))
            }
            State::Chunked(chunk) => self.decode_chunked(chunk, input),
            State::Done => Ok((0, Step::Done { reuse: self.reuse })),
        }
    }

    /// The connection reached end of stream. A body delimited by the close
    /// is complete; anything else is cut short. (The connection needs no
    /// answer from it: a response's outcome is decided by its head; the
    /// fuzz entry points use it to check the decoder's end states.)
    pub(crate) fn eof(&mut self) -> Result<Step, ProtocolError> {
        match self.state {
            State::UntilClose => {
                self.reuse = false;
                Ok(self.finish())
            }
            State::Done => Ok(Step::Done { reuse: false }),
            _ => Err(ProtocolError::Truncated),
        }
    }

    fn finish(&mut self) -> Step {
        self.state = State::Done;
        Step::Done { reuse: self.reuse }
    }

    fn count_body(&mut self, n: u64) -> Result<(), ProtocolError> {
        self.body += n;
        if self.body > MAX_BODY {
            return Err(ProtocolError::BodyTooLarge);
        }
        Ok(())
    }

    fn count_meta(&mut self) -> Result<(), ProtocolError> {
        self.meta += 1;
        if self.meta > MAX_CHUNK_META {
            return Err(ProtocolError::ChunkMetadataTooLarge);
        }
        Ok(())
    }

    /// Decodes the head at the start of `input`.
    fn decode_head(&mut self, input: &[u8]) -> Result<HeadStep, ProtocolError> {
        let window = &input[..input.len().min(MAX_HEAD)];
        // httparse skips empty lines before the status line, so a blank
        // line among them ends no head: search from the first other byte.
        // Otherwise whether a head that followed them was parsed at once or
        // never would depend on how the bytes were split.
        while window
            .get(self.lead)
            .is_some_and(|b| matches!(b, b'\r' | b'\n'))
        {
            self.lead += 1;
        }
        let from = self.scanned.saturating_sub(2).max(self.lead);
        if !has_head_end(&window[from.min(window.len())..]) {
            if input.len() >= MAX_HEAD {
                return Err(ProtocolError::HeadTooLarge);
            }
            self.scanned = input.len();
            return Ok(HeadStep::Incomplete);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(window).map_err(malformed)? {
            httparse::Status::Complete(len) => len,
            // The blank line was found, so a partial parse means the head
            // is over the size limit or malformed in a way httparse waits on.
            httparse::Status::Partial if input.len() >= MAX_HEAD => {
                return Err(ProtocolError::HeadTooLarge)
            }
            // Not expected past the empty lines skipped above. Should it
            // happen, the search is not advanced, so the next call parses
            // again rather than wait for another blank line: more work, but
            // the same outcome however the bytes are split.
            httparse::Status::Partial => return Ok(HeadStep::Incomplete),
        };
        self.scanned = 0;
        self.lead = 0;
        // A complete parse always has a code and a version.
        let status = response.code.unwrap_or(0);
        let http10 = response.version == Some(0);
        if !(100..=599).contains(&status) {
            return Err(ProtocolError::BadStatus(status));
        }
        if status == 101 {
            return Err(ProtocolError::UnexpectedSwitchingProtocols);
        }
        if status < 200 {
            self.interim += 1;
            if self.interim > MAX_INTERIM {
                return Err(ProtocolError::TooManyInterim);
            }
            return Ok(HeadStep::Interim(len));
        }

        let mut length = None;
        let mut transfer_encoding = false;
        let mut chunked = false;
        let mut close = false;
        let mut keep_alive = false;
        let mut keep_alive_secs = None;
        let mut retry_after = None;
        for h in response.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_length(h.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ProtocolError::BadContentLength);
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                transfer_encoding = true;
                if let Some(last) = elements(h.value).last() {
                    chunked = last.eq_ignore_ascii_case(b"chunked");
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in elements(h.value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"retry-after") {
                retry_after = parse_retry_after(h.value);
            } else if name.eq_ignore_ascii_case(b"keep-alive") {
                for param in elements(h.value) {
                    if param.len() > 8 && param[..8].eq_ignore_ascii_case(b"timeout=") {
                        keep_alive_secs = std::str::from_utf8(&param[8..])
                            .ok()
                            .and_then(|s| s.trim_ascii().parse().ok());
                    }
                }
            }
        }
        if http10 && transfer_encoding {
            return Err(ProtocolError::TransferEncodingInHttp10);
        }
        self.reuse = if http10 { keep_alive && !close } else { !close };
        self.state = if status == 204 || status == 304 {
            State::Length(0)
        } else if transfer_encoding && chunked {
            // Content-Length beside chunked is a smuggling signal: honour
            // chunked, then do not trust the connection again.
            self.reuse &= length.is_none();
            State::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            })
        } else if transfer_encoding {
            self.reuse = false;
            State::UntilClose
        } else if let Some(n) = length {
            State::Length(n)
        } else {
            self.reuse = false;
            State::UntilClose
        };
        Ok(HeadStep::Final(
            len,
            Head {
                status,
                keep_alive_secs,
                retry_after,
            },
        ))
    }

    fn decode_chunked(
        &mut self,
        mut chunk: Chunk,
        input: &[u8],
    ) -> Result<(usize, Step), ProtocolError> {
        let mut i = 0;
        while i < input.len() {
            if let Chunk::Data(remaining) = chunk {
                let take = remaining.min((input.len() - i) as u64);
                self.count_body(take)?;
                // `take` is at most the input's length, so it fits in usize.
                i += take as usize;
                chunk = if remaining == take {
                    Chunk::DataCr
                } else {
                    Chunk::Data(remaining - take)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            chunk = match chunk {
                Chunk::Size { value, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if value > u64::MAX >> 4 {
                            return Err(ProtocolError::BadChunkSize);
                        }
                        // Leading zeros leave the value small: digits past
                        // the 16 a u64 needs count as metadata, which also
                        // bounds `digits`.
                        if digits >= 16 {
                            self.count_meta()?;
                        }
                        // A hex digit converts to a value below 16.
                        let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                        Chunk::Size {
                            value: value << 4 | d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(ProtocolError::BadChunkSize),
                    b' ' | b'\t' => {
                        self.count_meta()?;
                        Chunk::SizeSpace { value }
                    }
                    b';' => Chunk::Extension { value },
                    b'\r' => Chunk::SizeLf { value },
                    b'\n' => Self::after_size(value),
                    _ => return Err(ProtocolError::BadChunkSize),
                },
                Chunk::SizeSpace { value } => match b {
                    b' ' | b'\t' => {
                        self.count_meta()?;
                        Chunk::SizeSpace { value }
                    }
                    b';' => Chunk::Extension { value },
                    b'\r' => Chunk::SizeLf { value },
                    b'\n' => Self::after_size(value),
                    _ => return Err(ProtocolError::BadChunkSize),
                },
                Chunk::Extension { value } => {
                    self.count_meta()?;
                    match b {
                        b'\n' => Self::after_size(value),
                        _ => Chunk::Extension { value },
                    }
                }
                Chunk::SizeLf { value } => match b {
                    b'\n' => Self::after_size(value),
                    _ => return Err(ProtocolError::BadChunkSize),
                },
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ProtocolError::BadChunkEnd),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Err(ProtocolError::BadChunkEnd),
                },
                Chunk::TrailerLineStart => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => return Ok((i, self.finish())),
                    _ => {
                        self.count_meta()?;
                        Chunk::TrailerLine
                    }
                },
                Chunk::TrailerLine => {
                    self.count_meta()?;
                    match b {
                        b'\n' => Chunk::TrailerLineStart,
                        _ => Chunk::TrailerLine,
                    }
                }
                Chunk::EndLf => match b {
                    b'\n' => return Ok((i, self.finish())),
                    _ => return Err(ProtocolError::BadChunkEnd),
                },
                Chunk::Data(_) => unreachable!("data is consumed above"),
            };
        }
        self.state = State::Chunked(chunk);
        Ok((i, Step::NeedMore))
    }

    fn after_size(value: u64) -> Chunk {
        if value == 0 {
            Chunk::TrailerLineStart
        } else {
            Chunk::Data(value)
        }
    }
}

#[cfg(test)]
mod tests;
