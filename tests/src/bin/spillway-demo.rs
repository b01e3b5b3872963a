//! `cargo xtask demo`: Spillway on embedded defaults in two private namespaces joined by veth.
//! Starts the real daemon with XDP attached in native mode, sends real DNS queries with dig,
//! prints what was answered and why, changes a fraction through the API, and cleans up.

use std::collections::BTreeMap;

use spillway_tests::{
    daemon::{Daemon, http},
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology, spillway_bin},
};

const TOKEN: &str = "demo-token";

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
path = "/var/lib/spillway/demo.db"

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 20000

[[proxy]]
name = "edge-2"
addresses = ["198.51.100.11", "2001:db8:100::11"]
capacity_rps = 20000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "203.0.113.11", "2001:db8:200::10"]
overflow = "origin"
assignment = "round-robin"
fraction = 0.25
ttl = 30

[[customer]]
id = "blog"
names = ["blog.cdn.example.net."]
origin_cname = "origin.blog.example."
overflow = "cname"
fraction = 0.5
ttl = 60
"#
    )
}

fn main() {
    if let Err(e) = demo() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn api(topo: &Topology, method: &'static str, path: &str, body: Option<&str>) -> Result<String, String> {
    match http(topo, method, path, Some(TOKEN), body) {
        (200, text) => Ok(text),
        (status, text) => Err(format!("{method} {path}: {status} {text}")),
    }
}

/// Why an answer is what it is, from its records.
fn explain(records: &[String]) -> &'static str {
    match records.first().map(String::as_str) {
        Some(r) if r.starts_with("198.51.100.") || r.starts_with("2001:db8:100:") => {
            "proxy: the per-query draw fell below the fraction"
        }
        Some(r) if r.ends_with('.') => "cname: overflow hands the client back to the buyer's DNS",
        Some(_) => "origin: overflow, one origin by the buyer's assignment (round-robin)",
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

fn demo() -> Result<(), String> {
    println!("== Spillway demo: XDP answers in a private two-namespace topology");
    let topo = Topology::new();
    println!(
        "  namespaces {} (client, {}) and {} (server, {}) joined by veth",
        topo.client.name, topo.client_if, topo.server.name, topo.server_if
    );
    let daemon = Daemon::start(&topo, &config(&topo.server_if))?;
    let bin = spillway_bin();
    println!(
        "  spillway {} running (pid {}), XDP attached in native mode, no userspace DNS listener",
        bin.display(),
        daemon.proc.pid()
    );

    println!("\n== 1. The buyers' own estimates: shop 0.25 (overflow to its origins), blog 0.5 (overflow by CNAME)");
    round(&topo, "shop.cdn.example.net", "A", "@192.0.2.53", 40)?;
    round(&topo, "shop.cdn.example.net", "AAAA", &format!("@{SERVER_ADDR6}"), 20)?;
    round(&topo, "blog.cdn.example.net", "A", "@192.0.2.53", 20)?;

    println!("\n== 2. The operator moves shop to 0.9 through the API (PUT /v1/customers/shop/fraction)");
    api(&topo, "PUT", "/v1/customers/shop/fraction", Some(r#"{"fraction": 0.9}"#))?;
    round(&topo, "shop.cdn.example.net", "A", "@192.0.2.53", 40)?;

    println!("\n== 3. Back to auto (the buyer's estimate)");
    let shop = api(&topo, "PUT", "/v1/customers/shop/fraction", Some(r#"{"mode": "auto"}"#))?;
    let v: serde_json::Value = serde_json::from_str(&shop).map_err(|e| e.to_string())?;
    println!("  shop: fraction {} mode {} answers {}", v["fraction"], v["mode"], v["answers"]);

    println!("\n== 4. What the XDP program counted (GET /metrics)");
    let metrics = api(&topo, "GET", "/metrics", None)?;
    for line in metrics.lines().filter(|l| !l.starts_with('#') && !l.ends_with(" 0")) {
        println!("  {line}");
    }
    println!("\n== Done: stopping spillway (SIGTERM), detaching XDP, deleting the namespaces");
    Ok(())
}
