use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Done { reuse: bool, leftover: usize },
    Failed(ProtocolError),
    NeedMore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    heads: Vec<Head>,
    end: End,
}

/// Feeds `pieces` one after the other the way the connection does: keeping
/// unconsumed bytes, appending the next read. `eof` reports end of stream
/// after the last piece.
fn feed(pieces: &[&[u8]], eof: bool) -> Outcome {
    let mut dec = ResponseDecoder::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut heads = Vec::new();
    for (k, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        loop {
            let (n, step) = match dec.decode(&buf) {
                Ok(r) => r,
                Err(e) => {
                    return Outcome {
                        heads,
                        end: End::Failed(e),
                    }
                }
            };
            assert!(n <= buf.len());
            buf.drain(..n);
            match step {
                Step::NeedMore => break,
                Step::Head(h) => heads.push(h),
                Step::Done { reuse } => {
                    let rest: usize = pieces[k + 1..].iter().map(|p| p.len()).sum();
                    return Outcome {
                        heads,
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
        match dec.eof() {
            Ok(Step::Done { reuse }) => End::Done {
                reuse,
                leftover: buf.len(),
            },
            Ok(step) => panic!("eof gave {step:?}"),
            Err(e) => End::Failed(e),
        }
    } else {
        End::NeedMore
    };
    Outcome { heads, end }
}

fn whole(bytes: &[u8]) -> Outcome {
    feed(&[bytes], false)
}

fn whole_then_eof(bytes: &[u8]) -> Outcome {
    feed(&[bytes], true)
}

fn status(o: &Outcome) -> Option<u16> {
    o.heads.last().map(|h| h.status)
}

fn done(reuse: bool) -> End {
    End::Done { reuse, leftover: 0 }
}

const SAMPLES: &[&[u8]] = &[
    b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
      5;name=value;other\r\nhello\r\n6 ; ext\r\n world\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n\
      HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
    b"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n",
];

#[test]
fn samples_decode_to_the_expected_outcome() {
    let expect = [
        (204, done(true)),
        (200, done(true)),
        (200, done(true)),
        (201, done(true)),
        (200, done(true)),
        (503, done(false)),
        (200, done(true)),
        (200, done(true)),
    ];
    for (sample, (code, end)) in SAMPLES.iter().zip(expect) {
        let o = whole(sample);
        assert_eq!(status(&o), Some(code), "{}", sample.escape_ascii());
        assert_eq!(o.end, end, "{}", sample.escape_ascii());
        assert_eq!(o.heads.len(), 1);
    }
}

#[test]
fn every_split_point_gives_the_same_outcome() {
    for sample in SAMPLES {
        let expected = whole(sample);
        for i in 0..=sample.len() {
            let (a, b) = sample.split_at(i);
            assert_eq!(
                feed(&[a, b], false),
                expected,
                "split at {i}: {}",
                sample.escape_ascii()
            );
        }
        for i in 0..sample.len() {
            for j in i..=sample.len() {
                let parts = [&sample[..i], &sample[i..j], &sample[j..]];
                assert_eq!(feed(&parts, false), expected, "split at {i},{j}");
            }
        }
        let bytes: Vec<&[u8]> = sample.chunks(1).collect();
        assert_eq!(feed(&bytes, false), expected, "one byte at a time");
    }
}

#[test]
fn every_truncated_prefix_is_incomplete_and_fails_at_eof() {
    for sample in SAMPLES {
        for i in 0..sample.len() {
            let prefix = &sample[..i];
            let o = whole(prefix);
            assert_eq!(
                o.end,
                End::NeedMore,
                "prefix {i}: {}",
                prefix.escape_ascii()
            );
            assert_eq!(
                whole_then_eof(prefix).end,
                End::Failed(ProtocolError::Truncated),
                "prefix {i} then EOF: {}",
                prefix.escape_ascii()
            );
        }
    }
}

#[test]
fn leftover_bytes_after_a_response_are_not_consumed() {
    let stray = b"HTTP/1.1 408 Request Timeout\r\n\r\n";
    let bytes = [SAMPLES[1], stray].concat();
    assert_eq!(
        whole(&bytes).end,
        End::Done {
            reuse: true,
            leftover: stray.len()
        }
    );
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let r = b"HTTP/1.1 200 OK\r\n\r\nsome body";
    assert_eq!(whole(r).end, End::NeedMore);
    assert_eq!(whole_then_eof(r).end, done(false));
    for i in 0..r.len() {
        let (a, b) = r.split_at(i);
        assert_eq!(feed(&[a, b], true), whole_then_eof(r));
    }
}

#[test]
fn no_body_for_204_and_304_whatever_the_headers() {
    for r in [
        &b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(whole(r).end, done(true), "{}", r.escape_ascii());
    }
}

#[test]
fn chunked_wins_over_content_length_and_closes() {
    let r =
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(whole(r).end, done(false));
}

#[test]
fn transfer_encoding_not_ending_in_chunked_reads_to_close() {
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nabc";
    assert_eq!(whole(r).end, End::NeedMore);
    assert_eq!(whole_then_eof(r).end, done(false));
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(whole(r).end, done(true));
}

#[test]
fn no_framing_reads_to_close() {
    let r = b"HTTP/1.1 500 Oops\r\n\r\nerror text";
    assert_eq!(status(&whole(r)), Some(500));
    assert_eq!(whole_then_eof(r).end, done(false));
}

#[test]
fn http10_is_closed_unless_it_asks_for_keep_alive() {
    assert_eq!(
        whole(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").end,
        done(false)
    );
    assert_eq!(
        whole(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").end,
        done(true)
    );
    assert_eq!(
        whole(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n").end,
        done(false)
    );
}

#[test]
fn keep_alive_timeout_hint_is_reported() {
    let o = whole(b"HTTP/1.1 204 No Content\r\nKeep-Alive: max=100, Timeout=5\r\n\r\n");
    assert_eq!(o.heads[0].keep_alive_secs, Some(5));
    let o = whole(b"HTTP/1.1 204 No Content\r\nKeep-Alive: timeout=x\r\n\r\n");
    assert_eq!(o.heads[0].keep_alive_secs, None);
}

#[test]
fn repeated_equal_content_lengths_are_fine() {
    for r in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    ] {
        assert_eq!(whole(r).end, done(true), "{}", r.escape_ascii());
    }
}

fn fails(r: &[u8], e: ProtocolError) {
    assert_eq!(whole(r).end, End::Failed(e.clone()), "{}", r.escape_ascii());
    // The same failure whatever the reads look like.
    let bytes: Vec<&[u8]> = r.chunks(1).collect();
    assert_eq!(feed(&bytes, false).end, End::Failed(e), "byte at a time");
}

#[test]
fn protocol_failures() {
    use ProtocolError::*;
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        BadContentLength,
    );
    fails(
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        TransferEncodingInHttp10,
    );
    fails(
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        UnexpectedSwitchingProtocols,
    );
    fails(b"HTTP/1.1 099 Low\r\n\r\n", BadStatus(99));
    fails(b"HTTP/1.1 600 High\r\n\r\n", BadStatus(600));
    fails(
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        MalformedHead("invalid header name"),
    );
    fails(
        b"HTTP/2 200 OK\r\n\r\n",
        MalformedHead("not an HTTP/1.x status line"),
    );
    fails(
        b"<html>hello</html>\n\n",
        MalformedHead("not an HTTP/1.x status line"),
    );
    fails(
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        MalformedHead("invalid status code"),
    );
    let mut eleven = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(11);
    eleven.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    fails(&eleven, TooManyInterim);
    let mut ten = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(10);
    ten.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(whole(&ten).end, done(true));
}

#[test]
fn header_limits() {
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(whole(&many).end, End::Failed(ProtocolError::TooManyHeaders));

    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() < MAX_HEAD + 10 {
        big.extend_from_slice(b"X-Big: 0123456789012345678901234567890123456789\r\n");
    }
    // Without the blank line: the limit is hit before the head ends.
    assert_eq!(whole(&big).end, End::Failed(ProtocolError::HeadTooLarge));
    big.extend_from_slice(b"\r\n");
    assert_eq!(whole(&big).end, End::Failed(ProtocolError::HeadTooLarge));
}

#[test]
fn chunk_failures() {
    use ProtocolError::*;
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let with = |body: &[u8]| [head.as_slice(), body].concat();
    fails(&with(b"zz\r\n"), BadChunkSize);
    fails(&with(b"\r\n"), BadChunkSize);
    fails(&with(b";ext\r\n"), BadChunkSize);
    fails(&with(b"1x\r\n"), BadChunkSize);
    fails(&with(b"10000000000000000\r\n"), BadChunkSize);
    fails(&with(b"3\r\nabcX"), BadChunkEnd);
    fails(&with(b"3\r\nabc\rX"), BadChunkEnd);
    fails(&with(b"0\r\n\rX"), BadChunkEnd);
    fails(&with(b"1 x\r\n"), BadChunkSize);
    fails(&with(b"1\rx"), BadChunkSize);
    let long_ext = [b"1;".as_slice(), &[b'e'; MAX_CHUNK_META + 1]].concat();
    fails(&with(&long_ext), ChunkMetadataTooLarge);
    let long_trailer = [b"0\r\nX: ".as_slice(), &[b't'; MAX_CHUNK_META]].concat();
    fails(&with(&long_trailer), ChunkMetadataTooLarge);
    assert_eq!(
        whole(&with(b"FFFFFFFFFFFFFFF\r\n")).end,
        End::NeedMore,
        "a large chunk size is fine until the body limit"
    );
}

#[test]
fn body_limit_applies_to_every_framing() {
    let over = vec![b'x'; MAX_BODY as usize + 1];
    let exact = vec![b'x'; MAX_BODY as usize];
    let length = |n: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    assert_eq!(
        whole(&[length(exact.len()), exact.clone()].concat()).end,
        done(true)
    );
    let o = whole(&[length(over.len()), over.clone()].concat());
    assert_eq!(o.end, End::Failed(ProtocolError::BodyTooLarge));
    assert_eq!(
        status(&o),
        Some(200),
        "the head was decoded before the failure"
    );

    let close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    assert_eq!(
        whole(&[close, over.clone()].concat()).end,
        End::Failed(ProtocolError::BodyTooLarge)
    );

    let chunked = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        over.len()
    )
    .into_bytes();
    assert_eq!(
        whole(&[chunked, over].concat()).end,
        End::Failed(ProtocolError::BodyTooLarge)
    );
}

#[test]
fn started_tracks_any_response_byte() {
    let mut d = ResponseDecoder::default();
    assert!(!d.started());
    assert_eq!(d.decode(b"").unwrap(), (0, Step::NeedMore));
    assert!(!d.started());
    assert_eq!(d.decode(b"H").unwrap(), (0, Step::NeedMore));
    assert!(d.started() && !d.has_head());
}

/// One call skips interim heads: it returns the final head, or `NeedMore`
/// with only an incomplete head left, never `NeedMore` with a head it could
/// still decode.
#[test]
fn interim_heads_are_skipped_within_one_call() {
    let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n";
    let last = b"HTTP/1.1 204 No Content\r\n\r\n";
    let bytes = [&interim[..], last].concat();
    let mut d = ResponseDecoder::default();
    let (used, step) = d.decode(&bytes).unwrap();
    assert_eq!(used, bytes.len());
    assert!(
        matches!(step, Step::Head(Head { status: 204, .. })),
        "{step:?}"
    );
    assert_eq!(d.decode(b"").unwrap(), (0, Step::Done { reuse: true }));

    // The final head cut short: the interim ones are consumed, the rest
    // waits for more bytes.
    let cut = &bytes[..bytes.len() - 3];
    let mut d = ResponseDecoder::default();
    assert_eq!(d.decode(cut).unwrap(), (interim.len(), Step::NeedMore));
    assert!(!d.has_head());
    let rest = &cut[interim.len()..];
    assert_eq!(d.decode(rest).unwrap(), (0, Step::NeedMore));
    let (used, step) = d.decode(&bytes[interim.len()..]).unwrap();
    assert_eq!(used, last.len());
    assert!(
        matches!(step, Step::Head(Head { status: 204, .. })),
        "{step:?}"
    );

    // Interim heads alone: all consumed.
    let mut d = ResponseDecoder::default();
    assert_eq!(d.decode(interim).unwrap(), (interim.len(), Step::NeedMore));
}

#[test]
fn retry_after_is_reported_and_bad_values_ignored() {
    let o = whole(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(o.heads[0].retry_after, Some(RetryAfter::Seconds(7)));
    let o = whole(b"HTTP/1.1 503 Busy\r\nRetry-After: soon\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(o.heads[0].retry_after, None);
    let o = whole(
        b"HTTP/1.1 503 Busy\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(matches!(o.heads[0].retry_after, Some(RetryAfter::Date(_))));
}

/// Found by the `response` fuzz target: httparse skips empty lines before a
/// status line, so a blank line among them must not count as the end of a
/// head. It did, and the outcome then depended on how the bytes were split:
/// read whole, a bad status line after the empty lines failed at once;
/// read in pieces, the decoder waited for a head end that never came.
#[test]
fn empty_lines_before_the_status_line_are_not_a_head_end() {
    use ProtocolError::*;
    // The fuzzer's input: no head ends after the empty lines.
    let bad = b"\r\n\r\n5;not a status line\r\nX: 2\n\r-\r\nok".to_vec();
    assert_eq!(whole(&bad).end, End::NeedMore);
    let bytes: Vec<&[u8]> = bad.chunks(1).collect();
    assert_eq!(feed(&bytes, false).end, End::NeedMore, "byte at a time");
    // Once one does, the bad status line fails, however it was read.
    let ended = [bad.as_slice(), b"\r\n\r\n"].concat();
    fails(&ended, MalformedHead("not an HTTP/1.x status line"));

    let good = b"\r\n\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(whole(good).end, done(true));
    for i in 0..=good.len() {
        let (a, b) = good.split_at(i);
        assert_eq!(feed(&[a, b], false), whole(good), "split at {i}");
    }
    // Empty lines alone are no head, however many; they count toward the
    // head limit.
    assert_eq!(whole(&b"\r\n".repeat(100)).end, End::NeedMore);
    assert_eq!(
        whole(&b"\r\n".repeat(MAX_HEAD / 2)).end,
        End::Failed(HeadTooLarge)
    );
}

/// Found in the audit: leading zeros of a chunk size and the whitespace
/// after it counted toward no limit, so a server could keep the client
/// reading one endless size line (and, past 2³² zeros, overflow the digit
/// count: a panic in debug builds). They count as chunk metadata now.
#[test]
fn chunk_size_lines_are_bounded() {
    use ProtocolError::*;
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let zeros = [head.as_slice(), &[b'0'; 16 + MAX_CHUNK_META + 1]].concat();
    assert_eq!(whole(&zeros).end, End::Failed(ChunkMetadataTooLarge));
    let spaces = [head.as_slice(), b"1", &[b' '; MAX_CHUNK_META + 1]].concat();
    assert_eq!(whole(&spaces).end, End::Failed(ChunkMetadataTooLarge));
    let tabs = [head.as_slice(), b"1", &[b'\t'; MAX_CHUNK_META + 1]].concat();
    assert_eq!(whole(&tabs).end, End::Failed(ChunkMetadataTooLarge));

    // Sixteen digits, the most a u64 needs, are free; so is a little
    // padding, and leading zeros up to the metadata limit.
    let sixteen = [head.as_slice(), b"0000000000000001 \t\r\nx\r\n0\r\n\r\n"].concat();
    assert_eq!(whole(&sixteen).end, done(true));
    let padded = [
        head.as_slice(),
        &[b'0'; 1000],
        b"1\r\nx\r\n",
        &[b'0'; 1000],
        b"\r\n\r\n",
    ]
    .concat();
    assert_eq!(whole(&padded).end, done(true));
}
