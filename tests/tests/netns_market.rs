//! End to end, the market: the real `spillway run` with XDP in a namespace, a sealed-bid
//! auction over the HTTP API with buyers' own tokens, the contract switching the buyer's
//! answers to proxies at its start and back at its end (to the second, seen with dig), a
//! buy in the running period through the book taking effect at once, and the ledger charging
//! the served usage at the contract's price.

use serde_json::{Value, json};
use spillway_tests::{
    client::{api_ok, dig, now_f64, sleep_until},
    daemon::Daemon,
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
const SHOP: &str = "shop-token";
const BLOG: &str = "blog-token";
/// Short periods, so the test sees a whole contract.
const PERIOD: i64 = 4;
const PROXY: &str = "198.51.100.10";
const SHOP_ORIGIN: &str = "203.0.113.10";
const BLOG_ORIGIN: &str = "203.0.113.20";

fn config(server_if: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = []
xdp_interfaces = ["{server_if}"]

[api]
listen = "{SERVER_ADDR4}:8053"
token = "{OP}"

[store]
path = "@DIR@/spillway.db"

[market]
period_s = {PERIOD}
horizon_periods = 30
reserve_price = 1.0
interval_s = 1
assumed_own_load = 0.2

# edge-1 reports once, by hand: it must not go silent (and leave the answers) meanwhile.
[controller]
proxy_down_s = 3600.0

[[proxy]]
name = "edge-1"
addresses = ["{PROXY}"]
capacity_rps = 1000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["{SHOP_ORIGIN}"]
overflow = "origin"
fraction = 1.0
ttl = 1
token = "{SHOP}"

[[customer]]
id = "blog"
names = ["blog.cdn.example.net."]
origin_addresses = ["{BLOG_ORIGIN}"]
overflow = "origin"
fraction = 1.0
ttl = 1
token = "{BLOG}"
"#
    )
}

fn answer(topo: &Topology, name: &str) -> String {
    let a = dig(topo, &["@192.0.2.53", name, "A"]);
    assert_eq!(a.len(), 1, "{name}: {a:?}");
    a[0].clone()
}

/// Poll `name` until it answers `want`; returns when (seconds since the epoch) it first did.
fn first_time_answering(topo: &Topology, name: &str, want: &str, deadline: f64) -> f64 {
    loop {
        let t = now_f64();
        if answer(topo, name) == want {
            return t;
        }
        assert!(t < deadline, "{name} never answered {want}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn auction_contract_switches_answers_and_ledger_charges_usage() {
    require_privileges!();
    let topo = Topology::new();
    let _daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");

    // No contract: the origin, whatever the estimate.
    assert_eq!(answer(&topo, "shop.cdn.example.net"), SHOP_ORIGIN);
    let shop = api_ok(&topo, "GET", "/v1/customers/shop", SHOP, None);
    assert_eq!((shop["fraction"].as_f64(), shop["estimate"].as_f64()), (Some(0.0), Some(1.0)));

    // A buyer added through the API answers at once from XDP (its overflow: no contract), and
    // so does a name it gains; a name it loses is gone.
    let news = json!({"id": "news", "names": ["news.cdn.example.net."], "origin_addresses": ["203.0.113.30"],
        "overflow": "origin", "fraction": 1.0, "ttl": 1});
    api_ok(&topo, "POST", "/v1/customers", OP, Some(news));
    assert_eq!(answer(&topo, "news.cdn.example.net"), "203.0.113.30");
    api_ok(&topo, "PUT", "/v1/customers/news/names", OP, Some(json!({"names": ["daily.cdn.example.net."]})));
    assert_eq!(answer(&topo, "daily.cdn.example.net"), "203.0.113.30");
    // XDP passes the old name on; with no userspace listener here, nothing answers it.
    let old = topo.client.exec(&["dig", "+short", "+tries=1", "+time=1", "@192.0.2.53", "news.cdn.example.net", "A"]);
    let text = String::from_utf8_lossy(&old.stdout);
    assert!(!text.contains("203.0.113.30"), "the old name still answers: {text}");

    // Capacity: 1000 rps, 20% assumed own use with no history, so 800 unused per period.
    let cap = api_ok(&topo, "GET", "/v1/capacity?periods=2", SHOP, None);
    assert_eq!(cap["periods"][1]["unused_rps"], 800, "{cap}");

    // An auction for a period a few seconds ahead, closing a second before it starts.
    let start = ((now_f64() as i64 + 4) / PERIOD + 1) * PERIOD;
    let end = start + PERIOD;
    let a = api_ok(
        &topo,
        "POST",
        "/v1/auctions",
        OP,
        Some(json!({"period_start": start, "closes_at": start - 1, "quantity_rps": 500})),
    );
    let id = a["id"].as_i64().expect("auction id");
    let bids = format!("/v1/auctions/{id}/bids");
    api_ok(&topo, "POST", &bids, SHOP, Some(json!({"quantity_rps": 300, "max_price": 2.0})));
    api_ok(&topo, "POST", &bids, BLOG, Some(json!({"quantity_rps": 300, "max_price": 1.5})));
    // Sealed: each buyer sees only its own bid.
    let mine = api_ok(&topo, "GET", &bids, BLOG, None);
    assert_eq!(mine["bids"].as_array().map(Vec::len), Some(1), "{mine}");

    // It clears at closes_at by itself: 600 asked of 500, so blog (the lower bid) gets 200
    // and sets the uniform price; shop pays 1.5, not its 2.0.
    sleep_until((start - 1) as f64 + 0.3);
    let a = api_ok(&topo, "GET", &format!("/v1/auctions/{id}"), OP, None);
    assert_eq!(a["state"], "cleared", "{a}");
    assert_eq!(a["clearing_price"].as_f64(), Some(1.5), "{a}");
    let won: Vec<(String, u64, String)> = a["bids"]
        .as_array()
        .expect("bids")
        .iter()
        .map(|b| {
            (
                b["customer"].as_str().unwrap_or("").to_owned(),
                b["filled_rps"].as_u64().unwrap_or(0),
                b["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(won, [("shop".into(), 300, "won".into()), ("blog".into(), 200, "partial".into())]);

    // Still before the start: the origin.
    assert!(now_f64() < start as f64, "the test machine is too slow for {PERIOD} s periods");
    assert_eq!(answer(&topo, "shop.cdn.example.net"), SHOP_ORIGIN);
    // At the start, the proxies, to the second.
    let on = first_time_answering(&topo, "shop.cdn.example.net", PROXY, start as f64 + 3.0);
    assert!(on >= start as f64 - 0.05 && on < start as f64 + 1.0, "switched on at {on}, period starts {start}");

    // The contract shows in /metrics.
    let (_, metrics) = spillway_tests::daemon::http(&topo, "GET", "/metrics", None, None);
    assert!(metrics.contains("spillway_customer_contracted_rps{customer=\"shop\"} 300"), "{metrics}");
    assert!(metrics.contains("spillway_customer_fraction{customer=\"shop\"} 1"), "{metrics}");

    // The proxy reports what it served for shop during the contract: 2 million requests.
    let rep = api_ok(
        &topo,
        "POST",
        "/v1/proxies/edge-1/report",
        OP,
        Some(json!({"own_requests": 5000, "served": {"shop": 2_000_000}})),
    );
    assert_eq!(rep["served"][0]["uncontracted_requests"], 0, "{rep}");

    // At the end, back to the origin.
    let off = first_time_answering(&topo, "shop.cdn.example.net", SHOP_ORIGIN, end as f64 + 3.0);
    assert!(off >= end as f64 - 0.05 && off < end as f64 + 1.0, "switched off at {off}, period ends {end}");

    // The ledger: 2 million requests at 1.5 per million = 3.00, and only shop's usage for shop.
    let usage = api_ok(&topo, "GET", "/v1/usage", SHOP, None);
    assert_eq!(usage["total_requests"], 2_000_000, "{usage}");
    assert_eq!(usage["total_charge_micros"], 3_000_000, "{usage}");
    let contracts = api_ok(&topo, "GET", "/v1/contracts", SHOP, None);
    let c = &contracts["contracts"][0];
    assert_eq!((c["activated_at"].as_i64(), c["ended_at"].as_i64()), (Some(start), Some(end)), "{contracts}");
    assert_eq!(contracts["contracts"].as_array().map(Vec::len), Some(1));

    // The continuous market: blog buys the running period through the book (IOC) and its
    // answers switch at once.
    assert_eq!(answer(&topo, "blog.cdn.example.net"), BLOG_ORIGIN);
    let period = (now_f64() as i64 / PERIOD) * PERIOD;
    let r: Value = api_ok(
        &topo,
        "POST",
        "/v1/orders",
        BLOG,
        Some(json!({"period_start": period, "quantity_rps": 100, "price": 1.2, "tif": "ioc"})),
    );
    let bought_at = now_f64();
    assert_eq!(r["order"]["state"], "filled", "{r}");
    assert_eq!(r["contracts"][0]["price"].as_f64(), Some(1.0), "trades at the network's ask: {r}");
    if now_f64() < (period + PERIOD) as f64 - 0.2 {
        assert_eq!(answer(&topo, "blog.cdn.example.net"), PROXY, "bought at {bought_at}");
    }

    // A standing order: the daemon's market places blog's bid in the next period to open
    // for sale, once, and it fills at the ask.
    let so = api_ok(&topo, "POST", "/v1/standing-orders", BLOG, Some(json!({"quantity_rps": 50, "price": 1.5})));
    let (id, first) = (so["id"].as_i64().unwrap(), so["next_period"].as_i64().unwrap());
    assert_eq!(so["placed"], 0, "{so}");
    let deadline = now_f64() + 2.0 * PERIOD as f64 + 2.0;
    let placed = loop {
        let s = api_ok(&topo, "GET", &format!("/v1/standing-orders/{id}"), BLOG, None);
        if s["placed"].as_u64() >= Some(1) {
            break s;
        }
        assert!(now_f64() < deadline, "no bid placed by {deadline}: {s}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let order = api_ok(&topo, "GET", &format!("/v1/orders/{}", placed["last_order_id"]), BLOG, None);
    assert_eq!((&order["period_start"], &order["state"]), (&json!(first), &json!("filled")), "{order}");
    let cancelled = api_ok(&topo, "POST", &format!("/v1/standing-orders/{id}/cancel"), BLOG, None);
    assert_eq!(cancelled["state"], "cancelled");

    // A block of two periods from the next one, all or none: shop's answers are the proxy
    // in the second of them.
    let next = (now_f64() as i64 / PERIOD + 1) * PERIOD;
    let b = api_ok(
        &topo,
        "POST",
        "/v1/blocks",
        SHOP,
        Some(json!({"period_start": next, "periods": 2, "quantity_rps": 100, "price": 2.0})),
    );
    assert_eq!(b["contracts"].as_array().map(Vec::len), Some(2), "{b}");
    sleep_until((next + PERIOD) as f64 + 0.3);
    assert_eq!(answer(&topo, "shop.cdn.example.net"), PROXY, "the block's second period");
}
