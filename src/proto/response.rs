//! Response decoding: status line and headers through `httparse`, then the
//! body framing of RFC 9112 section 6.3 (length, chunked, or until close).
//! [`head`] parses one head and chooses its framing; this module finds the
//! heads in the bytes, skips interim ones, and reads the body.
//!
//! The decoder owns no buffer. The caller keeps the bytes it has read and
//! passes the unconsumed ones to [`ResponseDecoder::decode`], which says how
//! many it consumed and what happened. While a head is incomplete nothing is
//! consumed, so the caller's buffer holds at most one head (64 KiB); body
//! bytes are consumed as they come and never held.

use crate::error::ProtocolError;
use crate::proto::retry_after::RetryAfter;
use head::Body;

mod head;

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
    /// fuzz entry points use it to check the decoder's end states, so it
    /// is built only with them.)
    #[cfg(any(test, feature = "internals"))]
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
        let (len, head) = match head::parse(window)? {
            Some(parsed) => parsed,
            // The blank line was found, so a partial parse means the head
            // is over the size limit or malformed in a way httparse waits on.
            None if input.len() >= MAX_HEAD => return Err(ProtocolError::HeadTooLarge),
            // Not expected past the empty lines skipped above. Should it
            // happen, the search is not advanced, so the next call parses
            // again rather than wait for another blank line: more work, but
            // the same outcome however the bytes are split.
            None => return Ok(HeadStep::Incomplete),
        };
        self.scanned = 0;
        self.lead = 0;
        let status = head.status;
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
        let framing = head::framing(&head)?;
        self.reuse = framing.reuse;
        self.state = match framing.body {
            Body::Length(n) => State::Length(n),
            Body::Chunked => State::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            }),
            Body::UntilClose => State::UntilClose,
        };
        Ok(HeadStep::Final(
            len,
            Head {
                status,
                keep_alive_secs: head.keep_alive_secs,
                retry_after: head.retry_after,
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
