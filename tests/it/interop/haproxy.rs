//! HAProxy in front of nginx. HAProxy keeps client connections alive
//! (`timeout http-keep-alive 1s`) and, since it has no setting for it,
//! closes each after its 7th request: a per-connection variable counts the
//! requests (`set-var(sess.reqs)`), and the 7th response gets
//! `Connection: close` (`http-after-response set-header`), on which HAProxy
//! closes the connection. Toward nginx it reuses idle server connections
//! (`http-reuse safe`, the default and the mode HAProxy recommends:
//! `always` also sends a connection's first request on a connection nginx
//! may be closing). nginx, set up as in `crate::nginx`, answers 204 with
//! `keepalive_requests 7` and `keepalive_timeout 1s`.
//!
//! Each message is counted twice. HAProxy reads the body
//! (`option http-buffer-request`), hands it to nginx in a header that
//! nginx's access log writes with its connection (`$connection`) and the
//! request's number on it (`$connection_requests`); and HAProxy's own log
//! (on its stdout) has the body with the client's port and the request's
//! number on its connection, so both sides' connections are counted.
//! HAProxy runs one thread: with more, a log line to stdout that meets
//! another thread's write is dropped by design (it lost 11 of 10,000 here
//! with two), and the count would be short.

use std::time::Duration;

use super::{deliver_and_count, find_all, Daemon, Log, Needed, Plan, TempDir};
use crate::nginx::{start_nginx, NGINX};

/// Set (to anything) to fail instead of skipping when HAProxy (or nginx)
/// is missing.
const REQUIRE_VAR: &str = "NOTIFIER_REQUIRE_HAPROXY";

const HAPROXY: Needed = Needed {
    what: "haproxy",
    candidates: &["haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"],
};

/// HAProxy and nginx time keep-alive out to the millisecond.
const PLAN: Plan = Plan {
    bursts: 10,
    gap: Duration::from_millis(1_500),
};

/// nginx's log, then HAProxy's (its stdout); both number a connection's
/// requests from 1.
const LOGS: [Log; 2] = [
    Log {
        what: "nginx access log",
        file: "access.log",
        first: 1,
    },
    Log {
        what: "HAProxy log",
        file: "haproxy.out",
        first: 1,
    },
];

#[test]
fn haproxy_nginx_interop() {
    let Some([haproxy, nginx]) = find_all("HAProxy-nginx interop", REQUIRE_VAR, [&HAPROXY, &NGINX])
    else {
        return;
    };
    let dir = TempDir::new("haproxy");
    let dir = dir.path();
    let backend = start_nginx(&nginx, dir, 1, |ports| {
        format!(
            "    log_format ids '$http_x_notifier_id $connection $connection_requests $status';
    access_log access.log ids;
    keepalive_requests 7;
    keepalive_timeout 1s;
    server {{
        listen 127.0.0.1:{};
        location / {{
            return 204;
        }}
    }}
",
            ports[0]
        )
    });
    let nginx_port = backend.port(0);
    let front = Daemon::configured(
        "haproxy",
        &haproxy,
        &["-db"],
        dir,
        "haproxy.cfg",
        None,
        |port| {
            format!(
                "global
    nbthread 1
    log stdout format raw local0
    maxconn 256
defaults
    mode http
    log global
    option dontlognull
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 1s
frontend front
    bind 127.0.0.1:{port}
    option http-buffer-request
    http-request set-var(sess.reqs) var(sess.reqs,0),add(1)
    http-request set-var(txn.id) req.body
    http-request set-header X-Notifier-Id %[var(txn.id)]
    http-after-response set-header Connection close if {{ var(sess.reqs) -m int ge 7 }}
    log-format \"%[var(txn.id)] %cp %[var(sess.reqs)] %ST\"
    default_backend nginx
backend nginx
    http-reuse safe
    server nginx 127.0.0.1:{nginx_port}
"
            )
        },
    );
    deliver_and_count("HAProxy-nginx", front.port(0), PLAN, dir, &LOGS);
}
