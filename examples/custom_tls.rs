//! HTTPS to a server whose certificate a private CA signed: a
//! `rustls::ClientConfig` that trusts that CA alone, with ALPN set, given
//! to the builder's `tls_config`; and, for contrast, the default
//! configuration refusing the same server. The CA and the server (in this
//! process, `examples/common`) are made at start.
//!
//! ```text
//! cargo run --example custom_tls
//! ```

mod common;

use std::{error::Error, sync::Arc};

use notifier::{Builder, Client, Stats};
use rustls::pki_types::{pem::PemObject, CertificateDer};
use rustls::{ClientConfig, RootCertStore};

fn main() -> Result<(), Box<dyn Error>> {
    // Stands for your PKI: the CA's certificate as PEM (usually read from a
    // file) and a server whose certificate it signed for `localhost`.
    let (ca_pem, server_tls) = common::private_ca()?;
    let server = common::Server::start(Some(server_tls), |_body| 204)?;
    let url = server.url("localhost");

    // Trust the private CA, and only it.
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    // builder() takes the process's crypto provider, ring here; where both
    // ring and aws-lc-rs are compiled in, use builder_with_provider instead.
    let mut tls = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Taken as given: without this line the client would offer no ALPN.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let custom = deliver(Client::builder(&url).tls_config(Arc::new(tls)), 10)?;
    let (delivered, alpn) = (custom.delivered, server.alpn().map(String::from_utf8_lossy));
    println!("private CA: delivered {delivered} of 10, ALPN {alpn:?}");
    // The default configuration trusts the Mozilla roots only: a TLS failure, not retried.
    let default = deliver(Client::builder(&url), 1)?;
    println!("default roots: delivered {} of 1", default.delivered);

    if custom.delivered != 10 || server.alpn() != Some(b"http/1.1") || default.failed != 1 {
        return Err("the private CA should be trusted, with ALPN, and only with it".into());
    }
    Ok(())
}

/// Builds the client, sends `count` messages, stops it, returns its stats.
fn deliver(builder: Builder, count: usize) -> Result<Stats, Box<dyn Error>> {
    let client = builder
        .error_handler(|e| match e.source() {
            Some(cause) => eprintln!("  not delivered: {e}: {cause}"),
            None => eprintln!("  not delivered: {e}"),
        })
        .build()?;
    client.start();
    (0..count).try_for_each(|n| client.notify(format!("secret {n}")))?;
    client.stop();
    Ok(client.stats())
}
