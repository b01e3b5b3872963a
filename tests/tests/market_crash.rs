//! Kill -9 during a busy market, then restart on the same store: everything that was
//! acknowledged is there, the store is consistent (SQLite's integrity check and the market's
//! own conservation checks), nothing is oversold, and no contract is applied twice.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use spillway::store::Store;
use spillway_tests::{
    client::{api_ok, now_f64},
    daemon::{self, Daemon},
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
const PERIOD: i64 = 2;
const BUYERS: [&str; 3] = ["a", "b", "c"];

fn config(server_if: &str, store: &str) -> String {
    let mut c = format!(
        r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["{server_if}"]
[api]
listen = "{SERVER_ADDR4}:8053"
token = "{OP}"
[store]
path = "{store}"
[market]
period_s = {PERIOD}
horizon_periods = 20
reserve_price = 1.0
interval_s = 1
assumed_own_load = 0.2
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
"#
    );
    for b in BUYERS {
        c.push_str(&format!(
            "[[customer]]\nid = \"{b}\"\nnames = [\"{b}.cdn.example.net.\"]\norigin_addresses = [\"203.0.113.10\"]\n\
             overflow = \"origin\"\nfraction = 1.0\ntoken = \"token-{b}\"\n"
        ));
    }
    c
}

#[derive(Default)]
struct Acked {
    orders: BTreeMap<i64, (String, u64)>,
    bids: BTreeMap<i64, (String, u64)>,
    /// Requests in acknowledged reports, and in all reports sent (acknowledged or not).
    served_acked: u64,
    served_sent: u64,
}

#[test]
fn kill_9_during_a_busy_market_loses_nothing_acknowledged() {
    require_privileges!();
    let topo = Topology::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("market.db");
    let cfg = config(&topo.server_if, store.to_str().expect("utf-8"));
    let mut first = Daemon::start(&topo, &cfg).expect("spillway starts");

    let acked = Mutex::new(Acked::default());
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Buyers placing book orders over the next periods, some crossing the ask, some IOC.
        for (i, b) in BUYERS.iter().enumerate() {
            let (topo, acked, stop) = (&topo, &acked, &stop);
            s.spawn(move || {
                let token = format!("token-{b}");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let period = (now_f64() as i64 / PERIOD + (n as i64 % 4)) * PERIOD;
                    let q = 5 + (n * 7 + i as u64) % 40;
                    let body = json!({
                        "period_start": period,
                        "quantity_rps": q,
                        "price": 0.5 + (n % 4) as f64 * 0.5,
                        "tif": if n.is_multiple_of(3) { "ioc" } else { "gtc" },
                    })
                    .to_string();
                    let (status, text) = daemon::http(topo, "POST", "/v1/orders", Some(&token), Some(&body));
                    if status == 200 {
                        let v: Value = serde_json::from_str(&text).expect("JSON");
                        let id = v["order"]["id"].as_i64().expect("order id");
                        acked.lock().unwrap().orders.insert(id, (b.to_string(), q));
                    }
                }
            });
        }
        // The operator opening auctions and buyers bidding in them.
        {
            let (topo, acked, stop) = (&topo, &acked, &stop);
            s.spawn(move || {
                let mut n = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let start = (now_f64() as i64 / PERIOD + 3 + n % 5) * PERIOD;
                    let body = json!({"period_start": start, "closes_at": start - 1, "quantity_rps": 20}).to_string();
                    let (status, text) = daemon::http(topo, "POST", "/v1/auctions", Some(OP), Some(&body));
                    if status != 200 {
                        continue;
                    }
                    let id = serde_json::from_str::<Value>(&text).expect("JSON")["id"].as_i64().expect("id");
                    for b in BUYERS {
                        let q = 3 + (n as u64 % 10);
                        let body = json!({"quantity_rps": q, "max_price": 1.0 + (n % 3) as f64}).to_string();
                        let path = format!("/v1/auctions/{id}/bids");
                        let (status, text) =
                            daemon::http(topo, "POST", &path, Some(&format!("token-{b}")), Some(&body));
                        if status == 200 {
                            let bid = serde_json::from_str::<Value>(&text).expect("JSON")["id"].as_i64().expect("id");
                            acked.lock().unwrap().bids.insert(bid, (b.to_string(), q));
                        }
                    }
                }
            });
        }
        // A proxy reporting usage.
        {
            let (topo, acked, stop) = (&topo, &acked, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"own_requests": 100, "served": {"a": 10, "b": 20}}).to_string();
                    acked.lock().unwrap().served_sent += 30;
                    let (status, _) = daemon::http(topo, "POST", "/v1/proxies/edge-1/report", Some(OP), Some(&body));
                    if status == 200 {
                        acked.lock().unwrap().served_acked += 30;
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(2500));
        // The crash, with requests in flight.
        first.proc.kill9();
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.orders.len() > 20, "the market was not busy: {} orders", acked.orders.len());
    assert!(!acked.bids.is_empty(), "no bids were placed");
    let first_log = first.proc.log_text();
    drop(first);

    // Restart on the same store.
    let second = Daemon::start(&topo, &cfg).expect("spillway restarts on the crashed store");
    for (id, (owner, q)) in &acked.orders {
        let o = api_ok(&topo, "GET", &format!("/v1/orders/{id}"), OP, None);
        assert_eq!((o["owner"].as_str(), o["quantity_rps"].as_u64()), (Some(owner.as_str()), Some(*q)), "order {id}");
    }
    let auctions = api_ok(&topo, "GET", "/v1/auctions", OP, None);
    let mut bids_found = BTreeMap::new();
    for a in auctions["auctions"].as_array().expect("auctions") {
        let id = a["id"].as_i64().expect("id");
        for b in api_ok(&topo, "GET", &format!("/v1/auctions/{id}/bids"), OP, None)["bids"].as_array().expect("bids") {
            bids_found.insert(
                b["id"].as_i64().expect("id"),
                (b["customer"].as_str().unwrap_or("").to_owned(), b["quantity_rps"].as_u64().unwrap_or(0)),
            );
        }
    }
    for (id, bid) in &acked.bids {
        assert_eq!(bids_found.get(id), Some(bid), "bid {id} was acknowledged");
    }
    let usage = api_ok(&topo, "GET", "/v1/usage", OP, None);
    let total = usage["total_requests"].as_u64().expect("total");
    assert!(
        total >= acked.served_acked && total <= acked.served_sent,
        "usage {total}: acknowledged {}, sent {}",
        acked.served_acked,
        acked.served_sent
    );
    // Let the restarted scheduler run over a period boundary, then stop it cleanly.
    std::thread::sleep(Duration::from_secs(PERIOD as u64 + 1));
    let second_log = second.proc.log_text();
    drop(second);

    // The store, read directly: integrity and conservation.
    let store = Store::open(&store).expect("store opens");
    let problems = store.check().expect("check runs");
    assert!(problems.is_empty(), "{problems:?}");
    // Never oversold: 800 rps unused per period (1000, 20% assumed own use).
    let mut sold: BTreeMap<i64, u64> = BTreeMap::new();
    for c in store.contracts(None).expect("contracts") {
        *sold.entry(c.period_start).or_default() += c.rps;
    }
    assert!(!sold.is_empty(), "no contracts were made");
    for (p, s) in &sold {
        assert!(*s <= 800, "period {p}: sold {s} rps of 800");
    }
    // No contract applied twice: each activation appears once across both runs' logs.
    let mut activations: BTreeMap<String, usize> = BTreeMap::new();
    for line in first_log.lines().chain(second_log.lines()).filter(|l| l.contains("contract active")) {
        let id = line.split("contract=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("?");
        *activations.entry(id.to_owned()).or_default() += 1;
    }
    assert!(!activations.is_empty(), "no contract was activated");
    let twice: Vec<_> = activations.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "contracts activated more than once: {twice:?}");
}
