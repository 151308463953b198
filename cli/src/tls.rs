//! `--cacert FILE`: the TLS configuration that trusts a private CA on top of
//! the usual roots.
//!
//! Without `--cacert` the tool leaves TLS to the library, whose default
//! configuration (with the `native-roots` feature this package turns on)
//! trusts the Mozilla roots of `webpki-roots` and the operating system's.
//! With it, the tool builds the same configuration itself, adds the
//! certificates of every `--cacert` file, and hands it to
//! [`Builder::tls_config`](notifier::Builder::tls_config): ring, TLS 1.2 and
//! 1.3, ALPN `http/1.1` (which a configuration given to the library must
//! carry itself) and rustls's in-memory session cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// The client configuration: the default roots plus every certificate in
/// the PEM files `cacerts`. An error names the file and what is wrong with
/// it: unreadable, not PEM, no certificate in it, or a certificate that is
/// not a usable trust anchor.
pub(crate) fn client_config(cacerts: &[PathBuf]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = default_roots();
    for path in cacerts {
        for cert in read_pem(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("--cacert {}: a certificate in it: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What the library trusts by default with `native-roots`: the Mozilla
/// roots, then the operating system's. A certificate of the system's store
/// that does not parse, or a part of the store that cannot be read, is
/// skipped, as the library does.
fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

/// Every `CERTIFICATE` block of the PEM file at `path` (other blocks, a
/// key say, are passed over); at least one.
fn read_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let problem = |e: &dyn std::fmt::Display| format!("--cacert {}: {e}", path.display());
    // Read first, so that a missing file is reported as the I/O error it is.
    let pem = std::fs::read(path).map_err(|e| problem(&e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(&e))?;
    if certs.is_empty() {
        return Err(problem(
            &"no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ));
    }
    Ok(certs)
}
