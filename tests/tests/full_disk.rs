//! The store's disk fills during a busy market: the daemon keeps answering DNS, a contract
//! still switches on and off on time in XDP, writes get a clear 503 with nothing half-done,
//! and once there is room again every acknowledged change is there and `Store::check()` is
//! clean.

use std::{io::Write, path::PathBuf, process::Command};

use serde_json::json;
use spillway::store::Store;
use spillway_tests::{
    client::{api_ok, dig, now_f64, sleep_until},
    daemon::{Daemon, http},
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
const SHOP: &str = "shop-token";
const PERIOD: i64 = 4;
const PROXY: &str = "198.51.100.10";
const ORIGIN: &str = "203.0.113.10";

/// A small tmpfs of the test's own, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("spw-tmpfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { dir }
    }

    /// Write a file until the disk is full.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(server_if: &str, store: &str) -> String {
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
path = "{store}"

[market]
period_s = {PERIOD}
horizon_periods = 30
reserve_price = 1.0
interval_s = 1
assumed_own_load = 0.2

[[proxy]]
name = "edge-1"
addresses = ["{PROXY}"]
capacity_rps = 1000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["{ORIGIN}"]
overflow = "origin"
fraction = 1.0
ttl = 1
token = "{SHOP}"
"#
    )
}

fn answer(topo: &Topology) -> String {
    let a = dig(topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]);
    assert_eq!(a.len(), 1, "{a:?}");
    a[0].clone()
}

#[test]
fn a_full_disk_freezes_nothing_and_loses_nothing_acknowledged() {
    require_privileges!();
    let disk = Tmpfs::new("4m");
    let store_path = disk.dir.join("spillway.db");
    let topo = Topology::new();
    let mut daemon = Daemon::start(&topo, &config(&topo.server_if, store_path.to_str().unwrap())).expect("starts");

    // A contract for a period a few seconds ahead, bought while there is room.
    let start = ((now_f64() as i64 + 5) / PERIOD + 1) * PERIOD;
    let r = api_ok(
        &topo,
        "POST",
        "/v1/orders",
        SHOP,
        Some(json!({"period_start": start, "quantity_rps": 100, "price": 2.0})),
    );
    assert_eq!(r["order"]["state"], "filled", "{r}");
    let mut acknowledged = vec![r["order"]["id"].as_i64().unwrap()];
    assert_eq!(answer(&topo), ORIGIN);

    // The disk fills. A busy market: orders keep coming (for a later period).
    let filler = disk.fill();
    let later = start + 4 * PERIOD;
    let (mut unavailable, mut other) = (0, Vec::new());
    let busy_until = start as f64 + PERIOD as f64 + 1.0;
    let mut switched_on = None;
    let mut switched_off = None;
    while now_f64() < busy_until {
        let body = json!({"period_start": later, "quantity_rps": 1, "price": 0.5}).to_string();
        let (status, text) = http(&topo, "POST", "/v1/orders", Some(SHOP), Some(&body));
        match status {
            200 => acknowledged
                .push(serde_json::from_str::<serde_json::Value>(&text).unwrap()["order"]["id"].as_i64().unwrap()),
            503 => {
                unavailable += 1;
                assert!(text.contains("\"error\"") && text.contains("nothing was changed"), "{text}");
            }
            _ => other.push((status, text)),
        }
        // DNS goes on, and the contract switches on time.
        let a = answer(&topo);
        let t = now_f64();
        if a == PROXY && switched_on.is_none() {
            switched_on = Some(t);
        }
        if a == ORIGIN && switched_on.is_some() && switched_off.is_none() {
            switched_off = Some(t);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("while full: {unavailable} writes refused with 503, {} acknowledged", acknowledged.len() - 1);
    assert!(other.is_empty(), "only 200 or 503: {other:?}");
    assert!(unavailable > 0, "the full disk refused writes");
    let on = switched_on.expect("the contract switched on while the disk was full");
    assert!(on >= start as f64 - 0.05 && on < start as f64 + 1.0, "on at {on}, period starts {start}");
    let off = switched_off.expect("and off");
    let end = (start + PERIOD) as f64;
    assert!(off >= end - 0.05 && off < end + 1.0, "off at {off}, period ends {end}");

    // Room again: writes work, and the transitions recorded while full land.
    std::fs::remove_file(filler).unwrap();
    sleep_until(now_f64() + 1.5);
    let r = api_ok(
        &topo,
        "POST",
        "/v1/orders",
        SHOP,
        Some(json!({"period_start": later, "quantity_rps": 1, "price": 0.5})),
    );
    acknowledged.push(r["order"]["id"].as_i64().unwrap());
    let contracts = api_ok(&topo, "GET", "/v1/contracts", SHOP, None);
    let c = &contracts["contracts"][0];
    assert_eq!(
        (c["activated_at"].as_i64(), c["ended_at"].as_i64()),
        (Some(start), Some(start + PERIOD)),
        "{contracts}"
    );
    assert!(daemon.proc.stop().is_some_and(|s| s.success()), "{}", daemon.proc.log_text());

    let store = Store::open(&store_path).expect("the store opens");
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
    for id in acknowledged {
        assert!(store.order(id).unwrap().is_some(), "acknowledged order {id} is in the store");
    }
}
