//! TLS on the listener with rustls (ring crypto, no OpenSSL): TLS 1.2 and
//! 1.3 only, ALPN `h2` and `http/1.1`, PEM certificate chain and key, and
//! a certificate that can be replaced at run time ([`crate::proxy::Front::reload`],
//! which `uwire proxy` calls on SIGHUP) without touching open connections:
//! each handshake asks [`ReloadableCert`] for the current certificate.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::config::TlsFiles;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the key or the pair.
    #[error("certificate/key: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the chain and key and checks that they belong together.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let pem_err = |p: &Path, what: String| TlsError::Pem {
        path: p.display().to_string(),
        what,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_err(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_err(&files.cert, "no CERTIFICATE in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| pem_err(&files.key, e.to_string()))?;
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

/// The certificate every new handshake gets; replaced on reload.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The listener's TLS: acceptor plus the files to reload from.
#[derive(Clone)]
pub(crate) struct TlsState {
    files: TlsFiles,
    cert: Arc<ReloadableCert>,
    acceptor: TlsAcceptor,
}

impl TlsState {
    /// Loads the files and builds the server configuration.
    pub(crate) fn new(files: &TlsFiles) -> Result<TlsState, TlsError> {
        let cert = Arc::new(ReloadableCert {
            current: RwLock::new(Arc::new(load_certified_key(files)?)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption as nginx offers by default.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(TlsState {
            files: files.clone(),
            cert,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files; new handshakes use the new certificate, open
    /// connections keep theirs. On error the old certificate stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let key = load_certified_key(&self.files)?;
        self.cert.set(key);
        Ok(())
    }
}
