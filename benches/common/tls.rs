//! Throwaway certificates for the HTTPS benchmarks and for
//! `benches/loopback.rs --tls`: a CA made at start signs a leaf for `localhost`
//! and `127.0.0.1`; the sink serves the leaf and the client trusts only the
//! CA. Both ends use the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`;
//! the server has a session cache and a ticketer, so reconnects resume.

use std::error::Error;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol both ends agree on.
const HTTP_1_1: &[u8] = b"http/1.1";

/// The sink's TLS configuration and a client configuration that trusts it.
pub(crate) struct TlsConfigs {
    pub(crate) server: Arc<ServerConfig>,
    pub(crate) client: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Makes the CA, the leaf, and both configurations.
    pub(crate) fn generate() -> Result<TlsConfigs, Box<dyn Error>> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "notifier bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;

        let mut leaf_params = CertificateParams::new(["localhost", "127.0.0.1"].map(String::from))?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate()?;
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let leaf_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], leaf_key)?;
        server.alpn_protocols = vec![HTTP_1_1.to_vec()];
        server.ticketer = rustls::crypto::ring::Ticketer::new()?;

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![HTTP_1_1.to_vec()];

        Ok(TlsConfigs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
