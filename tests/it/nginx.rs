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
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notifier::{Builder, Client};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::support::{msg, notify_all, started, tls::HTTP_1_1};

/// Messages per protocol.
const N: usize = 20_000;
/// Messages sent after nginx has closed the idle connections.
const AFTER_IDLE: usize = 100;
/// How long nginx gets to start listening.
const STARTUP: Duration = Duration::from_secs(20);
/// Set (to anything) to fail instead of skipping when nginx is missing.
const REQUIRE_VAR: &str = "NOTIFIER_REQUIRE_NGINX";

/// Finds `name` on `PATH`, then in `extra` places.
fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(extra.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs a command to completion; panics with its output when it fails.
fn run(command: &mut Command) {
    let output = command.output().expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A scratch directory, removed on drop unless the test is failing.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("notifier-nginx-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the temp dir");
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("nginx test files kept in {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

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

/// The nginx configuration: one process, in the foreground, everything
/// inside the prefix directory.
fn nginx_conf(nginx: &Path, http_port: u16, https_port: u16) -> String {
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
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{
    worker_connections 512;
}}
http {{
    access_log off;
{temp_paths}    keepalive_requests 100;
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
}}
"
    )
}

/// A running nginx, killed on drop (also when the test panics).
struct Nginx {
    child: Child,
    http_port: u16,
    https_port: u16,
}

impl Nginx {
    /// Starts nginx with its prefix in `dir` (which holds the certificates)
    /// and waits until both ports accept. Tries again with other ports when
    /// nginx exits at once (another process took a port meanwhile).
    fn start(nginx: &Path, dir: &Path) -> Nginx {
        let mut last_log = String::new();
        for _try in 0..5 {
            let (http_port, https_port) = (free_port(), free_port());
            fs::write(
                dir.join("nginx.conf"),
                nginx_conf(nginx, http_port, https_port),
            )
            .expect("write nginx.conf");
            let _ = fs::remove_file(dir.join("error.log"));
            let child = Command::new(nginx)
                .arg("-p")
                .arg(dir)
                .args(["-c", "nginx.conf", "-e", "error.log"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn nginx");
            let mut server = Nginx {
                child,
                http_port,
                https_port,
            };
            if server.wait_listening() {
                return server;
            }
            last_log = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        }
        panic!("nginx did not start; its error log:\n{last_log}");
    }

    /// Waits until both ports accept; false when nginx exited first.
    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP;
        let accepts = |port: u16| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        };
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if accepts(self.http_port) && accepts(self.https_port) {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nginx not listening after {STARTUP:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let require = std::env::var_os(REQUIRE_VAR).is_some();
    let nginx = find_program(
        "nginx",
        &[
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ],
    );
    let openssl = find_program("openssl", &["/usr/bin/openssl", "/usr/local/bin/openssl"]);
    let (nginx, openssl) = match (nginx, openssl) {
        (Some(nginx), Some(openssl)) => (nginx, openssl),
        (nginx, _) => {
            let missing = if nginx.is_none() { "nginx" } else { "openssl" };
            assert!(
                !require,
                "{missing} not found, and {REQUIRE_VAR} is set: the nginx interop test must run"
            );
            eprintln!();
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!("!! {missing} not found: SKIPPING nginx interop test; CI installs it");
            eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
            eprintln!();
            return;
        }
    };

    let dir = TempDir::new();
    make_certificates(&openssl, dir.path());
    let config = client_config(&dir.path().join("ca.pem"));
    let server = Nginx::start(&nginx, dir.path());

    deliver(
        "http",
        Client::builder(&format!("http://127.0.0.1:{}/notify", server.http_port)),
    );
    deliver(
        "https",
        Client::builder(&format!("https://localhost:{}/notify", server.https_port))
            .tls_config(config),
    );
    drop(server);
}
