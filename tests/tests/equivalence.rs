//! The XDP program and the userspace server give the same reply for the same query, from the
//! same config, at fractions 0 and 1 (where the rule is deterministic): over 1 000 queries of
//! names, types, case, EDNS on and off, DO, RD and CD, over IPv4 and IPv6; and the negative
//! answers (NXDOMAIN, NODATA) for random names under and beside every zone, empty non-terminals,
//! host names and apexes. Queries XDP passes on must get their answer from userspace instead.

use std::{net::IpAddr, sync::Arc};

use spillway::{
    config::Config,
    dataplane::{Dataplane, LoadOptions, program},
    dns::{Authority, Transport as DnsTransport, snapshot::ZoneSnapshot},
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
glue = { "ns1.cdn.example.net." = ["192.0.2.53"] }
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
origin_cname = "Origin.Shop.Example.org."
overflow = "cname"
fraction = 0.0
ttl = 60
[[customer]]
id = "sticky"
names = ["sticky.cdn.example.net."]
origin_addresses = ["203.0.113.4", "2001:db8:200::4"]
overflow = "origin"
fraction = 0.5
ttl = 20
draw = "resolver"
[[customer]]
id = "v4only"
names = ["v4only.cdn.example.net.", "shop.example.", "www.deep.shop.example."]
zones = ["shop.example."]
origin_addresses = ["203.0.113.3"]
overflow = "origin"
fraction = 0.0
ttl = 15
"#;

/// The TTL of customer "on"'s proxy answers, below its own 30.
const PROXY_TTL: u32 = 7;

/// Vary the case of a name by a pattern.
fn recase(name: &str, pattern: u32) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| if (pattern >> (i % 32)) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// The data plane and the userspace server from the same config, on the same serial.
/// Customer "on" (all proxies) has its proxy answers' TTL set to 7 (see [`PROXY_TTL`]).
fn setup() -> (Dataplane, Authority, Arc<ZoneSnapshot>) {
    let (mut dp, mut catalog) = fixture::load(CONFIG, LoadOptions::default());
    catalog.set_proxy_ttl("on", PROXY_TTL, Some(&mut dp)).expect("proxy TTL set");
    let config = Config::parse(CONFIG, "equivalence.toml").expect("config");
    let authority = Authority::new(&config);
    (dp, authority, catalog.snapshot())
}

#[test]
fn xdp_and_userspace_agree() {
    require_privileges!();
    let (dp, authority, catalog) = setup();
    // Both paths give the proxy answers their own TTL, and the origins the customer's.
    for (name, ttl) in [("on.cdn.example.net.", PROXY_TTL), ("off.cdn.example.net.", 45)] {
        let dns = Query::new(name, TYPE_A).bytes();
        let user = authority.answer(&catalog, &dns, CLIENT_V4.into(), DnsTransport::Udp).expect("answer");
        let (_, out) = fixture::run(&dp, program::DNS, &query_frame(&Transport::V4, &dns));
        for reply in [user, checked_dns_payload(&out).expect("valid reply")] {
            let msg = hickory_proto::op::Message::from_vec(&reply).expect("parses");
            assert!(!msg.answers.is_empty() && msg.answers.iter().all(|r| r.ttl == ttl), "{name}: {msg:?}");
        }
    }

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
    assert!(passed_on >= 100, "XDP passed on only {passed_on}");
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(4)].join("\n")
    );
}

/// Drawn per resolver, an answer is a function of the query and its source's prefix: both paths
/// give the same bytes for resolvers all over the address space, and both sides occur.
#[test]
fn xdp_and_userspace_draw_the_same_side_per_resolver() {
    require_privileges!();
    let (dp, authority, catalog) = setup();
    let (mut sides, mut failures) = ([0; 2], Vec::new());
    for k in 0..200u32 {
        let v6 = k % 4 == 3;
        let h = spillway_common::decision::mix64(u64::from(k));
        let (t, client): (Transport, IpAddr) = if v6 {
            let mut a = [0u8; 16];
            a[..8].copy_from_slice(&h.to_be_bytes());
            a[0] = 0x20;
            a[15] = 1;
            (Transport::V6.from_v6(a), a.into())
        } else {
            let a = (h as u32).to_be_bytes();
            (Transport::V4.from_v4(a), a.into())
        };
        let qtype = if k % 2 == 0 { TYPE_A } else { TYPE_AAAA };
        let dns = Query::new("sticky.cdn.example.net.", qtype).bytes();
        let user = authority.answer(&catalog, &dns, client, DnsTransport::Udp).expect("answer");
        let (action, out) = fixture::run(&dp, program::DNS, &query_frame(&t, &dns));
        assert_eq!(action, XDP_TX, "from {client}");
        let xdp = checked_dns_payload(&out).expect("valid reply");
        let msg = hickory_proto::op::Message::from_vec(&xdp).expect("parses");
        let to_proxy = msg
            .answers
            .iter()
            .any(|r| r.to_string().contains("198.51.100.10") || r.to_string().contains("2001:db8:100::10"));
        sides[usize::from(to_proxy)] += 1;
        if xdp != user {
            failures.push(format!("from {client}:\n  xdp  {}\n  user {}", hex(&xdp), hex(&user)));
        }
    }
    assert!(sides[0] > 50 && sides[1] > 50, "both sides drawn: {sides:?}");
    assert!(failures.is_empty(), "{} of 200 differ:\n{}", failures.len(), failures[..failures.len().min(4)].join("\n"));
}

/// Negative answers: random names under and beside both zones (ours and a customer's
/// delegated one), empty non-terminals, host names, apexes, and types XDP decides or not.
#[test]
fn negative_answers_agree() {
    require_privileges!();
    let (dp, authority, catalog) = setup();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let fixed = [
        "b.on.cdn.example.net.",
        "deep.shop.example.",
        "shop.example.",
        "cdn.example.net.",
        "ns1.cdn.example.net.",
        "on.cdn.example.net.",
        "example.",
        "net.",
        "xcdn.example.net.",
    ];
    let types = [TYPE_A, TYPE_AAAA, TYPE_MX, TYPE_NS, 6, 16, 43, 257, 255, 252];
    let (mut compared, mut rcodes, mut failures, mut n) = (0, [0u32; 16], Vec::new(), 0u32);
    for i in 0..1200u32 {
        let name = if i < 400 {
            fixed[i as usize % fixed.len()].to_string()
        } else {
            // A random label or two under or beside a zone, of random case and length.
            let label: String = (0..1 + next() % 40).map(|_| (b'a' + (next() % 26) as u8) as char).collect();
            let parent = ["cdn.example.net.", "shop.example.", "deep.shop.example.", "example.net.", "example."]
                [next() as usize % 5];
            let name = if next() % 3 == 0 {
                format!("x{}.{label}.{parent}", next() % 100)
            } else {
                format!("{label}.{parent}")
            };
            recase(&name, next() as u32)
        };
        let qtype = types[next() as usize % types.len()];
        n += 1;
        let mut q = Query::new(&name, qtype).flags(if next() % 2 == 0 { FLAG_RD } else { 0 });
        q.id = n as u16;
        q.edns = match next() % 3 {
            0 => None,
            1 => Some(Edns::new(1232)),
            _ => Some(Edns { do_bit: true, ..Edns::new(4096) }),
        };
        let t = if next() % 2 == 0 { Transport::V4 } else { Transport::V6 };
        let dns = q.bytes();
        let client: IpAddr = if t.ipv6 { CLIENT_V6.into() } else { CLIENT_V4.into() };
        let user = authority.answer(&catalog, &dns, client, DnsTransport::Udp).expect("userspace answers");
        let (action, out) = fixture::run(&dp, program::DNS, &query_frame(&t, &dns));
        if action == XDP_TX {
            compared += 1;
            let xdp = checked_dns_payload(&out).expect("valid reply");
            rcodes[(xdp[3] & 0xf) as usize] += 1;
            if xdp != user {
                failures.push(format!("{name} type {qtype}:\n  xdp  {}\n  user {}", hex(&xdp), hex(&user)));
            }
        } else {
            assert_eq!(action, XDP_PASS, "{name} type {qtype}");
        }
    }
    eprintln!("negative corpus {n}: XDP answered {compared}, by rcode {:?}", &rcodes[..4]);
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures[..failures.len().min(4)].join("\n")
    );
    assert!(rcodes[3] >= 200, "XDP sent only {} NXDOMAIN of {compared} answers", rcodes[3]);
    assert!(rcodes[0] >= 100, "XDP sent only {} NOERROR of {compared} answers", rcodes[0]);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
