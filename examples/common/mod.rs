//! The endpoint the examples deliver to: a tiny HTTP/1.1 server in the
//! example's own process, so that they run on a machine with no network.
//! It is not part of notifier; in your program, your endpoint stands here.
#![allow(dead_code)] // each example uses a part of it

use std::collections::HashSet;
use std::error::Error;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// A server on `127.0.0.1` that answers each POST with the status its
/// `respond` function picks for the body (or the one `answer_all` set),
/// one thread per connection.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Picks the status for a request body.
type Respond = dyn Fn(&[u8]) -> u16 + Send + Sync;

struct Shared {
    respond: Box<Respond>,
    tls: Option<Arc<ServerConfig>>,
    answer_all: AtomicU16, // 0: ask `respond`
    answered_2xx: AtomicU64,
    alpn: OnceLock<Option<Vec<u8>>>,
}

impl Server {
    /// Serves plain HTTP, or HTTPS with `tls`, on an ephemeral port.
    pub(crate) fn start(
        tls: Option<Arc<ServerConfig>>,
        respond: impl Fn(&[u8]) -> u16 + Send + Sync + 'static,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let shared = Arc::new(Shared {
            respond: Box::new(respond),
            tls,
            answer_all: AtomicU16::new(0),
            answered_2xx: AtomicU64::new(0),
            alpn: OnceLock::new(),
        });
        let server = Server {
            addr: listener.local_addr()?,
            shared: Arc::clone(&shared),
        };
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                // How a connection ends (a client closing it, a refused
                // certificate) is the client's to report, not the server's.
                thread::spawn(move || {
                    let _ = shared.serve(stream);
                });
            }
        });
        Ok(server)
    }

    /// `http://HOST:PORT/hook`, or `https://…` when serving TLS.
    pub(crate) fn url(&self, host: &str) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}:{}/hook", self.addr.port())
    }

    /// From now on, answers every request with `status`, whatever the body.
    pub(crate) fn answer_all(&self, status: u16) {
        self.shared.answer_all.store(status, Ordering::SeqCst);
    }

    /// How many requests were answered with a 2xx status.
    pub(crate) fn answered_2xx(&self) -> u64 {
        self.shared.answered_2xx.load(Ordering::SeqCst)
    }

    /// The ALPN protocol of the first TLS handshake that completed.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.shared.alpn.get().and_then(Option::as_deref)
    }
}

impl Shared {
    fn serve(&self, mut tcp: TcpStream) -> Result<(), Box<dyn Error>> {
        let Some(config) = &self.tls else {
            return self.answer(BufReader::new(tcp));
        };
        let mut conn = ServerConnection::new(Arc::clone(config))?;
        conn.complete_io(&mut tcp)?; // the whole handshake
        let _ = self.alpn.set(conn.alpn_protocol().map(<[u8]>::to_vec));
        self.answer(BufReader::new(StreamOwned::new(conn, tcp)))
    }

    /// Answers requests (Content-Length bodies) until the client closes.
    fn answer(&self, mut stream: BufReader<impl Read + Write>) -> Result<(), Box<dyn Error>> {
        let mut line = String::new();
        loop {
            let mut length = 0;
            loop {
                line.clear();
                if stream.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse()?;
                    }
                }
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body)?;
            let status = match self.answer_all.load(Ordering::SeqCst) {
                0 => (self.respond)(&body),
                status => status,
            };
            if (200..300).contains(&status) {
                self.answered_2xx.fetch_add(1, Ordering::SeqCst);
            }
            let response = format!("HTTP/1.1 {status} \r\nContent-Length: 0\r\n\r\n");
            stream.get_mut().write_all(response.as_bytes())?;
            stream.get_mut().flush()?;
        }
    }
}

/// A `respond` function for a flaky endpoint: `status` to the first try
/// of every `nth` message (by distinct body), 204 to everything else.
pub(crate) fn flaky(nth: usize, status: u16) -> impl Fn(&[u8]) -> u16 + Send + Sync {
    let seen = Mutex::new(HashSet::new());
    move |body| {
        let mut seen = seen.lock().expect("no server thread panics");
        let first_try_of_an_nth = seen.insert(body.to_vec()) && seen.len() % nth == 0;
        if first_try_of_an_nth {
            status
        } else {
            204
        }
    }
}

/// A private CA made now, as PEM, and a server configuration whose
/// certificate that CA signed for `localhost` and `127.0.0.1`, with ALPN
/// `http/1.1`.
pub(crate) fn private_ca() -> Result<(String, Arc<ServerConfig>), Box<dyn Error>> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = CertificateParams::new(names)?.signed_by(&key, &ca, &ca_key)?;
    let key = PrivatePkcs8KeyDer::from(key.serialize_der());
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key.into())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((ca.pem(), Arc::new(config)))
}
