//! Connection reuse and response framing: servers that close connections
//! (per response, every N requests, when idle), slow and unusual but valid
//! responses. None of these may cost a notification.

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use notifier::Client;

use crate::support;
use crate::support::{
    assert_all_delivered, assert_each_id_once, deliver_across_idle_closes, msg, notify_all,
    response, started, Action, Server,
};

const LONG: Duration = Duration::from_secs(60);

/// A request timeout these tests never reach when the client works.
const NEVER: Duration = Duration::from_secs(600);

/// Sends `n` messages to `server` through a client with `workers` slots,
/// stops it, and checks that all were delivered, once each, without failure.
///
/// Delivery must finish within [`LONG`], far below the client's timeout
/// ([`NEVER`]): a slot that stays busy after its response ended would only
/// be freed by that timeout, and would otherwise pass unnoticed.
fn deliver_all(server: &Server, workers: usize, n: usize) {
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(workers)
            .timeout(NEVER)
            .shutdown_timeout(Duration::from_secs(5)),
    );
    notify_all(&client, 0..n);
    assert!(
        client.flush(LONG),
        "not delivered within {LONG:?}: {:?}, {} failures",
        client.stats(),
        failures.len()
    );
    client.stop();
    assert_all_delivered(&client, &failures, server, n);
}

#[test]
fn connection_close_on_every_response() {
    let server = Server::always(Action::ReplyAndClose(
        b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec(),
    ));
    deliver_all(&server, 4, 300);
    assert_eq!(server.connections(), 300);
}

#[test]
fn connection_close_on_every_hundredth_response() {
    // Like nginx's `keepalive_requests 100`.
    let server = Server::start(|_, info| {
        if info.nth == 99 {
            Action::ReplyAndClose(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            )
        } else {
            Action::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec())
        }
    });
    deliver_all(&server, 2, 2_000);
    assert!(
        server.connections() >= 20,
        "{} connections",
        server.connections()
    );
}

#[test]
fn server_closing_idle_connections_costs_nothing() {
    // The server closes every connection after 200 ms of silence; the
    // client must notice before it reuses one.
    let server =
        Server::start_with_idle_close(Duration::from_millis(200), |_, _| Action::no_content());
    deliver_across_idle_closes(&server, Client::builder(&server.url()).workers(3));
}

#[test]
fn stray_bytes_after_a_response_are_not_taken_as_the_next_answer() {
    // Each 204 comes with an unsolicited 408 in the same segment, then the
    // server closes: the connection must not be reused, and the 408 must not
    // be read as the answer to the next request.
    let server = Server::always(Action::ReplyAndClose(
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    deliver_all(&server, 1, 50);
}

#[test]
fn stray_bytes_on_a_kept_connection_are_not_taken_as_the_next_answer() {
    // As above, but the server keeps the connection open: the client must
    // close it rather than send the next request and read the 408.
    let server = Server::always(Action::Reply(
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    deliver_all(&server, 1, 50);
}

#[test]
fn response_written_one_byte_at_a_time() {
    let server = Server::always(Action::Trickle {
        bytes: response(200, "OK", &[("X-Slow", "yes")], b"hello"),
        close: false,
    });
    deliver_all(&server, 1, 5);
    assert_eq!(server.connections(), 1, "the connection was not reused");
}

#[test]
fn close_delimited_body() {
    let server = Server::always(Action::ReplyAndClose(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthe body runs to the close".to_vec(),
    ));
    deliver_all(&server, 2, 20);
}

#[test]
fn close_delimited_body_trickled() {
    let server = Server::always(Action::Trickle {
        bytes: b"HTTP/1.1 200 OK\r\n\r\nbody".to_vec(),
        close: true,
    });
    deliver_all(&server, 1, 3);
}

#[test]
fn interim_100_continue_is_skipped() {
    let server = Server::always(Action::Reply(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(),
    ));
    deliver_all(&server, 1, 10);
    assert_eq!(server.connections(), 1, "the connection was not reused");
}

#[test]
fn http_1_0_response_then_close() {
    let server = Server::always(Action::ReplyAndClose(
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
    ));
    deliver_all(&server, 2, 20);
}

#[test]
fn chunked_response() {
    let server = Server::always(
        Action::Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
                .to_vec(),
        )
    );
    deliver_all(&server, 2, 50);
}

#[test]
fn response_body_is_read_and_the_connection_kept() {
    let body = vec![b'x'; 100_000];
    let server = Server::always(Action::Reply(response(200, "OK", &[], &body)));
    deliver_all(&server, 1, 20);
    assert_eq!(server.connections(), 1, "the connection was not reused");
}

/// Sends one message and waits for it to be delivered.
fn deliver_one(client: &Client, i: usize) {
    client.notify(msg(i)).expect("notify");
    assert!(client.flush(LONG), "flush timed out");
}

#[test]
fn idle_connections_are_closed_after_idle_timeout() {
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .idle_timeout(Duration::from_millis(100)),
    );
    deliver_one(&client, 0);
    assert!(
        support::wait_until(LONG, || server.open_connections() == 0),
        "the client kept its idle connection open"
    );
    deliver_one(&client, 1);
    client.stop();
    failures.assert_none();
    assert_eq!(
        server.connections(),
        2,
        "the second message needed a new connection"
    );
}

#[test]
fn connections_within_idle_timeout_are_reused() {
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).workers(1).idle_timeout(LONG));
    deliver_one(&client, 0);
    thread::sleep(Duration::from_millis(200));
    deliver_one(&client, 1);
    client.stop();
    failures.assert_none();
    assert_eq!(server.connections(), 1);
}

#[test]
fn keep_alive_timeout_hint_lowers_the_idle_timeout_to_three_quarters() {
    // `timeout=1` keeps a connection for 0.75 s (not 1 − 1 = 0 s, which
    // would mean no reuse at all): back-to-back messages share it, and one
    // after 1.5 s idle needs a new one, though the server would have kept
    // it and the client's own idle timeout is long.
    let server = Server::always(Action::Reply(
        b"HTTP/1.1 204 No Content\r\nKeep-Alive: timeout=1\r\n\r\n".to_vec(),
    ));
    let (client, failures) = started(Client::builder(&server.url()).workers(1).idle_timeout(LONG));
    deliver_one(&client, 0);
    deliver_one(&client, 1);
    thread::sleep(Duration::from_millis(1_500));
    deliver_one(&client, 2);
    client.stop();
    failures.assert_none();
    assert_eq!(server.connections(), 2);
    assert_each_id_once(&server.requests(), 3);
}

const GOODBYE_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";

#[test]
fn a_408_on_a_reused_connection_is_sent_again_on_a_fresh_one() {
    // Every connection's second request is answered 408 and closed: the
    // server's goodbye, its request never read. Each is sent again on a
    // new connection, counting no attempt and no failure.
    let server = Server::start(|_, info| {
        if info.nth == 0 {
            Action::Reply(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec())
        } else {
            Action::ReplyAndClose(GOODBYE_408.to_vec())
        }
    });
    let (client, failures) = started(Client::builder(&server.url()).workers(1).idle_timeout(LONG));
    for i in 0..3 {
        deliver_one(&client, i);
    }
    client.stop();
    failures.assert_none();
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.retried), (3, 0), "{stats:?}");
    let ids: Vec<usize> = server
        .requests()
        .iter()
        .map(|r| support::id_of(&r.body))
        .collect();
    assert_eq!(ids, [0, 1, 1, 2, 2]);
    assert_eq!(server.connections(), 3);
}

#[test]
fn a_408_on_a_fresh_connection_is_a_failure() {
    let server = Server::always(Action::ReplyAndClose(GOODBYE_408.to_vec()));
    let (client, failures) = started(Client::builder(&server.url()).workers(1));
    client.notify(msg(0)).expect("notify");
    client.stop();
    let got = failures.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].error.status_code(), Some(408));
    assert_eq!(got[0].error.attempts(), 1);
    assert_eq!(server.request_count(), 1, "not sent again");
}

#[test]
fn a_connection_past_max_connection_age_is_closed_after_its_exchange() {
    // One slot, an age of 50 ms (45–55 ms with its jitter): a message after
    // 200 ms of quiet finds its connection retired and opens a fresh one;
    // without the limit the same pause reuses the first.
    for (age, connections) in [(Some(Duration::from_millis(50)), 2), (None, 1)] {
        let server = Server::no_content();
        let mut builder = Client::builder(&server.url()).workers(1);
        if let Some(age) = age {
            builder = builder.max_connection_age(age);
        }
        let (client, failures) = started(builder);
        client.notify(msg(0)).expect("notify");
        assert!(client.flush(LONG));
        thread::sleep(Duration::from_millis(200));
        client.notify(msg(1)).expect("notify");
        client.stop();
        assert_all_delivered(&client, &failures, &server, 2);
        assert_eq!(server.connections(), connections, "age {age:?}");
    }
}

#[test]
fn a_busy_connection_is_replaced_once_it_ages_and_nothing_is_lost() {
    // Messages back to back for at least 300 ms on one slot whose
    // connections live 20 ms (±10 %): the exchange under way when one ages
    // completes, and the next message goes on a new connection.
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .max_connection_age(Duration::from_millis(20)),
    );
    let began = std::time::Instant::now();
    let mut sent = 0;
    while began.elapsed() < Duration::from_millis(300) || sent < 100 {
        support::notify_retrying(&client, msg(sent));
        sent += 1;
    }
    client.stop();
    assert_all_delivered(&client, &failures, &server, sent);
    assert!(
        server.connections() >= 2,
        "{} connections in 300 ms with an age of 20 ms",
        server.connections()
    );
}

/// A server with lighttpd's idle rules, scaled down: a request that
/// arrives on a connection idle for `refuse_after` or more is read and the
/// connection closed without an answer (lighttpd, checking its idle
/// connections, closes one whose request came as it looked), and, with
/// `close_after`, an idle connection is closed then (lighttpd looks once a
/// second, so it closes them a while after its limit).
fn refusing_idle_requests(refuse_after: Duration, close_after: Option<Duration>) -> Server {
    let answered: Mutex<HashMap<usize, Instant>> = Mutex::new(HashMap::new());
    let script = move |request: &support::Request, info: support::ConnInfo| {
        let mut answered = support::lock(&answered);
        if let Some(&at) = answered.get(&info.conn) {
            if request.received.saturating_duration_since(at) >= refuse_after {
                return Action::Close;
            }
        }
        answered.insert(info.conn, Instant::now());
        Action::no_content()
    };
    match close_after {
        Some(idle) => Server::start_with_idle_close(idle, script),
        None => Server::start(script),
    }
}

/// Sends `bursts` bursts of `per_burst` messages through `client`, each
/// delivered before a pause: `first_gap` after the first burst, `gap`
/// after the others. Gives back the ids of the messages that failed.
fn bursts(
    client: &Client,
    failures: &support::Failures,
    bursts: usize,
    per_burst: usize,
    first_gap: Duration,
    gap: Duration,
) -> Vec<usize> {
    for burst in 0..bursts {
        if burst == 1 {
            thread::sleep(first_gap);
        } else if burst > 1 {
            thread::sleep(gap);
        }
        for i in burst * per_burst..(burst + 1) * per_burst {
            client.notify(msg(i)).expect("notify");
        }
        assert!(client.flush(LONG), "burst {burst}: {:?}", client.stats());
    }
    let mut failed: Vec<usize> = failures
        .take()
        .iter()
        .map(|f| support::id_of(f.error.message()))
        .collect();
    failed.sort_unstable();
    failed
}

#[test]
fn an_idle_close_teaches_the_client_to_stop_reusing_connections_idle_for_three_quarters_of_it() {
    // The server refuses requests after 400 ms of idle and closes idle
    // connections at 600 ms. After a first pause of 900 ms the client has
    // seen a connection closed after 600 ms idle; from then on it reuses
    // none idle for 450 ms or more. So the bursts 500 ms apart that follow,
    // which would meet connections the server still holds open but
    // refuses requests on, go on fresh ones: nothing is lost, without
    // retry, and each burst has its own connection.
    let server =
        refusing_idle_requests(Duration::from_millis(400), Some(Duration::from_millis(600)));
    let (client, failures) = started(Client::builder(&server.url()).workers(1).idle_timeout(LONG));
    let failed = bursts(
        &client,
        &failures,
        5,
        5,
        Duration::from_millis(900),
        Duration::from_millis(500),
    );
    client.stop();
    assert_eq!(failed, Vec::<usize>::new(), "{:?}", client.stats());
    assert_eq!(client.stats().delivered, 25);
    assert_eq!(server.connections(), 5, "one connection per burst");
}

#[test]
fn a_request_refused_after_an_idle_period_teaches_the_client_the_same() {
    // The server never closes idle connections itself; it refuses requests
    // after 300 ms of idle. The first request of the second burst, 450 ms
    // after the first, is the only one lost: written into a connection the
    // server has kept, and closed without an answer (not re-sent: the
    // server may have acted on it, and retry is off). That teaches the
    // client a limit of about 340 ms, so the later bursts, as far apart,
    // go on fresh connections.
    let server = refusing_idle_requests(Duration::from_millis(300), None);
    let (client, failures) = started(Client::builder(&server.url()).workers(1).idle_timeout(LONG));
    let gap = Duration::from_millis(450);
    let failed = bursts(&client, &failures, 5, 4, gap, gap);
    client.stop();
    assert_eq!(failed, [4], "{:?}", client.stats());
    assert_eq!(client.stats().delivered, 19);
}

/// `200 OK` with a body of two bytes: its head, then its body.
const SPLIT_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
const SPLIT_BODY: &[u8] = b"ok";

#[cfg(target_os = "linux")]
#[test]
fn a_response_held_back_by_nagle_is_acknowledged_at_once() {
    // Like Python's `http.server`: the head and the body in two writes,
    // Nagle's algorithm on, so the body leaves only once the head is
    // acknowledged. The client acknowledges the incomplete response at
    // once rather than after its delayed-ACK timer.
    let server = Server::start_raw(|mut conn: support::RawConn<'_>| {
        conn.nagle();
        while let Some((request, _)) = conn.next_request() {
            conn.record(request);
            if !(conn.write(SPLIT_HEAD) && conn.write(SPLIT_BODY)) {
                return;
            }
        }
    });
    let n = 20;
    let client = support::send_all(&server, Client::builder(&server.url()).workers(1), n);
    let stats = client.stats();
    assert!(stats.quick_acks > 0, "{stats:?}");
    assert_eq!(server.connections(), 1, "the connection was not reused");
}

#[test]
fn a_response_that_arrives_whole_costs_no_quick_ack() {
    let whole = [SPLIT_HEAD, SPLIT_BODY].concat();
    let server = Server::always(Action::Reply(whole));
    let client = support::send_all(&server, Client::builder(&server.url()).workers(2), 100);
    assert_eq!(client.stats().quick_acks, 0, "{:?}", client.stats());
}
