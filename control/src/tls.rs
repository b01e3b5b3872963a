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

/// What a TLS client is given: the authorities it trusts (alone), and the certificate it shows
/// when the server asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_file: PathBuf,
    /// A certificate file and its key file.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// A rustls client that checks the server's certificate and name, with the files read now.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(&self.ca_file)?);
        Ok(match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?,
        })
    }
}

/// A certificate and its key given as two settings (`cert`, `key`: the setting's name and its
/// value): both or neither, each readable, the key the certificate's, and only over TLS
/// (`ca`: the CA setting's name, and whether it is set). As (setting, message), for check.
pub fn identity_problems(
    cert: (&'static str, Option<&Path>),
    key: (&'static str, Option<&Path>),
    ca: (&'static str, bool),
) -> Vec<(&'static str, String)> {
    match (cert.1, key.1) {
        (Some(_), None) => vec![(key.0, format!("is needed with {}", cert.0))],
        (None, Some(_)) => vec![(cert.0, format!("is needed with {}", key.0))],
        (Some(cert_file), Some(key_file)) => {
            let mut v = Vec::new();
            if !ca.1 {
                v.push((cert.0, format!("a client certificate needs TLS: set {} too", ca.0)));
            }
            if let Err(e) = identity_pem(cert_file, key_file) {
                // Name the setting whose file is at fault: a key that is not the certificate's
                // is the key setting's problem.
                let setting = match &e {
                    TlsError::Read { path, .. } | TlsError::Pem { path, .. } if path == key_file => key.0,
                    _ => cert.0,
                };
                v.push((setting, e.to_string()));
            }
            v
        }
        (None, None) => Vec::new(),
    }
}

/// A client certificate and its key, as PEM, once both parse and the key is the certificate's
/// (tonic takes PEM).
pub fn identity_pem(cert_file: &Path, key_file: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certificates(cert_file)?, private_key(key_file)?, &provider).map_err(
        |_| TlsError::Pem { path: key_file.to_owned(), message: format!("is not the key of {}", cert_file.display()) },
    )?;
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
        let tls = ClientTls { ca_file: missing.clone(), identity: None };
        assert!(tls.client_config().unwrap_err().to_string().contains("cannot read"));
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
