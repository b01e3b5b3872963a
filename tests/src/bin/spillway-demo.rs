//! `cargo xtask demo`: Spillway on embedded defaults in two private namespaces joined by veth.
//! Starts the real daemon with XDP attached in native mode and its SQLite store, runs a market
//! round (a sealed-bid auction and the continuous book), sends real DNS queries with dig before,
//! during and after the contracts, prints what was answered and why, shows the ledger, and
//! cleans up.

use std::{collections::BTreeMap, net::IpAddr};

use serde_json::{Value, json};
use spillway_tests::{
    client::{now_f64, sleep_until},
    daemon::{Daemon, http},
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology, spillway_bin},
    proxies::{Haproxy, Nginx, fetch, route_web},
};

const TOKEN: &str = "demo-token";
const SHOP_TOKEN: &str = "shop-demo-token";
const BLOG_TOKEN: &str = "blog-demo-token";
/// Short periods so a whole contract fits in the demo.
const PERIOD: i64 = 6;

fn config(server_if: &str) -> String {
    format!(
        r#"# Spillway demo config (written by cargo xtask demo)
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = []
xdp_interfaces = ["{server_if}"]
xdp_mode = "native"

[api]
listen = "{SERVER_ADDR4}:8053"
token = "{TOKEN}"

[store]
path = "@DIR@/spillway.db"

[market]
period_s = {PERIOD}
horizon_periods = 10
reserve_price = 0.8
interval_s = 1
assumed_own_load = 0.3

# The proxies are real HAProxy processes (started by the demo), checked every second.
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 20000
health = {{ url = "http://198.51.100.10/healthz" }}

[[proxy]]
name = "edge-2"
addresses = ["198.51.100.11", "2001:db8:100::11"]
capacity_rps = 20000
health = {{ url = "http://198.51.100.11/healthz" }}

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "203.0.113.11", "2001:db8:200::10"]
overflow = "origin"
assignment = "round-robin"
fraction = 0.6
ttl = 1
token = "{SHOP_TOKEN}"

[[customer]]
id = "blog"
names = ["blog.cdn.example.net."]
origin_cname = "origin.blog.example."
overflow = "cname"
fraction = 0.5
ttl = 1
token = "{BLOG_TOKEN}"
"#
    )
}

fn main() {
    if let Err(e) = demo() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn api(topo: &Topology, method: &'static str, path: &str, token: &str, body: Option<Value>) -> Result<Value, String> {
    let body = body.map(|b| b.to_string());
    match http(topo, method, path, Some(token), body.as_deref()) {
        (200, text) => serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}")),
        (status, text) => Err(format!("{method} {path}: {status} {text}")),
    }
}

/// Why an answer is what it is, from its records.
fn explain(records: &[String]) -> &'static str {
    match records.first().map(String::as_str) {
        Some(r) if r.starts_with("198.51.100.") || r.starts_with("2001:db8:100:") => {
            "proxy: a contract is in force and the per-query draw fell below the fraction"
        }
        Some(r) if r.ends_with('.') => "cname: overflow hands the client back to the buyer's DNS",
        Some(_) => "origin: overflow (no contract in force, or the draw), one origin by round-robin",
        None => "no answer",
    }
}

fn round(topo: &Topology, name: &str, qtype: &str, server: &str, n: usize) -> Result<(), String> {
    let mut tally: BTreeMap<String, (usize, &'static str)> = BTreeMap::new();
    for _ in 0..n {
        let out = topo.client.exec(&["dig", "+short", "+tries=1", "+time=2", server, name, qtype]);
        if !out.status.success() {
            return Err(format!("dig {name} {qtype}: {}", String::from_utf8_lossy(&out.stdout)));
        }
        let records: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        let e = tally.entry(records.join(" ")).or_insert((0, explain(&records)));
        e.0 += 1;
    }
    println!("  {n} x dig {server} {name} {qtype}:");
    for (answer, (count, why)) in tally {
        println!("    {count:>3} x {answer:<40} {why}");
    }
    Ok(())
}

/// Resolve shop until one answer names a proxy and one an origin, and fetch the page from each.
fn browse(topo: &Topology) -> Result<(), String> {
    let mut seen = BTreeMap::new();
    for _ in 0..50 {
        let out =
            topo.client.exec(&["dig", "+short", "+tries=1", "+time=2", "@192.0.2.53", "shop.cdn.example.net", "A"]);
        let Some(first) = String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned) else { continue };
        let side = if first.starts_with("198.51.100.") { "proxy" } else { "origin" };
        if seen.contains_key(side) {
            continue;
        }
        let addr: IpAddr = first.parse().map_err(|e| format!("{first}: {e}"))?;
        let (status, by, body) =
            fetch(&topo.client, addr, "shop.cdn.example.net").ok_or(format!("GET http://{addr}/ had no answer"))?;
        println!(
            "  dig says {addr} ({side}); GET http://{addr}/ Host: shop.cdn.example.net -> {status}, served by {by}: {}",
            body.trim()
        );
        seen.insert(side, by);
        if seen.len() == 2 {
            break;
        }
    }
    match seen.get("proxy") {
        Some(by) if by.starts_with("edge-") => Ok(()),
        _ => Err(format!("no page came through a proxy: {seen:?}")),
    }
}

fn demo() -> Result<(), String> {
    println!("== Spillway demo: a market round and XDP answers in a private two-namespace topology");
    let topo = Topology::new();
    println!(
        "  namespaces {} (client, {}) and {} (server, {}) joined by veth",
        topo.client.name, topo.client_if, topo.server.name, topo.server_if
    );
    // The web side: HAProxy as the two proxies (shop's backend fetches from its origin), nginx
    // as shop's origins, all on the server namespace's loopback, routed from the client.
    let web = ["198.51.100.10", "198.51.100.11", "203.0.113.10", "203.0.113.11"];
    route_web(&topo.client, &topo.server, SERVER_ADDR4, &web);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ip = |a: &str| a.parse::<IpAddr>().map_err(|e| e.to_string());
    let mut servers = Vec::new();
    for (name, origin) in [("shop-1", web[2]), ("shop-2", web[3])] {
        servers.push(Nginx::start(&topo.server, dir.path(), name, ip(origin)?)?.proc);
    }
    for (name, addr) in [("edge-1", web[0]), ("edge-2", web[1])] {
        let shop = [("shop", "shop.cdn.example.net", ip(web[2])?)];
        servers.push(Haproxy::start(&topo.server, dir.path(), name, ip(addr)?, &shop)?.proc);
    }
    println!("  HAProxy on 198.51.100.10 and .11 (the proxies), nginx on 203.0.113.10 and .11 (shop's origins)");
    let daemon = Daemon::start(&topo, &config(&topo.server_if))?;
    let bin = spillway_bin();
    println!(
        "  spillway {} running (pid {}), XDP attached in native mode, SQLite store in {}",
        bin.display(),
        daemon.proc.pid(),
        daemon.dir.path().display()
    );

    println!("\n== 1. Unused capacity per {PERIOD} s period (GET /v1/capacity): 2 proxies x 20000 rps,");
    println!("      own use forecast at 30% (no history yet: market.assumed_own_load)");
    let cap = api(&topo, "GET", "/v1/capacity?periods=3", TOKEN, None)?;
    for p in cap["periods"].as_array().into_iter().flatten() {
        println!(
            "  period {}: capacity {} rps, own forecast {}, unused {}, sold {}, available {}",
            p["period_start"],
            p["capacity_rps"],
            p["forecast_own_rps"],
            p["unused_rps"],
            p["sold_rps"],
            p["available_rps"]
        );
    }

    println!("\n== 2. No contract yet: the buyers' names answer with their overflow only");
    round(&topo, "shop.cdn.example.net", "A", "@192.0.2.53", 10)?;
    round(&topo, "blog.cdn.example.net", "A", "@192.0.2.53", 10)?;

    let start = ((now_f64() as i64 + 5) / PERIOD + 1) * PERIOD;
    println!("\n== 3. A sealed-bid auction for period [{start}, {}), closing a second before it", start + PERIOD);
    let a = api(
        &topo,
        "POST",
        "/v1/auctions",
        TOKEN,
        Some(json!({"period_start": start, "closes_at": start - 1, "quantity_rps": 20000})),
    )?;
    let id = a["id"].as_i64().ok_or("auction id")?;
    println!("  auction {id}: 20000 rps offered, reserve {}", a["reserve_price"]);
    let bids = format!("/v1/auctions/{id}/bids");
    api(&topo, "POST", &bids, SHOP_TOKEN, Some(json!({"quantity_rps": 15000, "max_price": 2.0})))?;
    api(&topo, "POST", &bids, BLOG_TOKEN, Some(json!({"quantity_rps": 10000, "max_price": 1.2})))?;
    api(&topo, "POST", &bids, BLOG_TOKEN, Some(json!({"quantity_rps": 5000, "max_price": 0.5})))?;
    println!("  bids (sealed, each with the buyer's own token): shop 15000 @ 2.0, blog 10000 @ 1.2, blog 5000 @ 0.5");

    println!("\n== 4. The continuous market for the same period (POST /v1/orders): the network's ask");
    println!("      offers what the auction does not hold; shop buys 3000 rps at once (IOC)");
    let book = api(&topo, "GET", &format!("/v1/book/{start}"), SHOP_TOKEN, None)?;
    println!("  book before: asks {}", book["asks"]);
    let r = api(
        &topo,
        "POST",
        "/v1/orders",
        SHOP_TOKEN,
        Some(json!({"period_start": start, "quantity_rps": 3000, "price": 1.0, "tif": "ioc"})),
    )?;
    println!(
        "  order {}: {} ({} rps left), contract at {}",
        r["order"]["id"], r["order"]["state"], r["order"]["remaining_rps"], r["contracts"][0]["price"]
    );
    let book = api(&topo, "GET", &format!("/v1/book/{start}"), SHOP_TOKEN, None)?;
    println!("  book after: asks {}", book["asks"]);

    sleep_until((start - 1) as f64 + 0.4);
    println!("\n== 5. The auction cleared at its close (uniform price at the first rejected unit)");
    let a = api(&topo, "GET", &format!("/v1/auctions/{id}"), TOKEN, None)?;
    println!("  sold {} rps at {} per million requests", a["sold_rps"], a["clearing_price"]);
    for b in a["bids"].as_array().into_iter().flatten() {
        println!("  bid {} {}: {} -> {} rps: {}", b["id"], b["customer"], b["state"], b["filled_rps"], b["reason"]);
    }

    sleep_until(start as f64 + 0.3);
    println!("\n== 6. The period has started: contracts in force, answers follow the buyers' estimates");
    let c = api(&topo, "GET", "/v1/contracts", TOKEN, None)?;
    for c in c["contracts"].as_array().into_iter().flatten() {
        println!(
            "  contract {} {}: {} rps at {} ({}), active since {}",
            c["id"], c["customer"], c["rps"], c["price"], c["source"], c["activated_at"]
        );
    }
    round(&topo, "shop.cdn.example.net", "A", "@192.0.2.53", 30)?;
    round(&topo, "shop.cdn.example.net", "AAAA", &format!("@{SERVER_ADDR6}"), 10)?;
    round(&topo, "blog.cdn.example.net", "A", "@192.0.2.53", 20)?;
    println!("\n== 6b. A browser resolves shop and fetches its page over HTTP from the address the answer gave");
    browse(&topo)?;

    println!("\n== 7. The proxies report what they served; the ledger charges it at the contract price");
    api(
        &topo,
        "POST",
        "/v1/proxies/edge-1/report",
        TOKEN,
        Some(json!({"own_requests": 90000, "served": {"shop": 1_200_000, "blog": 400_000}})),
    )?;
    let u = api(&topo, "GET", "/v1/usage", TOKEN, None)?;
    for row in u["usage"].as_array().into_iter().flatten() {
        println!(
            "  {} interval {}: {} requests, charge {}",
            row["customer"], row["interval_start"], row["requests"], row["charge"]
        );
    }

    sleep_until((start + PERIOD) as f64 + 0.3);
    println!("\n== 8. The period has ended: contracts over, answers back to the overflow");
    round(&topo, "shop.cdn.example.net", "A", "@192.0.2.53", 10)?;
    round(&topo, "blog.cdn.example.net", "A", "@192.0.2.53", 10)?;

    println!("\n== 9. What the XDP program counted (GET /metrics)");
    let (_, metrics) = http(&topo, "GET", "/metrics", None, None);
    for line in metrics.lines().filter(|l| !l.starts_with('#') && !l.ends_with(" 0")) {
        println!("  {line}");
    }
    println!("\n== Done: stopping spillway (SIGTERM), detaching XDP, deleting the namespaces");
    Ok(())
}
