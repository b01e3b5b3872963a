//! The fixture zone: a config whose answers are deterministic (fractions 0 and 1, one address
//! per family), and helpers to load it into a real data plane and run packets through it.

use spillway::{
    catalog::Catalog,
    config::Config,
    dataplane::{
        Dataplane, LoadOptions,
        test_run::{TestRunOptions, test_run},
    },
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub const PROXY_V4: [u8; 4] = [198, 51, 100, 10];
pub const PROXY_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
pub const ORIGIN_V4: [u8; 4] = [203, 0, 113, 20];
pub const ORIGIN_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
pub const CNAME_TARGET: &str = "www.Origin-Shop.example.";
/// Customer "by_resolver"'s origins: it draws per resolver, at fraction 0.5.
pub const BY_RESOLVER_ORIGIN_V4: [u8; 4] = [203, 0, 113, 50];
pub const BY_RESOLVER_ORIGIN_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50];

/// The longest legal name in the zone: exactly 255 bytes in wire form.
pub fn longest_name() -> String {
    let a = "a".repeat(63);
    // 3 * 64 + 46 + len("cdn.example.net." wire) 17 = 255
    format!("{a}.{a}.{a}.{}.cdn.example.net.", "b".repeat(45))
}

pub fn config_text() -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["spw-unused0"]

[api]
listen = "127.0.0.1:0"
token = "fixture"

[store]
path = "/nonexistent/spillway.db"

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 1000

[[customer]]
id = "fixed"
names = ["fixed.cdn.example.net.", "{long}"]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 300

[[customer]]
id = "steered"
names = ["steered.cdn.example.net."]
origin_addresses = ["203.0.113.40"]
overflow = "origin"
fraction = 1.0
ttl = 300

[[customer]]
id = "by_resolver"
names = ["by-resolver.cdn.example.net."]
origin_addresses = ["203.0.113.50", "2001:db8:200::50"]
overflow = "origin"
fraction = 0.5
ttl = 300
draw = "resolver"

[[customer]]
id = "origin"
names = ["origin.cdn.example.net."]
origin_addresses = ["203.0.113.20", "2001:db8:200::20"]
overflow = "origin"
fraction = 0.0
ttl = 60

[[customer]]
id = "cname"
names = ["cname.cdn.example.net.", "odd.cdn.example.net."]
origin_cname = "{CNAME_TARGET}"
overflow = "cname"
fraction = 0.0
ttl = 30

[[customer]]
id = "v4only"
names = ["v4only.cdn.example.net."]
origin_addresses = ["203.0.113.30"]
overflow = "origin"
fraction = 0.0
ttl = 30
"#,
        long = longest_name()
    )
}

/// The tests' client sends loads far above any response rate: a config without an `[rrl]`
/// section gets one that exempts the client's /24 and /56 (the limit itself is tested with
/// configs of its own).
pub fn exempt_test_client(config: &str) -> String {
    if config.contains("[rrl]") {
        return config.to_owned();
    }
    format!("{config}\n[rrl]\nexempt = [\"192.0.2.0/24\", \"2001:db8::/56\"]\n")
}

/// A data plane loaded (not attached) with a config's records. The frames of [`crate::frame`]
/// go to 192.0.2.53 and 2001:db8::53: a config without `xdp_addresses` answers for those.
pub fn load(config: &str, opts: LoadOptions) -> (Dataplane, Catalog) {
    let mut config = exempt_test_client(config);
    if !config.contains("xdp_addresses") {
        config = config.replacen("[server]", "[server]\nxdp_addresses = [\"192.0.2.53\", \"2001:db8::53\"]", 1);
    }
    let config = Config::parse(&config, "fixture.toml").expect("fixture config is valid");
    let catalog = Catalog::from_config(&config).expect("catalog");
    let mut dp = Dataplane::load(opts).expect("XDP program loads and passes the verifier");
    catalog.install(&mut dp).expect("maps filled");
    spillway::dataplane::guard::install(&mut dp, &config).expect("addresses and rate limit filled");
    (dp, catalog)
}

/// Run a program once on a frame: (XDP action, output frame).
pub fn run(dp: &Dataplane, program: &'static str, frame: &[u8]) -> (u32, Vec<u8>) {
    let fd = dp.program_fd(program).expect("program fd");
    let r = test_run(fd, &TestRunOptions::new(frame)).expect("BPF_PROG_TEST_RUN");
    (r.return_value, r.data_out)
}

/// A config for the real daemon in a [`crate::netns::Topology`]: zone `cdn.example.net.`, the
/// API on the server's address (token `t`), the store in the daemon's directory, one proxy
/// (198.51.100.10), then `extra` (customers, sections) as TOML.
pub fn daemon_config(listen: &[&str], xdp_interface: Option<&str>, extra: &str) -> String {
    let quoted = |v: &[&str]| v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
    let xdp = xdp_interface.map(|i| [i]);
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = [{listen}]
xdp_interfaces = [{xdp}]

[api]
listen = "{api}:8053"
token = "t"

[store]
path = "@DIR@/spillway.db"

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 20000
{extra}"#,
        listen = quoted(listen),
        xdp = xdp.as_ref().map_or(String::new(), |x| quoted(x)),
        api = crate::netns::SERVER_ADDR4,
    )
}
