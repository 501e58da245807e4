//! rustls configurations from PEM files: what a server binary's `--tls-cert`/`--tls-key` and a
//! client's `--cacert` need, with the crate's crypto provider.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why a TLS configuration could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The certificate file holds no PEM certificate, or one that cannot be parsed.
    Certificates(String),
    /// The key file holds no PEM private key, or one that cannot be parsed.
    Key(String),
    /// rustls refused the configuration (a key that does not match the certificate, say).
    Rustls(rustls::Error),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificates(why) => write!(f, "no usable PEM certificate: {why}"),
            Self::Key(why) => write!(f, "no usable PEM private key: {why}"),
            Self::Rustls(e) => write!(f, "TLS configuration refused: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Rustls(e) => Some(e),
            _ => None,
        }
    }
}

/// The crate's crypto provider: rustls's `ring` (see the [module docs](super)).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `pem`, in order (the server's own first, then its chain).
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Certificates(e.to_string()))?;
    if certs.is_empty() {
        return Err(ConfigError::Certificates("the file holds none".into()));
    }
    Ok(certs)
}

/// A server configuration from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1
/// or SEC1), offering the ALPN protocols `alpn` in order of preference (none: no ALPN).
/// TLS 1.2 and 1.3, the provider's default cipher suites, no client certificates.
pub fn server_config_from_pem(
    cert_chain: &[u8],
    key: &[u8],
    alpn: &[&[u8]],
) -> Result<ServerConfig, ConfigError> {
    let chain = certificates(cert_chain)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| ConfigError::Key(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(ConfigError::Rustls)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that trusts the certificates of `ca_pem` (a CA, or a server's own
/// self-signed certificate) and asks for the ALPN protocols `alpn`.
///
/// For public servers, build the root store from `webpki-roots` instead (feature
/// `webpki-roots`: `client_config_with_webpki_roots`).
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_pem)? {
        roots.add(cert).map_err(ConfigError::Rustls)?;
    }
    client_config_with_roots(roots, alpn)
}

/// A client configuration that trusts the Mozilla root certificates (`webpki-roots`), for
/// public servers, asking for the ALPN protocols `alpn`.
#[cfg(feature = "webpki-roots")]
pub fn client_config_with_webpki_roots(alpn: &[&[u8]]) -> Result<ClientConfig, ConfigError> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    client_config_with_roots(roots, alpn)
}

fn client_config_with_roots(
    roots: RootCertStore,
    alpn: &[&[u8]],
) -> Result<ClientConfig, ConfigError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(ConfigError::Rustls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
