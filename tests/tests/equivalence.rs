//! The XDP program and the userspace server give the same reply for the same query, from the
//! same config, at fractions 0 and 1 (where the rule is deterministic): over 1 000 queries of
//! names, types, case, EDNS on and off, DO, RD and CD, over IPv4 and IPv6. Queries XDP passes on
//! must get their answer from userspace instead.

use std::net::IpAddr;

use spillway::{
    catalog::Catalog,
    config::Config,
    dataplane::{LoadOptions, program},
    dns::{Authority, Transport as DnsTransport},
};
use spillway_tests::{
    dnswire::*,
    fixture::{self, XDP_PASS, XDP_TX},
    frame::{CLIENT_V4, CLIENT_V6, Transport, checked_dns_payload, query_frame},
    require_privileges,
};

/// One address of each family per customer and per proxy set: at fractions 0 and 1 every
/// answer is then fully determined.
const CONFIG: &str = r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = ["127.0.0.1:5353"]
xdp_interfaces = ["unused0"]
[api]
listen = "127.0.0.1:0"
token = "t"
[store]
path = "/nonexistent.db"
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 1000
[[customer]]
id = "on"
names = ["on.cdn.example.net.", "a.b.on.cdn.example.net."]
origin_addresses = ["203.0.113.1", "2001:db8:200::1"]
overflow = "origin"
fraction = 1.0
ttl = 30
[[customer]]
id = "off"
names = ["off.cdn.example.net."]
origin_addresses = ["203.0.113.2", "2001:db8:200::2"]
overflow = "origin"
assignment = "hash"
fraction = 0.0
ttl = 45
[[customer]]
id = "cname"
names = ["cname.cdn.example.net.", "x.cdn.example.net."]
origin_cname = "Origin.Shop.Example."
overflow = "cname"
fraction = 0.0
ttl = 60
[[customer]]
id = "v4only"
names = ["v4only.cdn.example.net."]
origin_addresses = ["203.0.113.3"]
overflow = "origin"
fraction = 0.0
ttl = 15
"#;

/// Vary the case of a name by a pattern.
fn recase(name: &str, pattern: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if (pattern >> (i % 32)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect()
}

#[test]
fn xdp_and_userspace_agree() {
    require_privileges!();
    let (dp, _) = fixture::load(CONFIG, LoadOptions::default());
    let config = Config::parse(CONFIG, "equivalence.toml").expect("config");
    let authority = Authority::new(&config, 1);
    let catalog = Catalog::from_config(&config).expect("catalog").snapshot();

    let names = [
        "on.cdn.example.net.",
        "a.b.on.cdn.example.net.",
        "off.cdn.example.net.",
        "cname.cdn.example.net.",
        "x.cdn.example.net.",
        "v4only.cdn.example.net.",
        "nobody.cdn.example.net.",
        "cdn.example.net.",
        "www.example.org.",
    ];
    let types = [TYPE_A, TYPE_AAAA, TYPE_MX, TYPE_NS];
    let ednses = [None, Some(Edns::new(1232)), Some(Edns { do_bit: true, ..Edns::new(4096) }), Some(Edns::new(512))];
    let mut compared = 0;
    let mut passed_on = 0;
    let mut failures = Vec::new();
    let mut n = 0u32;
    for name in names {
        for qtype in types {
            for edns in &ednses {
                for flags in [0, FLAG_RD, FLAG_RD | FLAG_CD] {
                    for t in [Transport::V4, Transport::V6] {
                        for pattern in [0u32, 0x5555_5555, 0xffff_ffff] {
                            n += 1;
                            let mut q = Query::new(&recase(name, pattern), qtype).flags(flags);
                            q.id = n as u16;
                            q.edns = edns.clone();
                            let dns = q.bytes();
                            let frame = query_frame(&t, &dns);
                            let client: IpAddr = if t.ipv6 { CLIENT_V6.into() } else { CLIENT_V4.into() };
                            let user = authority
                                .answer(&catalog, &dns, client, DnsTransport::Udp)
                                .expect("userspace answers every query");
                            let (action, out) = fixture::run(&dp, program::DNS, &frame);
                            match action {
                                XDP_TX => {
                                    compared += 1;
                                    let xdp = checked_dns_payload(&out).expect("valid reply");
                                    if xdp != user {
                                        failures.push(format!(
                                            "{name} type {qtype} edns {:?} flags {flags:#x} v6 {}:\n  xdp  {}\n  user {}",
                                            edns.as_ref().map(|e| (e.udp_size, e.do_bit)),
                                            t.ipv6,
                                            hex(&xdp),
                                            hex(&user)
                                        ));
                                    }
                                }
                                XDP_PASS => passed_on += 1,
                                other => failures.push(format!("{name}: action {other}")),
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(n >= 1000, "corpus of {n}");
    assert!(compared >= 500, "XDP answered only {compared}");
    assert!(passed_on >= 300, "XDP passed on only {passed_on}");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(4)].join("\n")
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
