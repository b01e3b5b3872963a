//! Proxies that come and go, end to end: real HAProxy processes are the proxies, XDP answers
//! for the buyer's name, and dig sees a proxy leave the answers when its health check fails
//! (HAProxy stopped) or its scrapes stop, and come back when it runs again; a scrape mapping
//! that matches nothing is a warning (numbers unknown, the proxy still named); a proxy added
//! through `ctl` appears, a hot one is avoided, drained ones are not named, and with no proxy
//! left the answer is the overflow.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use spillway_tests::{
    client::{api_ok, dig, metric},
    daemon::{Daemon, api_url, http},
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology, spillway_bin},
    proxies::Haproxy,
    require_privileges,
};

const TOKEN: &str = "t";
const EDGE1: &str = "198.51.100.10";
const EDGE2: &str = "198.51.100.20";
const EDGE3: &str = "198.51.100.30";
const ORIGIN: &str = "203.0.113.10";
/// edge-1's check: every 200 ms, 150 ms to answer, down after 2 failures, up after 2 passes.
const DETECT_MS: u64 = 2 * 200 + 150;
const PROXY_DOWN_S: u64 = 3;

fn config(server_if: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = ["{SERVER_ADDR4}:53", "[{SERVER_ADDR6}]:53"]
xdp_interfaces = ["{server_if}"]
xdp_mode = "native"

[api]
listen = "{SERVER_ADDR4}:8053"
token = "{TOKEN}"

[store]
path = "@DIR@/spillway.db"

[controller]
report_stale_s = 1.0
proxy_down_s = {PROXY_DOWN_S}.0

[[proxy]]
name = "edge-1"
addresses = ["{EDGE1}"]
capacity_rps = 1000
health = {{ url = "http://{EDGE1}/healthz", interval_ms = 200, timeout_ms = 150, rise = 2, fall = 2 }}

[[proxy]]
name = "edge-2"
addresses = ["{EDGE2}"]
capacity_rps = 1000
metrics_url = "http://{EDGE2}/metrics"

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["{ORIGIN}"]
overflow = "origin"
fraction = 1.0
ttl = 30
"#
    )
}

/// The addresses the A answers name over a few queries (each answer is a window of the
/// proxies).
fn named(topo: &Topology) -> BTreeSet<String> {
    (0..8).flat_map(|_| dig(topo, &[&format!("@{SERVER_ADDR4}"), "shop.cdn.example.net", "A"])).collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// Wait up to `within` for the answers to name exactly `want`; how long it took.
fn wait_named(topo: &Topology, want: &[&str], within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let want = set(want);
    loop {
        let got = named(topo);
        if got == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: the answers name {got:?}, not {want:?}, after {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn proxy(topo: &Topology, name: &str) -> Value {
    api_ok(topo, "GET", &format!("/v1/proxies/{name}"), TOKEN, None)
}

#[test]
fn answers_follow_the_proxies_health_load_and_drain() {
    require_privileges!();
    let topo = Topology::new();
    for a in [EDGE1, EDGE2, EDGE3] {
        topo.server.exec_ok(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut edge1 = Haproxy::start(&topo.server, dir.path(), "edge-1", EDGE1.parse().unwrap(), &[]).unwrap();
    let mut edge2 = Haproxy::start(&topo.server, dir.path(), "edge-2", EDGE2.parse().unwrap(), &[]).unwrap();
    let daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    let slack = Duration::from_secs(5);
    wait_named(&topo, &[EDGE1, EDGE2], slack, "at start");
    // edge-2 is scraped with the default mapping (Spillway's own counter names), which
    // HAProxy's exporter does not have: a clear warning, and its numbers are unknown (no
    // load), yet it answers its scrapes, so it stays in the answers.
    let deadline = Instant::now() + slack;
    while !daemon.proc.log_text().contains("the scrape has none of the mapped metrics") {
        assert!(Instant::now() < deadline, "no warning about the mapping:\n{}", daemon.proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = proxy(&topo, "edge-2");
    assert_eq!((v["status"].as_str(), v["load_rps"].is_null()), (Some("answering"), true), "{v}");

    // HAProxy stopped: edge-1 fails its check and leaves the answers within fall x interval +
    // timeout (the slack is for a loaded machine); restarted, it comes back.
    edge1.proc.stop();
    let took = wait_named(&topo, &[EDGE2], Duration::from_millis(DETECT_MS) + slack, "edge-1 stopped");
    eprintln!("edge-1 left the answers {took:?} after HAProxy stopped (check: {DETECT_MS} ms)");
    let v = proxy(&topo, "edge-1");
    assert_eq!((v["status"].as_str(), v["check_up"].as_bool()), (Some("check-failed"), Some(false)), "{v}");
    let (_, metrics) = http(&topo, "GET", "/metrics", None, None);
    assert_eq!(metric(&metrics, r#"spillway_proxy_in_answers{proxy="edge-1"}"#), 0.0);
    assert_eq!(metric(&metrics, r#"spillway_proxy_in_answers{proxy="edge-2"}"#), 1.0);
    assert_eq!(metric(&metrics, r#"spillway_proxy_up{proxy="edge-1"}"#), 0.0);
    edge1 = Haproxy::start(&topo.server, dir.path(), "edge-1", EDGE1.parse().unwrap(), &[]).unwrap();
    wait_named(&topo, &[EDGE1, EDGE2], Duration::from_millis(DETECT_MS) + slack, "edge-1 restarted");

    // edge-2 has no check but is scraped: stopped, its scrapes fail, and it is silent after
    // controller.proxy_down_s; restarted, the next scrape brings it back.
    edge2.proc.stop();
    let took = wait_named(&topo, &[EDGE1], Duration::from_secs(PROXY_DOWN_S + 1) + slack, "edge-2 stopped");
    eprintln!("edge-2 left the answers {took:?} after HAProxy stopped (proxy_down_s: {PROXY_DOWN_S} s)");
    assert_eq!(proxy(&topo, "edge-2")["status"], "silent");
    edge2 = Haproxy::start(&topo.server, dir.path(), "edge-2", EDGE2.parse().unwrap(), &[]).unwrap();
    wait_named(&topo, &[EDGE1, EDGE2], Duration::from_secs(2) + slack, "edge-2 restarted");

    // A proxy added with ctl appears at once; so does a drain.
    let bin = spillway_bin();
    let ctl = |args: &[&str]| {
        let api = api_url("");
        let mut argv = vec![bin.to_str().expect("utf-8"), "ctl", "--api", &api, "--token", TOKEN];
        argv.extend_from_slice(args);
        let out = topo.client.exec(&argv);
        assert!(out.status.success(), "ctl {args:?}: {out:?}");
        serde_json::from_slice::<Value>(&out.stdout).expect("ctl prints JSON")
    };
    let v = ctl(&["proxies", "add", "edge-3", "--address", EDGE3, "--capacity-rps", "1000"]);
    assert_eq!((v["source"].as_str(), v["status"].as_str()), (Some("api"), Some("answering")), "{v}");
    wait_named(&topo, &[EDGE1, EDGE2, EDGE3], slack, "edge-3 added");

    // A hot proxy (its report says 950 requests/s over a 1000 capacity at target load 0.9) is
    // avoided while the others are cooler; back under, it is named again.
    let report = |own: u64| {
        let body = json!({"own_requests": own, "interval_s": 1.0});
        api_ok(&topo, "POST", "/v1/proxies/edge-3/report", TOKEN, Some(body));
    };
    report(950);
    wait_named(&topo, &[EDGE1, EDGE2], slack, "edge-3 hot");
    let v = proxy(&topo, "edge-3");
    assert_eq!((v["status"].as_str(), v["load_rps"].as_f64()), (Some("hot"), Some(950.0)), "{v}");
    report(100);
    wait_named(&topo, &[EDGE1, EDGE2, EDGE3], slack, "edge-3 cool again");

    // Drained: not named (edge-3 first: a proxy that reported once and then says nothing is
    // silent after proxy_down_s); all of them drained: the A answers are the overflow (the
    // origin), and a proxy is back when undrained.
    ctl(&["proxies", "drain", "edge-3"]);
    wait_named(&topo, &[EDGE1, EDGE2], slack, "edge-3 drained");
    ctl(&["proxies", "drain", "edge-1"]);
    wait_named(&topo, &[EDGE2], slack, "edge-1 drained");
    ctl(&["proxies", "drain", "edge-2"]);
    wait_named(&topo, &[ORIGIN], slack, "every proxy drained");
    ctl(&["proxies", "undrain", "edge-2"]);
    wait_named(&topo, &[EDGE2], slack, "edge-2 undrained");
    let v = ctl(&["proxies", "remove", "edge-3"]);
    assert_eq!(v["name"], "edge-3");
    let list = ctl(&["proxies", "list"]);
    let names: Vec<_> =
        list["proxies"].as_array().unwrap().iter().map(|p| (p["name"].clone(), p["drained"].clone())).collect();
    assert_eq!(names, [(json!("edge-1"), json!(true)), (json!("edge-2"), json!(false))], "{list}");
    drop(daemon);
    drop((edge1, edge2));
}
