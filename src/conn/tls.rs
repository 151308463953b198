//! The rustls client configuration: one per client, shared by every
//! connection, so its session cache lets reconnects resume.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use crate::endpoint::{Endpoint, Host};
use crate::error::BuildError;

/// What every TLS connection of a client needs.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    pub(crate) config: Arc<ClientConfig>,
    /// SNI and the name the certificate must carry; an IP address is
    /// checked against the certificate's IP SANs and sends no SNI.
    pub(crate) name: ServerName<'static>,
}

impl TlsSetup {
    /// `config` as given by the user, or the default: ring, the Mozilla
    /// roots of `webpki-roots` (and, with the `native-roots` feature, the
    /// operating system's), ALPN `http/1.1`, TLS 1.2 and 1.3, and rustls's
    /// in-memory session cache.
    pub(crate) fn new(
        endpoint: &Endpoint,
        config: Option<Arc<ClientConfig>>,
    ) -> Result<TlsSetup, BuildError> {
        let config = match config {
            Some(config) => config,
            None => default_config()?,
        };
        let name = match &endpoint.host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| {
                BuildError::InvalidUrl(format!("{name:?} is not a valid TLS server name: {e}"))
            })?,
        };
        Ok(TlsSetup { config, name })
    }
}

fn default_config() -> Result<Arc<ClientConfig>, BuildError> {
    let roots = default_roots();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The Mozilla roots of `webpki-roots`, plus, with the `native-roots`
/// feature, the operating system's.
fn default_roots() -> RootCertStore {
    #[allow(unused_mut)] // Added to with `native-roots` only.
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    #[cfg(feature = "native-roots")]
    add_native_roots(&mut roots, rustls_native_certs::load_native_certs());
    roots
}

/// Adds what was read from the operating system's store to `roots`. A
/// certificate that does not parse as a trust anchor is skipped, and so is
/// a place in the store that could not be read (`found.errors`): the
/// other roots still work, and building a client never fails or panics
/// over the store. Returns how many certificates were added.
#[cfg(feature = "native-roots")]
fn add_native_roots(
    roots: &mut RootCertStore,
    found: rustls_native_certs::CertificateResult,
) -> usize {
    let (added, _skipped) = roots.add_parsable_certificates(found.certs);
    added
}

#[cfg(all(test, feature = "native-roots"))]
mod tests {
    use rustls::pki_types::CertificateDer;

    use super::*;

    #[test]
    fn native_roots_that_fail_to_parse_are_skipped_and_the_rest_added() {
        let ca = rcgen::generate_simple_self_signed(vec!["private.example".to_owned()])
            .expect("a self-signed certificate");
        let mut found = rustls_native_certs::CertificateResult::default();
        found.certs = vec![
            CertificateDer::from(b"not a certificate".to_vec()),
            ca.cert.der().clone(),
            CertificateDer::from(Vec::new()),
        ];
        found.errors.push(rustls_native_certs::Error {
            context: "failed to read the store",
            kind: rustls_native_certs::ErrorKind::Io {
                inner: std::io::Error::other("unreadable"),
                path: "/nonexistent".into(),
            },
        });
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        assert_eq!(add_native_roots(&mut roots, found), 1);
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len() + 1);
    }

    #[test]
    fn the_default_roots_hold_the_webpki_roots_and_the_native_ones() {
        let native = rustls_native_certs::load_native_certs();
        let mut expected = RootCertStore::empty();
        expected.add_parsable_certificates(native.certs);
        let roots = default_roots();
        assert_eq!(
            roots.len(),
            webpki_roots::TLS_SERVER_ROOTS.len() + expected.len()
        );
        for anchor in webpki_roots::TLS_SERVER_ROOTS {
            assert!(roots.roots.contains(anchor), "{anchor:?}");
        }
    }
}
