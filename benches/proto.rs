//! The sans-IO HTTP/1.1 code alone: encoding a request, decoding a
//! response, on bytes in memory.
//!
//! ```text
//! cargo bench --features internals --bench proto
//! ```
//!
//! - `encode`: the request for `http://127.0.0.1:8080/notify` with the
//!   default content type and a 64 B or 1 KiB body, into a reused buffer
//!   (the head is prebuilt per client; a request adds its
//!   `Content-Length` digits and the body).
//! - `decode`: one whole response, from the first byte to "complete": a
//!   typical `204` (with `Date` and `Server`), a `200` with a small JSON
//!   body and `Content-Length`, and a `200` with a chunked body.
//!
//! Both go through `notifier::__bench`, internals opened for benches only
//! (the `internals` feature).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use notifier::__bench::{decode_response, encode_request_into};

const RESPONSE_204: &[u8] = b"HTTP/1.1 204 No Content\r\n\
Date: Wed, 26 Nov 2025 19:00:00 GMT\r\n\
Server: nginx/1.26.2\r\n\
Connection: keep-alive\r\n\
\r\n";

const RESPONSE_200: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Wed, 26 Nov 2025 19:00:00 GMT\r\n\
Server: nginx/1.26.2\r\n\
Content-Type: application/json\r\n\
Content-Length: 16\r\n\
Connection: keep-alive\r\n\
\r\n\
{\"status\":\"ok\"}\n";

const RESPONSE_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Wed, 26 Nov 2025 19:00:00 GMT\r\n\
Content-Type: application/json\r\n\
Transfer-Encoding: chunked\r\n\
\r\n\
f\r\n{\"status\":\"ok\",\r\n\
13\r\n\"id\":\"4f2a9c1e07\"}\n\r\n\
0\r\n\
\r\n";

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    for (name, body) in [("64 B", vec![b'x'; 64]), ("1 KiB", vec![b'x'; 1024])] {
        let mut out = Vec::with_capacity(2048);
        encode_request_into(&mut out, &body);
        assert!(out.starts_with(b"POST /notify HTTP/1.1\r\n") && out.ends_with(&body));
        group.bench_function(name, |b| {
            b.iter(|| {
                encode_request_into(&mut out, black_box(&body));
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, bytes, status) in [
        ("204", RESPONSE_204, 204),
        ("200 small body", RESPONSE_200, 200),
        ("200 chunked", RESPONSE_CHUNKED, 200),
    ] {
        assert_eq!(decode_response(bytes), Some(status), "{name}");
        group.bench_function(name, |b| b.iter(|| decode_response(black_box(bytes))));
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
