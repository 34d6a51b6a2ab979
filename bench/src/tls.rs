//! TLS for the TLS scenario: the self-signed identity of the hand-written
//! tokio-rustls echo (`baseline_tls`), made as the `tls_echo` example makes
//! its own, and the load generator's client configuration. Both sides use
//! rustls's ring provider with its defaults, as flexi-socket does, so every
//! server in the scenario negotiates the same protocol version and cipher
//! suite (the load generator reports which).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A server configuration for a fresh self-signed certificate (for
/// `localhost` and 127.0.0.1), and the file the certificate was written to
/// so that clients can trust it.
///
/// # Errors
///
/// The certificate cannot be made or written.
pub fn self_signed_server() -> Result<(Arc<ServerConfig>, PathBuf), String> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".into()])
            .map_err(|e| format!("self-signed certificate: {e}"))?;
    let cert_pem = certified.cert.pem();
    let path =
        std::env::temp_dir().join(format!("flexi-socket-bench-tls-{}.pem", std::process::id()));
    std::fs::write(&path, &cert_pem).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes())
        .map_err(|e| format!("key: {e}"))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| format!("certificate: {e}"))?;
    Ok((Arc::new(config), path))
}

/// A client configuration trusting the CA certificates in PEM file `ca`.
///
/// # Errors
///
/// The file cannot be read or holds no usable certificate.
pub fn client_trusting(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", ca.display()));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("protocol versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
