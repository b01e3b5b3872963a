//! Katran-style fixture table: input frame, expected action, expected output frame, each run
//! through the real XDP program with BPF_PROG_TEST_RUN. Every reply is also checked by
//! etherparse (checksums) and parsed by hickory-proto.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use spillway::dataplane::{LoadOptions, program};
use spillway_common::{
    decision::{resolver_draw, subnet_key_v4, subnet_key_v6},
    rrl::RrlAction,
    stats::XdpOutcome,
};
use spillway_tests::{
    dnswire::*,
    fixture::{
        self, BY_RESOLVER_ORIGIN_V4, BY_RESOLVER_ORIGIN_V6, CNAME_TARGET, ORIGIN_V4, ORIGIN_V6, PROXY_V4, PROXY_V6,
        XDP_DROP, XDP_PASS, XDP_TX,
    },
    frame::{self, Transport, checked_dns_payload, l3_offset, l4_offset, query_frame, reply_frame},
    require_privileges,
};

enum Expect {
    /// XDP_PASS with the frame untouched.
    Pass,
    /// XDP_PASS with the frame untouched, counted as this pass reason.
    PassAs(XdpOutcome),
    /// XDP_TX with exactly this frame.
    Reply(Vec<u8>),
    /// XDP_TX, a negative answer of this rcode with the zone's SOA in authority (the bytes are
    /// the equivalence test's), counted as this outcome.
    Negative(ResponseCode, XdpOutcome),
}

struct Case {
    name: String,
    input: Vec<u8>,
    expect: Expect,
}

fn reply_case(name: &str, t: Transport, q: Query, answers: &[Rdata], ttl: u32) -> Case {
    Case {
        name: name.into(),
        input: query_frame(&t, &q.bytes()),
        expect: Expect::Reply(reply_frame(&t, &expected_reply(&q, answers, ttl))),
    }
}

fn pass_frame(name: &str, input: Vec<u8>) -> Case {
    Case { name: name.into(), input, expect: Expect::Pass }
}

fn pass_as(name: &str, reason: XdpOutcome, input: Vec<u8>) -> Case {
    Case { name: name.into(), input, expect: Expect::PassAs(reason) }
}

fn negative(name: &str, t: Transport, q: Query, rcode: ResponseCode) -> Case {
    let outcome =
        if rcode == ResponseCode::NXDomain { XdpOutcome::AnsweredNxDomain } else { XdpOutcome::AnsweredNoData };
    Case { name: name.into(), input: query_frame(&t, &q.bytes()), expect: Expect::Negative(rcode, outcome) }
}

fn pass_query(name: &str, t: Transport, q: Query) -> Case {
    pass_frame(name, query_frame(&t, &q.bytes()))
}

/// Rewrite a byte of a frame and fix nothing else.
fn poke(mut f: Vec<u8>, at: usize, v: u8) -> Vec<u8> {
    f[at] = v;
    f
}

/// Customer "by_resolver" draws per resolver: queries from resolvers in 48 /24s and 16 /56s,
/// each side as `resolver_draw` of the prefix under the record's seed against its threshold
/// says (both sides occur), from two hosts of each prefix (the same side).
fn resolver_cases(seed: u32, threshold: u64) -> Vec<Case> {
    let name = "by-resolver.cdn.example.net.";
    let proxy = |v6: bool| if v6 { Rdata::Aaaa(PROXY_V6) } else { Rdata::A(PROXY_V4) };
    let origin = |v6: bool| if v6 { Rdata::Aaaa(BY_RESOLVER_ORIGIN_V6) } else { Rdata::A(BY_RESOLVER_ORIGIN_V4) };
    let mut out = Vec::new();
    let mut sides = [0; 2];
    for k in 0..64u8 {
        for host in [1u8, 200] {
            let v6 = k >= 48;
            let (t, key) = if v6 {
                let mut a = [0x20, 0x01, 0x0d, 0xb8, 0x77, k, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                // Hosts differ below the /56.
                a[7] = host;
                a[15] = host;
                (Transport::V6.from_v6(a), subnet_key_v6(a))
            } else {
                let a = [10, 77, k, host];
                (Transport::V4.from_v4(a), subnet_key_v4(a))
            };
            let to_proxy = u64::from(resolver_draw(key, seed)) < threshold;
            sides[usize::from(to_proxy)] += 1;
            let q = if v6 { Query::new(name, TYPE_AAAA) } else { Query::new(name, TYPE_A) };
            let (answer, what) = if to_proxy { (proxy(v6), "proxy") } else { (origin(v6), "origin") };
            let label = format!("resolver {k} host {host} -> {what} (draw per resolver)");
            out.push(reply_case(&label, t, q, &[answer], 300));
        }
    }
    assert!(sides[0] >= 8 && sides[1] >= 8, "both sides drawn: {sides:?}");
    out
}

/// The TTL `fixture_table` gives customer "steered"'s proxy answers.
const STEERED_PROXY_TTL: u32 = 5;

fn cases() -> Vec<Case> {
    let v4 = Transport::V4;
    let v6 = Transport::V6;
    let fixed = "fixed.cdn.example.net.";
    let a = |n: &str| Query::new(n, TYPE_A);
    let aaaa = |n: &str| Query::new(n, TYPE_AAAA);
    let proxy4 = [Rdata::A(PROXY_V4)];
    let proxy6 = [Rdata::Aaaa(PROXY_V6)];
    let cname = [Rdata::Cname(name_wire(CNAME_TARGET))];
    let mut c = vec![
        // Answers.
        reply_case("A over IPv4 -> proxy", v4, a(fixed), &proxy4, 300),
        reply_case("AAAA over IPv4 -> proxy", v4, aaaa(fixed), &proxy6, 300),
        reply_case("A over IPv6 -> proxy", v6, a(fixed), &proxy4, 300),
        reply_case("AAAA over IPv6 -> proxy", v6, aaaa(fixed), &proxy6, 300),
        reply_case("A in VLAN over IPv4", v4.vlan(42), a(fixed), &proxy4, 300),
        reply_case("AAAA in VLAN over IPv6", v6.vlan(4094), aaaa(fixed), &proxy6, 300),
        reply_case("A with EDNS 4096", v4, a(fixed).edns(Edns::new(4096)), &proxy4, 300),
        reply_case("A with EDNS and DO", v4, a(fixed).edns(Edns { do_bit: true, ..Edns::new(1232) }), &proxy4, 300),
        reply_case("AAAA with EDNS 512 over IPv6", v6, aaaa(fixed).edns(Edns::new(512)), &proxy6, 300),
        reply_case("EDNS size below 512", v4, a(fixed).edns(Edns::new(100)), &proxy4, 300),
        reply_case("mixed-case name kept", v4, a("FiXeD.CdN.ExAmPlE.NeT."), &proxy4, 300),
        reply_case("longest legal name", v4, a(&fixture::longest_name()), &proxy4, 300),
        reply_case(
            "longest legal name, AAAA, IPv6, EDNS",
            v6,
            aaaa(&fixture::longest_name()).edns(Edns::new(1400)),
            &proxy6,
            300,
        ),
        reply_case("RD and CD copied", v4, a(fixed).flags(FLAG_RD | FLAG_CD), &proxy4, 300),
        // Proxy answers at the TTL the controller chose, the customer's being 300.
        reply_case("A -> proxy at the proxy TTL", v4, a("steered.cdn.example.net."), &proxy4, STEERED_PROXY_TTL),
        reply_case(
            "AAAA over IPv6 with EDNS -> proxy at the proxy TTL",
            v6,
            aaaa("steered.cdn.example.net.").edns(Edns::new(1232)),
            &proxy6,
            STEERED_PROXY_TTL,
        ),
        reply_case("origin A", v4, a("origin.cdn.example.net."), &[Rdata::A(ORIGIN_V4)], 60),
        reply_case("origin AAAA over IPv6", v6, aaaa("origin.cdn.example.net."), &[Rdata::Aaaa(ORIGIN_V6)], 60),
        reply_case(
            "origin AAAA in VLAN with EDNS",
            v4.vlan(7),
            aaaa("origin.cdn.example.net.").edns(Edns::new(4096)),
            &[Rdata::Aaaa(ORIGIN_V6)],
            60,
        ),
        reply_case("CNAME for A", v4, a("cname.cdn.example.net."), &cname, 30),
        reply_case(
            "CNAME for AAAA over IPv6 with EDNS",
            v6,
            aaaa("cname.cdn.example.net.").edns(Edns::new(1232)),
            &cname,
            30,
        ),
        reply_case("CNAME, odd name length (checksum parity)", v4, a("odd.cdn.example.net."), &cname, 30),
        reply_case(
            "CNAME, odd name length, EDNS DO",
            v4,
            a("odd.cdn.example.net.").edns(Edns { do_bit: true, ..Edns::new(1232) }),
            &cname,
            30,
        ),
        // Not ours or not a plain query.
        // Negative answers, decided in XDP.
        negative("unknown name: NXDOMAIN", v4, a("nobody.cdn.example.net."), ResponseCode::NXDomain),
        negative(
            "unknown name, mixed case, EDNS DO, IPv6: NXDOMAIN",
            v6,
            aaaa("NoBody.x.CDN.example.net.").edns(Edns { do_bit: true, ..Edns::new(1232) }),
            ResponseCode::NXDomain,
        ),
        negative("other qtype (MX) at a customer name: NODATA", v4, Query::new(fixed, TYPE_MX), ResponseCode::NoError),
        negative("NS at a customer name: NODATA", v6, Query::new(fixed, TYPE_NS), ResponseCode::NoError),
        negative("A at the apex: NODATA", v4, a("cdn.example.net."), ResponseCode::NoError),
        negative("TXT at the apex: NODATA", v4, Query::new("cdn.example.net.", 16), ResponseCode::NoError),
        negative(
            "AAAA for a customer with no IPv6 answer: NODATA",
            v4,
            aaaa("v4only.cdn.example.net."),
            ResponseCode::NoError,
        ),
        pass_as("SOA at the apex", XdpOutcome::PassType, query_frame(&v4, &Query::new("cdn.example.net.", 6).bytes())),
        pass_as(
            "NS at the apex",
            XdpOutcome::PassType,
            query_frame(&v6, &Query::new("cdn.example.net.", TYPE_NS).bytes()),
        ),
        pass_as("ANY", XdpOutcome::PassType, query_frame(&v4, &Query::new("nobody.cdn.example.net.", 255).bytes())),
        pass_as("AXFR over UDP", XdpOutcome::PassType, query_frame(&v4, &Query::new("cdn.example.net.", 252).bytes())),
        pass_as("name outside the zone", XdpOutcome::PassNotInZone, query_frame(&v4, &a("fixed.example.org.").bytes())),
        pass_as("a proxy's host name", XdpOutcome::PassHost, query_frame(&v4, &a("Edge-1.cdn.example.net.").bytes())),
        pass_as(
            "a label byte that equals a length is no zone boundary",
            XdpOutcome::PassNotInZone,
            query_frame(
                &v4,
                &Query { name: [vec![4, 3], b"cdn".to_vec(), name_wire("example.net.")].concat(), ..a(fixed) }.bytes(),
            ),
        ),
        pass_query("class CH", v4, Query { qclass: CLASS_CH, ..a(fixed) }),
        pass_query("QDCOUNT 2", v4, Query { counts: Some([2, 0, 0, 0]), ..a(fixed) }),
        pass_query("QR=1 (a response)", v4, a(fixed).flags(0x8000)),
        pass_query("opcode NOTIFY", v4, a(fixed).flags(4 << 11)),
        pass_query("TC set in the query", v4, a(fixed).flags(0x0200)),
        pass_query("ANCOUNT 1", v4, Query { counts: Some([1, 1, 0, 0]), ..a(fixed) }),
        pass_query("ARCOUNT 1 with no record", v4, Query { counts: Some([1, 0, 0, 1]), ..a(fixed) }),
        pass_query("ARCOUNT 2", v4, Query { counts: Some([1, 0, 0, 2]), ..a(fixed).edns(Edns::new(1232)) }),
        pass_query("trailing bytes after the question", v4, Query { trailing: vec![0xde, 0xad], ..a(fixed) }),
        pass_query("EDNS version 1", v4, a(fixed).edns(Edns { version: 1, ..Edns::new(1232) })),
        reply_case(
            "EDNS with a cookie option (ignored)",
            v4,
            a(fixed).edns(Edns { options: vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], ..Edns::new(1232) }),
            &proxy4,
            300,
        ),
        reply_case(
            "EDNS with two options, odd length, IPv6",
            v6,
            aaaa("odd.cdn.example.net.").edns(Edns {
                options: vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2],
                ..Edns::new(1232)
            }),
            &cname,
            30,
        ),
        reply_case(
            "EDNS options are opaque: a cut option header is ignored too",
            v4,
            a(fixed).edns(Edns { options: vec![0, 10, 0], ..Edns::new(1232) }),
            &proxy4,
            300,
        ),
        pass_frame("OPT RDLENGTH beyond the message", {
            let mut dns =
                a(fixed).edns(Edns { options: vec![0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], ..Edns::new(1232) }).bytes();
            let at = dns.len() - 12 - 1;
            dns[at] += 4;
            query_frame(&v4, &dns)
        }),
        reply_case(
            "EDNS padding option of 140 bytes",
            v4,
            a(fixed).edns(Edns { options: [vec![0, 12, 0, 140], vec![0; 140]].concat(), ..Edns::new(1232) }),
            &proxy4,
            300,
        ),
        pass_query(
            "label of 64 bytes",
            v4,
            Query { name: [vec![64], vec![b'x'; 64], name_wire("cdn.example.net.")].concat(), ..a(fixed) },
        ),
        pass_query("compression pointer in the question", v4, Query { name: vec![0xc0, 0x0c], ..a(fixed) }),
        pass_query("UDP to port 54", Transport { dport: 54, ..v4 }, a(fixed)),
        pass_query("UDP to port 54 over IPv6", Transport { dport: 54, ..v6 }, a(fixed)),
    ];

    // Frames broken below DNS.
    let good4 = query_frame(&v4, &a(fixed).bytes());
    let good6 = query_frame(&v6, &a(fixed).bytes());
    let l4_4 = l4_offset(&v4);
    let l4_6 = l4_offset(&v6);
    let dns4 = l4_4 + 8;
    c.extend([
        pass_frame("Ethernet header only", good4[..14].to_vec()),
        pass_frame("truncated IPv4 header", good4[..14 + 12].to_vec()),
        pass_frame("truncated IPv6 header", good6[..14 + 30].to_vec()),
        pass_frame("truncated UDP header", good4[..l4_4 + 4].to_vec()),
        pass_frame("truncated UDP header over IPv6", good6[..l4_6 + 6].to_vec()),
        pass_frame("truncated DNS header", good4[..dns4 + 7].to_vec()),
        pass_frame("truncated question name", good4[..dns4 + 12 + 4].to_vec()),
        pass_frame("truncated before qclass", good4[..good4.len() - 2].to_vec()),
        pass_frame("IPv4 more-fragments", poke(good4.clone(), l3_offset(&v4) + 6, 0x20)),
        pass_frame("IPv4 fragment offset", poke(good4.clone(), l3_offset(&v4) + 7, 0x08)),
        pass_frame("IPv4 reserved flag set", poke(good4.clone(), l3_offset(&v4) + 6, 0x80)),
        pass_frame("IPv4 options (IHL 6)", poke(good4.clone(), l3_offset(&v4), 0x46)),
        pass_frame("IPv4 IHL 4", poke(good4.clone(), l3_offset(&v4), 0x44)),
        pass_frame("IPv6 fragment header", poke(good6.clone(), l3_offset(&v6) + 6, 44)),
        pass_frame("TCP to port 53", poke(good4.clone(), l3_offset(&v4) + 9, 6)),
        pass_frame(
            "ARP ethertype",
            poke(good4.clone(), 12, 0x08)
                .iter()
                .copied()
                .enumerate()
                .map(|(i, b)| if i == 13 { 0x06 } else { b })
                .collect(),
        ),
        pass_frame("double VLAN tag", {
            let mut f = query_frame(&v4.vlan(5), &a(fixed).bytes());
            f.splice(16..16, [0x81, 0x00, 0x00, 0x06]);
            f
        }),
        pass_frame("zero UDP checksum over IPv6", {
            let mut f = good6.clone();
            f[l4_6 + 6] = 0;
            f[l4_6 + 7] = 0;
            f
        }),
        pass_frame("UDP length longer than IP payload", poke(good4.clone(), l4_4 + 5, good4[l4_4 + 5] + 4)),
        pass_frame(
            "IPv4 total length beyond the frame",
            poke(good4.clone(), l3_offset(&v4) + 3, good4[l3_offset(&v4) + 3] + 40),
        ),
        // Not a reflector: only unicast frames to our addresses, from a port a reply can reach.
        pass_as("broadcast destination MAC", XdpOutcome::PassNotUnicast, {
            let mut f = good4.clone();
            f[..6].copy_from_slice(&[0xff; 6]);
            f
        }),
        pass_as("multicast destination MAC (01:00:5e)", XdpOutcome::PassNotUnicast, {
            let mut f = good4.clone();
            f[..3].copy_from_slice(&[0x01, 0x00, 0x5e]);
            f
        }),
        pass_as("IPv6 multicast destination MAC (33:33)", XdpOutcome::PassNotUnicast, {
            let mut f = good6.clone();
            f[..2].copy_from_slice(&[0x33, 0x33]);
            f
        }),
        pass_as("to an IPv4 address not ours", XdpOutcome::PassNotLocal, poke(good4.clone(), l3_offset(&v4) + 19, 99)),
        pass_as(
            "to an IPv6 address not ours",
            XdpOutcome::PassNotLocal,
            poke(good6.clone(), l3_offset(&v6) + 39, 0x99),
        ),
        pass_as(
            "from UDP source port 0",
            XdpOutcome::PassSourcePort,
            query_frame(&Transport { sport: 0, ..v4 }, &a(fixed).bytes()),
        ),
        pass_as(
            "from UDP source port 0 over IPv6",
            XdpOutcome::PassSourcePort,
            query_frame(&Transport { sport: 0, ..v6 }, &a(fixed).bytes()),
        ),
    ]);

    // Incoming UDP checksums are not verified (checksum offload leaves partial sums on veth and
    // virtio); the reply's is always computed in full.
    for (name, t, good, l4) in
        [("partial UDP checksum", v4, &good4, l4_4), ("partial UDP checksum over IPv6", v6, &good6, l4_6)]
    {
        let q = a(fixed);
        let want = reply_frame(&t, &expected_reply(&q, &proxy4, 300));
        c.push(Case {
            name: name.into(),
            input: poke(good.clone(), l4 + 7, good[l4 + 7] ^ 0x5a),
            expect: Expect::Reply(want),
        });
    }
    // IPv4 with no UDP checksum is legal and answered.
    let q = a(fixed);
    let mut nocsum = query_frame(&v4, &q.bytes());
    nocsum[l4_4 + 6] = 0;
    nocsum[l4_4 + 7] = 0;
    c.push(Case {
        name: "zero UDP checksum over IPv4".into(),
        input: nocsum,
        expect: Expect::Reply(reply_frame(&v4, &expected_reply(&q, &proxy4, 300))),
    });
    // Ethernet padding after a short query is dropped from the reply.
    let q = a(fixed);
    let mut padded = query_frame(&v4, &q.bytes());
    padded.extend_from_slice(&[0u8; 16]);
    c.push(Case {
        name: "Ethernet padding after the query".into(),
        input: padded,
        expect: Expect::Reply(reply_frame(&v4, &expected_reply(&q, &proxy4, 300))),
    });
    c
}

#[test]
fn fixture_table() {
    require_privileges!();
    let (mut dp, mut catalog) = fixture::load(&fixture::config_text(), LoadOptions::default());
    // The controller's short TTL for one customer's proxy answers (see [`STEERED_PROXY_TTL`]).
    catalog.set_proxy_ttl("steered", STEERED_PROXY_TTL, Some(&mut dp)).expect("proxy TTL");
    let by_resolver = catalog.customer("by_resolver").expect("by_resolver");
    let (index, rec) = (by_resolver.index, by_resolver.record);
    let mut cases = cases();
    cases.extend(resolver_cases(rec.resolver_seed, rec.proxy_threshold));
    assert!(cases.len() >= 30, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let before = dp.xdp_stats().expect("XDP counters");
        let (action, out) = fixture::run(&dp, program::DNS, &case.input);
        match &case.expect {
            Expect::PassAs(reason) => {
                let after = dp.xdp_stats().expect("XDP counters");
                if action != XDP_PASS || out != case.input {
                    failures.push(format!("{}: action {action}, want XDP_PASS, frame untouched", case.name));
                } else if after[*reason as usize] != before[*reason as usize] + 1 {
                    failures.push(format!("{}: not counted as {}", case.name, reason.label()));
                }
            }
            Expect::Pass => {
                if action != XDP_PASS {
                    failures.push(format!("{}: action {action}, want XDP_PASS", case.name));
                } else if out != case.input {
                    failures.push(format!("{}: passed frame was modified", case.name));
                }
            }
            Expect::Reply(want) => {
                if action != XDP_TX {
                    failures.push(format!("{}: action {action}, want XDP_TX", case.name));
                    continue;
                }
                if let Err(e) = checked_dns_payload(&out) {
                    failures.push(format!("{}: {e}", case.name));
                }
                if &out != want {
                    failures.push(format!("{}: reply differs\n  got  {}\n  want {}", case.name, hex(&out), hex(want)));
                }
                let dns = checked_dns_payload(&out).unwrap_or_default();
                match Message::from_vec(&dns) {
                    Ok(m) => {
                        if m.metadata.message_type != MessageType::Response
                            || !m.metadata.authoritative
                            || m.metadata.response_code != ResponseCode::NoError
                            || m.answers.is_empty()
                        {
                            failures.push(format!("{}: hickory sees {m:?}", case.name));
                        }
                    }
                    Err(e) => failures.push(format!("{}: hickory cannot parse the reply: {e}", case.name)),
                }
            }
            Expect::Negative(rcode, outcome) => {
                let after = dp.xdp_stats().expect("XDP counters");
                if action != XDP_TX {
                    failures.push(format!("{}: action {action}, want XDP_TX", case.name));
                    continue;
                }
                if after[*outcome as usize] != before[*outcome as usize] + 1 {
                    failures.push(format!("{}: not counted as {}", case.name, outcome.label()));
                }
                let dns = match checked_dns_payload(&out) {
                    Ok(d) => d,
                    Err(e) => {
                        failures.push(format!("{}: {e}", case.name));
                        continue;
                    }
                };
                match Message::from_vec(&dns) {
                    Ok(m) => {
                        let soa = m.authorities.first().map(|r| (r.record_type(), r.ttl));
                        if m.metadata.message_type != MessageType::Response
                            || !m.metadata.authoritative
                            || m.metadata.response_code != *rcode
                            || !m.answers.is_empty()
                            || soa != Some((hickory_proto::rr::RecordType::SOA, 60))
                        {
                            failures.push(format!("{}: hickory sees {m:?}", case.name));
                        }
                    }
                    Err(e) => failures.push(format!("{}: hickory cannot parse the reply: {e}", case.name)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    // Each resolver prefix of the rows above was counted, two queries each (and only the
    // customer that draws per resolver is counted).
    let counted = dp.resolver_queries(index).expect("resolver counts");
    assert_eq!(counted.len(), 64, "{counted:?}");
    assert!(counted.iter().all(|&(_, n)| n == 2), "{counted:?}");
    let fixed = catalog.customer("fixed").expect("fixed").index;
    assert!(dp.resolver_queries(fixed).expect("resolver counts").is_empty());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The expected slip for `q`: its reply with no records and TC set.
fn slip_frame(t: &Transport, q: &Query) -> Vec<u8> {
    let mut dns = expected_reply(q, &[], 300);
    dns[2] |= 0x02;
    reply_frame(t, &dns)
}

/// Response rate limiting in the program: `rate` answers per name and subnet, then every
/// second limited answer dropped and every other slipped; other names, other subnets and exempt
/// prefixes unaffected; the counters per action.
#[test]
fn rate_limit_in_xdp() {
    require_privileges!();
    let config =
        format!("{}\n[rrl]\nrate = 4\nwindow_s = 5\nslip = 2\nexempt = [\"192.0.2.128/25\"]\n", fixture::config_text());
    let (dp, _catalog) = fixture::load(&config, LoadOptions::default());
    let v4 = Transport::V4;
    let v6 = Transport::V6;
    for (t, q) in [
        (v4, Query::new("fixed.cdn.example.net.", TYPE_A)),
        (v6, Query::new("fixed.cdn.example.net.", TYPE_AAAA).edns(Edns::new(1232))),
    ] {
        let want_answer = reply_frame(
            &t,
            &expected_reply(&q, &[if q.qtype == TYPE_A { Rdata::A(PROXY_V4) } else { Rdata::Aaaa(PROXY_V6) }], 300),
        );
        let want_slip = slip_frame(&t, &q);
        let input = query_frame(&t, &q.bytes());
        let (mut sent, mut slipped, mut dropped) = (0u32, 0u32, 0u32);
        let mut order = Vec::new();
        for _ in 0..20 {
            let (action, out) = fixture::run(&dp, program::DNS, &input);
            match action {
                XDP_TX if out == want_answer => sent += 1,
                XDP_TX => {
                    assert_eq!(hex(&out), hex(&want_slip), "a TX that is not the answer is the slip");
                    checked_dns_payload(&out).expect("the slip's checksums are right");
                    slipped += 1;
                }
                XDP_DROP => dropped += 1,
                other => panic!("action {other} for a rate-limited query"),
            }
            order.push(action);
        }
        // A second boundary during the run may credit `rate` once more.
        assert!((4..=8).contains(&sent), "answers within the rate: {sent} ({order:?})");
        assert_eq!(&order[..4], &[XDP_TX; 4], "the first `rate` are answered");
        assert!(
            slipped >= 6 && dropped >= 6 && slipped.abs_diff(dropped) <= 1,
            "slip 2: {slipped} slipped, {dropped} dropped"
        );
        // Another name of the same subnet has a budget of its own.
        let other = Query::new("origin.cdn.example.net.", q.qtype);
        assert_eq!(fixture::run(&dp, program::DNS, &query_frame(&t, &other.bytes())).0, XDP_TX);
    }
    // Another subnet (the source's third byte), and an exempt one, are answered at any rate.
    let q = Query::new("fixed.cdn.example.net.", TYPE_A);
    let base = query_frame(&v4, &q.bytes());
    let src = l3_offset(&v4) + 12;
    for (what, byte, at) in [("another /24", 7u8, src + 2), ("an exempt prefix", 200, src + 3)] {
        let input = poke(base.clone(), at, byte);
        let actions: Vec<u32> = (0..20).map(|_| fixture::run(&dp, program::DNS, &input).0).collect();
        let answered = actions.iter().filter(|&&a| a == XDP_TX).count();
        if what == "another /24" {
            assert_eq!(&actions[..4], &[XDP_TX; 4], "{what}: {actions:?}");
        } else {
            assert_eq!(answered, 20, "{what}: every query answered: {actions:?}");
        }
    }
    let stats = dp.rrl_stats().expect("RRL counters");
    assert!(stats[RrlAction::Send as usize] >= 8 + 4, "{stats:?}");
    assert!(stats[RrlAction::Drop as usize] >= 12 && stats[RrlAction::Slip as usize] >= 12, "{stats:?}");
    assert!(stats[RrlAction::Exempt as usize] >= 12, "the exempt prefix's answers over the rate: {stats:?}");
    let outcomes = dp.xdp_stats().expect("XDP counters");
    assert_eq!(outcomes[XdpOutcome::RrlSlipped as usize], stats[RrlAction::Slip as usize]);
    assert_eq!(outcomes[XdpOutcome::RrlDropped as usize], stats[RrlAction::Drop as usize]);
}

/// The kernel's negative answers follow the catalog: a name the API adds makes its ancestors
/// exist (NXDOMAIN becomes NODATA) and removing it makes them go again; every change moves the
/// SOA serial, and the kernel's SOA carries the catalog's serial.
#[test]
fn negative_answers_follow_name_changes() {
    require_privileges!();
    let (mut dp, mut catalog) = fixture::load(&fixture::config_text(), LoadOptions::default());
    let ask = |dp: &spillway::dataplane::Dataplane, name: &str| -> (ResponseCode, u32) {
        let (action, out) =
            fixture::run(dp, program::DNS, &query_frame(&Transport::V4, &Query::new(name, TYPE_A).bytes()));
        assert_eq!(action, XDP_TX, "{name} is answered in XDP");
        let m = Message::from_vec(&checked_dns_payload(&out).expect("valid reply")).expect("parses");
        let Some(hickory_proto::rr::RData::SOA(soa)) = m.authorities.first().map(|r| &r.data) else {
            panic!("{name}: no SOA in {m:?}")
        };
        (m.metadata.response_code, soa.serial)
    };
    let (rcode, serial) = ask(&dp, "sub.cdn.example.net.");
    assert_eq!((rcode, serial), (ResponseCode::NXDomain, catalog.serial()));

    let names = vec!["fixed.cdn.example.net.".to_string(), "www.deep.sub.cdn.example.net.".to_string()];
    catalog.set_names("fixed", names, Some(&mut dp)).expect("names changed");
    for ancestor in ["sub.cdn.example.net.", "deep.sub.cdn.example.net."] {
        let (rcode, after) = ask(&dp, ancestor);
        assert_eq!(rcode, ResponseCode::NoError, "{ancestor} is an empty non-terminal now");
        assert_eq!(after, catalog.serial());
        assert_ne!(after, serial, "the change moved the serial");
    }
    assert_eq!(ask(&dp, "other.sub.cdn.example.net.").0, ResponseCode::NXDomain);

    catalog.set_names("fixed", vec!["fixed.cdn.example.net.".to_string()], Some(&mut dp)).expect("names changed");
    assert_eq!(ask(&dp, "sub.cdn.example.net.").0, ResponseCode::NXDomain, "gone with the name below it");
    let (_, last) = ask(&dp, "deep.sub.cdn.example.net.");
    assert_eq!(last, catalog.serial());
}

/// The local-address check both ways: a few addresses per family are compared in an array
/// slot, more are looked up in the hash maps; either way the server's address is answered and
/// a set without it passes the query on as `not_local`.
#[test]
fn local_addresses_small_and_large_sets() {
    require_privileges!();
    let (mut dp, _catalog) = fixture::load(&fixture::config_text(), LoadOptions::default());
    let frames = [
        query_frame(&Transport::V4, &Query::new("fixed.cdn.example.net.", TYPE_A).bytes()),
        query_frame(&Transport::V6, &Query::new("fixed.cdn.example.net.", TYPE_AAAA).bytes()),
    ];
    let others = |n: u8| -> Vec<IpAddr> {
        (1..=n)
            .flat_map(|i| {
                let v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xee, i];
                [IpAddr::from([198, 18, 0, i]), IpAddr::from(v6)]
            })
            .collect()
    };
    let server = [IpAddr::from(frame::SERVER_V4), IpAddr::from(frame::SERVER_V6)];
    for (label, set, answered) in [
        ("the server alone", server.to_vec(), true),
        ("the server after 3 others (array)", [others(3), server.to_vec()].concat(), true),
        ("the server after 9 others (hash map)", [others(9), server.to_vec()].concat(), true),
        ("2 others (array)", others(2), false),
        ("9 others (hash map)", others(9), false),
    ] {
        dp.set_local_addrs(&set).expect("addresses set");
        for frame in &frames {
            let before = dp.xdp_stats().expect("XDP counters")[XdpOutcome::PassNotLocal as usize];
            let (action, _) = fixture::run(&dp, program::DNS, frame);
            let after = dp.xdp_stats().expect("XDP counters")[XdpOutcome::PassNotLocal as usize];
            if answered {
                assert_eq!(action, XDP_TX, "{label}: answered");
            } else {
                assert_eq!((action, after), (XDP_PASS, before + 1), "{label}: passed as not_local");
            }
        }
    }
}
