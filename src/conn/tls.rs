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
    /// roots of `webpki-roots`, ALPN `http/1.1`, TLS 1.2 and 1.3, and
    /// rustls's in-memory session cache.
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
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
