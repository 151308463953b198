//! `Builder::preconnect`: every slot's connection (TCP and TLS) is open
//! before the first message, a connection the server closes while idle
//! comes back, openings that fail back off, and nothing is opened while
//! the circuit is open.

use std::thread;
use std::time::Duration;

use notifier::{CircuitBreakerConfig, CircuitState, Client};

use crate::support::tls::TlsServer;
use crate::support::{
    assert_all_delivered, notify_all, response, started, wait_until, Action, Server,
};

const LONG: Duration = Duration::from_secs(30);

#[test]
fn connections_are_open_before_the_first_message() {
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).workers(3).preconnect(true));
    assert!(
        wait_until(LONG, || server.open_connections() == 3),
        "{} connections open",
        server.open_connections()
    );
    assert_eq!(server.request_count(), 0);
    notify_all(&client, 0..30);
    client.stop();
    assert_all_delivered(&client, &failures, &server, 30);
    assert_eq!(server.connections(), 3, "the messages took the open ones");
}

#[test]
fn tls_connections_are_handshaken_before_the_first_message() {
    let server = TlsServer::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(2)
            .tls_config(server.client_config())
            .preconnect(true),
    );
    assert!(
        wait_until(LONG, || server.handshakes().len() == 2),
        "{:?}",
        server.handshakes()
    );
    assert!(server.handshakes().iter().all(|h| h.error.is_none()));
    assert_eq!(server.request_count(), 0);
    notify_all(&client, 0..10);
    client.stop();
    assert_all_delivered(&client, &failures, &server, 10);
    assert_eq!(server.handshakes().len(), 2, "no handshake for a message");
}

#[test]
fn a_connection_the_server_closes_while_idle_is_opened_again() {
    let server =
        Server::start_with_idle_close(Duration::from_millis(300), |_, _| Action::no_content());
    let (client, failures) = started(Client::builder(&server.url()).workers(2).preconnect(true));
    assert!(wait_until(LONG, || server.connections() == 2));
    // The server closes both after 300 ms of silence; they come back.
    assert!(
        wait_until(LONG, || server.connections() >= 4
            && server.open_connections() == 2),
        "{} accepted, {} open",
        server.connections(),
        server.open_connections()
    );
    let before = server.connections();
    notify_all(&client, 0..2);
    assert!(client.flush(LONG));
    client.stop();
    assert_all_delivered(&client, &failures, &server, 2);
    let requests = server.requests();
    assert!(
        requests.iter().all(|r| r.conn < before),
        "the messages went on connections opened before them: {:?}",
        requests.iter().map(|r| r.conn).collect::<Vec<_>>()
    );
}

#[test]
fn openings_the_server_cuts_at_once_back_off() {
    // Every connection is accepted and closed at once: each opening fails,
    // and the next waits longer (50–100 ms, then 100–200 ms, …), so two
    // slots open at most eight connections each in two seconds, where
    // re-opening at once would open thousands.
    let server = Server::start_raw(|mut conn| {
        conn.close();
    });
    let (client, _failures) = started(Client::builder(&server.url()).workers(2).preconnect(true));
    assert!(
        wait_until(LONG, || server.connections() >= 4),
        "the openings are tried again"
    );
    thread::sleep(Duration::from_secs(2));
    let opened = server.connections();
    client.stop();
    assert!(opened <= 16, "{opened} connections in about two seconds");
    assert_eq!(client.stats().accepted, 0);
}

#[test]
fn nothing_is_opened_while_the_circuit_is_open() {
    // The first answer opens the circuit (one failure is enough); then the
    // server closes the idle connections, and they stay closed.
    let server = Server::start_with_idle_close(Duration::from_secs(1), |_, _| {
        Action::Reply(response(503, "Service Unavailable", &[], b""))
    });
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(2)
            .preconnect(true)
            .circuit_breaker(
                CircuitBreakerConfig::default()
                    .failure_threshold(1)
                    .reset_timeout(Duration::from_secs(600)),
            ),
    );
    assert!(wait_until(LONG, || server.open_connections() == 2));
    client.notify("x").expect("notify");
    assert!(client.flush(LONG));
    assert_eq!(client.stats().circuit, CircuitState::Open);
    let before = server.connections();
    assert!(
        wait_until(LONG, || server.open_connections() == 0),
        "the server closed the idle connections"
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.connections(),
        before,
        "none opened with the circuit open"
    );
    client.stop();
    assert_eq!(failures.len(), 1);
}
