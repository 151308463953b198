//! HTTPS against an in-test rustls server with its own CA: delivery to a
//! name and to an IP address (checked against an IP SAN), one handshake for
//! many messages, session resumption on reconnect (TLS 1.3 and 1.2),
//! `close_notify` closes, certificate failures (`FailureKind::Tls`, not
//! retryable, nothing sent) and a handshake the server never answers
//! (`Timeout`).

use std::time::{Duration, Instant};

use notifier::{Builder, Client, FailureKind};
use rustls::ProtocolVersion;

use crate::support::tls::{TestCa, TlsServer, HTTP_1_1};
use crate::support::{deliver_across_idle_closes, send_all, started, wait_until, Action, Failure};

const LONG: Duration = Duration::from_secs(60);

/// `204 No Content`, then `close_notify` and FIN.
const CLOSE: &[u8] = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";

/// A client builder for `url` that trusts `server`'s CA.
fn trusting(server: &TlsServer, url: &str) -> Builder {
    Client::builder(url).tls_config(server.client_config())
}

/// Delivers `n` messages to `https://HOST:PORT/x?y=1` through 4 slots, and
/// checks the request heads and that each handshake completed with `sni`
/// and ALPN `http/1.1`.
fn deliver_over_https(host: &str, sni: Option<&str>, n: usize) {
    let server = TlsServer::no_content();
    let url = server.url_for(host, "/x?y=1");
    send_all(&server, trusting(&server, &url).workers(4), n);

    let authority = format!("{host}:{}", server.port());
    for request in server.requests() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.target, "/x?y=1");
        assert_eq!(request.header("Host"), Some(authority.as_str()));
    }
    assert!(
        server.connections() <= 4,
        "{} connections",
        server.connections()
    );
    let handshakes = server.handshakes();
    assert_eq!(handshakes.len(), server.connections());
    for handshake in &handshakes {
        assert_eq!(handshake.error, None);
        assert_eq!(handshake.sni.as_deref(), sni, "SNI");
        assert_eq!(handshake.alpn.as_deref(), Some(HTTP_1_1), "ALPN");
    }
}

#[test]
fn delivers_over_https_to_a_name() {
    deliver_over_https("localhost", Some("localhost"), 2_000);
}

#[test]
fn delivers_over_https_to_an_ip_address() {
    // Verified against the certificate's IP SAN; no SNI for an address.
    deliver_over_https("127.0.0.1", None, 500);
}

#[test]
fn one_handshake_carries_a_thousand_messages() {
    let server = TlsServer::no_content();
    let url = server.url_for("localhost", "/");
    send_all(&server, trusting(&server, &url).workers(1), 1_000);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.full_handshakes(), 1);
    assert_eq!(server.resumed_handshakes(), 0);
    assert_eq!(server.failed_handshakes(), 0);
    assert_eq!(
        server.handshakes()[0].version,
        Some(ProtocolVersion::TLSv1_3)
    );
}

#[test]
fn reconnect_resumes_the_session() {
    let server = TlsServer::start(|_, _| Action::ReplyAndClose(CLOSE.to_vec()));
    let url = server.url_for("localhost", "/");
    send_all(&server, trusting(&server, &url).workers(1), 5);
    assert_eq!(server.connections(), 5);
    assert_eq!(
        (server.full_handshakes(), server.resumed_handshakes()),
        (1, 4),
        "(full, resumed): {:?}",
        server.handshakes()
    );
}

#[test]
fn reconnect_resumes_a_tls_1_2_session() {
    let server = TlsServer::start(|_, _| Action::ReplyAndClose(CLOSE.to_vec()));
    let url = server.url_for("localhost", "/");
    let config = server
        .ca()
        .client_config_with_versions(&[&rustls::version::TLS12]);
    send_all(
        &server,
        Client::builder(&url).tls_config(config).workers(1),
        5,
    );
    assert_eq!(server.connections(), 5);
    let handshakes = server.handshakes();
    assert!(handshakes
        .iter()
        .all(|h| h.version == Some(ProtocolVersion::TLSv1_2)));
    assert_eq!(
        (server.full_handshakes(), server.resumed_handshakes()),
        (1, 4),
        "(full, resumed): {handshakes:?}"
    );
}

#[test]
fn close_notify_and_close_after_every_response() {
    const N: usize = 200;
    let server = TlsServer::start(|_, _| Action::ReplyAndClose(CLOSE.to_vec()));
    let url = server.url_for("localhost", "/");
    send_all(&server, trusting(&server, &url).workers(4), N);
    assert_eq!(server.connections(), N);
    assert_eq!(server.failed_handshakes(), 0);
    assert_eq!(
        server.full_handshakes() + server.resumed_handshakes(),
        N,
        "{:?}",
        server.handshakes()
    );
}

#[test]
fn close_delimited_body_ended_by_close_notify() {
    const N: usize = 20;
    let server = TlsServer::start(|_, _| {
        Action::ReplyAndClose(b"HTTP/1.1 200 OK\r\n\r\nthe body runs to close_notify".to_vec())
    });
    let url = server.url_for("localhost", "/");
    send_all(&server, trusting(&server, &url).workers(2), N);
    assert_eq!(server.connections(), N);
}

#[test]
fn server_closing_idle_connections_costs_nothing() {
    // The server sends close_notify and FIN after 200 ms of silence; the
    // client must notice before it reuses the connection.
    let server =
        TlsServer::start_with_idle_close(Duration::from_millis(200), |_, _| Action::no_content());
    let url = server.url_for("localhost", "/");
    deliver_across_idle_closes(&server, trusting(&server, &url).workers(3));
    assert!(
        server.connections() >= 4,
        "{} connections",
        server.connections()
    );
}

/// Sends one message through `builder` (one slot) and checks it fails with
/// `Tls`, not retryable, and nothing reached `server`. Gives back the
/// failure.
fn assert_tls_failure(server: &TlsServer, builder: Builder) -> Failure {
    let (client, failures) = started(builder.workers(1));
    client.notify("secret").expect("notify");
    client.stop();

    let failure = failures.take_single(FailureKind::Tls, b"secret");
    let error = &failure.error;
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status_code(), None);
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (1, 0, 1));
    assert_eq!(server.request_count(), 0, "a request went out");
    assert_eq!(server.connections(), 1, "the client connected again");
    assert!(
        wait_until(LONG, || server.failed_handshakes() == 1),
        "the server saw {:?}",
        server.handshakes()
    );
    assert_eq!(server.full_handshakes() + server.resumed_handshakes(), 0);
    failure
}

#[test]
fn unknown_ca_with_default_roots_is_a_tls_failure() {
    let server = TlsServer::no_content();
    let url = server.url_for("localhost", "/");
    assert_tls_failure(&server, Client::builder(&url));
    // The default configuration's hello: SNI and ALPN http/1.1.
    let hello = &server.handshakes()[0];
    assert_eq!(hello.sni.as_deref(), Some("localhost"));
    assert_eq!(hello.alpn.as_deref(), Some(HTTP_1_1));
}

#[test]
fn certificate_from_another_ca_is_a_tls_failure() {
    let server = TlsServer::no_content();
    let other = TestCa::new("another test CA");
    let url = server.url_for("localhost", "/");
    assert_tls_failure(
        &server,
        Client::builder(&url).tls_config(other.client_config()),
    );
}

#[test]
fn certificate_for_another_name_is_a_tls_failure() {
    let server = TlsServer::with_names(&["other.example"], |_, _| Action::no_content());
    let url = server.url_for("localhost", "/");
    assert_tls_failure(&server, trusting(&server, &url));
}

#[test]
fn ip_address_missing_from_the_ip_sans_is_a_tls_failure() {
    // A certificate for the name `localhost` only: `127.0.0.1` must be
    // checked against IP SANs, and there are none.
    let server = TlsServer::with_names(&["localhost"], |_, _| Action::no_content());
    let url = server.url_for("127.0.0.1", "/");
    assert_tls_failure(&server, trusting(&server, &url));
}

#[test]
fn unanswered_handshake_times_out() {
    let timeout = Duration::from_millis(300);
    let server = TlsServer::silent();
    let url = server.url_for("localhost", "/");
    let (client, failures) = started(trusting(&server, &url).workers(1).timeout(timeout));
    let sent = Instant::now();
    client.notify("slow").expect("notify");
    assert!(failures.wait_for(1, LONG), "no timeout reported");
    client.stop();

    let failure = failures.take_single(FailureKind::Timeout, b"slow");
    assert!(failure.error.is_retryable());
    let waited = failure.at.duration_since(sent);
    assert!(
        waited >= timeout,
        "timed out after {waited:?}, before {timeout:?}"
    );
    assert!(
        waited < timeout * 10,
        "timed out after {waited:?}, long after {timeout:?}"
    );
    assert_eq!(server.connections(), 1);
    assert_eq!(server.request_count(), 0);
}

#[test]
fn stray_bytes_after_a_response_are_not_taken_as_the_next_answer() {
    // Each 204 comes with an unsolicited 408 in the same TLS record; the
    // connection stays open. The 408 must not be read as the answer to the
    // next request, though rustls may hold it decrypted with no readiness
    // event left on the socket.
    let server = TlsServer::start(|_, _| {
        Action::Reply(
            b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
    });
    let url = server.url_for("localhost", "/");
    send_all(&server, trusting(&server, &url).workers(1), 50);
}
