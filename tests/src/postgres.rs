//! A PostgreSQL server of the test's own: Debian's binaries, a data directory in a temporary
//! directory, its own port on loopback (the host's, or a namespace's), stopped by PID (fast
//! shutdown) and its directory removed on drop.
//!
//! PostgreSQL refuses to run as root: run as root (as `cargo xtask test` is), the server runs
//! as Debian's `postgres` user, which owns the directory.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use crate::netns::{NetNs, Proc};

/// The role the tests and the daemons connect as (trusted on loopback, no password).
pub const USER: &str = "spillway";

pub struct Postgres {
    pub host: String,
    pub port: u16,
    /// The namespace it listens in (None: the host's loopback).
    ns: Option<String>,
    proc: Option<Proc>,
    /// Its certificate, its key and the CA of its clients' certificates (in the data
    /// directory's parent, the server's own): TCP clients must come over TLS with a certificate.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    dir: tempfile::TempDir,
}

/// The newest PostgreSQL binaries Debian installed (`/usr/lib/postgresql/<version>/bin`).
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (cargo xtask setup installs Debian's postgresql)")
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server binary under /usr/lib/postgresql").1
}

/// The uid and gid to run the server as: `postgres` when we are root, else ourselves.
fn server_ids() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").expect("name");
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user: Debian's postgresql package creates it");
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// `argv` run as the server's user (setpriv execs: the PID is the program's).
fn as_server(argv: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    if let Some((uid, gid)) = server_ids() {
        v.extend(["setpriv", &format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups"].map(String::from));
    }
    v.extend(argv.iter().map(|s| s.to_string()));
    v
}

/// `argv` in namespace `ns` (by name), or on this host.
fn command(ns: Option<&str>, argv: &[String]) -> Command {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(argv);
            c
        }
        None => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env("LC_ALL", "C");
    cmd
}

impl Postgres {
    /// Create a cluster and start it on `host:port` (in `ns`, or on this host), and wait until
    /// it takes connections.
    pub fn start(ns: Option<&NetNs>, host: &str, port: u16) -> Postgres {
        Self::start_with(ns, host, port, None)
    }

    /// The same, taking TCP connections over TLS only, with `leaf` as its certificate, from
    /// clients that show a certificate `ca` signed for the user's name (`cert` authentication).
    pub fn start_tls(ns: Option<&NetNs>, host: &str, port: u16, leaf: &crate::tls::Leaf, ca: &Path) -> Postgres {
        Self::start_with(ns, host, port, Some((leaf, ca)))
    }

    fn start_with(ns: Option<&NetNs>, host: &str, port: u16, tls: Option<(&crate::tls::Leaf, &Path)>) -> Postgres {
        let dir = tempfile::Builder::new().prefix("spillway-pg-").tempdir().expect("temp dir");
        if let Some((uid, gid)) = server_ids() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the data directory");
        }
        let bin = bin_dir();
        let data = dir.path().join("data");
        let data_s = data.to_str().expect("utf-8").to_owned();
        let initdb = bin.join("initdb");
        let argv = as_server(&[
            initdb.to_str().expect("utf-8"),
            "-D",
            &data_s,
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            // Nothing here must survive the machine; the server is never killed by the tests.
            "--no-sync",
        ]);
        let out = command(None, &argv).output().expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let tls = tls.map(|(leaf, client_ca)| {
            // The server reads its key only if it alone may (0600, its owner).
            let (cert, key, ca) =
                (dir.path().join("server.pem"), dir.path().join("server.key"), dir.path().join("clients-ca.pem"));
            std::fs::copy(&leaf.cert, &cert).expect("copy the certificate");
            std::fs::copy(&leaf.key, &key).expect("copy the key");
            std::fs::copy(client_ca, &ca).expect("copy the clients' CA");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod the key");
            if let Some((uid, gid)) = server_ids() {
                for f in [&cert, &key, &ca] {
                    std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown");
                }
            }
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 cert\nhostssl all all ::1/128 cert\n\
                       hostssl all all 10.0.0.0/8 cert\n";
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
            (cert, key, ca)
        });
        let mut pg = Postgres { host: host.into(), port, ns: ns.map(|n| n.name.clone()), proc: None, tls, dir };
        pg.spawn();
        pg.wait_ready();
        pg
    }

    fn spawn(&mut self) {
        let postgres = bin_dir().join("postgres");
        let data = self.dir.path().join("data");
        let port = self.port.to_string();
        let tls: Vec<String> = match &self.tls {
            Some((cert, key, ca)) => vec![
                "-c".into(),
                format!("ssl_ca_file={}", ca.display()),
                "-c".into(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".into(),
                format!("ssl_key_file={}", key.display()),
            ],
            None => Vec::new(),
        };
        let mut argv = as_server(&[
            postgres.to_str().expect("utf-8"),
            "-D",
            data.to_str().expect("utf-8"),
            "-p",
            &port,
            "-k",
            self.dir.path().to_str().expect("utf-8"),
            "-c",
            &format!("listen_addresses={}", self.host),
            "-c",
            "fsync=off",
            "-c",
            "max_connections=50",
            "-c",
            "shared_buffers=16MB",
        ]);
        argv.extend(tls);
        let log = self.dir.path().join("postgres.log");
        self.proc = Some(Proc::spawn(command(self.ns.as_deref(), &argv), log));
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let isready = bin_dir().join("pg_isready");
        let argv: Vec<String> = [isready.to_str().expect("utf-8"), "-h", &self.host, "-p", &self.port.to_string()]
            .map(String::from)
            .to_vec();
        loop {
            if command(self.ns.as_deref(), &argv).output().is_ok_and(|o| o.status.success()) {
                return;
            }
            if let Some(st) = self.proc.as_mut().and_then(|p| p.wait_exit(Duration::ZERO)) {
                panic!("postgres exited ({st}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "postgres did not take connections in 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgresql://{USER}@{}:{}/{db}", self.host, self.port)
    }

    /// Run `sql` in `db` with psql; its output, tuples only. It comes through the server's Unix
    /// socket (trusted), so it works whether or not TCP clients must show a certificate.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let psql = bin_dir().join("psql");
        let socket_dir = self.dir.path().to_str().expect("utf-8");
        let port = self.port.to_string();
        let argv: Vec<String> = [
            psql.to_str().expect("utf-8"),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            socket_dir,
            "-p",
            &port,
            "-U",
            USER,
            "-d",
            db,
            "-c",
            sql,
        ]
        .map(String::from)
        .to_vec();
        let out = command(self.ns.as_deref(), &argv).output().expect("psql runs");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: the fast shutdown (SIGTERM would wait for every client to leave).
        if let Some(mut p) = self.proc.take() {
            p.stop_with(libc::SIGINT);
        }
    }
}
