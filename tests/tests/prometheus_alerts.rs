//! The operator's dashboards and alerts against the real daemon: every metric the Grafana
//! dashboard and the alerting rules name exists in a live `/metrics` (of a cluster's host with
//! both roles, on a real etcd); the rules pass
//! `promtool check rules`; and a real Prometheus server scraping the daemon in its namespace
//! fires "buyer above its purchase" while reports say a buyer is over, clears it when the buyer
//! is back under, and fires "proxy down" when the proxy goes silent.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use spillway_tests::{
    client::{api_ok, buy_now},
    cluster::Etcd,
    daemon::{Daemon, http},
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
/// Where the test's Prometheus listens, in the server namespace.
const PROMETHEUS: &str = "127.0.0.1:9090";

fn contrib(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../contrib").join(path)
}

fn config(server_if: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["{server_if}"]
[api]
listen = "{SERVER_ADDR4}:8053"
token = "{OP}"
[store]
path = "@DIR@/spillway.db"
[market]
period_s = 600
horizon_periods = 2
reserve_price = 1.0
assumed_own_load = 0.0
[controller]
report_stale_s = 2.0
proxy_down_s = 4.0
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 10000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.5
ttl = 2
"#
    )
}

/// The Spillway metric names an expression text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("spillway_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The alerts Prometheus has now, as (name, state).
fn alerts(topo: &Topology) -> Vec<(String, String)> {
    let url = format!("http://{PROMETHEUS}/api/v1/alerts");
    let body = topo.server.run(move || {
        let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
        c.get(&url).send().ok()?.text().ok()
    });
    let Some(v) = body.and_then(|b| serde_json::from_str::<Value>(&b).ok()) else { return Vec::new() };
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (a["labels"]["alertname"].as_str().unwrap_or("").to_owned(), a["state"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn wait_for(topo: &Topology, within: Duration, what: &str, ok: impl Fn(&[(String, String)]) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let a = alerts(topo);
        if ok(&a) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: Prometheus's alerts are {a:?} after {within:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn firing(a: &[(String, String)], name: &str) -> bool {
    a.iter().any(|(n, s)| n == name && s == "firing")
}

#[test]
fn the_rules_parse_and_every_metric_they_and_the_dashboard_name_exists() {
    require_privileges!();
    let rules = contrib("prometheus/spillway-alerts.yml");
    let out = Command::new("promtool").arg("check").arg("rules").arg(&rules).output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(contrib("grafana/spillway.json")).unwrap())
        .expect("the dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("a target's expr").to_owned())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut names = metric_names(&exprs.join("\n"));
    names.extend(metric_names(&std::fs::read_to_string(&rules).unwrap()));

    // A cluster's host of both roles, on a real etcd: the cluster's metrics are there too.
    let topo = Topology::new();
    let etcd = Etcd::start(&topo.server, 1, 23790);
    let cluster = format!("[cluster]\nrole = \"both\"\netcd_endpoints = [\"{}\"]\n", etcd.endpoints()[0]);
    let _daemon = Daemon::start(&topo, &(config(&topo.server_if) + &cluster)).expect("spillway starts");
    buy_now(&topo, OP, "shop", 100, 600);
    // Two reports: the proxy has a load and the buyer a served rate (absent while unknown).
    for _ in 0..2 {
        report(&topo, 200);
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (status, metrics) = http(&topo, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "named by the dashboard or the rules but not in /metrics: {missing:?}\n{metrics}");
    assert!(names.len() >= 12, "{names:?}");
}

fn report(topo: &Topology, served: u64) {
    let body = json!({"own_requests": 100, "served": {"shop": served}, "interval_s": 1.0});
    api_ok(topo, "POST", "/v1/proxies/edge-1/report", OP, Some(body));
}

#[test]
fn prometheus_fires_and_clears_the_alerts_against_the_daemon() {
    require_privileges!();
    let topo = Topology::new();
    let _daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    buy_now(&topo, OP, "shop", 100, 600);
    // The shipped rules, with their `for:` shortened to 2 s so the test does not wait minutes.
    let dir = tempfile::tempdir().unwrap();
    let rules: String = std::fs::read_to_string(contrib("prometheus/spillway-alerts.yml"))
        .unwrap()
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 2s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let conf = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [\"{}/rules.yml\"]\n\
         scrape_configs:\n  - job_name: spillway\n    static_configs:\n      - targets: [\"{SERVER_ADDR4}:8053\"]\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), conf).unwrap();
    let d = dir.path().display();
    let _prometheus = topo.server.spawn(
        &[
            "prometheus",
            &format!("--config.file={d}/prometheus.yml"),
            &format!("--storage.tsdb.path={d}/data"),
            &format!("--web.listen-address={PROMETHEUS}"),
        ],
        dir.path().join("prometheus.log"),
    );

    // A proxy reporting every second what the test sets: 800 rps for a 100 rps purchase.
    let served = Arc::new(AtomicU64::new(800));
    let stop = Arc::new(AtomicU64::new(0));
    let reporter = {
        let (served, stop) = (served.clone(), stop.clone());
        let topo_client = topo.client.name.clone();
        std::thread::spawn(move || {
            spillway_tests::netns::enter(&format!("/var/run/netns/{topo_client}"));
            let c = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
            while stop.load(Ordering::Relaxed) == 0 {
                let body =
                    json!({"own_requests": 100, "served": {"shop": served.load(Ordering::Relaxed)}, "interval_s": 1.0});
                let _ = c
                    .post(spillway_tests::daemon::api_url("/v1/proxies/edge-1/report"))
                    .bearer_auth(OP)
                    .json(&body)
                    .send();
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let within = Duration::from_secs(45);
    wait_for(&topo, within, "served 8x the purchase", |a| firing(a, "SpillwayBuyerAboveItsPurchase"));
    served.store(50, Ordering::Relaxed);
    wait_for(&topo, within, "back under the purchase", |a| {
        !a.iter().any(|(n, _)| n == "SpillwayBuyerAboveItsPurchase")
    });
    assert!(!firing(&alerts(&topo), "SpillwayProxyDown"), "the proxy reports: up");
    // The reports stop: silent past proxy_down_s, the proxy is down.
    stop.store(1, Ordering::Relaxed);
    reporter.join().unwrap();
    wait_for(&topo, within, "the proxy silent", |a| firing(a, "SpillwayProxyDown"));
}
