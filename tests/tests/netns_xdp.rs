//! End to end: the real `spillway run` attached in native XDP mode to a veth in its own
//! namespace (the peer veth gets the pass-through program native XDP_TX needs), no userspace
//! listener, answering dig and kdig from the other namespace; a fraction changed through the
//! HTTP API shows in the answers; /metrics counts them; bad API input changes nothing.

use serde_json::{Value, json};
use spillway_tests::{
    client::{metric, short},
    daemon::{self, Daemon, api_url},
    netns::{SERVER_ADDR4, SERVER_ADDR6, Topology, spillway_bin},
    require_privileges,
};

const TOKEN: &str = "netns-test-token";
const SHOP_TOKEN: &str = "shop-netns-token";

fn config(server_if: &str) -> String {
    format!(
        r#"
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

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 20000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
overflow = "origin"
assignment = "round-robin"
fraction = 0.0
ttl = 30
token = "{SHOP_TOKEN}"

[[customer]]
id = "sticky"
names = ["sticky.cdn.example.net."]
origin_addresses = ["203.0.113.20", "2001:db8:200::20"]
overflow = "origin"
fraction = 0.5
ttl = 30
draw = "resolver"
"#
    )
}

fn http(topo: &Topology, method: &'static str, path: &str, token: Option<&str>, body: Option<String>) -> (u16, String) {
    daemon::http(topo, method, path, token, body.as_deref())
}

/// Run a DNS client in the client namespace; on failure, show what the XDP program did.
fn query(topo: &Topology, argv: Vec<&str>) -> Vec<String> {
    let out = topo.client.exec(&argv);
    if !out.status.success() {
        let (_, metrics) = http(topo, "GET", "/metrics", None, None);
        let xdp: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("spillway_xdp_packets_total{") && !l.ends_with(" 0")).collect();
        panic!(
            "{} failed: {}{}\nXDP outcomes: {xdp:?}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    short(&String::from_utf8_lossy(&out.stdout))
}

fn dig(topo: &Topology, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["dig", "+short", "+tries=1", "+time=2"];
    argv.extend_from_slice(args);
    query(topo, argv)
}

fn kdig(topo: &Topology, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["kdig", "+short", "+retry=0", "+timeout=2"];
    argv.extend_from_slice(args);
    query(topo, argv)
}

#[test]
fn xdp_answers_and_api_fraction_change() {
    require_privileges!();
    for tool in ["dig", "kdig"] {
        assert!(
            std::process::Command::new(tool).arg("-v").output().is_ok(),
            "{tool} is missing: `cargo xtask setup` installs it"
        );
    }
    let topo = Topology::new();
    let mut daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    let bin = spillway_bin();
    let attached = topo.server.exec_ok(&["ip", "link", "show", &topo.server_if]);
    assert!(attached.contains("xdp"), "XDP not attached in native mode: {attached}");

    // Fraction 0: every answer is the origin, over IPv4 and IPv6, from dig and kdig.
    for _ in 0..5 {
        assert_eq!(dig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]), ["203.0.113.10"]);
        assert_eq!(
            dig(&topo, &["-6", &format!("@{SERVER_ADDR6}"), "SHOP.cdn.example.net", "AAAA"]),
            ["2001:db8:200::10"]
        );
        assert_eq!(kdig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A", "+edns"]), ["203.0.113.10"]);
    }

    // The API: bad input is refused with a JSON error and changes nothing.
    let put = |token, body: &str| http(&topo, "PUT", "/v1/customers/shop/fraction", token, Some(body.to_owned()));
    for (token, body, want, says) in [
        (None, r#"{"fraction": 1.0}"#, 401, "token"),
        (Some("wrong"), r#"{"fraction": 1.0}"#, 401, "token"),
        (Some(TOKEN), r#"{"fraction": 1.5}"#, 400, "outside [0, 1]"),
        (Some(TOKEN), r#"{"fraction": -0.1}"#, 400, "outside [0, 1]"),
        (Some(TOKEN), r#"{"fraction": "high"}"#, 400, "invalid JSON"),
        (Some(TOKEN), r#"{"fraction": 1.0"#, 400, "invalid JSON"),
        (Some(TOKEN), r#"{"fraktion": 1.0}"#, 400, "unknown field"),
        (Some(TOKEN), r#"{}"#, 422, "send"),
        (Some(TOKEN), r#"{"fraction": 0.5, "mode": "auto"}"#, 422, "manual"),
    ] {
        let (status, text) = put(token, body);
        assert_eq!(status, want, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON error body, got {text}"));
        assert!(v["error"].as_str().unwrap_or("").contains(says), "{body}: {text}");
    }
    let (status, text) =
        http(&topo, "PUT", "/v1/customers/nobody/fraction", Some(TOKEN), Some(r#"{"fraction": 1}"#.into()));
    assert_eq!(status, 404, "{text}");
    let (_, text) = http(&topo, "GET", "/v1/customers/shop", Some(TOKEN), None);
    let shop: Value = serde_json::from_str(&text).expect("customer JSON");
    assert_eq!((shop["fraction"].as_f64(), shop["mode"].as_str()), (Some(0.0), Some("auto")), "{text}");
    assert_eq!(dig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]), ["203.0.113.10"]);

    // Fraction 1 through the API: every answer is now the proxy, at once.
    let (status, text) = put(Some(TOKEN), &json!({ "fraction": 1.0 }).to_string());
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!((v["fraction"].as_f64(), v["mode"].as_str()), (Some(1.0), Some("manual")), "{text}");
    for _ in 0..5 {
        assert_eq!(dig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]), ["198.51.100.10"]);
        assert_eq!(
            kdig(&topo, &["-6", &format!("@{SERVER_ADDR6}"), "shop.cdn.example.net", "AAAA"]),
            ["2001:db8:100::10"]
        );
    }

    // The list endpoint and the metrics agree.
    let (status, text) = http(&topo, "GET", "/v1/customers", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    let list: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(list["customers"][0]["id"], "shop");
    assert_eq!(list["customers"][0]["answers"]["proxy"], 10, "{text}");
    let (status, metrics) = http(&topo, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert_eq!(metric(&metrics, r#"spillway_customer_fraction{customer="shop"}"#), 1.0);
    assert_eq!(metric(&metrics, r#"spillway_answers_total{customer="shop",target="proxy"}"#), 10.0);
    assert_eq!(metric(&metrics, r#"spillway_answers_total{customer="shop",target="origin"}"#), 16.0);
    assert!(metric(&metrics, r#"spillway_dns_queries_total{path="xdp"}"#) >= 26.0, "{metrics}");
    metric(&metrics, r#"spillway_dns_queries_total{path="userspace"}"#);

    // The same through the CLI client.
    let out = topo.client.exec_ok(&[
        bin.to_str().expect("utf-8"),
        "ctl",
        "--api",
        &api_url(""),
        "--token",
        TOKEN,
        "customers",
        "get",
        "shop",
    ]);
    let v: Value = serde_json::from_str(&out).expect("ctl prints JSON");
    assert_eq!(v["fraction"].as_f64(), Some(1.0), "{out}");
    let out = topo.client.exec(&[
        bin.to_str().expect("utf-8"),
        "ctl",
        "--api",
        &api_url(""),
        "--token",
        TOKEN,
        "customers",
        "set-fraction",
        "shop",
        "7",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside [0, 1]"), "{out:?}");

    // Back to auto: the buyer's estimate (0) again.
    let (status, text) = put(Some(TOKEN), r#"{"mode": "auto"}"#);
    assert_eq!(status, 200, "{text}");
    assert_eq!(dig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]), ["203.0.113.10"]);

    // A customer drawing per resolver: the one client prefix of each family keeps one side
    // (whichever this hour's seed gives it), the XDP program counts its queries, the API shows
    // them by prefix; fraction 1 and 0 still mean all and none.
    let sticky = |v6: bool| {
        if v6 {
            dig(&topo, &["-6", &format!("@{SERVER_ADDR6}"), "sticky.cdn.example.net", "AAAA"])
        } else {
            dig(&topo, &["@192.0.2.53", "sticky.cdn.example.net", "A"])
        }
    };
    for v6 in [false, true] {
        let first = sticky(v6);
        assert!(
            [vec!["198.51.100.10"], vec!["203.0.113.20"], vec!["2001:db8:100::10"], vec!["2001:db8:200::20"]]
                .contains(&first.iter().map(String::as_str).collect::<Vec<_>>()),
            "{first:?}"
        );
        for _ in 0..9 {
            assert_eq!(sticky(v6), first, "one resolver, one side");
        }
    }
    let (status, text) = http(&topo, "GET", "/v1/customers/sticky/resolvers", Some(TOKEN), None);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!((v["draw"].as_str(), v["prefixes"].as_u64()), (Some("resolver"), Some(2)), "{text}");
    let counted: Vec<(String, u64)> = v["resolvers"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| (r["prefix"].as_str().unwrap_or("").to_owned(), r["queries"].as_u64().unwrap_or(0)))
        .collect();
    assert!(counted.contains(&("192.0.2.0/24".to_owned(), 10)), "{text}");
    assert!(counted.contains(&("2001:db8::/56".to_owned(), 10)), "{text}");
    let (_, text) = http(&topo, "GET", "/v1/customers/shop/resolvers", Some(TOKEN), None);
    assert!(text.contains(r#""prefixes":0"#), "per-query customers are not counted: {text}");
    for (f, want) in [(1.0, "198.51.100.10"), (0.0, "203.0.113.20")] {
        let body = json!({ "fraction": f }).to_string();
        let (status, text) = http(&topo, "PUT", "/v1/customers/sticky/fraction", Some(TOKEN), Some(body));
        assert_eq!(status, 200, "{text}");
        assert_eq!(sticky(false), [want], "fraction {f}");
    }

    // The buyer steers itself with its own token (ctl, then the API): a CNAME to its own DNS
    // as the overflow, with its TTL; then its estimate; then other origins. Each is in the
    // XDP answers at once (the market is off: the estimate is the fraction in force).
    let ctl = |token: &str, args: &[&str]| {
        let api = api_url("");
        let mut argv = vec![bin.to_str().expect("utf-8"), "ctl", "--api", &api, "--token", token];
        argv.extend_from_slice(args);
        topo.client.exec(&argv)
    };
    let body = r#"{"overflow": "cname", "origin_cname": "origin.shop.example.org.", "ttl": 12}"#;
    let out = ctl(SHOP_TOKEN, &["customers", "settings", "shop", body]);
    assert!(out.status.success(), "{out:?}");
    let answer = |qtype: &str| {
        let out = topo.client.exec_ok(&[
            "dig",
            "+noall",
            "+answer",
            "+tries=1",
            "+time=2",
            "@192.0.2.53",
            "shop.cdn.example.net",
            qtype,
        ]);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    for _ in 0..3 {
        assert_eq!(answer("A"), "shop.cdn.example.net. 12 IN CNAME origin.shop.example.org.");
    }
    let set = |token: &str, id: &str, body: Value| {
        http(&topo, "PUT", &format!("/v1/customers/{id}/settings"), Some(token), Some(body.to_string()))
    };
    let (status, text) = set(SHOP_TOKEN, "shop", json!({"estimate": 1.0}));
    assert_eq!(status, 200, "{text}");
    assert_eq!(answer("A"), "shop.cdn.example.net. 12 IN A 198.51.100.10", "the estimate is in force");
    let (status, text) = set(
        SHOP_TOKEN,
        "shop",
        json!({"estimate": 0.0, "overflow": "origin", "origin_addresses": ["203.0.113.11", "2001:db8:200::11"]}),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(answer("A"), "shop.cdn.example.net. 12 IN A 203.0.113.11");
    assert_eq!(answer("AAAA"), "shop.cdn.example.net. 12 IN AAAA 2001:db8:200::11");
    // Another buyer's customer is 404, a TTL beyond the operator's bounds 422: nothing changes.
    for (id, body, want) in
        [("sticky", json!({"ttl": 20}), 404), ("shop", json!({"ttl": 1}), 422), ("shop", json!({"ttl": -1}), 400)]
    {
        let (status, text) = set(SHOP_TOKEN, id, body);
        assert_eq!(status, want, "{text}");
    }
    assert_eq!(answer("A"), "shop.cdn.example.net. 12 IN A 203.0.113.11");
    // Handed back to its config entry.
    let out = ctl(SHOP_TOKEN, &["customers", "reset-settings", "shop"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(answer("A"), "shop.cdn.example.net. 30 IN A 203.0.113.10");

    // SIGTERM: a clean stop, and XDP goes on answering from the last state (fail-static).
    let status = daemon.proc.stop().expect("stopped on SIGTERM within 5 s");
    assert!(status.success(), "exit {status:?}; log:\n{}", daemon.proc.log_text());
    let link = topo.server.exec_ok(&["ip", "link", "show", &topo.server_if]);
    assert!(link.contains("prog/xdp"), "XDP detached on stop: {link}");
    assert_eq!(dig(&topo, &["@192.0.2.53", "shop.cdn.example.net", "A"]), ["203.0.113.10"], "answered with no daemon");
    // `spillway detach` takes it away.
    let pin_dir = daemon.bpffs.pin_dir();
    topo.server.exec_ok(&[spillway_bin().to_str().unwrap(), "detach", "--bpffs-dir", pin_dir.to_str().unwrap()]);
    let link = topo.server.exec_ok(&["ip", "link", "show", &topo.server_if]);
    assert!(!link.contains("prog/xdp"), "XDP still attached after detach: {link}");
}
