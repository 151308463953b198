//! The messages of a request body, as the sinks of `benches/compare` and
//! `benches/loopback.rs` (which include this file) count them: a body is
//! one message, or, from a client batching with `BatchConfig::ndjson()`,
//! one message per line.
//!
//! Splitting allocates nothing: the sinks call it on their hot path.

/// How a request body carries its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The body is one message.
    One,
    /// NDJSON: each message followed by `\n` (a message holds no `\n`).
    Ndjson,
}

impl Framing {
    /// Calls `f` with each message of `body`, in order, framing stripped;
    /// returns how many there were. An NDJSON body's last line is a message
    /// even without its `\n`; an empty NDJSON body holds none.
    pub(crate) fn each(self, body: &[u8], mut f: impl FnMut(&[u8])) -> u64 {
        match self {
            Framing::One => {
                f(body);
                1
            }
            Framing::Ndjson => {
                let (mut rest, mut n) = (body, 0);
                while !rest.is_empty() {
                    let (line, next) = match find_newline(rest) {
                        Some(at) => (&rest[..at], &rest[at + 1..]),
                        None => (rest, &rest[rest.len()..]),
                    };
                    f(line);
                    n += 1;
                    rest = next;
                }
                n
            }
        }
    }
}

/// Where the first `\n` in `bytes` is, looking at eight bytes at a time: a
/// byte-by-byte search costs the sink, which shares the cores with the
/// client under test, a few per cent of the machine at millions of
/// messages a second.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut words = bytes.chunks_exact(8);
    for (i, word) in words.by_ref().enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ NEWLINES;
        // The lowest byte that was a newline (is now zero) has its high bit
        // set; bits above it may be set wrongly, those below never are.
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(i * 8 + (zeros.trailing_zeros() / 8) as usize);
        }
    }
    let tail = words.remainder();
    let at = bytes.len() - tail.len();
    tail.iter().position(|&b| b == b'\n').map(|p| at + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(framing: Framing, body: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = framing.each(body, |m| out.push(m.to_vec()));
        assert_eq!(n, out.len() as u64);
        out
    }

    #[test]
    fn ndjson_lines_are_messages() {
        let v = |s: &[&str]| s.iter().map(|m| m.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(split(Framing::Ndjson, b"a\nbc\n"), v(&["a", "bc"]));
        assert_eq!(split(Framing::Ndjson, b"a\n\n"), v(&["a", ""]));
        assert_eq!(split(Framing::Ndjson, b"a\nb"), v(&["a", "b"]));
        assert_eq!(split(Framing::Ndjson, b""), v(&[]));
        assert_eq!(split(Framing::One, b"a\nb\n"), v(&["a\nb\n"]));
    }

    #[test]
    fn the_newline_search_finds_the_first_at_every_place() {
        for len in 0..40 {
            for at in 0..=len {
                // Bytes on either side of b'\n', to tempt the word trick.
                let mut bytes: Vec<u8> = (0..len).map(|i| [9u8, 11, 0x8a, 0][i % 4]).collect();
                if at < len {
                    bytes[at] = b'\n';
                    if at + 3 < len {
                        bytes[at + 3] = b'\n';
                    }
                }
                let want = bytes.iter().position(|&b| b == b'\n');
                assert_eq!(find_newline(&bytes), want, "len {len}, at {at}");
            }
        }
    }
}
