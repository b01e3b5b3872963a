//! End to end, the controller: the real `spillway run` with XDP in a namespace, a contract in
//! force, real DNS queries flowing (dig), and proxy reports pushed over HTTP. Reports saying
//! the proxies serve far more than was bought move the fraction down in the XDP map (seen in
//! the API, in /metrics and in dig's answers); when the reports stop, the fraction holds
//! (unknown is not zero) and never rises. The same with the counters scraped from a proxy's
//! Prometheus endpoint (`metrics_url`) instead of pushed reports.

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde_json::json;
use spillway_tests::{
    client::{api_ok, dig, metric, now_f64},
    daemon::{self, Daemon},
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
const PROXY: &str = "198.51.100.10";

fn config(server_if: &str, metrics_url: Option<&str>) -> String {
    config_with(server_if, metrics_url, "", 2)
}

/// [`config`] with more `[controller]` keys and the customer's TTL.
fn config_with(server_if: &str, metrics_url: Option<&str>, controller: &str, ttl: u32) -> String {
    let scrape = metrics_url.map(|u| format!("metrics_url = \"{u}\"\n")).unwrap_or_default();
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
{controller}
[[proxy]]
name = "edge-1"
addresses = ["{PROXY}"]
capacity_rps = 10000
{scrape}[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.5
ttl = {ttl}
"#
    )
}

fn fraction(topo: &Topology) -> f64 {
    api_ok(topo, "GET", "/v1/customers/shop", OP, None)["fraction"].as_f64().expect("fraction")
}

fn report(topo: &Topology, served: u64) {
    let body = json!({"own_requests": 1000, "served": {"shop": served}, "interval_s": 1.0});
    api_ok(topo, "POST", "/v1/proxies/edge-1/report", OP, Some(body));
}

/// The proxy reports serving `served` rps for shop, once a second for `secs` seconds.
fn report_each_second(topo: &Topology, served: u64, secs: u32) {
    for _ in 0..secs {
        report(topo, served);
        std::thread::sleep(Duration::from_millis(1000));
    }
}

#[test]
fn proxy_reports_move_the_fraction_in_the_xdp_map() {
    require_privileges!();
    let topo = Topology::new();
    let _daemon = Daemon::start(&topo, &config(&topo.server_if, None)).expect("spillway starts");
    buy_now(&topo);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| resolvers_asking(&topo, &stop));
        let _stop = StopOnDrop(&stop);
        // The proxy says it serves 800 rps for shop, eight times what was bought.
        report_each_second(&topo, 800, 8);
        came_down(&topo);
        // The reports stop: once the last one is stale (report_stale_s), served is unknown,
        // not zero. The fraction holds; it does not rise.
        std::thread::sleep(Duration::from_millis(3000));
        let low = fraction(&topo);
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(1000));
            let f = fraction(&topo);
            assert!(f <= low + 1e-9, "the fraction rose from {low} to {f} with no reports");
        }
        stop.store(true, Ordering::Relaxed);
    });
    // The daemon kept the last hour: a sample every 5 s of what was bought, served and aimed at.
    let h = api_ok(&topo, "GET", "/v1/customers/shop/history", OP, None);
    let samples = h["samples"].as_array().expect("samples");
    assert!(samples.len() >= 3, "{h}");
    assert_eq!(samples.last().map(|s| &s["contracted_rps"]), Some(&json!(100)), "{h}");
    assert!(samples.iter().any(|s| s["served_rps"].as_f64().is_some_and(|v| v > 700.0)), "{h}");
    assert!(samples.iter().any(|s| s["setpoint_rps"].as_f64().is_some()), "{h}");
}

/// With `controller.proxy_ttl_min_s`, reports that put the buyer over its purchase shorten
/// the TTL of its proxy answers: the API shows the TTL the controller chose, and dig sees
/// 2 s on proxy answers while origin answers keep the customer's 10 s.
#[test]
fn proxy_answers_get_a_short_ttl_when_the_buyer_is_over() {
    require_privileges!();
    let topo = Topology::new();
    let config = config_with(&topo.server_if, None, "proxy_ttl_min_s = 2", 10);
    let _daemon = Daemon::start(&topo, &config).expect("spillway starts");
    buy_now(&topo);
    let answers = |topo: &Topology| -> Vec<(u32, String)> {
        let argv = ["dig", "+noall", "+answer", "+tries=1", "+time=2", "@192.0.2.53", "shop.cdn.example.net", "A"];
        let out = topo.client.exec(&argv);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((f.get(1)?.parse().ok()?, f.get(4)?.to_string()))
            })
            .collect()
    };
    let before: Vec<(u32, String)> = (0..10).flat_map(|_| answers(&topo)).collect();
    assert!(before.iter().all(|(ttl, _)| *ttl == 10), "the customer's TTL before any report: {before:?}");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| resolvers_asking(&topo, &stop));
        let _stop = StopOnDrop(&stop);
        report_each_second(&topo, 800, 6);
        let shop = api_ok(&topo, "GET", "/v1/customers/shop", OP, None);
        assert_eq!(shop["controller"]["proxy_ttl"], 2, "{shop}");
        let (_, metrics) = daemon::http(&topo, "GET", "/metrics", None, None);
        assert_eq!(metric(&metrics, r#"spillway_customer_proxy_ttl_seconds{customer="shop"}"#), 2.0);
        stop.store(true, Ordering::Relaxed);
    });
    // The record in the data plane carries it: with every answer sent to the proxies (a
    // manual fraction keeps the TTL the controller set), dig sees 2 s; with none, the origin's
    // 10 s.
    for (f, ttl, addr) in [(1.0, 2, PROXY), (0.0, 10, "203.0.113.10")] {
        api_ok(&topo, "PUT", "/v1/customers/shop/fraction", OP, Some(json!({"fraction": f})));
        let seen: Vec<(u32, String)> = (0..10).flat_map(|_| answers(&topo)).collect();
        assert!(!seen.is_empty() && seen.iter().all(|(t, a)| *t == ttl && a == addr), "fraction {f}: {seen:?}");
    }
}

#[test]
fn scraped_proxy_counters_move_the_fraction() {
    require_privileges!();
    let topo = Topology::new();
    // The proxy's exporter, in the server namespace on 127.0.0.1: counters that grow by
    // 800 requests a second for shop.
    let listener = topo.server.run(|| TcpListener::bind("127.0.0.1:9101").expect("bind the exporter"));
    let started = now_f64();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let n = ((now_f64() - started) * 800.0) as u64;
            let body = format!(
                "# TYPE spillway_proxy_requests_total counter\nspillway_proxy_requests_total{{customer=\"shop\"}} {n}\n\
                 spillway_proxy_own_requests_total {}\n",
                n * 2
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let _daemon =
        Daemon::start(&topo, &config(&topo.server_if, Some("http://127.0.0.1:9101/metrics"))).expect("spillway starts");
    buy_now(&topo);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| resolvers_asking(&topo, &stop));
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(Duration::from_secs(8));
        came_down(&topo);
        stop.store(true, Ordering::Relaxed);
    });
    // The scrapes also reached the ledger.
    let usage = api_ok(&topo, "GET", "/v1/usage?customer=shop", OP, None);
    assert!(usage["total_requests"].as_u64().is_some_and(|n| n >= 800), "{usage}");
}

/// A contract in force now: 100 rps of the running period, bought through the book; the
/// fraction starts at the buyer's estimate.
/// Buy 100 rps for this period and the next, so that a test started just before a period
/// boundary still has a contract in force when it checks (one run at 20:59:5x failed so).
fn buy_now(topo: &Topology) {
    spillway_tests::client::buy_now(topo, OP, "shop", 100, 600);
    assert_eq!(fraction(topo), 0.5, "the buyer's estimate starts the contract");
}

/// Resolvers asking all along (the controller's cache model needs answers).
/// Sets the flag when dropped: a failed assertion ends the resolvers' loop too, so the test
/// fails instead of waiting for that thread forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn resolvers_asking(topo: &Topology, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        dig(topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]);
    }
}

/// After the proxies said they serve 800 rps for a 100 rps purchase: the fraction is down,
/// the API and /metrics show why, and dig's answers follow.
fn came_down(topo: &Topology) {
    let low = fraction(topo);
    assert!(low < 0.25, "the fraction should have come down from 0.5, is {low}");
    let shop = api_ok(topo, "GET", "/v1/customers/shop", OP, None);
    assert_eq!(shop["mode"], "auto");
    assert!(shop["controller"]["setpoint_rps"].as_f64().is_some_and(|s| s > 0.0 && s < 100.0), "{shop}");
    let served = shop["controller"]["served_rps"].as_f64().unwrap_or(0.0);
    assert!((700.0..=900.0).contains(&served), "{shop}");
    let (_, metrics) = daemon::http(topo, "GET", "/metrics", None, None);
    assert!(metrics.contains("spillway_customer_served_rps{customer=\"shop\"}"), "{metrics}");
    // The data plane follows: most answers are the origin now.
    let answers: Vec<String> = (0..20).flat_map(|_| dig(topo, &["@192.0.2.53", "shop.cdn.example.net", "A"])).collect();
    let proxied = answers.iter().filter(|a| a.as_str() == PROXY).count();
    assert!(proxied <= 12, "{proxied} of 20 answers still went to the proxies at fraction {low}");
}
