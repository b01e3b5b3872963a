//! A Spillway cluster in namespaces: a real etcd cluster, control hosts and edges (each edge
//! with XDP on its own veth), all started by the test and stopped by their guards.
//!
//! `core` holds etcd, the control hosts and the edges (each on its own ports and pin
//! directory); `clients` holds the resolvers, one veth to each edge: edge `i` answers on
//! 10.53.`i`.53, its client is 10.53.`i`.1.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::Value;
use spillway::{
    config::XdpModeConfig,
    dataplane::{Dataplane, LoadOptions, program},
};

use crate::{
    netns::{BpfFs, NetNs, Proc, spillway_bin, tag, veth},
    postgres::Postgres,
};

/// One etcd member: its URLs and data directory, and the process while it runs.
pub struct EtcdMember {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data: PathBuf,
    pub proc: Option<Proc>,
}

/// An etcd cluster on `core`'s loopback.
pub struct Etcd {
    pub members: Vec<EtcdMember>,
    initial: String,
    tls: Option<EtcdTls>,
    _dir: tempfile::TempDir,
}

/// A TLS etcd's files: the clients' CA, the server's certificate, and a client's (etcd asks
/// every client for one signed by the CA).
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server: crate::tls::Leaf,
    pub client: crate::tls::Leaf,
}

impl Etcd {
    /// Start `n` members (client ports `base`+i, peer ports `base`+100+i) and wait until the
    /// cluster answers.
    pub fn start(ns: &NetNs, n: usize, base: u16) -> Etcd {
        Self::start_with(ns, n, base, None)
    }

    /// The same, clients on https with client certificates required.
    pub fn start_tls(ns: &NetNs, n: usize, base: u16, tls: EtcdTls) -> Etcd {
        Self::start_with(ns, n, base, Some(tls))
    }

    fn start_with(ns: &NetNs, n: usize, base: u16, tls: Option<EtcdTls>) -> Etcd {
        let dir = tempfile::tempdir().expect("etcd dir");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", base + i as u16),
                peer_url: format!("http://127.0.0.1:{}", base + 100 + i as u16),
                data: dir.path().join(format!("m{i}")),
                proc: None,
            })
            .collect();
        let initial = members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let mut etcd = Etcd { members, initial, tls, _dir: dir };
        for i in 0..n {
            etcd.start_member(ns, i, "new");
        }
        etcd.wait_healthy(ns, n);
        etcd
    }

    fn start_member(&mut self, ns: &NetNs, i: usize, state: &str) {
        let m = &self.members[i];
        let argv = [
            "etcd",
            "--name",
            &m.name,
            "--data-dir",
            m.data.to_str().expect("utf-8"),
            "--listen-client-urls",
            &m.client_url,
            "--advertise-client-urls",
            &m.client_url,
            "--listen-peer-urls",
            &m.peer_url,
            "--initial-advertise-peer-urls",
            &m.peer_url,
            "--initial-cluster",
            &self.initial,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            "spillway-test",
            // Quick elections, for a test that kills members.
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ];
        let mut argv: Vec<&str> = argv.to_vec();
        let tls_args: Vec<String> = match &self.tls {
            Some(t) => vec![
                "--cert-file".into(),
                t.server.cert.display().to_string(),
                "--key-file".into(),
                t.server.key.display().to_string(),
                "--trusted-ca-file".into(),
                t.ca.display().to_string(),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        argv.extend(tls_args.iter().map(String::as_str));
        let log = m.data.with_extension("log");
        let proc = ns.spawn(&argv, log);
        self.members[i].proc = Some(proc);
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// `etcdctl` and its connection flags, for every member: run with more arguments after.
    pub fn etcdctl(&self) -> Vec<String> {
        let mut v = vec!["etcdctl".to_owned(), "--endpoints".into(), self.endpoints().join(",")];
        if let Some(t) = &self.tls {
            for (flag, path) in [("--cacert", &t.ca), ("--cert", &t.client.cert), ("--key", &t.client.key)] {
                v.extend([flag.to_owned(), path.display().to_string()]);
            }
        }
        v
    }

    fn ctl<'a>(&'a self, args: &[&'a str], base: &'a [String]) -> Vec<&'a str> {
        let mut v: Vec<&str> = base.iter().map(String::as_str).collect();
        v.extend_from_slice(args);
        v
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill9();
        }
    }

    /// Start member `i` again on its data directory.
    pub fn restart(&mut self, ns: &NetNs, i: usize) {
        self.start_member(ns, i, "existing");
    }

    /// Which member leads now (by `etcdctl endpoint status`).
    pub fn leader(&self, ns: &NetNs) -> usize {
        let base = self.etcdctl();
        let text = ns.exec_ok(&self.ctl(&["endpoint", "status", "-w", "json"], &base));
        let status: Value = serde_json::from_str(&text).expect("etcdctl's JSON");
        let rows = status.as_array().expect("one row per member");
        let leader = rows.iter().find_map(|r| r["Status"]["leader"].as_u64()).expect("a leader");
        let at = rows.iter().find(|r| r["Status"]["header"]["member_id"].as_u64() == Some(leader)).expect("its row");
        let url = at["Endpoint"].as_str().expect("endpoint");
        self.members.iter().position(|m| m.client_url == url).expect("a member of ours")
    }

    /// Wait up to 20 s until `healthy` members say they are.
    pub fn wait_healthy(&self, ns: &NetNs, healthy: usize) {
        let base = self.etcdctl();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = ns.exec(&self.ctl(&["--dial-timeout=1s", "endpoint", "health"], &base));
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            if text.matches("is healthy").count() >= healthy {
                return;
            }
            assert!(Instant::now() < deadline, "etcd never got {healthy} healthy members: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A link from `clients` to an edge.
pub struct EdgeLink {
    pub core_if: String,
    pub client_if: String,
    pub edge_addr: String,
    pub client_addr: String,
}

/// The two namespaces and the links; the pass-through programs native XDP on veth needs on
/// the client side.
pub struct ClusterNet {
    pub core: NetNs,
    pub clients: NetNs,
    pub links: Vec<EdgeLink>,
    _peers: Vec<Dataplane>,
}

impl ClusterNet {
    pub fn new(edges: usize) -> ClusterNet {
        let core = NetNs::new("spw-core");
        let clients = NetNs::new("spw-cli");
        let mut links = Vec::new();
        let mut peers = Vec::new();
        for i in 1..=edges {
            let t = tag();
            let link = EdgeLink {
                core_if: format!("spe{i}{t}"),
                client_if: format!("spq{i}{t}"),
                edge_addr: format!("10.53.{i}.53"),
                client_addr: format!("10.53.{i}.1"),
            };
            veth(&core, &link.core_if, &link.edge_addr, &clients, &link.client_if, &link.client_addr);
            let client_if = link.client_if.clone();
            peers.push(clients.run(move || {
                let mut dp = Dataplane::load(LoadOptions::default()).expect("load the pass-through program");
                dp.attach_program(program::PASS, &client_if, XdpModeConfig::Native).expect("attach it");
                dp
            }));
            links.push(link);
        }
        ClusterNet { core, clients, links, _peers: peers }
    }

    /// `dig +short` for an A record at edge `i` (0-based), from its client.
    pub fn dig(&self, i: usize, name: &str) -> Vec<String> {
        let at = format!("@{}", self.links[i].edge_addr);
        let out = self.clients.exec(&["dig", "+short", "+tries=1", "+time=1", &at, name, "A"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// The SOA serials edge `i` gives for `zone`: in an answer to SOA (the userspace server)
    /// and in the authority section of an NXDOMAIN for `missing` (the XDP program's). `None`
    /// for one that did not come.
    pub fn serials(&self, i: usize, zone: &str, missing: &str) -> (Option<u32>, Option<u32>) {
        let at = format!("@{}", self.links[i].edge_addr);
        let ask = |name: &str, rtype: &str, section: &str| {
            let out = self.clients.exec(&["dig", "+noall", section, "+tries=1", "+time=1", &at, name, rtype]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // owner TTL IN SOA mname rname serial ...
            let line = text.lines().find(|l| l.split_whitespace().nth(3) == Some("SOA"))?.to_owned();
            line.split_whitespace().nth(6)?.parse().ok()
        };
        (ask(zone, "SOA", "+answer"), ask(missing, "A", "+authority"))
    }

    /// How long until every edge answers `name` with `want` (polled every 20 ms), or `None`
    /// after `within`.
    pub fn until_all_answer(&self, name: &str, want: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut done = vec![false; self.links.len()];
        while start.elapsed() < within {
            for (i, d) in done.iter_mut().enumerate() {
                if !*d {
                    *d = self.dig(i, name) == [want];
                }
            }
            if done.iter().all(|d| *d) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// An HTTP request from `core` to `url`: (status, body); status 0 if it could not be made.
    pub fn http(&self, method: &'static str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
        crate::daemon::request_in(&self.core, method, url, token, body.map(Value::to_string).as_deref())
    }
}

/// A `spillway run` of the cluster, in `core`, with its own directory and pins.
pub struct Node {
    pub proc: Proc,
    pub api: String,
    pub config: PathBuf,
    pub bpffs: BpfFs,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Write `config` (`@DIR@` and `@BPFFS@` replaced) and start it; `api` is its
    /// `http://host:port`. Not waited for.
    pub fn spawn(ns: &NetNs, api: &str, config: &str) -> Node {
        let bpffs = BpfFs::new();
        let dir = tempfile::tempdir().expect("node dir");
        let config = config
            .replace("@DIR@", dir.path().to_str().expect("utf-8"))
            .replace("@BPFFS@", bpffs.pin_dir().to_str().expect("utf-8"));
        let path = dir.path().join("spillway.toml");
        std::fs::write(&path, crate::fixture::exempt_test_client(&config)).expect("write config");
        let bin = spillway_bin();
        let argv = [bin.to_str().expect("utf-8"), "run", "--config", path.to_str().expect("utf-8")];
        let proc = ns.spawn(&argv, dir.path().join("spillway.log"));
        Node { proc, api: api.to_owned(), config: path, bpffs, dir }
    }

    /// Wait up to 20 s for /readyz to answer 200.
    pub fn wait_ready(&self, net: &ClusterNet) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while net.http("GET", &format!("{}/readyz", self.api), None, None).0 != 200 {
            assert!(Instant::now() < deadline, "never ready; log:\n{}", self.proc.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }
}

/// The `[cluster]` section of a node of `etcd`.
pub fn cluster_section(etcd: &Etcd, role: &str, name: &str) -> String {
    let endpoints = etcd.endpoints().iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[cluster]\nrole = \"{role}\"\netcd_endpoints = [{endpoints}]\nname = \"{name}\"\nlease_ttl_s = 3\ntimeout_ms = 1000\n"
    )
}

/// The `[store]` section of a control host whose store is database `db` of `pg`.
pub fn postgres_store(pg: &Postgres, db: &str) -> String {
    format!("[store]\nurl = \"{}\"\n", pg.url(db))
}

/// A control host on 127.0.0.1:8060 (token `op`): the market with `period_s` periods, one
/// proxy at `proxy`, no customers; its store is `store` (a `[store]` section).
pub fn control_config(etcd: &Etcd, store: &str, op: &str, proxy: &str, period_s: i64) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
# Its own restart rendezvous: two replicas on one host are two daemons, not a handover.
bpffs_dir = "@BPFFS@"
[api]
listen = "127.0.0.1:8060"
token = "{op}"
{store}[market]
period_s = {period_s}
horizon_periods = 30
reserve_price = 1.0
assumed_own_load = 0.0
[controller]
report_stale_s = 2.0
proxy_down_s = 4.0
[[proxy]]
name = "p1"
addresses = ["{proxy}"]
capacity_rps = 10000
{cluster}"#,
        cluster = cluster_section(etcd, "control", "control-1")
    )
}

/// Edge `i` (0-based): DNS on its link's address, XDP on its veth, the admin listener on
/// 127.0.0.1:8061+`i`.
pub fn edge_config(net: &ClusterNet, etcd: &Etcd, i: usize, op: &str) -> String {
    let link = &net.links[i];
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = ["{addr}:53"]
xdp_interfaces = ["{ifname}"]
xdp_addresses = ["{addr}"]
bpffs_dir = "@BPFFS@"
[api]
listen = "127.0.0.1:{port}"
token = "{op}"
# The resolvers' load is far above any response rate.
[rrl]
exempt = ["10.53.0.0/16"]
{cluster}"#,
        addr = link.edge_addr,
        ifname = link.core_if,
        port = 8061 + i,
        cluster = cluster_section(etcd, "edge", &format!("edge-{}", i + 1))
    )
}
