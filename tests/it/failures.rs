//! Failed deliveries: non-2xx statuses, timeouts, refused connections,
//! responses that break HTTP/1.1 — each reaches the error handler with the
//! right kind, and the client goes on delivering afterwards. Also the
//! configurations `build` must refuse.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use notifier::{BuildError, Client, FailureKind};

use crate::support::{build, notify_all, response, started, Action, Failures, Server};

const LONG: Duration = Duration::from_secs(60);

/// A started one-slot client for `url`, and what reaches its error handler.
fn one_slot(url: &str) -> (Client, Failures) {
    started(Client::builder(url).workers(1))
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
    let (client, failures) = one_slot(&server.url());
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
    let server = Server::always(Action::Reply(response(500, "Oops", &[], b"")));
    let (client, failures) = one_slot(&server.url());
    client.notify(vec![1u8, 2, 3]).expect("notify");
    client.stop();
    let failure = failures.take_single(FailureKind::Status, &[1, 2, 3]);
    assert_eq!(failure.error.into_message().into_vec(), vec![1u8, 2, 3]);
}

#[test]
fn stalled_server_times_out() {
    let timeout = Duration::from_millis(300);
    let server = Server::stalled();
    let (client, failures) = started(Client::builder(&server.url()).workers(1).timeout(timeout));
    let sent = Instant::now();
    client.notify("slow").expect("notify");
    assert!(failures.wait_for(1, LONG), "no timeout reported");
    let failure = failures.take_single(FailureKind::Timeout, b"slow");
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
    let (client, failures) = one_slot(&format!("http://127.0.0.1:{port}/"));
    client.notify("nobody home").expect("notify");
    client.stop();
    let failure = failures.take_single(FailureKind::Connect, b"nobody home");
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
    let (client, failures) = started(
        Client::builder(&format!("http://127.0.0.1:{port}/"))
            .workers(2)
            .queue_size(10),
    );
    notify_all(&client, 0..500);
    assert!(client.flush(LONG), "refused messages were left waiting");
    client.stop();
    let all = failures.take();
    assert_eq!(all.len(), 500);
    assert!(all.iter().all(|f| f.error.kind() == FailureKind::Connect));
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.failed), (500, 500));
}

/// Handles the first request as `first` says, later ones with 204; checks
/// that the first fails, retryably, with `kind` and the second is delivered
/// on a new connection.
fn assert_failure_then_recovery(first: Action, kind: FailureKind) {
    let server = Server::start(move |_, info| {
        if info.total == 0 {
            first.clone()
        } else {
            Action::no_content()
        }
    });
    let (client, failures) = one_slot(&server.url());
    client.notify("first").expect("notify");
    assert!(failures.wait_for(1, LONG), "no failure reported");
    client.notify("second").expect("notify");
    client.stop();

    let failure = failures.take_single(kind, b"first");
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
fn close_without_answer_is_an_io_failure() {
    assert_failure_then_recovery(Action::Close, FailureKind::Io);
}

/// Answers the first request with `bad`: see [`assert_failure_then_recovery`].
fn assert_protocol_failure_then_recovery(bad: Vec<u8>) {
    assert_failure_then_recovery(Action::Reply(bad), FailureKind::Protocol);
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
    match build(builder) {
        Ok(_) => panic!("build accepted an invalid configuration"),
        Err(e) => e,
    }
}

#[test]
fn tabs_in_header_values_are_allowed() {
    let client = build(Client::builder("http://127.0.0.1:9/").header("X-Tabbed", "a\tb"));
    assert!(client.is_ok(), "{:?}", client.err());
}

#[test]
fn invalid_headers_are_refused_at_build() {
    let url = "http://127.0.0.1:9/";
    let bad_values = [
        "a\r\nX-Injected: 1",
        "a\nb",
        "a\rb",
        "a\0b",
        "a\x01b",
        "a\x7fb",
    ];
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
    build(
        Client::builder(url)
            .header("X-Fine", "tab\tand spaces ok")
            .content_type("application/json; charset=utf-8"),
    )
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
