//! Compression: each body compressed once, sent with `Content-Encoding`,
//! its retries sending the same compressed bytes; with batching and
//! without. Built with the `gzip` or `zstd` feature (CI runs both).

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use notifier::{BatchConfig, Builder, Client, Compression};

use crate::support::{
    assert_each_body_once, build, msg, notify_all, quick_retry, response, started, Action, Request,
    Server,
};

/// A codec this build has: the setting, its `Content-Encoding`, a decoder.
struct Codec {
    compression: Compression,
    encoding: &'static str,
    decode: fn(&[u8]) -> Vec<u8>,
}

/// Every codec this build has.
fn codecs() -> Vec<Codec> {
    let mut codecs = Vec::new();
    #[cfg(feature = "gzip")]
    codecs.push(Codec {
        compression: Compression::Gzip,
        encoding: "gzip",
        decode: |body| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a gzip body");
            out
        },
    });
    #[cfg(feature = "zstd")]
    codecs.push(Codec {
        compression: Compression::Zstd,
        encoding: "zstd",
        decode: |body| {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(body)
                .expect("a zstd decoder")
                .read_to_end(&mut out)
                .expect("a zstd body");
            out
        },
    });
    codecs
}

/// The body as sent, checked to say `encoding`, decoded.
fn decoded(r: &Request, codec: &Codec) -> Vec<u8> {
    assert_eq!(r.header("Content-Encoding"), Some(codec.encoding), "{r:?}");
    assert_eq!(r.header_count("Content-Encoding"), 1);
    (codec.decode)(&r.body)
}

/// A JSON-like event of about 1 KiB, as a telemetry or trading system
/// sends: fixed keys, values that vary (drawn from a generator seeded by
/// `i`, so that an event is the same whenever it is made).
fn event(i: usize) -> String {
    let mut state = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut s = format!(r#"{{"id":{i},"source":"pricing-engine","kind":"quote","fields":["#);
    while s.len() < 1000 {
        let r = next();
        s.push_str(&format!(
            r#"{{"name":"f{}","value":{}.{:02},"trace":"{:08x}"}},"#,
            r % 40,
            (r >> 8) % 100_000,
            (r >> 32) % 100,
            (r >> 40) as u32
        ));
    }
    s.push_str("{}]}");
    s
}

#[test]
fn batches_are_compressed_and_decode_to_their_framed_bodies() {
    const N: usize = 2000;
    for codec in codecs() {
        let (compression, encoding) = (codec.compression, codec.encoding);
        let server = Server::no_content();
        let (client, failures) = started(
            Client::builder(&server.url())
                .batch(BatchConfig::ndjson())
                .compression(compression),
        );
        for i in 0..N {
            crate::support::notify_retrying(&client, event(i));
        }
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        let (mut wire, mut plain) = (0, 0);
        let mut seen = vec![0; N];
        for r in &requests {
            assert_eq!(r.header("Content-Type"), Some("application/x-ndjson"));
            let body = decoded(r, &codec);
            wire += r.body.len();
            plain += body.len();
            assert_eq!(body.last(), Some(&b'\n'));
            for line in body[..body.len() - 1].split(|&b| b == b'\n') {
                let text = std::str::from_utf8(line).expect("text");
                let id: usize = text["{\"id\":".len()..text.find(',').expect("a comma")]
                    .parse()
                    .expect("an id");
                assert_eq!(text, event(id), "{encoding}: a message changed");
                seen[id] += 1;
            }
        }
        assert!(
            seen.iter().all(|&n| n == 1),
            "{encoding}: each message once"
        );
        let stats = client.stats();
        assert_eq!(stats.delivered, N as u64, "{stats:?}");
        // Batches of these messages compress well below a third; a few
        // small ones, formed while the queue was nearly empty, do not.
        let ratio = wire as f64 / plain as f64;
        eprintln!(
            "{encoding}: {wire} bytes on the wire for {plain} ({ratio:.3}), {} requests",
            requests.len()
        );
        assert!(ratio <= 0.3, "{encoding}: ratio {ratio:.3}");
    }
}

#[test]
fn without_batching_each_message_is_compressed_alone() {
    const N: usize = 200;
    for codec in codecs() {
        let server = Server::no_content();
        let (client, failures) =
            started(Client::builder(&server.url()).compression(codec.compression));
        notify_all(&client, 0..N);
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        assert_eq!(requests.len(), N, "one request per message");
        let bodies: Vec<Vec<u8>> = requests.iter().map(|r| decoded(r, &codec)).collect();
        assert_each_body_once(bodies.iter().map(|b| &b[..]), N);
    }
}

#[test]
fn a_retried_batch_sends_the_same_compressed_bytes() {
    for codec in codecs() {
        let (compression, encoding) = (codec.compression, codec.encoding);
        // The first two requests are refused with a 503, the third taken.
        let seen = Arc::new(AtomicUsize::new(0));
        let server = {
            let seen = Arc::clone(&seen);
            Server::start(move |_, _| {
                if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    Action::Reply(response(503, "Service Unavailable", &[], b""))
                } else {
                    Action::no_content()
                }
            })
        };
        let builder: Builder = Client::builder(&server.url())
            .workers(1)
            .retry(quick_retry(3))
            .batch(
                BatchConfig::json_array()
                    .max_messages(5)
                    .linger(std::time::Duration::from_secs(30)),
            )
            .compression(compression);
        let (client, failures) = started(builder);
        notify_all(&client, 0..5);
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        assert_eq!(requests.len(), 3, "{encoding}");
        for r in &requests[1..] {
            assert_eq!(
                r.body, requests[0].body,
                "{encoding}: a retry re-compressed"
            );
            assert_eq!(
                r.header("Content-Length"),
                requests[0].header("Content-Length")
            );
        }
        let want: Vec<u8> =
            format!("[{}]", (0..5).map(msg).collect::<Vec<_>>().join(",")).into_bytes();
        assert_eq!(decoded(&requests[0], &codec), want, "{encoding}");
        assert_eq!(
            client.stats().retried,
            10,
            "{encoding}: 2 retries of 5 messages"
        );
    }
}

#[test]
fn a_content_encoding_header_of_the_callers_is_refused_when_compressing() {
    for Codec { compression, .. } in codecs() {
        let refused = build(
            Client::builder("http://127.0.0.1:9/")
                .compression(compression)
                .header("content-encoding", "br"),
        );
        assert!(
            matches!(refused, Err(notifier::BuildError::InvalidHeader(_))),
            "{refused:?}"
        );
    }
    // Without compression it is the caller's to send.
    assert!(
        build(Client::builder("http://127.0.0.1:9/").header("Content-Encoding", "identity"))
            .is_ok()
    );
}
