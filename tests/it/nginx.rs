//! Interop with a real nginx: 20,000 messages over HTTP and 20,000 over
//! HTTPS to `location / { return 204; }` with `keepalive_requests 100` and
//! `keepalive_timeout 1s`, so that nginx closes every connection after 100
//! requests (with `close_notify` over TLS) and idle ones after a second.
//! None of that may cost a notification.
//!
//! Needs `nginx` and `openssl` (for the certificates). Without them the
//! test says so loudly on stderr and passes, unless `NOTIFIER_REQUIRE_NGINX`
//! is set (CI sets it, after installing both), in which case it fails.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use notifier::{Builder, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::interop::{find_all, run, Daemon, Needed, TempDir};
use crate::support::{msg, notify_all, started, tls::HTTP_1_1};

/// Messages per protocol.
const N: usize = 20_000;
/// Messages sent after nginx has closed the idle connections.
const AFTER_IDLE: usize = 100;
/// Set (to anything) to fail instead of skipping when nginx is missing.
const REQUIRE_VAR: &str = "NOTIFIER_REQUIRE_NGINX";

/// The nginx binary.
pub(crate) const NGINX: Needed = Needed {
    what: "nginx",
    candidates: &[
        "nginx",
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ],
};

const OPENSSL: Needed = Needed {
    what: "openssl",
    candidates: &["openssl", "/usr/bin/openssl", "/usr/local/bin/openssl"],
};

/// Makes, with the `openssl` command, a CA (`ca.pem`) and a leaf for
/// `localhost` and `127.0.0.1` signed by it (`leaf.pem`, `leaf.key`).
fn make_certificates(openssl: &Path, dir: &Path) {
    fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n\
         [dn]\nCN = notifier nginx test CA\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n",
    )
    .expect("write ca.cnf");
    fs::write(
        dir.join("leaf.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n\
         [dn]\nCN = localhost\n\
         [v3_leaf]\nbasicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    )
    .expect("write leaf.cnf");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(Command::new(openssl)
        .current_dir(dir)
        .args(["req", "-x509", "-config", "ca.cnf", "-nodes", "-days", "2"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem"]));
    run(Command::new(openssl)
        .current_dir(dir)
        .args(["req", "-new", "-config", "leaf.cnf", "-nodes"])
        .args(ec)
        .args(["-keyout", "leaf.key", "-out", "leaf.csr"]));
    run(Command::new(openssl).current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        "leaf.cnf",
        "-extensions",
        "v3_leaf",
        "-out",
        "leaf.pem",
    ]));
}

/// A client configuration trusting the CA in the PEM file `ca`: ring
/// provider, ALPN `http/1.1`, default resumption.
fn client_config(ca: &Path) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("open ca.pem") {
        roots
            .add(cert.expect("parse ca.pem"))
            .expect("trust the CA");
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    Arc::new(config)
}

/// Starts nginx with its prefix in `dir`, on `ports` free ports: one
/// process, in the foreground, everything inside the prefix directory,
/// `http` (given the ports) inside its `http` block.
pub(crate) fn start_nginx(
    nginx: &Path,
    dir: &Path,
    ports: usize,
    http: impl Fn(&[u16]) -> String,
) -> Daemon {
    let built_with = Command::new(nginx)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    let mut temp_paths =
        String::from("    client_body_temp_path body_temp;\n    proxy_temp_path proxy_temp;\n");
    for module in ["fastcgi", "uwsgi", "scgi"] {
        if !built_with.contains(&format!("--without-http_{module}_module")) {
            let _ = writeln!(temp_paths, "    {module}_temp_path {module}_temp;");
        }
    }
    Daemon::start("nginx", dir, ports, Some("error.log"), |ports| {
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{
    worker_connections 512;
}}
http {{
{temp_paths}{}}}
",
            http(ports)
        );
        fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
        let mut command = Command::new(nginx);
        command
            .arg("-p")
            .arg(dir)
            .args(["-c", "nginx.conf", "-e", "error.log"]);
        command
    })
}

/// The `http` block of this test: `return 204` over HTTP on the first
/// port and HTTPS on the second, closing connections after 100 requests
/// and after 1 s idle.
fn http_block(ports: &[u16]) -> String {
    let (http_port, https_port) = (ports[0], ports[1]);
    format!(
        "    access_log off;
    keepalive_requests 100;
    keepalive_timeout 1s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    server {{
        listen 127.0.0.1:{http_port};
        location / {{
            return 204;
        }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name localhost;
        ssl_certificate leaf.pem;
        ssl_certificate_key leaf.key;
        location / {{
            return 204;
        }}
    }}
"
    )
}

/// Sends [`N`] messages, then [`AFTER_IDLE`] more once nginx has closed the
/// idle connections; checks all were delivered and none failed.
fn deliver(what: &str, builder: Builder) {
    let started_at = Instant::now();
    let (client, failures) = started(builder);
    notify_all(&client, 0..N);
    assert!(
        client.flush(Duration::from_secs(120)),
        "{what}: not delivered in time: {:?}",
        client.stats()
    );
    // nginx closes connections idle for 1 s; the client must notice.
    thread::sleep(Duration::from_millis(1_500));
    for i in N..N + AFTER_IDLE {
        client.notify(msg(i)).expect("notify");
    }
    client.stop();
    failures.assert_none();
    let stats = client.stats();
    let total = (N + AFTER_IDLE) as u64;
    assert_eq!(
        (stats.accepted, stats.delivered, stats.failed),
        (total, total, 0),
        "{what}: {stats:?}"
    );
    eprintln!(
        "nginx interop over {what}: {total} delivered in {:?}",
        started_at.elapsed()
    );
}

#[test]
fn nginx_interop() {
    let Some([nginx, openssl]) = find_all("nginx interop", REQUIRE_VAR, [&NGINX, &OPENSSL]) else {
        return;
    };

    let dir = TempDir::new("nginx");
    make_certificates(&openssl, dir.path());
    let config = client_config(&dir.path().join("ca.pem"));
    let server = start_nginx(&nginx, dir.path(), 2, http_block);

    deliver(
        "http",
        Client::builder(&format!("http://127.0.0.1:{}/notify", server.port(0))),
    );
    deliver(
        "https",
        Client::builder(&format!("https://localhost:{}/notify", server.port(1))).tls_config(config),
    );
    drop(server);
}
