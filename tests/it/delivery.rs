//! Delivery over loopback: every accepted message reaches the server exactly
//! once, as a well-formed POST, within the connection limit, from one or
//! many producer threads.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use notifier::Client;

use crate::support::{assert_all_delivered, notify_all, send_all, started, Request, Server};

const LONG: Duration = Duration::from_secs(60);

/// Checks the parts of a request head every request must have.
fn assert_request_head(request: &Request, server: &Server, target: &str, content_type: &str) {
    assert_eq!(request.method, "POST");
    assert_eq!(request.target, target);
    assert_eq!(request.header("Host"), Some(server.authority().as_str()));
    assert_eq!(request.header("Content-Type"), Some(content_type));
    let length = request.body.len().to_string();
    assert_eq!(request.header("Content-Length"), Some(length.as_str()));
    for name in ["Host", "Content-Type", "Content-Length"] {
        assert_eq!(request.header_count(name), 1, "{name} repeated");
    }
    assert_eq!(request.header("Transfer-Encoding"), None);
}

#[test]
fn ten_thousand_messages_arrive_once_as_well_formed_posts() {
    const N: usize = 10_000;
    let server = Server::no_content();
    send_all(
        &server,
        Client::builder(&server.url_with("/hooks/ingest?token=abc&x=1"))
            .header("X-Api-Key", "secret-1"),
        N,
    );
    for request in &server.requests() {
        assert_request_head(
            request,
            &server,
            "/hooks/ingest?token=abc&x=1",
            "text/plain; charset=utf-8",
        );
        assert_eq!(request.header("X-Api-Key"), Some("secret-1"));
    }
    assert_eq!(server.malformed_requests(), 0);
}

#[test]
fn custom_content_type_and_headers_are_sent() {
    const N: usize = 200;
    let server = Server::no_content();
    send_all(
        &server,
        Client::builder(&server.url())
            .content_type("application/json")
            .header("X-One", "1")
            .header("x-two", "two words"),
        N,
    );
    for request in &server.requests() {
        assert_request_head(request, &server, "/notify", "application/json");
        assert_eq!(request.header("X-One"), Some("1"));
        assert_eq!(request.header("X-Two"), Some("two words"));
    }
}

#[test]
fn empty_and_binary_bodies_are_sent_as_is() {
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).workers(1));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    client.notify(Vec::new()).expect("notify empty");
    client.notify(binary.clone()).expect("notify binary");
    client
        .notify("\r\n\r\nHTTP/1.1 200 OK\r\n")
        .expect("notify text");
    client.stop();

    failures.assert_none();
    let requests = server.requests();
    let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(
        bodies,
        [&b""[..], &binary[..], &b"\r\n\r\nHTTP/1.1 200 OK\r\n"[..]]
    );
    for request in &requests {
        assert_request_head(request, &server, "/notify", "text/plain; charset=utf-8");
    }
}

#[test]
fn one_worker_uses_one_connection() {
    const N: usize = 1_000;
    let server = Server::no_content();
    send_all(&server, Client::builder(&server.url()).workers(1), N);
    assert_eq!(server.connections(), 1);
}

#[test]
fn never_more_connections_than_workers() {
    const N: usize = 2_000;
    let server = Server::no_content();
    send_all(
        &server,
        Client::builder(&server.url()).workers(3).queue_size(100),
        N,
    );
    assert!(
        server.max_open_connections() <= 3,
        "{} connections open at once with 3 workers",
        server.max_open_connections()
    );
    assert!(
        server.connections() <= 3,
        "{} connections",
        server.connections()
    );
}

#[test]
fn eight_producers_share_one_client() {
    const PRODUCERS: usize = 8;
    const EACH: usize = 2_000;
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(4)
            .threads(2)
            .queue_size(256),
    );
    let client = Arc::new(client);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let client = Arc::clone(&client);
            thread::spawn(move || notify_all(&client, p * EACH..(p + 1) * EACH))
        })
        .collect();
    for producer in producers {
        producer.join().expect("producer panicked");
    }
    client.stop();

    let stats = client.stats();
    assert_eq!(stats.delivered + stats.failed, stats.accepted);
    assert_all_delivered(&client, &failures, &server, PRODUCERS * EACH);
}

#[test]
fn flush_returns_true_once_all_accepted_are_delivered() {
    const N: usize = 1_000;
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()));
    assert!(client.flush(LONG), "flush of an idle client");
    notify_all(&client, 0..N);
    assert!(client.flush(LONG), "flush timed out");
    let stats = client.stats();
    assert_eq!(stats.accepted, N as u64);
    assert_eq!(server.request_count(), N);
    assert_eq!(stats.delivered, N as u64);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.in_flight, 0);

    // And again, on the same client.
    notify_all(&client, N..2 * N);
    assert!(client.flush(LONG), "second flush timed out");
    assert_eq!(server.request_count(), 2 * N);
    client.stop();
    assert_all_delivered(&client, &failures, &server, 2 * N);
}

#[test]
fn flush_returns_false_while_a_message_is_pending() {
    let server = Server::stalled();
    let (client, _failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .shutdown_timeout(Duration::from_millis(200)),
    );
    client.notify("stuck").expect("notify");
    assert!(server.wait_for_requests(1, LONG));
    assert!(!client.flush(Duration::from_millis(100)));
    client.stop();
}
