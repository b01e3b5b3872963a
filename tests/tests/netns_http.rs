//! The whole chain with real proxy software: web clients in a namespace resolve the buyer's
//! name through Spillway (XDP) and fetch over HTTP from whichever address the answer gave;
//! HAProxy is the proxy server (one backend per buyer, counted by its Prometheus exporter),
//! nginx the buyer's origin. Spillway scrapes HAProxy through a `metrics` mapping. With demand
//! at 3x the purchase, the controller brings what HAProxy serves for the buyer back within the
//! purchase, and the ledger bills exactly what HAProxy counted.

use std::time::{Duration, Instant};

use spillway_tests::{
    client::{api_ok, buy_now},
    daemon::Daemon,
    netns::{SERVER_ADDR4, Topology},
    proxies::{Haproxy, Nginx, WebClients, route_web},
    require_privileges,
};

const OP: &str = "operator-token";
const PROXY: &str = "198.51.100.10";
const ORIGIN: &str = "203.0.113.10";
const HOST: &str = "shop.cdn.example.net";
const PURCHASE_RPS: u64 = 100;
const DEMAND_RPS: u32 = 300;

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
addresses = ["{PROXY}"]
capacity_rps = 10000
metrics_url = "http://{PROXY}/metrics"
health = {{ url = "http://{PROXY}/healthz" }}
# HAProxy's exporter: one backend per buyer, named by its id; the network's own site in "own".
[proxy.metrics]
served = {{ metric = "haproxy_backend_http_requests_total", label = "proxy" }}
own = {{ metric = "haproxy_backend_http_requests_total", label = "proxy", values = ["own"] }}

[[customer]]
id = "shop"
names = ["{HOST}."]
origin_addresses = ["{ORIGIN}"]
overflow = "origin"
fraction = 0.5
ttl = 2
"#
    )
}

#[test]
fn the_controller_keeps_what_haproxy_serves_within_the_purchase_and_the_ledger_bills_it() {
    require_privileges!();
    let topo = Topology::new();
    route_web(&topo.client, &topo.server, SERVER_ADDR4, &[PROXY, ORIGIN]);
    let dir = tempfile::tempdir().unwrap();
    let _origin = Nginx::start(&topo.server, dir.path(), "shop", ORIGIN.parse().unwrap()).unwrap();
    let edge = Haproxy::start(
        &topo.server,
        dir.path(),
        "edge-1",
        PROXY.parse().unwrap(),
        &[("shop", HOST, ORIGIN.parse().unwrap())],
    )
    .unwrap();
    let daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    // Two scrapes matched the mapping: the proxy has rates (its load), and every request
    // from now on is in a scrape's delta.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api_ok(&topo, "GET", "/v1/proxies/edge-1", OP, None)["load_rps"].is_null() {
        assert!(Instant::now() < deadline, "no rates from HAProxy's exporter; log:\n{}", daemon.proc.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    buy_now(&topo, OP, "shop", PURCHASE_RPS, 600);

    // 150 web clients, 300 requests/s in all: 3x the purchase.
    let dns = format!("{SERVER_ADDR4}:53").parse().unwrap();
    let mut clients = WebClients::start(&topo.client, dns, HOST, 150, DEMAND_RPS);
    std::thread::sleep(Duration::from_secs(12));
    let (t0, n0) = (Instant::now(), edge.backend_requests(&topo.client, "shop"));
    std::thread::sleep(Duration::from_secs(12));
    let (t1, n1) = (Instant::now(), edge.backend_requests(&topo.client, "shop"));
    let served = clients.stop();
    let rate = (n1 - n0) as f64 / (t1 - t0).as_secs_f64();
    let shop = api_ok(&topo, "GET", "/v1/customers/shop", OP, None);
    eprintln!(
        "HAProxy served {rate:.1} rps for shop (bought {PURCHASE_RPS}); clients: {served:?}; {}",
        shop["controller"]
    );
    let total: u64 = served.values().sum();
    assert!(total as f64 > 0.8 * f64::from(DEMAND_RPS) * 24.0, "the clients' demand did not flow: {served:?}");
    assert!(
        rate <= PURCHASE_RPS as f64 * 1.1,
        "HAProxy served {rate:.1} rps for a {PURCHASE_RPS} rps purchase: {shop}"
    );
    assert!(rate >= PURCHASE_RPS as f64 * 0.3, "the buyer got far less than it bought: {rate:.1} rps: {shop}");
    assert!(served.get("origin").is_some_and(|&n| n > 0), "the overflow went to nginx: {served:?}");

    // The ledger bills what HAProxy counted, once the last requests are in a scrape.
    std::thread::sleep(Duration::from_millis(2500));
    let counted = edge.backend_requests(&topo.client, "shop");
    let usage = api_ok(&topo, "GET", "/v1/usage?customer=shop", OP, None);
    assert_eq!(usage["total_requests"].as_u64(), Some(counted), "{usage}");
    // And HAProxy counted what the clients got from it.
    let got = served.get("edge-1").copied().unwrap_or(0);
    assert!(got.abs_diff(counted) <= counted / 100 + 5, "clients got {got} from edge-1, HAProxy counted {counted}");
}
