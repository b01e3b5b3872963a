//! The zone every answer target runs against: customers of every kind, glue, a delegated
//! sub-zone, built once.

use std::sync::{Arc, OnceLock};

use spillway::{catalog::Catalog, config::Config, dns::Authority, dns::snapshot::ZoneSnapshot};

const CONFIG: &str = r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net.", "ns2.cdn.example.net."]
listen = ["127.0.0.1:5353"]
glue = { "ns1.cdn.example.net." = ["192.0.2.53", "2001:db8::53"] }
[api]
listen = "127.0.0.1:0"
token = "fuzz-token"
[store]
path = "/nonexistent/spillway.db"
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 1000
[[proxy]]
name = "edge-2"
addresses = ["198.51.100.11"]
capacity_rps = 1000
[[customer]]
id = "half"
names = ["half.cdn.example.net.", "a.b.half.cdn.example.net."]
origin_addresses = ["203.0.113.10", "203.0.113.11", "2001:db8:200::10"]
origin_weights = [1, 3, 1]
assignment = "weighted"
overflow = "origin"
fraction = 0.5
[[customer]]
id = "hash"
names = ["hash.cdn.example.net.", "shop.example."]
zones = ["shop.example."]
origin_addresses = ["203.0.113.20", "2001:db8:200::20"]
assignment = "hash"
overflow = "origin"
fraction = 0.0
[[customer]]
id = "cname"
names = ["cname.cdn.example.net."]
origin_cname = "origin.example."
overflow = "cname"
fraction = 0.3
"#;

pub fn zone() -> &'static (Authority, Arc<ZoneSnapshot>) {
    static ZONE: OnceLock<(Authority, Arc<ZoneSnapshot>)> = OnceLock::new();
    ZONE.get_or_init(|| {
        let config = Config::parse(CONFIG, "fuzz.toml").expect("the fuzz zone is valid");
        let catalog = Catalog::from_config(&config).expect("catalog");
        (Authority::new(&config), catalog.snapshot())
    })
}
