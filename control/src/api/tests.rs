//! The API in process (no data plane) over a real SQLite store: every documented operation
//! answers as documented, bad input changes nothing, and buyers see only their own.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    body::{Body, to_bytes},
    http::Request,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AppState, Principal, openapi, router};
use crate::{catalog::Catalog, config::Config, engine::Engine, engine::unix_now};

const OP: &str = "op-token";
const SHOP: &str = "shop-token";
const BLOG: &str = "blog-token";

struct Api {
    state: Arc<AppState>,
    doc: Value,
    seen: BTreeSet<(String, String)>,
    _dir: tempfile_dir::Dir,
}

/// A temporary directory removed on drop (no extra crate for one use).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let d = std::env::temp_dir().join(format!("spillway-api-{}-{}", std::process::id(), rand::random::<u64>()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn config(dir: &std::path::Path) -> Config {
    Config::parse(&config_text(dir), "test.toml").unwrap()
}

fn config_text(dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
listen = ["127.0.0.1:0"]
[api]
listen = "127.0.0.1:0"
token = "{OP}"
# The default burst, and a refill slow enough that the limit test's 300 writes pass it however
# slowly the machine runs them.
write_rate = 1
[store]
path = "{}/s.db"
[market]
period_s = 60
horizon_periods = 10
reserve_price = 1.0
assumed_own_load = 0.0
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 1000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.5
token = "{SHOP}"
[[customer]]
id = "blog"
names = ["blog.cdn.example.net."]
origin_addresses = ["203.0.113.20"]
overflow = "origin"
fraction = 0.5
token = "{BLOG}"
"#,
        dir.display()
    )
}

impl Api {
    fn new() -> Api {
        Api::in_cluster(None)
    }

    /// The API of a host with this place in a cluster (`None`: one host).
    fn in_cluster(cluster: Option<Arc<crate::cluster::ClusterStatus>>) -> Api {
        // The tests reason in 60 s periods from "now": start early in a minute, so that no
        // period boundary falls inside one (they take well under a second).
        while unix_now() % 60 >= 50 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let dir = tempfile_dir::Dir::new();
        let cfg = config(&dir.0);
        let engine = Engine::new(&cfg, Catalog::from_config(&cfg).unwrap(), None, unix_now()).unwrap();
        Api { state: AppState::new(engine, cluster), doc: openapi::document(), seen: BTreeSet::new(), _dir: dir }
    }

    /// One request; the response is checked against the document when the path is documented.
    async fn call(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(format!("/v1{path}"));
        if !token.is_empty() {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
            .unwrap();
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        // Text bodies (CSV, SVG) are kept as strings; JSON is parsed and checked.
        let is_csv = resp.headers().get("content-type").is_some_and(|v| {
            let v = v.to_str().unwrap_or("");
            v.starts_with("text/csv") || v.starts_with("image/svg+xml")
        });
        let bytes = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
        let value = if is_csv {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if let Some((template, _)) = openapi::operation(&self.doc, method, path) {
            self.seen.insert((method.to_owned(), template.to_owned()));
            if !is_csv {
                openapi::check_response(&self.doc, method, path, status, &value)
                    .unwrap_or_else(|e| panic!("{e}\nbody: {value}"));
            }
        }
        (status, value)
    }

    /// A request that must succeed: its body fits the document, and the answer is 200.
    async fn ok(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        if let Some(b) = &body {
            openapi::check_request(&self.doc, method, path, b).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        let (status, v) = self.call(method, path, token, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    /// Everything the store holds, to show that a refused request changed nothing.
    fn snapshot(&self) -> String {
        let e = self.state.engine();
        let s = &e.store;
        format!(
            "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
            s.auctions(false).unwrap(),
            s.orders(None, false).unwrap(),
            s.contracts(None).unwrap(),
            s.usage(None, 0, i64::MAX).unwrap(),
            s.capacities().unwrap(),
            e.catalog.customers().iter().map(|c| (c.fraction, c.mode)).collect::<Vec<_>>(),
            e.catalog.customers().iter().map(|c| &c.config.names).collect::<Vec<_>>(),
            s.customers().unwrap().iter().map(|c| &c.0).collect::<Vec<_>>(),
            s.token_digests().unwrap().iter().map(|(c, d)| (c.clone(), d.map(|d| d.to_hex()))).collect::<Vec<_>>(),
            s.customer_settings().unwrap(),
            s.standing_orders(None, false).unwrap(),
            e.catalog.customers().iter().map(|c| serde_json::to_string(&c.config).unwrap()).collect::<Vec<_>>(),
            s.proxies().unwrap(),
            s.drained_proxies().unwrap(),
            e.fleet.proxies().iter().map(|p| (&p.config, p.drained, p.status)).collect::<Vec<_>>(),
            e.catalog.proxy_set()
        )
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let mut api = Api::new();
    let now = unix_now();
    let p1 = (now / 60 + 1) * 60;
    let p2 = p1 + 60;
    api.ok("GET", "/customers", OP, None).await;
    api.ok("GET", "/customers/shop", OP, None).await;
    api.ok("PUT", "/customers/shop/fraction", OP, Some(json!({"fraction": 0.3}))).await;
    api.ok("PUT", "/customers/shop/fraction", OP, Some(json!({"mode": "auto"}))).await;
    // No XDP here: nothing counted, and the customer draws per query.
    let r = api.ok("GET", "/customers/shop/resolvers?limit=5", OP, None).await;
    assert_eq!(
        (&r["draw"], &r["prefixes"], r["resolvers"].as_array().map(Vec::len)),
        (&json!("query"), &json!(0), Some(0))
    );
    // A buyer added through the API: stored, in the catalog, with its own token at once.
    let news = json!({"id": "news", "names": ["news.cdn.example.net."], "origin_addresses": ["203.0.113.30"],
        "overflow": "origin", "fraction": 0.4, "token": "news-token"});
    assert_eq!(api.ok("POST", "/customers", OP, Some(news)).await["fraction"], 0.0, "no contract yet");
    assert_eq!(api.ok("GET", "/customers", "news-token", None).await["customers"][0]["id"], "news");
    let renamed = api
        .ok(
            "PUT",
            "/customers/news/names",
            OP,
            Some(json!({"names": ["news.cdn.example.net.", "www.news.cdn.example.net."]})),
        )
        .await;
    assert_eq!(renamed["names"].as_array().map(Vec::len), Some(2));
    // The buyer steers itself, a config-file customer too: its estimate, a CNAME to its own
    // DNS as the overflow, a TTL within the operator's bounds; in the record at once.
    let set = json!({"estimate": 0.2, "overflow": "cname", "origin_cname": "edge.shop.example.org.", "ttl": 20});
    let v = api.ok("PUT", "/customers/shop/settings", SHOP, Some(set.clone())).await;
    assert_eq!(
        (&v["estimate"], &v["overflow"], &v["ttl"], &v["settings"]),
        (&json!(0.2), &json!("cname"), &json!(20), &set)
    );
    {
        let e = api.state.engine();
        let c = e.catalog.customer("shop").unwrap();
        let live = c.live.answering();
        assert_eq!(
            (c.record.ttl, live.record.ttl, live.record.overflow),
            (20, 20, spillway_common::maps::overflow::CNAME)
        );
        assert_eq!(live.origin_cname.as_ref().map(|n| n.to_ascii()), Some("edge.shop.example.org.".to_owned()));
    }
    // The operator sets origins with weights and the assignment, unbound by the buyers' TTLs;
    // the earlier fields stay.
    let v = api
        .ok(
            "PUT",
            "/customers/shop/settings",
            OP,
            Some(json!({"origin_addresses": ["203.0.113.10", "203.0.113.11"], "origin_weights": [3, 1],
                "assignment": "weighted", "ttl": 2})),
        )
        .await;
    assert_eq!(
        (&v["assignment"], &v["ttl"], &v["origin_cname"]),
        (&json!("weighted"), &json!(2), &json!("edge.shop.example.org."))
    );
    assert_eq!(api.state.engine().catalog.customer("shop").unwrap().record.origin_v4_cum_weight[..2], [3, 4]);
    // An added buyer steers itself and hands itself back to its entry.
    api.ok("PUT", "/customers/news/settings", "news-token", Some(json!({"ttl": 60, "origin_cname": null}))).await;
    let back = api.ok("DELETE", "/customers/news/settings", "news-token", None).await;
    assert_eq!((&back["ttl"], &back["settings"]), (&json!(30), &json!({})));
    // Token rotation: a buyer its own (made by the server), the operator any; the old token
    // stops working at once, and a buyer cannot reach another's.
    let made = api.ok("PUT", "/customers/news/token", "news-token", Some(json!({}))).await;
    let new_token = made["token"].as_str().unwrap().to_owned();
    assert_eq!(new_token.len(), 64);
    assert_eq!(api.call("GET", "/customers", "news-token", None).await.0, 401, "the old token is dead");
    assert_eq!(api.ok("GET", "/customers", &new_token, None).await["customers"][0]["id"], "news");
    assert_eq!(api.call("PUT", "/customers/shop/token", &new_token, Some(json!({}))).await.0, 404);
    api.ok("PUT", "/customers/news/token", OP, Some(json!({"token": "news-token"}))).await;
    assert_eq!(api.call("GET", "/customers", &new_token, None).await.0, 401);
    assert_eq!(api.ok("GET", "/session", OP, None).await, json!({"role": "operator", "customer": null}));
    assert_eq!(api.ok("GET", "/session", SHOP, None).await, json!({"role": "buyer", "customer": "shop"}));
    api.ok("GET", "/proxies", OP, None).await;
    api.ok("PUT", "/proxies/edge-1/capacity", OP, Some(json!({"capacity_rps": 2000}))).await;
    // The last hour, a sample per 5 s (the daemon samples; here by hand, twice).
    api.state.engine().sample_history(now);
    api.state.engine().sample_history(now + 5);
    let h = api.ok("GET", "/customers/shop/history", SHOP, None).await;
    assert_eq!((h["every_s"].as_i64(), h["samples"].as_array().map(Vec::len)), (Some(5), Some(2)), "{h}");
    assert_eq!(h["samples"][1]["t"], now + 5);
    let svg = api.ok("GET", "/customers/shop/history/chart", SHOP, None).await;
    assert!(svg.as_str().is_some_and(|s| s.starts_with("<svg") && s.contains("shop: requests/s")), "{svg}");
    // The fleet at run time: added, changed, drained, removed, each in the answers at once.
    let edge2 = json!({"name": "edge-2", "addresses": ["198.51.100.20", "2001:db8::20"], "capacity_rps": 500,
        "health": {"url": "http://198.51.100.20/healthz", "fall": 3}});
    let v = api.ok("POST", "/proxies", OP, Some(edge2)).await;
    assert_eq!(
        (v["source"].as_str(), v["status"].as_str(), v["check_up"].as_bool()),
        (Some("api"), Some("answering"), Some(true))
    );
    assert_eq!(v["health"]["interval_ms"], 1000, "defaults filled in");
    let set = |api: &Api| *api.state.engine().catalog.proxy_set();
    assert_eq!((set(&api).v4_len, set(&api).v6_len), (2, 1));
    let v =
        api.ok("PUT", "/proxies/edge-2", OP, Some(json!({"addresses": ["198.51.100.21"], "capacity_rps": 700}))).await;
    assert_eq!((v["capacity_rps"].as_u64(), v["check_up"].is_null()), (Some(700), true));
    assert_eq!((set(&api).v4_len, set(&api).v6_len), (2, 0));
    assert_eq!(api.ok("GET", "/proxies/edge-2", OP, None).await["addresses"], json!(["198.51.100.21"]));
    let v = api.ok("POST", "/proxies/edge-1/drain", OP, None).await;
    assert_eq!((v["drained"].as_bool(), v["status"].as_str()), (Some(true), Some("drained")));
    assert_eq!(set(&api).v4[..set(&api).v4_len as usize], [[198, 51, 100, 21]], "only edge-2 answers");
    // A drained proxy still reports what it serves (resolvers' cached answers), and it counts.
    let r = api.ok("POST", "/proxies/edge-1/report", OP, Some(json!({"served": {"shop": 7}}))).await;
    assert_eq!(r["served"][0]["requests"], 7);
    assert_eq!(api.ok("POST", "/proxies/edge-1/undrain", OP, None).await["status"], "answering");
    assert_eq!(api.ok("GET", "/proxies", OP, None).await["total_capacity_rps"], 2700);
    api.ok("DELETE", "/proxies/edge-2", OP, None).await;
    assert_eq!(set(&api).v4_len, 1);
    assert_eq!(api.ok("GET", "/proxies", OP, None).await["total_capacity_rps"], 2000);
    let cap = api.ok("GET", "/capacity?periods=3", OP, None).await;
    assert_eq!(cap["periods"][1]["available_rps"], 2000);
    // The book: shop buys 300 of p1 at the ask (1.0).
    let r = api.ok("POST", "/orders", SHOP, Some(json!({"period_start": p1, "quantity_rps": 300, "price": 2.5}))).await;
    assert_eq!(r["order"]["state"], "filled");
    assert_eq!(r["contracts"][0]["price"], 1.0);
    let resting = api
        .ok("POST", "/orders", BLOG, Some(json!({"period_start": p2, "quantity_rps": 10, "price": 0.5, "tif": "gtc"})))
        .await;
    let id = resting["order"]["id"].as_i64().unwrap();
    let depth = api.ok("GET", &format!("/book/{p2}"), BLOG, None).await;
    assert_eq!(depth["bids"][0]["quantity_rps"], 10);
    api.ok("GET", "/orders?open=true", OP, None).await;
    api.ok("GET", &format!("/orders/{id}"), BLOG, None).await;
    assert_eq!(api.ok("DELETE", &format!("/orders/{id}"), BLOG, None).await["state"], "cancelled");
    // An auction for p2: two bids, cleared early; blog is outbid.
    let a =
        api.ok("POST", "/auctions", OP, Some(json!({"period_start": p2, "closes_at": p2, "quantity_rps": 500}))).await;
    let aid = a["id"].as_i64().unwrap();
    api.ok("POST", &format!("/auctions/{aid}/bids"), SHOP, Some(json!({"quantity_rps": 400, "max_price": 3.0}))).await;
    let b = api
        .ok(
            "POST",
            &format!("/auctions/{aid}/bids"),
            OP,
            Some(json!({"customer": "blog", "quantity_rps": 200, "max_price": 2.0})),
        )
        .await;
    let w = api
        .ok("POST", &format!("/auctions/{aid}/bids"), BLOG, Some(json!({"quantity_rps": 5, "max_price": 2.0})))
        .await;
    api.ok("DELETE", &format!("/auctions/{aid}/bids/{}", w["id"]), BLOG, None).await;
    assert_eq!(api.ok("GET", &format!("/auctions/{aid}/bids"), BLOG, None).await["bids"].as_array().unwrap().len(), 2);
    api.ok("GET", "/auctions", OP, None).await;
    let cleared = api.ok("POST", &format!("/auctions/{aid}/clear"), OP, None).await;
    assert_eq!(cleared["state"], "cleared");
    assert_eq!(cleared["clearing_price"], 2.0, "uniform price at the partly filled bid");
    let got = api.ok("GET", &format!("/auctions/{aid}"), BLOG, None).await;
    let mine = &got["bids"][0];
    assert_eq!(
        (mine["id"].clone(), mine["state"].clone(), mine["filled_rps"].clone()),
        (b["id"].clone(), json!("partial"), json!(100))
    );
    let contracts = api.ok("GET", "/contracts", SHOP, None).await;
    assert_eq!(contracts["contracts"].as_array().unwrap().len(), 2);
    assert!(contracts["contracts"].as_array().unwrap().iter().all(|c| c["customer"] == "shop"));
    // A block of two periods, all or none: two filled orders, two contracts.
    let p3 = p2 + 60;
    let b = api
        .ok("POST", "/blocks", SHOP, Some(json!({"period_start": p3, "periods": 2, "quantity_rps": 100, "price": 2.0})))
        .await;
    let periods: Vec<&Value> = b["contracts"].as_array().unwrap().iter().map(|c| &c["period_start"]).collect();
    assert_eq!(periods, [&json!(p3), &json!(p3 + 60)]);
    assert!(b["orders"].as_array().unwrap().iter().all(|o| o["state"] == "filled"));
    // A standing order from p3: a bid in every period open from there at once, then one per
    // new period until cancelled.
    let so = api
        .ok("POST", "/standing-orders", SHOP, Some(json!({"quantity_rps": 50, "price": 1.5, "period_start": p3})))
        .await;
    assert_eq!((&so["state"], so["placed"].as_u64().unwrap() >= 8), (&json!("active"), true), "{so}");
    let sid = so["id"].as_i64().unwrap();
    assert_eq!(api.ok("GET", "/standing-orders?active=true", SHOP, None).await["standing_orders"][0]["id"], sid);
    assert_eq!(api.ok("GET", "/standing-orders", BLOG, None).await["standing_orders"], json!([]), "only its own");
    api.ok("GET", &format!("/standing-orders/{sid}"), OP, None).await;
    assert_eq!(api.ok("POST", &format!("/standing-orders/{sid}/cancel"), SHOP, None).await["state"], "cancelled");
    // Usage: shop has no contract in force yet, so it is recorded but not charged.
    let rep = api
        .ok("POST", "/proxies/edge-1/report", OP, Some(json!({"own_requests": 100, "served": {"shop": 1000}})))
        .await;
    assert_eq!(rep["served"][0]["uncontracted_requests"], 1000);
    let usage = api.ok("GET", "/usage", SHOP, None).await;
    assert_eq!(usage["total_requests"], 1007, "with the 7 the drained edge-1 reported");
    let csv = api.ok("GET", "/usage?format=csv", OP, None).await;
    assert!(csv.as_str().unwrap().starts_with("customer,interval_start,requests"), "{csv}");
    assert!(csv.as_str().unwrap().contains("\nshop,"), "{csv}");
    // One host is no cluster: its operator is told so, a buyer may not ask.
    assert_eq!(api.call("GET", "/cluster", SHOP, None).await.0, 403);
    let (status, v) = api.call("GET", "/cluster", OP, None).await;
    assert_eq!(
        (status, v["error"].as_str().unwrap_or("")),
        (404, "this host is not part of a cluster ([cluster] is not set)")
    );
    api.ok("GET", "/openapi.json", OP, None).await;
    // Every documented operation was exercised.
    let documented: BTreeSet<(String, String)> = api.doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), p.clone())))
        .collect();
    let missing: Vec<_> = documented.difference(&api.seen).collect();
    assert!(missing.is_empty(), "documented but not exercised: {missing:?}");
    assert!(api.state.engine().store.check().unwrap().is_empty());
    // A restart on the same store finds the added buyer with its new names.
    let cfg = config(&api._dir.0);
    let again = Engine::new(&cfg, Catalog::from_config(&cfg).unwrap(), None, unix_now()).unwrap();
    assert_eq!(again.catalog.customer("news").map(|c| c.config.names.len()), Some(2));
    // ... and the buyer's settings over its config-file entry, in its record.
    let shop = again.catalog.customer("shop").unwrap();
    assert_eq!((shop.config.ttl, shop.record.ttl, shop.config.origin_weights.clone()), (2, 2, Some(vec![3, 1])));
    assert_eq!(
        shop.live.answering().origin_cname.as_ref().map(|n| n.to_ascii()).as_deref(),
        Some("edge.shop.example.org.")
    );
    assert!(again.catalog.customer("news").is_some_and(|c| !again.settings.contains_key("news") && c.config.ttl == 30));
    assert_eq!(again.tokens.lookup("news-token"), Some(Principal::Buyer("news".into())));
}

/// A control host's view of its cluster: what its tasks last wrote, as documented.
#[tokio::test]
async fn a_control_host_shows_its_cluster_and_the_live_edges() {
    use crate::cluster::{ClusterStatus, answers::EdgeView, config::ClusterConfig};
    let cfg: ClusterConfig =
        toml::from_str("role = \"control\"\nname = \"control-2\"\netcd_endpoints = [\"http://127.0.0.1:1\"]").unwrap();
    let status = Arc::new(ClusterStatus::new(&cfg, 41));
    status.set_leader(Some("http://control-1:8080".into()));
    let edge = |name: &str, rate: Option<f64>, error: Option<&str>| EdgeView {
        name: name.into(),
        metrics_url: format!("http://{name}:9100/metrics"),
        read_at_ms: rate.map(|_| 1_700_000_000_000),
        read_error: error.map(str::to_owned),
        answers_per_s: rate,
    };
    status.set_edges(vec![edge("edge-1", Some(12.5), None), edge("edge-2", None, Some("connection refused"))]);
    let mut api = Api::in_cluster(Some(status.clone()));
    let v = api.ok("GET", "/cluster", OP, None).await;
    assert_eq!(
        (&v["name"], &v["role"], &v["revision"], &v["leads"], &v["term"], &v["leader"], &v["etcd_up"]),
        (
            &json!("control-2"),
            &json!("control"),
            &json!(41),
            &json!(false),
            &json!(0),
            &json!("http://control-1:8080"),
            &json!(true)
        ),
        "{v}"
    );
    assert_eq!(v["degraded"], Value::Null, "a follower that knows its leader is not degraded: {v}");
    let edges = v["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "{v}");
    assert_eq!((&edges[0]["name"], &edges[0]["answers_per_s"]), (&json!("edge-1"), &json!(12.5)));
    assert_eq!((&edges[1]["read_error"], &edges[1]["answers_per_s"]), (&json!("connection refused"), &Value::Null));
    // etcd gone: the view says so, as /readyz does.
    status.set_etcd_up(false);
    let v = api.ok("GET", "/cluster", OP, None).await;
    assert_eq!((&v["etcd_up"], &v["degraded"]), (&json!(false), &json!("etcd does not answer: writes are refused")));
    assert_eq!(api.call("GET", "/cluster", BLOG, None).await.0, 403, "the edges' addresses are the operator's");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let mut api = Api::new();
    let now = unix_now();
    let p1 = (now / 60 + 1) * 60;
    let a = api
        .ok("POST", "/auctions", OP, Some(json!({"period_start": p1 + 60, "closes_at": p1 + 60, "quantity_rps": 10})))
        .await;
    let aid = a["id"].as_i64().unwrap();
    let (_, o) = api
        .call("POST", "/orders", SHOP, Some(json!({"period_start": p1 + 120, "quantity_rps": 5, "price": 0.1})))
        .await;
    let shop_order = o["order"]["id"].as_i64().unwrap();
    let (_, b) = api
        .call("POST", &format!("/auctions/{aid}/bids"), SHOP, Some(json!({"quantity_rps": 5, "max_price": 1.0})))
        .await;
    let shop_bid = b["id"].as_i64().unwrap();
    let (_, so) = api.call("POST", "/standing-orders", SHOP, Some(json!({"quantity_rps": 5, "price": 0.1}))).await;
    let shop_standing = so["id"].as_i64().unwrap();
    let (_, so) = api.call("POST", "/standing-orders", SHOP, Some(json!({"quantity_rps": 5, "price": 0.1}))).await;
    let cancelled_standing = so["id"].as_i64().unwrap();
    api.call("POST", &format!("/standing-orders/{cancelled_standing}/cancel"), SHOP, None).await;
    // Another buyer's bid reads exactly like one that does not exist.
    let (s1, theirs) = api.call("DELETE", &format!("/auctions/{aid}/bids/{shop_bid}"), BLOG, None).await;
    let (s2, none) = api.call("DELETE", &format!("/auctions/{aid}/bids/{}", shop_bid + 1000), BLOG, None).await;
    assert_eq!((s1, s2), (404, 404));
    assert_eq!(
        theirs["error"].as_str().unwrap().replace(&format!("bid {shop_bid} "), "bid N "),
        none["error"].as_str().unwrap().replace(&format!("bid {} ", shop_bid + 1000), "bid N ")
    );
    let before = api.snapshot();
    // (method, path, token, body, expected status, what the error must mention)
    type Case<'a> = (&'a str, String, &'a str, Option<Value>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("PUT", "/customers/shop/token".into(), SHOP, Some(json!({"token": "short"})), 422, "8 to 256"),
        ("PUT", "/customers/shop/token".into(), SHOP, Some(json!({"token": BLOG})), 409, "same as another token"),
        ("PUT", "/customers/shop/token".into(), OP, Some(json!({"token": OP})), 409, "same as another token"),
        ("PUT", "/customers/blog/token".into(), SHOP, Some(json!({})), 404, "no customer"),
        ("PUT", "/customers/nobody/token".into(), OP, Some(json!({})), 404, "no customer"),
        ("PUT", "/customers/shop/token".into(), SHOP, Some(json!({"tokn": "abcdefghij"})), 400, "unknown field"),
        ("PUT", "/customers/blog/settings".into(), SHOP, Some(json!({"ttl": 10})), 404, "no customer"),
        ("DELETE", "/customers/blog/settings".into(), SHOP, None, 404, "no customer"),
        ("PUT", "/customers/nobody/settings".into(), OP, Some(json!({"ttl": 10})), 404, "no customer"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"ttl": 1})), 422, "operator's bounds"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"ttl": 86400})), 422, "operator's bounds"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"estimate": 1.5})), 400, "outside [0, 1]"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"estimate": null})), 400, "invalid JSON"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({})), 422, "at least one"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"names": []})), 400, "unknown field"),
        ("PUT", "/customers/shop/settings".into(), SHOP, Some(json!({"overflow": "cname"})), 422, "needs origin_cname"),
        (
            "PUT",
            "/customers/shop/settings".into(),
            SHOP,
            Some(json!({"overflow": "cname", "origin_cname": "x.cdn.example.net."})),
            422,
            "a zone we answer for",
        ),
        (
            "PUT",
            "/customers/shop/settings".into(),
            SHOP,
            Some(json!({"origin_addresses": ["203.0.113.10"], "origin_weights": [1, 2]})),
            422,
            "2 weights for 1",
        ),
        (
            "PUT",
            "/customers/shop/settings".into(),
            SHOP,
            Some(json!({"origin_addresses": ["0.0.0.0"]})),
            422,
            "not a unicast address",
        ),
        (
            "PUT",
            "/customers/shop/settings".into(),
            SHOP,
            Some(json!({"origin_addresses": [], "overflow": "origin"})),
            422,
            "at least one origin",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": -5, "price": 1.0})),
            400,
            "invalid JSON",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 0, "price": 1.0})),
            422,
            "at least 1",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 1_000_000_000_000u64, "price": 1.0})),
            422,
            "whole capacity",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1 - 3600, "quantity_rps": 5, "price": 1.0})),
            409,
            "past",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1 + 7, "quantity_rps": 5, "price": 1.0})),
            422,
            "boundary",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1 + 86400, "quantity_rps": 5, "price": 1.0})),
            409,
            "horizon",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": -1.0})),
            400,
            "price",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": 1.0, "side": "ask"})),
            403,
            "only bids",
        ),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": 1.0, "customer": "blog"})),
            403,
            "cannot act for",
        ),
        (
            "POST",
            "/orders".into(),
            OP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": 1.0, "customer": "nosuch"})),
            404,
            "no customer",
        ),
        (
            "POST",
            "/orders".into(),
            OP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": 1.0})),
            422,
            "must name",
        ),
        ("POST", "/orders".into(), SHOP, Some(json!("{not json")), 400, "invalid JSON"),
        (
            "POST",
            "/orders".into(),
            SHOP,
            Some(json!({"period_start": p1, "quantity_rps": 5, "price": 1.0, "extra": 1})),
            400,
            "unknown field",
        ),
        ("DELETE", format!("/orders/{shop_order}"), BLOG, None, 404, "no order"),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1, "periods": 3, "quantity_rps": 5000, "price": 2.0})),
            422,
            "whole capacity",
        ),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1, "periods": 3, "quantity_rps": 5, "price": 0.5})),
            409,
            "buys nothing",
        ),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1, "periods": 0, "quantity_rps": 5, "price": 2.0})),
            400,
            "at least 1",
        ),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1, "periods": 12, "quantity_rps": 5, "price": 2.0})),
            422,
            "open for sale",
        ),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1 - 3600, "periods": 2, "quantity_rps": 5, "price": 2.0})),
            409,
            "past",
        ),
        (
            "POST",
            "/blocks".into(),
            SHOP,
            Some(json!({"period_start": p1, "periods": 2, "quantity_rps": 5, "price": 2.0, "customer": "blog"})),
            403,
            "cannot act for",
        ),
        ("POST", "/standing-orders".into(), SHOP, Some(json!({"quantity_rps": 0, "price": 1.0})), 422, "at least 1"),
        (
            "POST",
            "/standing-orders".into(),
            SHOP,
            Some(json!({"quantity_rps": 5, "price": 1.0, "period_start": p1 + 7})),
            422,
            "boundary",
        ),
        (
            "POST",
            "/standing-orders".into(),
            SHOP,
            Some(json!({"quantity_rps": 5, "price": 1.0, "tif": "gtc"})),
            400,
            "unknown field",
        ),
        (
            "POST",
            "/standing-orders".into(),
            OP,
            Some(json!({"quantity_rps": 5, "price": 1.0, "customer": "nosuch"})),
            404,
            "no customer",
        ),
        ("GET", "/standing-orders/424242".into(), SHOP, None, 404, "no standing order"),
        ("POST", format!("/standing-orders/{shop_standing}/cancel"), BLOG, None, 404, "no standing order"),
        ("POST", format!("/standing-orders/{cancelled_standing}/cancel"), SHOP, None, 409, "cancelled"),
        ("DELETE", "/orders/999999".into(), OP, None, 404, "no order"),
        (
            "POST",
            format!("/auctions/{aid}/bids"),
            SHOP,
            Some(json!({"quantity_rps": 5, "max_price": 1e12})),
            400,
            "maximum",
        ),
        (
            "POST",
            "/auctions/424242/bids".into(),
            SHOP,
            Some(json!({"quantity_rps": 5, "max_price": 1.0})),
            404,
            "no auction",
        ),
        ("POST", "/auctions".into(), SHOP, Some(json!({"period_start": p1, "closes_at": p1})), 403, "operator"),
        ("POST", "/auctions".into(), OP, Some(json!({"period_start": p1 - 60, "closes_at": p1})), 409, "has started"),
        (
            "POST",
            "/auctions".into(),
            OP,
            Some(json!({"period_start": p1 + 60, "closes_at": p1 + 120})),
            422,
            "closes_at",
        ),
        (
            "POST",
            "/auctions".into(),
            OP,
            Some(json!({"period_start": p1 + 60, "closes_at": p1, "quantity_rps": 100000})),
            409,
            "available",
        ),
        ("PUT", "/customers/shop/fraction".into(), SHOP, Some(json!({"fraction": 1.0})), 403, "operator"),
        ("PUT", "/customers/shop/fraction".into(), OP, Some(json!({"fraction": 1.5})), 400, "outside"),
        ("GET", "/customers/blog".into(), SHOP, None, 404, "no customer"),
        ("GET", "/customers/shop/resolvers?limit=0".into(), OP, None, 400, "limit"),
        ("GET", "/customers/blog/resolvers".into(), SHOP, None, 404, "no customer"),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "loop", "names": ["loop.cdn.example.net."], "origin_cname": "www.cdn.example.net.", "overflow": "cname", "fraction": 0.1}),
            ),
            422,
            "a zone we answer for",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "shop", "names": ["x.cdn.example.net."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1}),
            ),
            422,
            "already defined",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "n2", "names": ["shop.cdn.example.net."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1}),
            ),
            422,
            "already a name of customer",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "n3", "names": ["n3.other.org."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1}),
            ),
            422,
            "not inside server.zones",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(json!({"id": "n4", "names": ["n4.cdn.example.net."], "overflow": "origin", "fraction": 0.1})),
            422,
            "needs at least one origin",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "n5", "names": ["n5.cdn.example.net."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1, "zones": ["n5.example."]}),
            ),
            422,
            "config file only",
        ),
        (
            "POST",
            "/customers".into(),
            OP,
            Some(
                json!({"id": "n6", "names": ["n6.cdn.example.net."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1, "token": OP}),
            ),
            409,
            "same as another token",
        ),
        (
            "POST",
            "/customers".into(),
            SHOP,
            Some(
                json!({"id": "n7", "names": ["n7.cdn.example.net."], "origin_addresses": ["192.0.2.1"], "overflow": "origin", "fraction": 0.1}),
            ),
            403,
            "operator",
        ),
        (
            "PUT",
            "/customers/shop/names".into(),
            OP,
            Some(json!({"names": ["s2.cdn.example.net."]})),
            409,
            "config file",
        ),
        (
            "PUT",
            "/customers/nosuch/names".into(),
            OP,
            Some(json!({"names": ["s2.cdn.example.net."]})),
            404,
            "no customer",
        ),
        ("PUT", "/proxies/edge-1/capacity".into(), OP, Some(json!({"capacity_rps": 0})), 400, "between"),
        ("POST", "/proxies".into(), SHOP, Some(proxy("e9", "192.0.2.9")), 403, "operator"),
        ("POST", "/proxies".into(), OP, Some(proxy("edge-1", "192.0.2.9")), 409, "exists"),
        ("POST", "/proxies".into(), OP, Some(proxy("e9", "198.51.100.10")), 422, "is proxy \"edge-1\"'s"),
        ("POST", "/proxies".into(), OP, Some(proxy("e9", "0.0.0.0")), 422, "not a unicast address"),
        ("POST", "/proxies".into(), OP, Some(proxy("a b", "192.0.2.9")), 400, "printable"),
        ("POST", "/proxies".into(), OP, Some(proxy("", "192.0.2.9")), 400, "printable"),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": [], "capacity_rps": 1})),
            400,
            "at least one",
        ),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": ["x"], "capacity_rps": 1})),
            400,
            "invalid JSON",
        ),
        ("POST", "/proxies".into(), OP, Some(json!({"name": "e9", "addresses": ["192.0.2.9"]})), 400, "capacity_rps"),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 0})),
            400,
            "between",
        ),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 1, "weight": 1})),
            400,
            "unknown field",
        ),
        ("POST", "/proxies".into(), OP, Some(checked("ftp://192.0.2.9/", 1000, 500, 2)), 422, "not an http(s) URL"),
        ("POST", "/proxies".into(), OP, Some(checked("http://192.0.2.9/", 50, 20, 2)), 400, "interval_ms"),
        ("POST", "/proxies".into(), OP, Some(checked("http://192.0.2.9/", 1000, 5, 2)), 400, "timeout_ms"),
        ("POST", "/proxies".into(), OP, Some(checked("http://192.0.2.9/", 1000, 2000, 2)), 422, "above interval_ms"),
        ("POST", "/proxies".into(), OP, Some(checked("http://192.0.2.9/", 1000, 500, 0)), 400, "health.fall"),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 1, "metrics_url": "nope"})),
            422,
            "metrics_url",
        ),
        ("POST", "/proxies".into(), OP, Some(proxy_many(65)), 422, "more than 64 IPv4"),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 1,
                "metrics": {"served": {"metric": "1x", "label": "proxy"}}})),
            422,
            "metrics.served.metric",
        ),
        (
            "POST",
            "/proxies".into(),
            OP,
            Some(
                json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 1, "metrics": {"own": {"metric": "x"}}}),
            ),
            400,
            "missing field `served`",
        ),
        (
            "PUT",
            "/proxies/edge-1".into(),
            OP,
            Some(json!({"addresses": ["192.0.2.9"], "capacity_rps": 5})),
            409,
            "config file",
        ),
        (
            "PUT",
            "/proxies/nosuch".into(),
            OP,
            Some(json!({"addresses": ["192.0.2.9"], "capacity_rps": 5})),
            404,
            "no proxy",
        ),
        ("PUT", "/proxies/edge-1".into(), OP, Some(json!({"addresses": ["192.0.2.9"]})), 400, "capacity_rps"),
        ("DELETE", "/proxies/edge-1".into(), OP, None, 409, "config file"),
        ("DELETE", "/proxies/nosuch".into(), OP, None, 404, "no proxy"),
        ("DELETE", "/proxies/edge-1".into(), SHOP, None, 403, "operator"),
        ("POST", "/proxies/nosuch/drain".into(), OP, None, 404, "no proxy"),
        ("POST", "/proxies/edge-1/drain".into(), BLOG, None, 403, "operator"),
        ("POST", "/proxies/nosuch/undrain".into(), OP, None, 404, "no proxy"),
        ("GET", "/proxies/nosuch".into(), OP, None, 404, "no proxy"),
        ("GET", "/proxies".into(), SHOP, None, 403, "operator"),
        ("GET", "/customers/blog/history".into(), SHOP, None, 404, "no customer"),
        ("GET", "/customers/blog/history/chart".into(), SHOP, None, 404, "no customer"),
        ("GET", "/customers/nosuch/history".into(), OP, None, 404, "no customer"),
        ("GET", "/proxies/edge-1".into(), BLOG, None, 403, "operator"),
        ("PUT", "/proxies/nosuch/capacity".into(), OP, Some(json!({"capacity_rps": 5})), 404, "no proxy"),
        ("POST", "/proxies/edge-1/report".into(), OP, Some(json!({"served": {"nosuch": 5}})), 422, "no customer"),
        ("POST", "/proxies/edge-1/report".into(), SHOP, Some(json!({"served": {"shop": 5}})), 403, "operator"),
        ("GET", "/contracts?customer=blog".into(), SHOP, None, 403, "cannot act for"),
        ("GET", "/usage?customer=blog".into(), SHOP, None, 403, "cannot act for"),
        ("GET", "/usage?format=xml".into(), OP, None, 400, "csv"),
        ("GET", "/customers".into(), "wrong", None, 401, "invalid token"),
        ("GET", "/customers".into(), "", None, 401, "missing bearer"),
    ];
    let mut wrong = Vec::new();
    for (method, path, token, body, status, needle) in cases {
        let (got, v) = api.call(method, &path, token, body.clone()).await;
        let msg = v["error"].as_str().unwrap_or_default().to_owned();
        if got != status || !msg.contains(needle) {
            wrong.push(format!("{method} {path} {body:?}: {got} {v} (expected {status}, mentioning {needle:?})"));
        }
        assert_eq!(api.snapshot(), before, "{method} {path} changed the state");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A buyer sees only its own orders.
    let orders = api.ok("GET", "/orders", BLOG, None).await;
    assert!(orders["orders"].as_array().unwrap().iter().all(|o| o["owner"] == "blog"));
    assert_eq!(api.ok("GET", "/customers", BLOG, None).await["customers"].as_array().unwrap().len(), 1);
}

fn proxy(name: &str, address: &str) -> Value {
    json!({"name": name, "addresses": [address], "capacity_rps": 100})
}

fn checked(url: &str, interval_ms: u64, timeout_ms: u64, fall: u32) -> Value {
    json!({"name": "e9", "addresses": ["192.0.2.9"], "capacity_rps": 100,
        "health": {"url": url, "interval_ms": interval_ms, "timeout_ms": timeout_ms, "fall": fall}})
}

fn proxy_many(n: usize) -> Value {
    let addrs: Vec<String> = (0..n).map(|i| format!("10.0.{}.{}", i / 200, i % 200 + 1)).collect();
    json!({"name": "e9", "addresses": addrs, "capacity_rps": 100})
}

/// Proxies added and drained through the API outlive a restart; a stored proxy the config
/// file now defines is skipped (the file wins), and one that breaks a rule too.
#[tokio::test]
async fn added_and_drained_proxies_outlive_a_restart() {
    let mut api = Api::new();
    api.ok("POST", "/proxies", OP, Some(proxy("edge-2", "198.51.100.20"))).await;
    api.ok("POST", "/proxies", OP, Some(proxy("edge-3", "198.51.100.30"))).await;
    api.ok("POST", "/proxies/edge-1/drain", OP, None).await;
    api.ok("PUT", "/proxies/edge-3/capacity", OP, Some(json!({"capacity_rps": 321}))).await;
    let restart = |text: &str| {
        let cfg = Config::parse(text, "test.toml").unwrap();
        Engine::new(&cfg, Catalog::from_config(&cfg).unwrap(), None, unix_now()).unwrap()
    };
    let e = restart(&config_text(&api._dir.0));
    let names: Vec<_> = e.fleet.proxies().iter().map(|p| (p.config.name.as_str(), p.drained)).collect();
    assert_eq!(names, [("edge-1", true), ("edge-2", false), ("edge-3", false)]);
    assert_eq!((e.capacity.proxy("edge-3"), e.capacity.total_rps()), (Some(321), 1421));
    let set = e.catalog.proxy_set();
    assert_eq!(set.v4[..set.v4_len as usize], [[198, 51, 100, 20], [198, 51, 100, 30]], "edge-1 stays drained");
    drop(e);
    // The file now has an edge-2, and edge-1 took edge-3's address.
    let text = config_text(&api._dir.0)
        .replacen(r#"addresses = ["198.51.100.10"]"#, r#"addresses = ["198.51.100.30"]"#, 1)
        .replacen(
            "[[customer]]",
            "[[proxy]]\nname = \"edge-2\"\naddresses = [\"198.51.100.99\"]\ncapacity_rps = 5\n[[customer]]",
            1,
        );
    let e = restart(&text);
    let names: Vec<_> = e.fleet.proxies().iter().map(|p| (p.config.name.as_str(), p.source)).collect();
    use crate::fleet::Source;
    assert_eq!(names, [("edge-1", Source::Config), ("edge-2", Source::Config)], "both stored ones skipped");
    assert_eq!(e.store.proxies().unwrap().len(), 2, "and kept in the store");
}

/// Settings an edited config entry no longer takes are skipped at start (the daemon starts,
/// the entry answers alone) and kept in the store, so putting the entry back brings them back.
#[tokio::test]
async fn stored_settings_the_entry_no_longer_takes_are_skipped() {
    let mut api = Api::new();
    api.ok("PUT", "/customers/shop/settings", SHOP, Some(json!({"origin_weights": [2], "ttl": 9}))).await;
    // Two origins in the file now: one weight no longer fits.
    let text = config_text(&api._dir.0).replacen(
        r#"origin_addresses = ["203.0.113.10"]"#,
        r#"origin_addresses = ["203.0.113.10", "203.0.113.11"]"#,
        1,
    );
    let cfg = Config::parse(&text, "test.toml").unwrap();
    let catalog = Catalog::from_config(&cfg).unwrap();
    let again = Engine::new(&cfg, catalog, None, unix_now()).unwrap();
    let c = again.catalog.customer("shop").unwrap();
    assert_eq!((c.config.ttl, c.config.origin_weights.clone()), (30, None), "the entry alone");
    assert!(!again.settings.contains_key("shop"));
    assert_eq!(again.store.customer_settings().unwrap().len(), 1, "still stored");
    drop(again);
    let cfg = config(&api._dir.0);
    let again = Engine::new(&cfg, Catalog::from_config(&cfg).unwrap(), None, unix_now()).unwrap();
    assert_eq!(again.catalog.customer("shop").unwrap().config.ttl, 9, "the entry takes them again");
}

/// A request with no document check (for answers the document lists only generally).
async fn raw(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Body,
) -> axum::response::Response {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    router(state.clone()).oneshot(req.body(body).unwrap()).await.unwrap()
}

async fn json_of(resp: axum::response::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes))))
}

#[tokio::test]
async fn limits_and_every_error_is_json() {
    let api = Api::new();
    let st = &api.state;
    // A body over 64 KiB: 413, as JSON, and nothing stored.
    let big = format!("{{\"names\": [\"{}\"]}}", "a".repeat(70 << 10));
    let (status, v) = json_of(raw(st, "PUT", "/v1/customers/shop/names", Some(OP), Body::from(big)).await).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].is_string(), "{v}");
    // Path and query rejections are JSON too.
    let (status, v) = json_of(raw(st, "GET", "/v1/orders/abc", Some(OP), Body::empty()).await).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("Invalid URL"), "{v}");
    let (status, v) = json_of(raw(st, "GET", "/v1/capacity?periods=-1", Some(OP), Body::empty()).await).await;
    assert_eq!(status, 400, "{v}");
    // The document is public.
    assert_eq!(raw(st, "GET", "/v1/openapi.json", None, Body::empty()).await.status().as_u16(), 200);
    // Writes per buyer token: past the burst, 429 with Retry-After; another buyer and the
    // operator are not held back, and reads are not limited.
    let write =
        |token: &'static str| raw(st, "PUT", "/v1/customers/shop/token", Some(token), Body::from(r#"{"token": "x"}"#));
    let mut limited = None;
    for _ in 0..300 {
        let r = write(SHOP).await;
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a buyer is limited past api.write_burst (200) at api.write_rate 1/s");
    assert!(r.headers().get("retry-after").is_some(), "Retry-After");
    assert!(json_of(r).await.1["error"].as_str().unwrap().contains("too many writes"));
    assert_eq!(write(BLOG).await.status().as_u16(), 404, "another buyer still gets through (to its 404)");
    assert_eq!(write(OP).await.status().as_u16(), 422, "the operator is not limited (it must name a customer)");
    assert_eq!(raw(st, "GET", "/v1/customers", Some(SHOP), Body::empty()).await.status().as_u16(), 200);
}
