//! Property tests of the sans-IO codec. Realistic responses (status line,
//! headers from a set, framing by length, chunked or close, random bodies,
//! CRLF or bare LF) decode to what they were built to say, whatever the
//! reads they arrive in; and every request the encoder writes parses back
//! (with `httparse`) as the request it was asked for.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::request::{Body, Cursor, Framing as BodyFraming, RequestEncoder};
use crate::fuzzing::{check_outcome, check_reads, response_outcome, End, Head, Outcome};
use crate::message::Message;

/// Few enough cases to keep `cargo test` fast.
const CASES: u32 = if cfg!(miri) { 8 } else { 256 };

#[derive(Debug, Clone)]
enum Framing {
    /// `204` or `304`: no body whatever the headers; maybe a misleading
    /// `Content-Length`.
    NoBody {
        misleading_length: bool,
    },
    Length,
    /// The body cut at these points into chunks, each size line with an
    /// extension or not; then trailers.
    Chunked {
        cuts: Vec<Index>,
        extensions: bool,
        upper_hex: bool,
        trailers: Vec<(String, String)>,
    },
    /// No framing: the body ends with the connection.
    Close,
}

#[derive(Debug, Clone)]
struct Response {
    http10: bool,
    interim: usize,
    status: u16,
    reason: String,
    headers: Vec<(&'static str, String)>,
    keep_alive_secs: Option<u64>,
    retry_after: Option<u64>,
    connection: Option<&'static str>,
    lower_case_names: bool,
    bare_lf: bool,
    framing: Framing,
    body: Vec<u8>,
    /// Bytes after the response (the start of a stray next one).
    extra: Vec<u8>,
}

impl Response {
    fn bytes(&self) -> Vec<u8> {
        let nl = if self.bare_lf { "\n" } else { "\r\n" };
        let mut out = String::new();
        for _ in 0..self.interim {
            out += &format!("HTTP/1.1 100 Continue{nl}{nl}");
        }
        let version = if self.http10 { "1.0" } else { "1.1" };
        out += &format!("HTTP/{version} {} {}{nl}", self.status, self.reason);
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect();
        if let Some(secs) = self.keep_alive_secs {
            headers.push(("Keep-Alive".into(), format!("timeout={secs}, max=100")));
        }
        if let Some(secs) = self.retry_after {
            headers.push(("Retry-After".into(), secs.to_string()));
        }
        if let Some(c) = self.connection {
            headers.push(("Connection".into(), c.into()));
        }
        match &self.framing {
            Framing::NoBody {
                misleading_length: true,
            } => headers.push(("Content-Length".into(), "10".into())),
            Framing::Length => headers.push(("Content-Length".into(), self.body.len().to_string())),
            Framing::Chunked { .. } => headers.push(("Transfer-Encoding".into(), "chunked".into())),
            Framing::NoBody { .. } | Framing::Close => {}
        }
        for (name, value) in headers {
            let name = if self.lower_case_names {
                name.to_ascii_lowercase()
            } else {
                name
            };
            out += &format!("{name}: {value}{nl}");
        }
        out += nl;
        let mut bytes = out.into_bytes();
        match &self.framing {
            Framing::NoBody { .. } => {}
            Framing::Length | Framing::Close => bytes.extend_from_slice(&self.body),
            Framing::Chunked {
                cuts,
                extensions,
                upper_hex,
                trailers,
            } => {
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|i| i.index(self.body.len() + 1)).collect();
                cuts.push(self.body.len());
                cuts.sort_unstable();
                cuts.dedup();
                let mut from = 0;
                for to in cuts.into_iter().filter(|&c| c > 0) {
                    let size = if *upper_hex {
                        format!("{:X}", to - from)
                    } else {
                        format!("{:x}", to - from)
                    };
                    let ext = if *extensions { ";name=value" } else { "" };
                    bytes.extend_from_slice(format!("{size}{ext}{nl}").as_bytes());
                    bytes.extend_from_slice(&self.body[from..to]);
                    bytes.extend_from_slice(nl.as_bytes());
                    from = to;
                }
                bytes.extend_from_slice(format!("0{nl}").as_bytes());
                for (name, value) in trailers {
                    bytes.extend_from_slice(format!("{name}: {value}{nl}").as_bytes());
                }
                bytes.extend_from_slice(nl.as_bytes());
            }
        }
        bytes.extend_from_slice(&self.extra);
        bytes
    }

    /// What decoding all of it, without an end of stream, must give.
    fn expected(&self) -> Outcome {
        let reuse = if self.http10 {
            self.connection == Some("keep-alive")
        } else {
            self.connection != Some("close")
        };
        let end = match self.framing {
            Framing::Close => End::NeedMore,
            _ => End::Done {
                reuse,
                leftover: self.extra.len(),
            },
        };
        Outcome {
            head: Some(Head {
                status: self.status,
                keep_alive_secs: self.keep_alive_secs,
                retry_after: self.retry_after.map(|s| format!("Seconds({s})")),
            }),
            end,
        }
    }
}

fn other_headers() -> impl Strategy<Value = Vec<(&'static str, String)>> {
    let header = prop_oneof![
        Just(("Server", "nginx/1.25.3".to_owned())),
        Just(("Date", "Wed, 21 Oct 2015 07:28:00 GMT".to_owned())),
        Just(("Content-Type", "application/json; charset=utf-8".to_owned())),
        Just(("Cache-Control", "no-store".to_owned())),
        Just(("Vary", "Accept-Encoding".to_owned())),
        "[0-9a-f]{8,32}".prop_map(|id| ("X-Request-Id", id)),
        "[ -~]{0,40}".prop_map(|v| ("X-Note", v.trim_matches(' ').to_owned())),
    ];
    vec(header, 0..6)
}

fn framing(http10: bool) -> impl Strategy<Value = Framing> {
    let chunked = (
        vec(any::<Index>(), 0..4),
        any::<bool>(),
        any::<bool>(),
        vec(("X-[A-Z][a-z]{0,8}", "[!-~]{1,12}"), 0..3),
    )
        .prop_map(|(cuts, extensions, upper_hex, trailers)| Framing::Chunked {
            cuts,
            extensions,
            upper_hex,
            trailers,
        });
    let plain = prop_oneof![
        any::<bool>().prop_map(|misleading_length| Framing::NoBody { misleading_length }),
        Just(Framing::Length),
        Just(Framing::Close),
    ];
    // HTTP/1.0 has no chunked coding (and refuses Transfer-Encoding).
    if http10 {
        plain.boxed()
    } else {
        prop_oneof![plain, chunked].boxed()
    }
}

fn status(framing: &Framing) -> BoxedStrategy<u16> {
    match framing {
        Framing::NoBody { .. } => prop_oneof![Just(204u16), Just(304)].boxed(),
        _ => prop_oneof![
            Just(200u16),
            Just(201),
            Just(202),
            Just(400),
            Just(404),
            Just(429),
            Just(500),
            Just(503),
            200u16..=599,
        ]
        .prop_filter("204 and 304 have no body", |s| *s != 204 && *s != 304)
        .boxed(),
    }
}

fn response() -> impl Strategy<Value = Response> {
    any::<bool>()
        .prop_flat_map(|http10| (Just(http10), framing(http10)))
        .prop_flat_map(|(http10, framing)| {
            let status = status(&framing);
            let extra = match framing {
                // Whatever follows is body.
                Framing::Close => Just(Vec::new()).boxed(),
                _ => prop_oneof![
                    Just(Vec::new()),
                    Just(b"HTTP/1.1 408 Request Timeout\r\n\r\n".to_vec()),
                    vec(any::<u8>(), 1..16),
                ]
                .boxed(),
            };
            (
                (Just(http10), 0..3usize, status, "[A-Z][A-Za-z ]{0,15}"),
                (
                    other_headers(),
                    proptest::option::of(0u64..100_000),
                    proptest::option::of(0u64..100_000),
                    prop_oneof![Just(None), Just(Some("close")), Just(Some("keep-alive"))],
                ),
                (any::<bool>(), any::<bool>(), Just(framing)),
                (vec(any::<u8>(), 0..300), extra),
            )
        })
        .prop_map(
            |(
                (http10, interim, status, reason),
                (headers, keep_alive_secs, retry_after, connection),
                (lower_case_names, bare_lf, framing),
                (body, extra),
            )| Response {
                http10,
                interim,
                status,
                reason,
                headers,
                keep_alive_secs,
                retry_after,
                connection,
                lower_case_names,
                bare_lf,
                body: match framing {
                    Framing::NoBody { .. } => Vec::new(),
                    _ => body,
                },
                framing,
                extra,
            },
        )
}

/// `bytes` cut at `cuts` into reads.
fn cut<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut reads = Vec::new();
    let mut from = 0;
    for to in at.into_iter().chain([bytes.len()]) {
        reads.push(&bytes[from..to]);
        from = to;
    }
    reads.retain(|r| !r.is_empty());
    reads
}

/// A header value the builder accepts and `httparse` returns unchanged:
/// visible ASCII, spaces and tabs inside, and non-ASCII (obs-text).
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[!-~é☺]([ \t!-~é]{0,30}[!-~☺])?",]
}

fn user_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}".prop_filter("reserved", |n| {
        ![
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "content-type",
        ]
        .contains(&n.to_ascii_lowercase().as_str())
    });
    vec((name, header_value()), 0..6)
}

fn encode(encoder: &RequestEncoder, body: &[u8]) -> Vec<u8> {
    let head = encoder.head(body.len(), None);
    let mut out = Vec::new();
    head.with_body(Body::Bytes(body))
        .copy_from(&Cursor::default(), &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn responses_decode_as_built_in_any_reads(
        r in response(),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let bytes = r.bytes();
        let whole = response_outcome(&[&bytes], false);
        prop_assert_eq!(&whole, &r.expected(), "{}", bytes.escape_ascii());
        let at_eof = response_outcome(&[&bytes], true);
        if matches!(r.framing, Framing::Close) {
            prop_assert_eq!(at_eof.end, End::Done { reuse: false, leftover: 0 });
        } else {
            prop_assert_eq!(at_eof, whole);
        }
        check_reads(&bytes, &cut(&bytes, &cuts));
        // Every cut next to a line ending, where the decoder's states meet.
        for i in 1..bytes.len() {
            if matches!(bytes[i - 1], b'\r' | b'\n') || matches!(bytes[i], b'\r' | b'\n') {
                let (a, b) = bytes.split_at(i);
                check_reads(&bytes, &[a, b]);
            }
        }
        check_outcome(&bytes);
    }

    #[test]
    fn any_bytes_decode_the_same_in_any_reads(
        bytes in vec(any::<u8>(), 0..200),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        check_reads(&bytes, &cut(&bytes, &cuts));
        check_outcome(&bytes);
    }

    #[test]
    fn requests_parse_back_as_given(
        target in "/[A-Za-z0-9/._~%!$&'()*+,;=:@?-]{0,40}",
        authority in "[a-z0-9][a-z0-9.-]{0,20}(:[1-9][0-9]{0,4})?",
        content_type in prop_oneof![
            Just(crate::DEFAULT_CONTENT_TYPE.to_owned()),
            Just("application/json".to_owned()),
            "[a-z]{1,10}/[a-z0-9.+-]{1,10}(; charset=utf-8)?",
        ],
        headers in user_headers(),
        body in vec(any::<u8>(), 0..512),
    ) {
        let encoder = RequestEncoder::new(&target, &authority, &content_type, None, &headers);
        let bytes = encode(&encoder, &body);
        let mut parsed = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut parsed);
        let len = match request.parse(&bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}: {}", bytes.escape_ascii()),
        };
        prop_assert_eq!(request.method, Some("POST"));
        prop_assert_eq!(request.path, Some(target.as_str()));
        prop_assert_eq!(request.version, Some(1));
        let got: Vec<(&str, &[u8])> = request.headers.iter().map(|h| (h.name, h.value)).collect();
        let length = body.len().to_string();
        let mut want: Vec<(&str, &[u8])> = vec![
            ("Host", authority.as_bytes()),
            ("Content-Type", content_type.as_bytes()),
        ];
        want.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        want.push(("Content-Length", length.as_bytes()));
        prop_assert_eq!(got, want);
        prop_assert_eq!(&bytes[len..], &body[..]);
    }

    #[test]
    fn a_framed_batch_is_written_whole_in_any_write_sizes(
        prefix in vec(any::<u8>(), 0..3),
        separator in vec(any::<u8>(), 0..3),
        suffix in vec(any::<u8>(), 0..3),
        msgs in vec(vec(any::<u8>(), 0..40), 1..40),
        budgets in vec(1usize..8, 1..16),
        takes in vec(any::<Index>(), 1..16),
    ) {
        let framing = BodyFraming {
            prefix: prefix.clone().into(),
            separator: separator.clone().into(),
            suffix: suffix.clone().into(),
        };
        let msgs: Vec<Message> = msgs.into_iter().map(Message::from).collect();
        let mut body = prefix.clone();
        for (i, m) in msgs.iter().enumerate() {
            if i > 0 {
                body.extend_from_slice(&separator);
            }
            body.extend_from_slice(m);
        }
        body.extend_from_slice(&suffix);
        let len: usize = (0..msgs.len()).map(|n| framing.added(n, msgs[n].len())).sum();
        prop_assert_eq!(len, body.len());

        let encoder = RequestEncoder::new("/", "h", "text/plain", None, &[]);
        let head = encoder.head(len, None);
        let request = head.with_body(Body::Framed(&framing, &msgs));
        let mut want = Vec::new();
        head.with_body(Body::Bytes(&body)).copy_from(&Cursor::default(), &mut want);
        prop_assert_eq!(request.len(), want.len());

        // A socket taking a few slices at a time, and only part of them.
        let mut cursor = Cursor::default();
        let mut got = Vec::new();
        let mut turn = 0;
        while !request.is_done(&cursor) {
            prop_assert!(turn < 10_000, "no progress");
            let mut slices = [std::io::IoSlice::new(&[]); 8];
            let budget = budgets[turn % budgets.len()];
            let n = request.slices(&cursor, &mut slices[..budget]);
            prop_assert!(n > 0);
            let offered: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let k = takes[turn % takes.len()].index(offered.len() + 1).max(1).min(offered.len());
            got.extend_from_slice(&offered[..k]);
            request.advance(&mut cursor, k);
            turn += 1;
        }
        prop_assert_eq!(cursor.written(), want.len());
        prop_assert_eq!(got, want);
    }
}
