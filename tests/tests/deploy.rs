//! `cargo xtask package` and `cargo xtask deploy` for real: the package is built from the
//! binary under test and checked by lintian; an OpenSSH server in the server namespace is the
//! edge host, reached with a key the test makes; the deploy unpacks into a prefix there (no
//! systemd: the pid-file path), starts the daemon, upgrades it with no lost query under a
//! steady load (the new daemon takes the sockets over), rolls back a package whose daemon never
//! becomes ready (the previous daemon keeps serving, the last good package and config are put
//! back), and stops a rolling deploy at the first host that fails.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use spillway_tests::{
    client::dig,
    dnswire::Query,
    load::{Class, QueryLoad},
    netns::{Proc, SERVER_ADDR4, Topology, spillway_bin},
    require_privileges,
};

const SSH_PORT: u16 = 2222;

fn target_dir() -> PathBuf {
    spillway_bin().parent().expect("target/<profile>").to_path_buf()
}

/// The xtask binary beside the daemon's (built here if missing: a plain `cargo test`).
fn xtask() -> PathBuf {
    let bin = target_dir().join("xtask");
    if !bin.is_file() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let ok = Command::new(env!("CARGO")).current_dir(root).args(["build", "-q", "-p", "xtask"]).status();
        assert!(ok.is_ok_and(|s| s.success()), "building xtask");
    }
    bin
}

fn package(dir: &Path, version: &str) -> PathBuf {
    let out = Command::new(xtask())
        .args(["package", "--binary"])
        .arg(spillway_bin())
        .args(["--version", version, "--compression", "gzip", "--out-dir"])
        .arg(dir)
        .output()
        .expect("xtask package runs");
    assert!(out.status.success(), "xtask package: {}", String::from_utf8_lossy(&out.stderr));
    dir.join(format!("spillway_{version}_amd64.deb"))
}

/// sshd in the server namespace on port 2222, with a host key and the test's key authorized.
fn sshd(topo: &Topology, dir: &Path) -> Proc {
    for (key, comment) in [("host", "host"), ("id", "deploy-test")] {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(dir.join(key))
            .output()
            .expect("ssh-keygen");
        assert!(out.status.success(), "{out:?}");
    }
    std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let d = dir.display();
    let conf = format!(
        "Port {SSH_PORT}\nListenAddress {SERVER_ADDR4}\nHostKey {d}/host\nPidFile {d}/sshd.pid\n\
         AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
    );
    std::fs::write(dir.join("sshd_config"), conf).unwrap();
    let proc =
        topo.server.spawn(&["/usr/sbin/sshd", "-D", "-e", "-f", &format!("{d}/sshd_config")], dir.join("sshd.log"));
    let addr = format!("{SERVER_ADDR4}:{SSH_PORT}").parse().unwrap();
    for _ in 0..100 {
        if topo.client.run(move || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    proc
}

/// The edge's config (the test client exempt from the rate limit: the load is one client).
fn config(prefix: &Path, api_port: u16) -> String {
    let p = prefix.display();
    spillway_tests::fixture::exempt_test_client(&format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["{SERVER_ADDR4}:53"]
xdp_interfaces = []
bpffs_dir = "{p}/bpf"
[api]
listen = "{SERVER_ADDR4}:{api_port}"
token = "deploy-test-token"
[store]
path = "{p}/var/lib/spillway/spillway.db"
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
"#
    ))
}

/// Stops the daemon the deploys started (its pid file), however the test ends.
struct Deployed(PathBuf);

impl Deployed {
    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.0.join("run/spillway.pid")).ok()?.trim().parse().ok()
    }

    fn version(&self) -> String {
        let deb = self.0.join("var/lib/spillway/deploy/current.deb");
        let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg("Version").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        // Every daemon started from the prefix, not only the pid file's.
        let bin = self.0.join("usr/bin/spillway");
        let _ = Command::new("pkill").arg("-TERM").arg("-f").arg(bin.display().to_string()).status();
    }
}

fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn package_deploy_upgrade_hitlessly_roll_back_and_stop_a_rolling_deploy() {
    require_privileges!();
    let topo = Topology::new();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("edge");
    let deployed = Deployed(prefix.clone());
    let t0 = std::time::Instant::now();
    let mark = |what: &str| eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
    let _sshd = sshd(&topo, dir.path());
    let v1 = package(dir.path(), "1.0");
    let v2 = package(dir.path(), "2.0");
    mark("two packages");
    let lint = Command::new("lintian").arg(&v1).output().expect("lintian runs");
    let report = String::from_utf8_lossy(&lint.stdout).to_string();
    assert!(lint.status.success() && !report.lines().any(|l| l.starts_with("E:")), "lintian errors:\n{report}");

    let conf = dir.path().join("spillway.toml");
    let deploy = |deb: &Path, conf_text: &str, hosts: &[&str]| {
        std::fs::write(&conf, conf_text).unwrap();
        let mut argv: Vec<String> = vec![xtask().display().to_string(), "deploy".into()];
        for h in hosts {
            argv.extend(["--host".into(), h.to_string()]);
        }
        let key = dir.path().join("id");
        argv.extend(
            [
                "--config",
                conf.to_str().unwrap(),
                "--port",
                &SSH_PORT.to_string(),
                "--identity",
                key.to_str().unwrap(),
                "--ssh-option",
                "StrictHostKeyChecking=no",
                "--ssh-option",
                "UserKnownHostsFile=/dev/null",
                "--ssh-option",
                "LogLevel=ERROR",
                "--prefix",
                prefix.to_str().unwrap(),
                "--package",
                deb.to_str().unwrap(),
                "--ready-timeout-s",
                "15",
            ]
            .map(str::to_owned),
        );
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = topo.client.exec(&argv);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let answer = || dig(&topo, &[&format!("@{SERVER_ADDR4}"), "shop.cdn.example.net", "A"]);

    mark("packages built");
    // 1. The first deploy: installed into the prefix, started, ready.
    let (ok, out) = deploy(&v1, &config(&prefix, 8053), &[SERVER_ADDR4]);
    assert!(ok, "first deploy: {out}");
    assert!(out.contains("deploy: ready, version 1.0"), "{out}");
    assert_eq!(deployed.version(), "1.0");
    let first = deployed.pid().expect("a pid file");
    assert_eq!(answer(), ["198.51.100.10"]);

    mark("deployed 1.0");
    // 2. The upgrade under a steady query load: the new daemon takes over, the old one exits,
    // no query is lost.
    let classes = vec![Class { label: "userspace", query: Query::new("shop.cdn.example.net.", 1).bytes() }];
    let load = QueryLoad::start(&topo.client, format!("{SERVER_ADDR4}:53").parse().unwrap(), classes, 500);
    std::thread::sleep(Duration::from_millis(500));
    let (ok, out) = deploy(&v2, &config(&prefix, 8053), &[SERVER_ADDR4]);
    std::thread::sleep(Duration::from_millis(500));
    let reports = load.stop();
    assert!(ok, "upgrade: {out}");
    let second = deployed.pid().expect("a pid file");
    assert!(second != first && alive(second) && !alive(first), "{first} handed over to {second}");
    assert_eq!(deployed.version(), "2.0");
    let r = &reports[0];
    let all = (Duration::ZERO, Duration::from_secs(3600));
    eprintln!("upgrade: {} of {} queries unanswered", r.unanswered(all.0, all.1), r.sent_in(all.0, all.1));
    assert!(r.sent_in(all.0, all.1) > 500, "the load ran");
    assert_eq!(r.unanswered(all.0, all.1), 0, "queries lost during the upgrade");

    mark("upgraded to 2.0");
    // 3. A package whose daemon never becomes ready (its API port is taken): rolled back; the
    // running daemon goes on serving, the last good package and config are back.
    let v3 = package(dir.path(), "3.0");
    mark("third package");
    let squatter = topo.server.run(|| TcpListener::bind(format!("{SERVER_ADDR4}:8054")).expect("hold 8054"));
    let (ok, out) = deploy(&v3, &config(&prefix, 8054), &[SERVER_ADDR4]);
    drop(squatter);
    assert!(!ok, "a daemon that never gets ready fails the deploy: {out}");
    assert!(out.contains("did not become ready") && out.contains("rolled back"), "{out}");
    assert_eq!(deployed.version(), "2.0", "the last good package");
    assert_eq!(deployed.pid(), Some(second));
    assert!(alive(second), "the previous daemon still serves");
    let installed = std::fs::read_to_string(prefix.join("etc/spillway/spillway.toml")).unwrap();
    assert!(installed.contains(":8053\""), "the previous config is back:\n{installed}");
    assert_eq!(answer(), ["198.51.100.10"]);

    mark("rolled back 3.0");
    // 4. A rolling deploy stops at the first host that fails: the unreachable first host, and
    // the second is not touched.
    let (ok, out) = deploy(&v3, &config(&prefix, 8053), &["192.0.2.99", SERVER_ADDR4]);
    assert!(!ok && out.contains("the rolling deploy stops here"), "{out}");
    assert!(out.contains(&format!("not deployed: [\"{SERVER_ADDR4}\"]")), "{out}");
    assert_eq!(deployed.version(), "2.0");
    assert_eq!(deployed.pid(), Some(second));
}
