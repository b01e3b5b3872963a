//! TLS for the control plane's clients (etcd and PostgreSQL): certificates and keys read from
//! PEM files. Files are read again for every new connection, so a renewed certificate is taken
//! without a restart; `spillway check` reads them once to find a bad file before it is needed.
//! rustls with ring only: one crypto provider, chosen here, whatever else the build holds.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// A PEM file's bytes, read whole.
fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// Every certificate in a PEM file; an error when there is none or one does not parse.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: format!("not a PEM certificate file: {e}") })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), message: "holds no PEM certificate".into() });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?)
        .map_err(|e| TlsError::Pem { path: path.to_owned(), message: format!("holds no PEM private key: {e}") })
}

/// The certificate authorities a server's certificate must chain to.
pub fn roots(ca_file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::Pem { path: ca_file.to_owned(), message: format!("not a usable CA: {e}") })?;
    }
    Ok(roots)
}

/// A client that trusts the authorities of `ca_file` alone and checks the server's name.
pub fn client_config(ca_file: &Path) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth())
}

/// A client certificate and its key, as PEM, once both parse (tonic takes PEM).
pub fn identity_pem(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    certificates(cert_file)?;
    private_key(key_file)?;
    Ok((read(cert_file)?, read(key_file)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("spillway-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = dir.join("none.pem");
        assert!(client_config(&missing).unwrap_err().to_string().contains("cannot read"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").expect("write");
        assert!(certificates(&empty).unwrap_err().to_string().contains("holds no PEM certificate"));
        assert!(private_key(&empty).unwrap_err().to_string().contains("holds no PEM private key"));
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").expect("write");
        let junk_error = roots(&junk).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).expect("clean up");
        assert!(junk_error.contains("not a usable CA"), "{junk_error}");
    }
}
