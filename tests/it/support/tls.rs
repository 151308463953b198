//! The scripted test server over TLS: a test CA and leaf certificates made
//! by `rcgen`, and a [`TlsServer`] that runs a rustls handshake on each
//! accepted connection and then the same [`Action`] script as [`Server`],
//! over `rustls::StreamOwned`. It records every handshake (full, resumed or
//! failed, with the SNI and ALPN the client sent), keeps a session cache and
//! issues tickets, so that TLS 1.2 and 1.3 resumption both work.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ServerSessionMemoryCache;
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection,
    StreamOwned, SupportedProtocolVersion,
};

use super::server::{
    lock, wait_closed, Action, ConnInfo, Request, Script, Server, Shared, Stream, Upgrade,
};

/// A handshake that makes no progress for this long drops the connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The ALPN protocol the client configurations offer and the server accepts.
pub(crate) const HTTP_1_1: &[u8] = b"http/1.1";

impl Stream for StreamOwned<ServerConnection, TcpStream> {
    fn close_write(&mut self) {
        self.conn.send_close_notify();
        let _ = std::io::Write::flush(self);
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }
}

/// The ring crypto provider, the one the library uses by default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority: a self-signed CA certificate and its key.
pub(crate) struct TestCa {
    key: KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa { key, cert }
    }

    /// The CA certificate, to trust in a client configuration.
    pub(crate) fn cert(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server certificate for `names` (DNS names, or IP addresses that
    /// become IP SANs) signed by this CA: the chain (leaf, then CA) and the
    /// leaf's key.
    pub(crate) fn leaf(
        &self,
        names: &[&str],
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf parameters");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign the leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone(), self.cert()], key)
    }

    /// A client configuration that trusts this CA only: ring provider, safe
    /// default protocol versions, ALPN `http/1.1`, default (in-memory)
    /// session resumption.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config_with_versions(rustls::DEFAULT_VERSIONS)
    }

    /// Like [`TestCa::client_config`], limited to the protocol `versions`.
    pub(crate) fn client_config_with_versions(
        &self,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert()).expect("trust the test CA");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![HTTP_1_1.to_vec()];
        Arc::new(config)
    }
}

/// A server configuration presenting `chain`: ring provider, TLS 1.2 and
/// 1.3, ALPN `http/1.1`, the default in-memory session cache, and tickets.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    config.alpn_protocols = vec![HTTP_1_1.to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(256);
    config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    Arc::new(config)
}

/// One TLS handshake as the server saw it, successful or not.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    /// `Full`, `FullWithHelloRetryRequest` or `Resumed`; `None` when the
    /// handshake did not complete.
    pub(crate) kind: Option<HandshakeKind>,
    /// The protocol version negotiated, when it got that far.
    pub(crate) version: Option<ProtocolVersion>,
    /// The SNI the client sent (none for an IP address).
    pub(crate) sni: Option<String>,
    /// The ALPN protocol agreed on, when the client offered `http/1.1`.
    pub(crate) alpn: Option<Vec<u8>>,
    /// Why it failed, when it did.
    pub(crate) error: Option<String>,
}

impl Handshake {
    fn of(conn: &ServerConnection, error: Option<String>) -> Handshake {
        Handshake {
            kind: if error.is_none() {
                conn.handshake_kind()
            } else {
                None
            },
            version: conn.protocol_version(),
            sni: conn.server_name().map(str::to_owned),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            error,
        }
    }

    /// Whether it completed as a full handshake.
    pub(crate) fn is_full(&self) -> bool {
        matches!(
            self.kind,
            Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest)
        )
    }

    /// Whether it completed as a resumption.
    pub(crate) fn is_resumed(&self) -> bool {
        self.kind == Some(HandshakeKind::Resumed)
    }
}

#[derive(Default)]
struct Handshakes(Mutex<Vec<Handshake>>);

impl Handshakes {
    fn push(&self, handshake: Handshake) {
        self.lock().push(handshake);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Handshake>> {
        lock(&self.0)
    }
}

/// The scripted [`Server`] over TLS, on `127.0.0.1`, stopped on drop. It
/// derefs to the [`Server`] for requests, connections and URLs (which say
/// `https`).
pub(crate) struct TlsServer {
    server: Server,
    handshakes: Arc<Handshakes>,
    ca: TestCa,
}

impl TlsServer {
    /// Starts a server whose certificate, from a new test CA, is for
    /// `localhost` and `127.0.0.1`, and answers as `script` says.
    pub(crate) fn start(
        script: impl Fn(&Request, ConnInfo) -> Action + Send + Sync + 'static,
    ) -> TlsServer {
        TlsServer::with_names(&["localhost", "127.0.0.1"], script)
    }

    /// Starts a server that answers `204 No Content` to everything.
    pub(crate) fn no_content() -> TlsServer {
        TlsServer::start(|_, _| Action::no_content())
    }

    /// Starts a server whose certificate, from a new test CA, is for `names`
    /// only, and answers as `script` says.
    pub(crate) fn with_names(
        names: &[&str],
        script: impl Fn(&Request, ConnInfo) -> Action + Send + Sync + 'static,
    ) -> TlsServer {
        TlsServer::spawn(names, None, Box::new(script))
    }

    /// Like [`TlsServer::start`], and also closes a kept-alive connection
    /// (`close_notify`, then FIN) once no request has arrived on it for
    /// `idle`.
    pub(crate) fn start_with_idle_close(
        idle: Duration,
        script: impl Fn(&Request, ConnInfo) -> Action + Send + Sync + 'static,
    ) -> TlsServer {
        TlsServer::spawn(&["localhost", "127.0.0.1"], Some(idle), Box::new(script))
    }

    fn spawn(names: &[&str], idle_close: Option<Duration>, script: Box<Script>) -> TlsServer {
        let ca = TestCa::new("notifier test CA");
        let (chain, key) = ca.leaf(names);
        let config = server_config(chain, key);
        let handshakes = Arc::new(Handshakes::default());
        let upgrade: Box<Upgrade> = {
            let handshakes = Arc::clone(&handshakes);
            Box::new(move |tcp, shared| {
                let stream = accept_tls(tcp, &config, shared, &handshakes)?;
                Some(Box::new(stream) as Box<dyn Stream>)
            })
        };
        let server = Server::spawn(script, idle_close, Some(upgrade));
        TlsServer {
            server,
            handshakes,
            ca,
        }
    }

    /// Starts an `https` server that accepts TCP connections and never
    /// answers the handshake: it reads and discards until the client closes.
    pub(crate) fn silent() -> TlsServer {
        let upgrade: Box<Upgrade> = Box::new(|mut tcp, shared| {
            wait_closed(&mut tcp, shared, None);
            None
        });
        TlsServer {
            server: Server::spawn(Box::new(|_, _| Action::Close), None, Some(upgrade)),
            handshakes: Arc::new(Handshakes::default()),
            ca: TestCa::new("notifier test CA (unused)"),
        }
    }

    /// The CA that signed the server's certificate.
    pub(crate) fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A client configuration trusting the server's CA (see
    /// [`TestCa::client_config`]).
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.ca.client_config()
    }

    /// `https://HOST:PORT` followed by `path_and_query`.
    pub(crate) fn url_for(&self, host: &str, path_and_query: &str) -> String {
        format!("https://{host}:{}{path_and_query}", self.server.port())
    }

    /// Every handshake so far, in the order they ended.
    pub(crate) fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().clone()
    }

    /// How many full handshakes completed.
    pub(crate) fn full_handshakes(&self) -> usize {
        self.handshakes
            .lock()
            .iter()
            .filter(|h| h.is_full())
            .count()
    }

    /// How many resumed handshakes completed.
    pub(crate) fn resumed_handshakes(&self) -> usize {
        self.handshakes
            .lock()
            .iter()
            .filter(|h| h.is_resumed())
            .count()
    }

    /// How many handshakes failed.
    pub(crate) fn failed_handshakes(&self) -> usize {
        self.handshakes
            .lock()
            .iter()
            .filter(|h| h.error.is_some())
            .count()
    }
}

impl Deref for TlsServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

/// Runs the server side of a handshake on `tcp` (which has the server's
/// short read timeout) and records it; `None` when it fails, times out or
/// the server stops.
fn accept_tls(
    mut tcp: TcpStream,
    config: &Arc<ServerConfig>,
    shared: &Shared,
    handshakes: &Handshakes,
) -> Option<StreamOwned<ServerConnection, TcpStream>> {
    let mut conn = ServerConnection::new(Arc::clone(config)).expect("a server connection");
    let started = Instant::now();
    let failed = |conn: &ServerConnection, why: String| {
        handshakes.push(Handshake::of(conn, Some(why)));
        None
    };
    while conn.is_handshaking() {
        if shared.stopping() {
            return failed(&conn, "server stopped".into());
        }
        if started.elapsed() >= HANDSHAKE_TIMEOUT {
            return failed(&conn, "handshake timed out".into());
        }
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return failed(&conn, e.to_string()),
        }
    }
    // Session tickets (TLS 1.3) are queued at the end of the handshake: send
    // them now rather than with the first response.
    while conn.wants_write() {
        if let Err(e) = conn.write_tls(&mut tcp) {
            return failed(&conn, e.to_string());
        }
    }
    handshakes.push(Handshake::of(&conn, None));
    Some(StreamOwned::new(conn, tcp))
}
