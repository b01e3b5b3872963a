//! The real `spillway run` inside a [`Topology`]: started with a config, waited for until
//! /readyz answers, stopped with SIGTERM when dropped; and HTTP requests to it from the client
//! namespace.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use reqwest::blocking::Client;
use spillway::{
    config::XdpModeConfig,
    dataplane::{Dataplane, LoadOptions, program},
};

use crate::netns::{BpfFs, NetNs, Proc, SERVER_ADDR4, Topology, spillway_bin};

/// Where the daemons started here listen for the API (in the server namespace).
pub fn api_url(path: &str) -> String {
    format!("http://{SERVER_ADDR4}:8053{path}")
}

/// A running daemon. Field order is drop order: the process stops before its pins and files
/// go.
pub struct Daemon {
    pub proc: Proc,
    /// The pass-through program on the client's veth that native XDP_TX needs (taken away
    /// when another program, such as kxdpgun's, must sit there instead).
    pub peer: Option<Dataplane>,
    /// Where the daemon pins its XDP state (`server.bpffs_dir` is set to a directory in it
    /// unless the config names one).
    pub bpffs: BpfFs,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// Attach the peer program, write `config`, start `spillway run`, wait up to 20 s for
    /// /readyz. The config's API must listen on [`api_url`]; `@DIR@` in it is replaced by
    /// the daemon's own temporary directory (for the store).
    pub fn start(topo: &Topology, config: &str) -> Result<Daemon, String> {
        Self::start_wrapped(topo, config, &[])
    }

    /// [`Daemon::start`], with `spillway run` started through `wrapper` (a program and its
    /// arguments, e.g. `setpriv` with a capability bounding set).
    pub fn start_wrapped(topo: &Topology, config: &str, wrapper: &[&str]) -> Result<Daemon, String> {
        let peer = attach_peer(topo)?;
        let bpffs = BpfFs::new();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("spillway.toml");
        let mut config = config.replace("@DIR@", dir.path().to_str().ok_or("temp dir path")?);
        if !config.contains("bpffs_dir") {
            let line = format!("[server]\nbpffs_dir = \"{}\"", bpffs.pin_dir().display());
            config = config.replacen("[server]", &line, 1);
        }
        config = crate::fixture::exempt_test_client(&config);
        std::fs::write(&path, config).map_err(|e| e.to_string())?;
        let bin = spillway_bin();
        let argv = [bin.to_str().ok_or("binary path")?, "run", "--config", path.to_str().ok_or("config path")?];
        let proc = topo.server.spawn(&[wrapper, &argv[..]].concat(), dir.path().join("spillway.log"));
        wait_ready(topo, &proc)?;
        Ok(Daemon { proc, peer: Some(peer), bpffs, config: path, dir })
    }

    /// Start another `spillway run` of `bin` on the same config, store and pins (its log is
    /// `spillway-<n>.log` in the daemon's directory), without waiting.
    pub fn spawn_next(&self, topo: &Topology, bin: &Path, n: usize) -> Proc {
        spawn_run(topo, bin, &self.config, self.dir.path().join(format!("spillway-{n}.log")))
    }
}

fn spawn_run(topo: &Topology, bin: &Path, config: &Path, log: PathBuf) -> Proc {
    let argv = [bin.to_str().expect("binary path"), "run", "--config", config.to_str().expect("config path")];
    topo.server.spawn(&argv, log)
}

/// Write `config` to `dir`/spillway.toml and start `spillway run` on it inside `ns` (its log in
/// `dir`/log), without waiting: for daemons on a namespace's own loopback.
pub fn run_in(ns: &NetNs, dir: &Path, config: &str) -> Proc {
    let path = dir.join("spillway.toml");
    std::fs::write(&path, crate::fixture::exempt_test_client(config)).expect("write config");
    let bin = spillway_bin();
    ns.spawn(&[bin.to_str().expect("utf-8"), "run", "--config", path.to_str().expect("utf-8")], dir.join("log"))
}

/// Wait up to 20 s for /readyz to answer 200 while `proc` runs.
pub fn wait_ready(topo: &Topology, proc: &Proc) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http(topo, "GET", "/readyz", None, None).0 != 200 {
        if Instant::now() > deadline {
            return Err(format!("spillway never became ready; log:\n{}", proc.log_text()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The pass-through program on the client's veth, which native XDP_TX on veth needs; detached
/// when the returned data plane is dropped.
pub fn attach_peer(topo: &Topology) -> Result<Dataplane, String> {
    let client_if = topo.client_if.clone();
    topo.client.run(move || -> Result<Dataplane, String> {
        let mut dp = Dataplane::load(LoadOptions::default()).map_err(|e| e.to_string())?;
        dp.attach_program(program::PASS, &client_if, XdpModeConfig::Native).map_err(|e| e.to_string())?;
        Ok(dp)
    })
}

/// One HTTP request to the daemon's API from inside the client namespace: (status, body);
/// status 0 if the request could not be made.
pub fn http(
    topo: &Topology,
    method: &'static str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    request_in(&topo.client, method, &api_url(path), token, body)
}

/// One HTTP request to `url` from inside `ns` (JSON `body`, bearer `token`): (status, body);
/// status 0 if the request could not be made.
pub fn request_in(
    ns: &NetNs,
    method: &'static str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let url = url.to_owned();
    let token = token.map(str::to_owned);
    let body = body.map(str::to_owned);
    ns.run(move || {
        let client = match Client::builder().timeout(Duration::from_secs(5)).no_proxy().build() {
            Ok(c) => c,
            Err(e) => return (0, e.to_string()),
        };
        let mut r = match method {
            "GET" => client.get(&url),
            "POST" => client.post(&url),
            "DELETE" => client.delete(&url),
            _ => client.put(&url),
        };
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        match r.send() {
            Ok(resp) => (resp.status().as_u16(), resp.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
}
