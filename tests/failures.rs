//! Failed deliveries: non-2xx statuses, timeouts, refused connections,
//! responses that break HTTP/1.1 — each reaches the error handler with the
//! right kind, and the client goes on delivering afterwards. Also the
//! configurations `build` must refuse.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use notifier::{BuildError, Client, FailureKind};
use support::{response, Action, Failure, Failures, Server};

const LONG: Duration = Duration::from_secs(60);

/// A one-slot client for `url` reporting into `failures`.
fn client(url: &str, failures: &Failures) -> Client {
    Client::builder(url)
        .workers(1)
        .error_handler(failures.handler())
        .build()
        .expect("build")
}

fn assert_single_failure(failures: &Failures, kind: FailureKind, message: &[u8]) -> Failure {
    let mut all = failures.take();
    assert_eq!(all.len(), 1, "expected one failure, got {all:?}");
    let failure = all.pop().unwrap();
    assert_eq!(failure.error.kind(), kind, "{}", failure.error);
    assert_eq!(failure.error.message(), message);
    assert_eq!(failure.error.attempts(), 1);
    failure
}

#[test]
fn non_2xx_statuses_reach_the_handler() {
    let server = Server::start(|request, _| {
        let status: u16 = std::str::from_utf8(&request.body).unwrap().parse().unwrap();
        Action::Reply(response(
            status,
            "Status",
            &[("Location", "/elsewhere")],
            b"why",
        ))
    });
    let failures = Failures::new();
    let client = client(&server.url(), &failures);
    client.start();
    let cases = [
        (500, true),
        (503, true),
        (404, false),
        (400, false),
        (301, false),
    ];
    for (status, _) in cases {
        client.notify(status.to_string()).expect("notify");
    }
    client.notify("204").expect("notify");
    client.stop();

    let got = failures.take();
    assert_eq!(got.len(), cases.len(), "{got:?}");
    for ((status, retryable), failure) in cases.iter().zip(&got) {
        let error = &failure.error;
        assert_eq!(error.kind(), FailureKind::Status, "{error}");
        assert_eq!(error.status_code(), Some(*status));
        assert_eq!(error.is_retryable(), *retryable, "status {status}");
        assert_eq!(error.attempts(), 1);
        assert_eq!(error.message(), status.to_string().as_bytes());
    }
    let stats = client.stats();
    assert_eq!(stats.failed, cases.len() as u64);
    assert_eq!(stats.delivered, 1);
    assert_eq!(
        server.connections(),
        1,
        "a status answer closed the connection"
    );
}

#[test]
fn into_message_hands_back_the_bytes() {
    let server = Server::start(|_, _| Action::Reply(response(500, "Oops", &[], b"")));
    let failures = Failures::new();
    let client = client(&server.url(), &failures);
    client.start();
    client.notify(vec![1u8, 2, 3]).expect("notify");
    client.stop();
    let failure = assert_single_failure(&failures, FailureKind::Status, &[1, 2, 3]);
    assert_eq!(failure.error.into_message().into_vec(), vec![1u8, 2, 3]);
}

#[test]
fn stalled_server_times_out() {
    let timeout = Duration::from_millis(300);
    let server = Server::stalled();
    let failures = Failures::new();
    let client = Client::builder(&server.url())
        .workers(1)
        .timeout(timeout)
        .error_handler(failures.handler())
        .build()
        .expect("build");
    client.start();
    let sent = Instant::now();
    client.notify("slow").expect("notify");
    assert!(failures.wait_for(1, LONG), "no timeout reported");
    let failure = assert_single_failure(&failures, FailureKind::Timeout, b"slow");
    let waited = failure.at.duration_since(sent);
    assert!(
        waited >= timeout,
        "timed out after {waited:?}, before {timeout:?}"
    );
    assert!(failure.error.is_retryable());
    assert_eq!(failure.error.status_code(), None);
    client.stop();
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.failed, stats.delivered), (1, 1, 0));
}

#[test]
fn refused_connection_is_a_connect_failure() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().unwrap().port()
    };
    let failures = Failures::new();
    let client = client(&format!("http://127.0.0.1:{port}/"), &failures);
    client.start();
    client.notify("nobody home").expect("notify");
    client.stop();
    let failure = assert_single_failure(&failures, FailureKind::Connect, b"nobody home");
    assert!(failure.error.is_retryable());
    assert_eq!(failure.error.status_code(), None);
}

/// A stream of messages to a closed port: each attempt ends with Connect
/// and its slot goes on to the next message; none is left waiting.
#[test]
fn every_message_to_a_refused_port_fails_fast() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().unwrap().port()
    };
    let failures = Failures::new();
    let client = Client::builder(&format!("http://127.0.0.1:{port}/"))
        .workers(2)
        .queue_size(10)
        .error_handler(failures.handler())
        .build()
        .expect("build");
    client.start();
    for i in 0..500 {
        support::notify_retrying(&client, support::msg(i));
    }
    assert!(client.flush(LONG), "refused messages were left waiting");
    client.stop();
    let all = failures.take();
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|f| f.error.kind() == FailureKind::Connect));
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.failed), (500, 500));
}

#[test]
fn close_without_answer_is_an_io_failure() {
    let server = Server::start(|_, info| {
        if info.total == 0 {
            Action::Close
        } else {
            Action::no_content()
        }
    });
    let failures = Failures::new();
    let client = client(&server.url(), &failures);
    client.start();
    client.notify("dropped").expect("notify");
    assert!(failures.wait_for(1, LONG));
    client.notify("next").expect("notify");
    client.stop();
    let failure = assert_single_failure(&failures, FailureKind::Io, b"dropped");
    assert!(failure.error.is_retryable());
    assert_eq!(client.stats().delivered, 1);
    assert_eq!(server.requests().last().unwrap().body, b"next");
}

/// Answers the first request with `bad`, later ones with 204; checks that the
/// first fails with `Protocol` and the second is delivered on a new connection.
fn assert_protocol_failure_then_recovery(bad: Vec<u8>) {
    let server = Server::start(move |_, info| {
        if info.total == 0 {
            Action::Reply(bad.clone())
        } else {
            Action::no_content()
        }
    });
    let failures = Failures::new();
    let client = client(&server.url(), &failures);
    client.start();
    client.notify("first").expect("notify");
    assert!(failures.wait_for(1, LONG), "no failure reported");
    client.notify("second").expect("notify");
    client.stop();

    let failure = assert_single_failure(&failures, FailureKind::Protocol, b"first");
    assert_eq!(failure.error.status_code(), None);
    assert!(failure.error.is_retryable());
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (2, 1, 1));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body, b"second");
    assert_eq!(requests[1].conn, 1, "the broken connection was reused");
}

#[test]
fn garbage_status_line_is_a_protocol_failure() {
    assert_protocol_failure_then_recovery(b"HELLO THERE\r\nX: y\r\n\r\n".to_vec());
}

#[test]
fn status_out_of_range_is_a_protocol_failure() {
    assert_protocol_failure_then_recovery(
        b"HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
}

#[test]
fn conflicting_content_lengths_are_a_protocol_failure() {
    assert_protocol_failure_then_recovery(
        b"HTTP/1.1 500 Oops\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
    );
}

#[test]
fn two_megabytes_of_headers_are_a_protocol_failure() {
    let line = format!("X-Pad: {}\r\n", "a".repeat(32 * 1024));
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    while head.len() < 2 << 20 {
        head.push_str(&line);
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    assert_protocol_failure_then_recovery(head.into_bytes());
}

#[test]
fn too_many_headers_are_a_protocol_failure() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..200 {
        head.push_str(&format!("X-H{i}: v\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    assert_protocol_failure_then_recovery(head.into_bytes());
}

fn build_error(builder: notifier::Builder) -> BuildError {
    match builder.build() {
        Ok(_) => panic!("build accepted an invalid configuration"),
        Err(e) => e,
    }
}

#[test]
fn invalid_headers_are_refused_at_build() {
    let url = "http://127.0.0.1:9/";
    let bad_values = ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\0b"];
    for value in bad_values {
        let err = build_error(Client::builder(url).header("X-Ok", value));
        assert!(
            matches!(err, BuildError::InvalidHeader(_)),
            "value {value:?}: {err:?}"
        );
        let err = build_error(Client::builder(url).content_type(value));
        assert!(
            matches!(err, BuildError::InvalidHeader(_)),
            "content type {value:?}: {err:?}"
        );
    }
    let reserved = [
        "Host",
        "host",
        "Content-Length",
        "CONTENT-LENGTH",
        "Transfer-Encoding",
        "Connection",
        "connection",
        "Content-Type",
    ];
    for name in reserved {
        let err = build_error(Client::builder(url).header(name, "x"));
        assert!(
            matches!(err, BuildError::InvalidHeader(_)),
            "name {name:?}: {err:?}"
        );
    }
    for name in ["", "Bad Name", "Bad:Name", "Bad\r\nName", "Bad\0"] {
        let err = build_error(Client::builder(url).header(name, "x"));
        assert!(
            matches!(err, BuildError::InvalidHeader(_)),
            "name {name:?}: {err:?}"
        );
    }
    // A valid configuration still builds.
    Client::builder(url)
        .header("X-Fine", "tab\tand spaces ok")
        .content_type("application/json; charset=utf-8")
        .build()
        .expect("a valid configuration");
}

#[test]
fn invalid_urls_are_refused_at_build() {
    assert!(matches!(Client::new(""), Err(BuildError::EmptyUrl)));
    match Client::new("ftp://x") {
        Err(BuildError::UnsupportedScheme(scheme)) => assert_eq!(scheme, "ftp"),
        other => panic!("ftp://x: {:?}", other.err()),
    }
    for url in [
        "http://",
        "http:///path",
        "http://host:notaport/",
        "http://host:99999/",
        "http://ho st/",
        "http://host/a b",
        "http://user:pw@host/",
        "127.0.0.1:8080",
    ] {
        match Client::new(url) {
            Err(BuildError::InvalidUrl(_)) => {}
            other => panic!("{url:?}: expected InvalidUrl, got {:?}", other.err()),
        }
    }
}
