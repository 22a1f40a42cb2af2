//! TLS: the server certificate (configured, or self-signed on first start), optional client
//! certificate verification (mTLS), ALPN for HTTP/2.

use crate::config::Http;
use crate::ServerError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The certificate and key paths in effect.
pub fn cert_paths(c: &Http, data_dir: &Path) -> (PathBuf, PathBuf) {
    match (&c.cert, &c.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => (
            data_dir.join("keys").join("tls.crt"),
            data_dir.join("keys").join("tls.key"),
        ),
    }
}

/// Create a self-signed certificate for `localhost`, the loopback addresses and this host's
/// name in `keys/` unless one exists. Returns true when it was created now.
pub fn ensure_self_signed(data_dir: &Path) -> Result<bool, ServerError> {
    let dir = data_dir.join("keys");
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if crt.exists() && key.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(&dir).map_err(|e| ServerError::io(&dir, e))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerError::Tls(format!("generating a self-signed certificate: {e}")))?;
    crate::write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&crt, ck.cert.pem()).map_err(|e| ServerError::io(&crt, e))?;
    Ok(true)
}

/// SHA-256 fingerprint of the first certificate in a PEM file (to pin or compare).
pub fn fingerprint(cert: &Path) -> Result<String, ServerError> {
    use sha2::{Digest, Sha256};
    let certs = load_certs(cert)?;
    let first = certs
        .first()
        .ok_or_else(|| ServerError::Tls(format!("{}: no certificate", cert.display())))?;
    let d = Sha256::digest(first.as_ref());
    Ok(d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn load_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(p)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())))?
        .collect();
    let certs = certs.map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no PEM certificate in it",
            p.display()
        )));
    }
    Ok(certs)
}

/// The rustls server configuration. Refuses a key file others can read.
pub fn server_config(c: &Http, data_dir: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (crt, key) = cert_paths(c, data_dir);
    crate::check_private(&key)?;
    let certs = load_certs(&crt)?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &c.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| ServerError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if c.client_cert_required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| ServerError::Tls(format!("client CA: {e}")))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", crt.display())))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The subject CN of a verified client certificate.
pub fn peer_cn(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    crate::der::subject_cn(cert.as_ref())
}
