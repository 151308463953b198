//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`) through
//! the same code the fuzz targets run, on stable, so `cargo test` covers
//! whatever fuzzing found and kept. Response inputs are also read in fixed
//! splits: a byte at a time, in halves and in thirds.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

/// `bytes` a byte at a time, in halves, and in thirds.
fn fixed_splits(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let n = bytes.len();
    vec![
        bytes.chunks(1).collect(),
        vec![&bytes[..n / 2], &bytes[n / 2..]],
        vec![
            &bytes[..n / 3],
            &bytes[n / 3..2 * n / 3],
            &bytes[2 * n / 3..],
        ],
    ]
}

/// Runs `check` on each file, naming the file when it panics.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)));
        if let Err(panic) = result {
            eprintln!("corpus file {} failed", path.display());
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn response_corpus() {
    replay("response", |data| {
        fuzz_response(data);
        let (_, payload) = split_input(data);
        for reads in fixed_splits(payload) {
            check_reads(payload, &reads);
        }
    });
}

#[test]
fn chunked_corpus() {
    replay("chunked", |data| {
        fuzz_chunked(data);
        let (_, body) = split_input(data);
        let bytes = [CHUNKED_HEAD, body].concat();
        for reads in fixed_splits(&bytes) {
            check_reads(&bytes, &reads);
        }
    });
}

#[test]
fn endpoint_corpus() {
    replay("endpoint", fuzz_endpoint);
}

/// The named response inputs decode to what their names say, so a change
/// in the decoder that turns one into a different case does not go
/// unnoticed.
#[test]
fn response_inputs_decode_as_named() {
    let expect: &[(&str, Option<u16>, End)] = &[
        ("204-no-content", Some(204), done(true)),
        ("200-content-length", Some(200), done(true)),
        ("200-chunked-extensions-trailers", Some(200), done(true)),
        ("interim-100-102-then-201", Some(201), done(true)),
        ("http10-keep-alive", Some(200), done(true)),
        ("http10-no-keep-alive", Some(200), done(false)),
        ("503-close-retry-after", Some(503), done(false)),
        ("chunked-and-content-length", Some(200), done(false)),
        ("close-delimited", Some(200), End::NeedMore),
        (
            "response-then-stray-408",
            Some(200),
            End::Done {
                reuse: true,
                leftover: 32,
            },
        ),
        (
            "conflicting-content-length",
            None,
            End::Failed(ProtocolError::BadContentLength),
        ),
        (
            "eleven-interim",
            None,
            End::Failed(ProtocolError::TooManyInterim),
        ),
        ("leading-blank-lines", Some(204), done(true)),
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/response");
    for (name, status, end) in expect {
        let data = fs::read(dir.join(name)).expect(name);
        let (_, payload) = split_input(&data);
        let outcome = response_outcome(&[payload], false);
        assert_eq!(outcome.head.map(|h| h.status), *status, "{name}");
        assert_eq!(&outcome.end, end, "{name}");
    }
}

fn done(reuse: bool) -> End {
    End::Done { reuse, leftover: 0 }
}

/// Likewise the named endpoint inputs.
#[test]
fn endpoint_inputs_parse_as_named() {
    for (name, expect) in [
        (
            "ipv4-port-query",
            Ok("http host=ip:127.0.0.1 port=8080 authority=127.0.0.1:8080 target=/hook?x=1"),
        ),
        (
            "upper-case-fragment",
            Ok("https host=name:example.com port=8443 authority=Example.COM:8443 target=/p?q"),
        ),
        (
            "ipv6-empty-port",
            Ok("http host=ip::: port=80 authority=[::] target=/"),
        ),
        ("userinfo", Err("userinfo")),
        ("port-zero", Err("invalid port")),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/endpoint")
            .join(name);
        let url = fs::read_to_string(&path).expect(name);
        match (endpoint(&url), expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
            (got, want) => panic!("{name}: got {got:?}, expected {want:?}"),
        }
    }
}
