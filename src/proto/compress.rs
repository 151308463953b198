//! Request-body compression, sans-IO: the parts of a framed body in, the
//! encoded body out, into a buffer the caller keeps and reuses.
//!
//! An event loop owns one [`Compressor`] and compresses each request body
//! once; the compressed bytes are what a retry sends again. The codec state
//! is made once and reset per body, and the output buffer keeps its
//! capacity, so compressing allocates nothing once the buffer has grown to
//! the largest body's worst case.
//!
//! # Backend and levels, by measurement
//!
//! `cargo bench --features gzip,zstd --bench compress` (benches/compress.rs)
//! on 2 shared x86-64 cores, rustc 1.95, flate2 1.1.11 with zlib-rs 0.6.8
//! or miniz_oxide 0.9.1, zstd 1.5.7: 1 KiB JSON-like webhook events framed
//! as NDJSON. Per body, the time; per 1 KiB message of the batch, the CPU;
//! the throughput of uncompressed bytes; the ratio compressed/uncompressed:
//!
//! ```text
//!                         batch of 500 (512,500 B)            batch of 1 (1,025 B)
//!                         body     message  MiB/s  ratio      body     ratio
//! gzip zlib-rs      1     1.43 ms   2.9 µs   341   0.344       5.7 µs  0.795
//! gzip zlib-rs      2     2.25 ms   4.5 µs   217   0.256      14.3 µs  0.610  <- Gzip
//! gzip zlib-rs      3     3.13 ms   6.3 µs   156   0.240      13.7 µs  0.609
//! gzip zlib-rs      4     4.48 ms   9.0 µs   109   0.224      15.2 µs  0.609
//! gzip zlib-rs      6     6.11 ms  12.2 µs    80   0.211      15.1 µs  0.608
//! gzip miniz_oxide  1     7.42 ms  14.8 µs    66   0.298      37.8 µs  0.617
//! gzip miniz_oxide  2     9.86 ms  19.7 µs    50   0.262      44.7 µs  0.607
//! gzip miniz_oxide  6    20.5 ms   41.1 µs    24   0.215      42.8 µs  0.604
//! zstd              1     1.37 ms   2.7 µs   355   0.212       5.0 µs  0.649  <- Zstd
//! zstd              2     1.30 ms   2.6 µs   377   0.219       5.6 µs  0.637
//! zstd              3     1.41 ms   2.8 µs   348   0.214       7-10 µs 0.626
//! ```
//!
//! - Backend: zlib-rs. miniz_oxide, flate2's default, takes 3.4-5.2x the
//!   CPU level for level, and ~40 µs for a lone message.
//! - gzip level 2: zlib-rs's level 1 is a static-codes-only strategy, the
//!   fastest but over the 0.3 target (0.344); level 2 is the fastest under
//!   it (0.256 on 500 messages, 0.262 on 100, 0.289 on 20: the unit test).
//!   Levels 3, 4 and 6 take 1.6, 3.2 and 4.5 points off the ratio for
//!   1.4x, 2x and 2.7x the CPU.
//! - zstd level 1: levels 1-3 cost the same within the noise here; 1 is
//!   as small on batches, cheapest alone, and has the smallest window
//!   (512 KiB), so the smallest context.
//! - A lone 1 KiB message shrinks only to ~0.6, and its body costs 2-3x a
//!   message's share of a batch (the codec's fixed cost per body): the 0.3
//!   target is met by batches, where the keys repeat.

// Without a codec no compressor is ever made; the type stays so that its
// callers need no `cfg` of their own.
#![cfg_attr(
    not(any(feature = "gzip", feature = "zstd")),
    allow(dead_code, unused_variables, reason = "no codec, no compressor")
)]

use std::fmt;
use std::io;

/// How request bodies are compressed; [`Builder::compression`](crate::Builder::compression) takes it.
///
/// The request carries the matching `Content-Encoding` header. A body is
/// compressed once per request, however many messages it frames, and its
/// retries send the same compressed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Bodies are sent as they are (the default).
    #[default]
    None,
    /// gzip (RFC 1952) at deflate level 2, `Content-Encoding: gzip`. Needs
    /// the `gzip` feature.
    #[cfg(feature = "gzip")]
    Gzip,
    /// zstd (RFC 8878) at level 1, `Content-Encoding: zstd`. Needs the
    /// `zstd` feature.
    #[cfg(feature = "zstd")]
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` value, `None` for `Compression::None`.
    pub(crate) fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            #[cfg(feature = "gzip")]
            Compression::Gzip => Some("gzip"),
            #[cfg(feature = "zstd")]
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// One event loop's compressor (used from one thread, one body at a time).
pub(crate) struct Compressor {
    codec: Codec,
}

/// The codec state, made once per compressor.
enum Codec {
    #[cfg(feature = "gzip")]
    Gzip(gzip::Gzip),
    #[cfg(feature = "zstd")]
    Zstd(zst::Zstd),
}

impl Compressor {
    /// `None` for `Compression::None`.
    pub(crate) fn new(c: Compression) -> Option<Compressor> {
        match c {
            Compression::None => None,
            #[cfg(feature = "gzip")]
            Compression::Gzip => Compressor::with_level(c, gzip::LEVEL),
            #[cfg(feature = "zstd")]
            Compression::Zstd => Compressor::with_level(c, zst::LEVEL),
        }
    }

    /// As [`Compressor::new`], at `level` instead of the measured default:
    /// deflate's 0–9 for gzip, zstd's negative levels to 19 for zstd
    /// (clamped). The bench sweeps levels through it.
    #[cfg(any(feature = "gzip", feature = "zstd"))]
    pub(crate) fn with_level(c: Compression, level: i32) -> Option<Compressor> {
        let codec = match c {
            Compression::None => return None,
            #[cfg(feature = "gzip")]
            Compression::Gzip => Codec::Gzip(gzip::Gzip::new(level)),
            #[cfg(feature = "zstd")]
            Compression::Zstd => Codec::Zstd(zst::Zstd::new(level)),
        };
        Some(Compressor { codec })
    }

    /// Which compression this is.
    pub(crate) fn compression(&self) -> Compression {
        match self.codec {
            #[cfg(feature = "gzip")]
            Codec::Gzip(_) => Compression::Gzip,
            #[cfg(feature = "zstd")]
            Codec::Zstd(_) => Compression::Zstd,
        }
    }

    /// The codec's level.
    fn level(&self) -> i32 {
        match self.codec {
            #[cfg(feature = "gzip")]
            Codec::Gzip(ref g) => g.level(),
            #[cfg(feature = "zstd")]
            Codec::Zstd(ref z) => z.level(),
        }
    }

    /// Compresses the concatenation of `parts` into `out` (cleared first; its
    /// capacity is reused). Allocation-free in steady state: after a first
    /// body of a size, compressing another body no larger allocates nothing
    /// (the codec state is reset, not rebuilt; `out` keeps its capacity).
    ///
    /// The parts are fed to the codec one after the other, never joined.
    /// `out` grows, ahead of the codec, to the worst-case encoded size of
    /// the input seen so far (for gzip about 1.14 × the body, for zstd
    /// about 1.004 ×), which is what keeps a later body of no larger size
    /// from growing it again however badly it compresses; the pages past
    /// the actual output are reserved, not written.
    pub(crate) fn compress<'a>(
        &mut self,
        parts: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        out.clear();
        match self.codec {
            #[cfg(feature = "gzip")]
            Codec::Gzip(ref mut g) => g.compress(parts, out),
            #[cfg(feature = "zstd")]
            Codec::Zstd(ref mut z) => z.compress(parts, out),
        }
    }
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("compression", &self.compression())
            .field("level", &self.level())
            .finish_non_exhaustive()
    }
}

/// Grows `out` so that it holds `total` bytes without reallocating.
#[cfg(any(feature = "gzip", feature = "zstd"))]
fn reserve_total(out: &mut Vec<u8>, total: usize) {
    out.reserve(total.saturating_sub(out.len()));
}

/// Room added when the codec stops for want of it, which the worst-case
/// reservation ahead of it should never let happen.
#[cfg(any(feature = "gzip", feature = "zstd"))]
const MORE: usize = 4096;

#[cfg(feature = "gzip")]
mod gzip {
    use std::io;

    use flate2::{Compress, Crc, FlushCompress, Status};

    use super::{reserve_total, MORE};

    /// Deflate level 2: with zlib-rs, level 1 is its static-codes-only
    /// "quick" strategy (0.344 on the 500-message batch, over the 0.3
    /// target); 2 is the fastest under it. See the figures at the top.
    pub(super) const LEVEL: i32 = 2;

    /// The gzip header (RFC 1952 §2.3): magic, CM = 8 (deflate), no flags,
    /// no modification time, XFL (filled per level), OS 255 ("unknown").
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    /// Where XFL is in the header.
    const XFL: usize = 8;
    /// The trailer: CRC-32 then ISIZE, both little-endian.
    const TRAILER_LEN: usize = 8;

    /// Raw deflate (no zlib wrapper) with the gzip header and trailer
    /// written around it here, so that one `Compress` is reset per body
    /// instead of a `GzEncoder` built per body.
    pub(super) struct Gzip {
        deflate: Compress,
        crc: Crc,
        header: [u8; 10],
        level: u32,
    }

    impl Gzip {
        pub(super) fn new(level: i32) -> Gzip {
            let level = level.clamp(0, 9) as u32;
            let mut header = HEADER;
            header[XFL] = match level {
                9 => 2,
                1 => 4,
                _ => 0,
            };
            Gzip {
                deflate: Compress::new(flate2::Compression::new(level), false),
                crc: Crc::new(),
                header,
                level,
            }
        }

        pub(super) fn level(&self) -> i32 {
            self.level as i32
        }

        pub(super) fn compress<'a>(
            &mut self,
            parts: impl IntoIterator<Item = &'a [u8]>,
            out: &mut Vec<u8>,
        ) -> io::Result<()> {
            self.deflate.reset();
            self.crc.reset();
            reserve_total(out, bound(0));
            out.extend_from_slice(&self.header);
            let mut total = 0usize;
            for part in parts {
                if part.is_empty() {
                    continue;
                }
                total = total.saturating_add(part.len());
                reserve_total(out, bound(total));
                self.crc.update(part);
                let mut input = part;
                while !input.is_empty() {
                    let (read, _) = self.step(input, out, FlushCompress::None)?;
                    input = &input[read..];
                }
            }
            loop {
                let (_, status) = self.step(&[], out, FlushCompress::Finish)?;
                if status == Status::StreamEnd {
                    break;
                }
            }
            // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1).
            let isize = total as u32;
            out.extend_from_slice(&self.crc.sum().to_le_bytes());
            out.extend_from_slice(&isize.to_le_bytes());
            Ok(())
        }

        /// One call into deflate, writing to `out`'s spare capacity; grows
        /// `out` when deflate made no progress for want of room. Returns
        /// the bytes of `input` taken.
        fn step(
            &mut self,
            input: &[u8],
            out: &mut Vec<u8>,
            flush: FlushCompress,
        ) -> io::Result<(usize, Status)> {
            if out.len() == out.capacity() {
                out.reserve(MORE);
            }
            let (in_before, out_before) = (self.deflate.total_in(), out.len());
            let status = self
                .deflate
                .compress_vec(input, out, flush)
                .map_err(io::Error::other)?;
            let read = (self.deflate.total_in() - in_before) as usize;
            if read == 0 && out.len() == out_before && status != Status::StreamEnd {
                out.reserve(MORE);
            }
            Ok((read, status))
        }
    }

    /// The most bytes a gzip member of `len` input bytes can take, whatever
    /// the level and backend: zlib's conservative `deflateBound` for raw
    /// deflate (stored blocks, or static codes at up to 9 bits a literal),
    /// plus header and trailer.
    fn bound(len: usize) -> usize {
        len.saturating_add((len >> 3) + (len >> 6) + 2)
            .saturating_add(5 + HEADER.len() + TRAILER_LEN)
    }
}

#[cfg(feature = "zstd")]
mod zst {
    use std::io;

    use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

    use super::{reserve_total, MORE};

    /// zstd level 1: as fast as 2 and 3 or faster, and as small on
    /// batches, with the smallest window (512 KiB), so the smallest
    /// context. See the figures at the top of the module.
    pub(super) const LEVEL: i32 = 1;

    /// A zstd context, its session reset per body: the parameters stay.
    pub(super) struct Zstd {
        encoder: Encoder<'static>,
        level: i32,
    }

    impl Zstd {
        pub(super) fn new(level: i32) -> Zstd {
            // Past 19, zstd's window outgrows the 8 MiB that HTTP's zstd
            // coding lets a decoder refuse beyond (RFC 9659).
            let level = level.clamp(::zstd::zstd_safe::min_c_level(), 19);
            // Creating the context and setting a level in zstd's range
            // fail only when the context cannot be allocated, which the
            // global allocator would have aborted on too.
            let encoder = Encoder::new(level).expect("a zstd context");
            Zstd { encoder, level }
        }

        pub(super) fn level(&self) -> i32 {
            self.level
        }

        pub(super) fn compress<'a>(
            &mut self,
            parts: impl IntoIterator<Item = &'a [u8]>,
            out: &mut Vec<u8>,
        ) -> io::Result<()> {
            self.encoder.reinit()?;
            let mut total = 0usize;
            reserve_total(out, bound(0));
            for part in parts {
                if part.is_empty() {
                    continue;
                }
                total = total.saturating_add(part.len());
                reserve_total(out, bound(total));
                let mut input = InBuffer::around(part);
                while input.pos() < part.len() {
                    make_room(out);
                    let pos = out.len();
                    self.encoder
                        .run(&mut input, &mut OutBuffer::around_pos(&mut *out, pos))?;
                }
            }
            loop {
                make_room(out);
                let pos = out.len();
                let left = self
                    .encoder
                    .finish(&mut OutBuffer::around_pos(&mut *out, pos), true)?;
                if left == 0 {
                    return Ok(());
                }
            }
        }
    }

    /// Grows `out` when it is full: the worst-case reservation should have
    /// left room, but zstd wants some to make progress at all.
    fn make_room(out: &mut Vec<u8>) {
        if out.len() == out.capacity() {
            out.reserve(MORE);
        }
    }

    /// The most bytes a zstd frame of `len` input bytes can take.
    fn bound(len: usize) -> usize {
        ::zstd::zstd_safe::compress_bound(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_has_no_compressor_and_no_header() {
        assert_eq!(Compression::default(), Compression::None);
        assert_eq!(Compression::None.content_encoding(), None);
        assert!(Compressor::new(Compression::None).is_none());
        #[cfg(any(feature = "gzip", feature = "zstd"))]
        assert!(Compressor::with_level(Compression::None, 3).is_none());
    }

    /// An event loop's state moves to the loop's thread.
    #[test]
    fn compressor_is_send() {
        fn send<T: Send>() {}
        send::<Compressor>();
        send::<Compression>();
    }
}

/// The checks both codecs pass, each given the codec and its decoder.
#[cfg(all(test, any(feature = "gzip", feature = "zstd")))]
mod checks {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::sample::{json_like_batch, layouts, ndjson};
    use super::*;

    pub(super) type Decode = fn(&[u8]) -> Vec<u8>;

    fn compress(c: &mut Compressor, parts: &[Vec<u8>], out: &mut Vec<u8>) {
        c.compress(parts.iter().map(Vec::as_slice), out)
            .expect("compress");
    }

    pub(super) fn round_trips_every_layout(codec: Compression, decode: Decode) {
        let mut c = Compressor::new(codec).expect("a codec");
        let mut out = Vec::new();
        for (name, parts) in layouts() {
            compress(&mut c, &parts, &mut out);
            assert_eq!(decode(&out), parts.concat(), "{name}");
        }
    }

    pub(super) fn content_encoding(codec: Compression, name: &str) {
        assert_eq!(codec.content_encoding(), Some(name));
        let c = Compressor::new(codec).expect("a codec");
        assert_eq!(c.compression(), codec);
        assert!(format!("{c:?}").contains(&format!("{codec:?}")));
    }

    /// Large, small, empty, large again: each body alone in `out`, none
    /// carrying state from the one before; the same input gives the same
    /// bytes.
    pub(super) fn one_compressor_for_many_bodies(codec: Compression, decode: Decode) {
        let mut c = Compressor::new(codec).expect("a codec");
        let mut out = Vec::new();
        let bodies = [
            ndjson(&json_like_batch(200, 1)),
            ndjson(&json_like_batch(1, 2)),
            Vec::new(),
            ndjson(&json_like_batch(200, 3)),
            ndjson(&json_like_batch(200, 1)),
        ];
        let mut first = Vec::new();
        for (i, body) in bodies.iter().enumerate() {
            compress(&mut c, body, &mut out);
            assert_eq!(decode(&out), body.concat(), "body {i}");
            if i == 0 {
                first = out.clone();
            }
        }
        assert_eq!(out, first);
    }

    /// A body left half-done (its parts' iterator panicked) does not leak
    /// into the next one.
    pub(super) fn a_body_cut_short_leaves_nothing(codec: Compression, decode: Decode) {
        let mut c = Compressor::new(codec).expect("a codec");
        let mut out = Vec::new();
        let cut = ndjson(&json_like_batch(300, 4));
        let cut_short = catch_unwind(AssertUnwindSafe(|| {
            let parts = cut.iter().enumerate().map(|(i, p)| {
                assert!(i < 500, "the framing failed");
                p.as_slice()
            });
            c.compress(parts, &mut out)
        }));
        assert!(cut_short.is_err());
        let body = ndjson(&json_like_batch(3, 5));
        compress(&mut c, &body, &mut out);
        assert_eq!(decode(&out), body.concat());
    }

    pub(super) fn json_like_batches_shrink_to_three_tenths(codec: Compression) {
        let mut c = Compressor::new(codec).expect("a codec");
        let mut out = Vec::new();
        for (n, seed) in [(500, 11), (100, 12), (20, 13)] {
            let body = ndjson(&json_like_batch(n, seed));
            let len: usize = body.iter().map(Vec::len).sum();
            compress(&mut c, &body, &mut out);
            let ratio = out.len() as f64 / len as f64;
            assert!(
                ratio <= 0.3,
                "{n} messages: {} / {len} = {ratio:.3}",
                out.len()
            );
        }
    }

    /// After a first body of a size, bodies no larger, however badly they
    /// compress, fit the buffer as it is. The first body is one part, so
    /// that `out` grows to exactly what the codec reserved for it, not to a
    /// doubling past it.
    pub(super) fn steady_state_keeps_the_buffer(codec: Compression, decode: Decode) {
        let mut c = Compressor::new(codec).expect("a codec");
        let mut out = Vec::new();
        let batch = ndjson(&json_like_batch(500, 21));
        let whole = vec![batch.concat()];
        compress(&mut c, &whole, &mut out);
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        let mut rng = fastrand::Rng::with_seed(5);
        let noise: Vec<u8> = (0..whole[0].len()).map(|_| rng.u8(..)).collect();
        let noise_in_parts: Vec<Vec<u8>> = noise.chunks(1000).map(<[u8]>::to_vec).collect();
        let small = ndjson(&json_like_batch(3, 22));
        for body in [&batch, &small, &vec![noise], &noise_in_parts, &whole] {
            compress(&mut c, body, &mut out);
            assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
            assert_eq!(decode(&out), body.concat());
        }
    }
}

#[cfg(all(test, feature = "gzip"))]
mod gzip_tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::checks;
    use super::sample::{json_like_batch, ndjson};
    use super::*;

    /// One gzip member, and nothing after it.
    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut d = GzDecoder::new(bytes);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("a valid gzip member");
        assert_eq!(d.into_inner(), &[] as &[u8], "bytes after the member");
        out
    }

    #[test]
    fn round_trips_every_layout() {
        checks::round_trips_every_layout(Compression::Gzip, gunzip);
    }

    #[test]
    fn content_encoding() {
        checks::content_encoding(Compression::Gzip, "gzip");
    }

    #[test]
    fn one_compressor_for_many_bodies() {
        checks::one_compressor_for_many_bodies(Compression::Gzip, gunzip);
    }

    #[test]
    fn a_body_cut_short_leaves_nothing() {
        checks::a_body_cut_short_leaves_nothing(Compression::Gzip, gunzip);
    }

    #[test]
    fn json_like_batches_shrink_to_three_tenths() {
        checks::json_like_batches_shrink_to_three_tenths(Compression::Gzip);
    }

    #[test]
    fn steady_state_keeps_the_buffer() {
        checks::steady_state_keeps_the_buffer(Compression::Gzip, gunzip);
    }

    #[test]
    fn round_trips_at_every_level() {
        let body = ndjson(&json_like_batch(50, 7));
        for level in 0..=9 {
            let mut c = Compressor::with_level(Compression::Gzip, level).expect("gzip");
            let mut out = Vec::new();
            c.compress(body.iter().map(Vec::as_slice), &mut out)
                .expect("compress");
            assert_eq!(gunzip(&out), body.concat(), "level {level}");
            // XFL: 4 for the fastest, 2 for the smallest, else 0.
            assert_eq!(out[8], [0, 4, 0, 0, 0, 0, 0, 0, 0, 2][level as usize]);
        }
    }

    #[test]
    fn header_and_trailer() {
        let mut c = Compressor::new(Compression::Gzip).expect("gzip");
        let parts: [&[u8]; 3] = [b"hello, ", b"", b"world\n"];
        let mut out = Vec::new();
        c.compress(parts, &mut out).expect("compress");
        // ID1 ID2 CM FLG MTIME(4), then XFL (by level: tested above), OS.
        assert_eq!(&out[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert_eq!(out[9], 255, "OS: unknown");
        let body = b"hello, world\n";
        let n = out.len();
        // The CRC-32 of this text, computed elsewhere (Python's zlib).
        assert_eq!(&out[n - 8..n - 4], &0xf424_7453_u32.to_le_bytes(), "CRC-32");
        assert_eq!(&out[n - 4..], &(body.len() as u32).to_le_bytes(), "ISIZE");
        assert_eq!(gunzip(&out), body);
    }
}

#[cfg(all(test, feature = "zstd"))]
mod zstd_tests {
    use super::checks;
    use super::*;

    /// One zstd frame, magic first.
    fn unzstd(bytes: &[u8]) -> Vec<u8> {
        assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd's magic");
        zstd::decode_all(bytes).expect("a valid zstd frame")
    }

    #[test]
    fn round_trips_every_layout() {
        checks::round_trips_every_layout(Compression::Zstd, unzstd);
    }

    #[test]
    fn content_encoding() {
        checks::content_encoding(Compression::Zstd, "zstd");
    }

    #[test]
    fn one_compressor_for_many_bodies() {
        checks::one_compressor_for_many_bodies(Compression::Zstd, unzstd);
    }

    #[test]
    fn a_body_cut_short_leaves_nothing() {
        checks::a_body_cut_short_leaves_nothing(Compression::Zstd, unzstd);
    }

    #[test]
    fn json_like_batches_shrink_to_three_tenths() {
        checks::json_like_batches_shrink_to_three_tenths(Compression::Zstd);
    }

    #[test]
    fn steady_state_keeps_the_buffer() {
        checks::steady_state_keeps_the_buffer(Compression::Zstd, unzstd);
    }
}

// The JSON-like events the tests and benches/compress.rs compress.
#[cfg(all(test, any(feature = "gzip", feature = "zstd")))]
#[path = "compress/sample.rs"]
mod sample;
