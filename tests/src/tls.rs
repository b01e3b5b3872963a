//! A throwaway certificate authority for the TLS tests, made with the openssl command: a CA,
//! and leaf certificates it signs for 127.0.0.1 and localhost (server and client use alike).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    key: PathBuf,
}

/// A leaf: its certificate and key, PEM.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl runs (cargo xtask setup installs it)");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// `openssl req` with a new P-256 key written to `key`, then `more`.
fn new_key(key: &Path, more: &[&str]) {
    let mut args =
        vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", s(key)];
    args.extend_from_slice(more);
    openssl(&args);
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

impl TestCa {
    /// A new CA named `name`, valid for two days.
    pub fn new(name: &str) -> TestCa {
        let dir = tempfile::Builder::new().prefix("spillway-ca-").tempdir().expect("CA dir");
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca.key");
        let subject = format!("/CN={name}");
        new_key(
            &key,
            &[
                "-x509",
                "-out",
                s(&cert),
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        TestCa { dir, cert, key }
    }

    /// A certificate for 127.0.0.1 and localhost, for servers and clients.
    pub fn leaf(&self, name: &str) -> Leaf {
        let d = self.dir.path();
        let (cert, key, csr, ext) = (
            d.join(format!("{name}.pem")),
            d.join(format!("{name}.key")),
            d.join(format!("{name}.csr")),
            d.join(format!("{name}.ext")),
        );
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write the extensions");
        new_key(&key, &["-out", s(&csr), "-subj", &format!("/CN={name}")]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.cert),
            "-CAkey",
            s(&self.key),
            "-CAcreateserial",
            "-out",
            s(&cert),
            "-days",
            "2",
            "-extfile",
            s(&ext),
        ]);
        Leaf { cert, key }
    }
}
