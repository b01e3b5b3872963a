//! What the userspace server answers: the authoritative rules for our zones.
//!
//! Customer names get A/AAAA by the same decision code as the XDP program (`common::decision`,
//! same records, same name key); the rest is plain authoritative DNS: SOA and NS at the apex,
//! proxy and nameserver names, NODATA and NXDOMAIN with the SOA in authority, REFUSED outside our
//! zones, FORMERR for what does not parse, NOTIMP for other opcodes, BADVERS for EDNS > 0,
//! TC when the answer does not fit the client's UDP size.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, NS, SOA},
    },
    serialize::binary::BinEncodable,
};
use spillway_common::{
    decision::{
        Draws, OriginDraw, Target, addr_key_v4, addr_key_v6, choose_target, pick_origin, proxy_index, proxy_window,
        side_draw, subnet_key_v4, subnet_key_v6,
    },
    dns::{HEADER_LEN, OUR_EDNS_UDP_SIZE, PLAIN_UDP_LIMIT},
    name::name_key,
    negative::{MAX_SOA_LEN, ZoneRecord},
};

use super::{
    snapshot::ZoneSnapshot,
    zones::{NEGATIVE_SOA, SOA_TTL, Zones},
};
use crate::config::Config;

const NS_TTL: u32 = 3600;
/// TTL of the proxies' and nameservers' own address records.
const HOST_TTL: u32 = 300;

/// How the query arrived: UDP replies are limited to the client's size, TCP ones are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The zones and the fixed names in them (proxies, nameservers); customers come from the
/// catalog's [`ZoneSnapshot`] at answer time.
pub struct Authority {
    // Our zones, SOA names, name servers, hosts and the hosts' ancestors: as in [`Zones`].
    zones: Vec<Name>,
    mname: Name,
    rname: Name,
    nameservers: Vec<Name>,
    hosts: HashMap<Name, Vec<IpAddr>>,
    names: std::collections::HashSet<Name>,
    /// Each zone's negative answer in the XDP program's layout.
    negative: HashMap<Name, ZoneRecord>,
}

/// What a query gets: a message, or a negative answer in the shared layout.
enum Reply {
    Message(Message),
    /// `r` holds the header (rcode set), the question and OPT; the zone's SOA goes in authority.
    Negative {
        r: Message,
        zone: Name,
    },
}

impl Authority {
    pub fn new(config: &Config) -> Self {
        let z = Zones::from_config(config);
        let negative = z.zones.iter().map(|apex| (apex.clone(), z.negative_record(apex))).collect();
        let Zones { zones, mname, rname, nameservers, hosts, host_ancestors } = z;
        Self { zones, mname, rname, nameservers, hosts, names: host_ancestors, negative }
    }

    /// The reply to a request, or None when nothing should be sent (a response, or fewer bytes
    /// than a header).
    pub fn answer(
        &self,
        catalog: &ZoneSnapshot,
        request: &[u8],
        client: IpAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        if request.len() < 12 {
            return None;
        }
        let id = u16::from_be_bytes([request[0], request[1]]);
        if request[2] & 0x80 != 0 {
            return None;
        }
        let query = match Message::from_vec(request) {
            Ok(m) => m,
            Err(_) => {
                let op = OpCode::from_u8((request[2] >> 3) & 0x0f);
                return Message::error_msg(id, op, ResponseCode::FormErr).to_vec().ok();
            }
        };
        match self.reply(catalog, &query, client) {
            Reply::Message(r) => encode(&query, r, transport),
            Reply::Negative { mut r, zone } => {
                if let Some(bytes) = self.negative_bytes(catalog, &r, &zone, &query, transport) {
                    return Some(bytes);
                }
                // Too long a SOA, or too big for the client's UDP size: hickory's form, which
                // truncates.
                r.add_authority(self.soa(catalog, NEGATIVE_SOA.ttl, zone));
                encode(&query, r, transport)
            }
        }
    }

    /// The negative answer in the layout of `spillway_common::negative`, byte for byte what
    /// the XDP program sends: `r` encoded (header, question, OPT), the SOA inserted before the
    /// OPT. `None` when the zone's SOA has no precomputed form or the reply exceeds the UDP
    /// limit.
    fn negative_bytes(
        &self,
        catalog: &ZoneSnapshot,
        r: &Message,
        zone: &Name,
        query: &Message,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let rec = self.negative.get(zone)?;
        let mut soa = [0u8; MAX_SOA_LEN];
        let soa_len = rec.soa_bytes(catalog.serial(), &mut soa);
        if soa_len == 0 {
            return None;
        }
        let mut bytes = r.to_vec().ok()?;
        let qname_len = wire_name_len(&bytes, HEADER_LEN)?;
        let question_end = HEADER_LEN + qname_len + 4;
        if bytes.len() < question_end {
            return None;
        }
        let mut tail = bytes.split_off(question_end);
        bytes.extend_from_slice(&ZoneRecord::owner_pointer(qname_len, rec.zone_len as usize).to_be_bytes());
        bytes.extend_from_slice(&soa[..soa_len]);
        bytes.append(&mut tail);
        bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
        (bytes.len() <= udp_limit(query, transport)).then_some(bytes)
    }

    fn reply(&self, catalog: &ZoneSnapshot, query: &Message, client: IpAddr) -> Reply {
        Reply::Message(match self.reply_to(catalog, query, client) {
            Ok(r) => r,
            Err(negative) => return negative,
        })
    }

    /// `Err`: a negative answer. (A large `Err`, built once per query and moved once.)
    #[allow(clippy::result_large_err)]
    fn reply_to(&self, catalog: &ZoneSnapshot, query: &Message, client: IpAddr) -> Result<Message, Reply> {
        let mut r = Message::response(query.metadata.id, query.metadata.op_code);
        if query.metadata.op_code != OpCode::Query {
            // NOTIMP with nothing of the request's but its id and opcode: AA, RD, RA, AD and CD
            // are QUERY's flags, and another opcode's sections are not a question.
            r.metadata.response_code = ResponseCode::NotImp;
            if query.edns.is_some() {
                let mut e = Edns::new();
                e.set_max_payload(OUR_EDNS_UDP_SIZE);
                r.set_edns(e);
            }
            return Ok(r);
        }
        r.metadata.recursion_desired = query.metadata.recursion_desired;
        r.metadata.checking_disabled = query.metadata.checking_disabled;
        // The question is copied only when there is one: a FORMERR for several echoes none
        // (they could make the reply far larger than the query).
        if query.queries.len() == 1 {
            r.add_queries(query.queries.iter().cloned());
        }
        if let Some(edns) = &query.edns {
            let mut e = Edns::new();
            e.set_max_payload(OUR_EDNS_UDP_SIZE);
            e.set_dnssec_ok(edns.flags().dnssec_ok);
            if edns.version() > 0 {
                // BADVERS is extended rcode 16 (RFC 6891 §6.1.3).
                r.metadata.response_code = ResponseCode::BADVERS;
                e.set_rcode_high(ResponseCode::BADVERS.high());
                r.set_edns(e);
                return Ok(r);
            }
            r.set_edns(e);
        }
        let [q] = query.queries.as_slice() else {
            r.metadata.response_code = ResponseCode::FormErr;
            return Ok(r);
        };
        let qname = q.name.to_lowercase();
        let Some(zone) = self.zones.iter().filter(|z| z.zone_of(&qname)).max_by_key(|z| z.num_labels()) else {
            r.metadata.response_code = ResponseCode::Refused;
            return Ok(r);
        };
        if q.query_class != DNSClass::IN {
            r.metadata.response_code = ResponseCode::Refused;
            return Ok(r);
        }
        r.metadata.authoritative = true;
        let owner = q.name.clone();
        let qtype = q.query_type;

        if qname == *zone {
            match qtype {
                RecordType::SOA | RecordType::ANY => {
                    // ANY is answered minimally (RFC 8482): the SOA alone.
                    r.add_answer(self.soa(catalog, SOA_TTL, owner));
                    return Ok(r);
                }
                RecordType::NS => {
                    for ns in &self.nameservers {
                        r.add_answer(Record::from_rdata(owner.clone(), NS_TTL, RData::NS(NS(ns.clone()))));
                        for addr in self.hosts.get(&ns.to_lowercase()).into_iter().flatten() {
                            r.add_additional(address_record(ns.clone(), HOST_TTL, *addr));
                        }
                    }
                    return Ok(r);
                }
                // A customer's delegated apex may be one of its names (A/AAAA below).
                _ => {}
            }
        }

        let wire = qname.to_bytes().unwrap_or_default();
        let proxies = &catalog.proxies;
        if let Some(c) = catalog.customer(&name_key(&wire)) {
            let v6 = match qtype {
                // ANY gets one RRset (RFC 8482): the A answer by the rule.
                RecordType::A | RecordType::ANY => false,
                RecordType::AAAA => true,
                _ => return Err(Reply::Negative { r, zone: zone.clone() }),
            };
            let answering = c.answering();
            let rec = &answering.record;
            let (origins, proxies_len) =
                if v6 { (rec.origin_v6_len, proxies.v6_len) } else { (rec.origin_v4_len, proxies.v4_len) };
            let draws = Draws::from_rand(rand::random());
            let client_key = match client {
                IpAddr::V4(a) => subnet_key_v4(a.octets()),
                IpAddr::V6(a) => subnet_key_v6(a.octets()),
            };
            match choose_target(rec, side_draw(rec, draws.fraction, client_key), proxies_len, origins) {
                Some(Target::Proxy) => {
                    c.count(Target::Proxy as usize);
                    let (start, count) = proxy_window(proxies_len, draws.window);
                    for i in 0..count {
                        let idx = proxy_index(start, i, proxies_len);
                        let addr = if v6 {
                            IpAddr::V6(Ipv6Addr::from(proxies.v6[idx]))
                        } else {
                            IpAddr::V4(Ipv4Addr::from(proxies.v4[idx]))
                        };
                        r.add_answer(address_record(owner.clone(), rec.proxy_ttl, addr));
                    }
                }
                Some(Target::Origin) => {
                    c.count(Target::Origin as usize);
                    let draw = OriginDraw { rr_cursor: c.next_rr(), rand: draws.origin, client_key };
                    let addr = if v6 {
                        let i = pick_origin(rec.assignment, origins, &rec.origin_v6_cum_weight, draw, |i| {
                            addr_key_v6(&rec.origin_v6[i & 7])
                        });
                        IpAddr::V6(Ipv6Addr::from(rec.origin_v6[i & 7]))
                    } else {
                        let i = pick_origin(rec.assignment, origins, &rec.origin_v4_cum_weight, draw, |i| {
                            addr_key_v4(&rec.origin_v4[i & 7])
                        });
                        IpAddr::V4(Ipv4Addr::from(rec.origin_v4[i & 7]))
                    };
                    r.add_answer(address_record(owner, rec.ttl, addr));
                }
                Some(Target::Cname) => {
                    c.count(Target::Cname as usize);
                    match answering.origin_cname.clone() {
                        Some(t) => {
                            r.add_answer(Record::from_rdata(owner, rec.ttl, RData::CNAME(CNAME(t))));
                        }
                        None => return Err(Reply::Negative { r, zone: zone.clone() }),
                    }
                }
                None => return Err(Reply::Negative { r, zone: zone.clone() }),
            }
            return Ok(r);
        }

        if let Some(addrs) = self.hosts.get(&qname) {
            let want_v6 = match qtype {
                RecordType::A => Some(false),
                RecordType::AAAA => Some(true),
                _ => None,
            };
            let matching: Vec<IpAddr> =
                addrs.iter().copied().filter(|a| qtype == RecordType::ANY || Some(a.is_ipv6()) == want_v6).collect();
            if matching.is_empty() {
                return Err(Reply::Negative { r, zone: zone.clone() });
            } else {
                for a in matching {
                    r.add_answer(address_record(owner.clone(), HOST_TTL, a));
                }
            }
            return Ok(r);
        }

        // The apex, and a name that exists only because names exist below it (an empty
        // non-terminal), have no data; anything else in the zone does not exist.
        if !(qname == *zone || self.names.contains(&qname) || catalog.is_empty_non_terminal(&qname)) {
            r.metadata.response_code = ResponseCode::NXDomain;
        }
        Err(Reply::Negative { r, zone: zone.clone() })
    }

    fn soa(&self, catalog: &ZoneSnapshot, ttl: u32, owner: Name) -> Record {
        let serial = catalog.serial();
        let t = NEGATIVE_SOA;
        let soa = SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            serial,
            t.refresh as i32,
            t.retry as i32,
            t.expire as i32,
            t.minimum,
        );
        Record::from_rdata(owner, ttl, RData::SOA(soa))
    }
}

/// Length of the uncompressed name at `at` in a message, root label included.
fn wire_name_len(msg: &[u8], at: usize) -> Option<usize> {
    let mut end = at;
    loop {
        match *msg.get(end)? {
            0 => return Some(end + 1 - at),
            len @ 1..=63 => end += 1 + len as usize,
            _ => return None,
        }
    }
}

/// The largest reply `query` may get over `transport`.
fn udp_limit(query: &Message, transport: Transport) -> usize {
    match (&query.edns, transport) {
        (_, Transport::Tcp) => usize::from(u16::MAX),
        (Some(e), Transport::Udp) => usize::from(e.max_payload().clamp(PLAIN_UDP_LIMIT, OUR_EDNS_UDP_SIZE)),
        (None, Transport::Udp) => usize::from(PLAIN_UDP_LIMIT),
    }
}

fn address_record(name: Name, ttl: u32, addr: IpAddr) -> Record {
    match addr {
        IpAddr::V4(a) => Record::from_rdata(name, ttl, RData::A(A(a))),
        IpAddr::V6(a) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(a))),
    }
}

/// Encode a reply; over UDP, one that exceeds min(the client's EDNS size, 1232) (512 without
/// EDNS) is replaced by its truncated form (question and OPT, TC set) so the client retries
/// over TCP. 1232 keeps replies unfragmented on any path (DNS flag day 2020): a large UDP
/// reply to a spoofed source is what a reflector is made of.
fn encode(query: &Message, reply: Message, transport: Transport) -> Option<Vec<u8>> {
    let bytes = reply.to_vec().ok()?;
    let limit = udp_limit(query, transport);
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut t = reply.truncate();
    t.metadata.message_type = MessageType::Response;
    let bytes = t.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // Even question and OPT do not fit: the header alone, TC set.
    t.queries.clear();
    t.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;
    use crate::{catalog::Catalog, dns::zones::SOA_MINIMUM};

    const CONFIG: &str = r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net.", "ns2.cdn.example.net."]
listen = ["127.0.0.1:5353"]
glue = { "ns1.cdn.example.net." = ["192.0.2.53", "2001:db8::53"] }
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
id = "always"
names = ["always.cdn.example.net.", "deep.sub.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 1.0
ttl = 30
[[customer]]
id = "never"
names = ["never.cdn.example.net."]
origin_addresses = ["203.0.113.20", "2001:db8:200::20"]
overflow = "origin"
fraction = 0.0
ttl = 40
[[customer]]
id = "cname"
names = ["cname.cdn.example.net."]
origin_cname = "Origin.Example."
overflow = "cname"
fraction = 0.0
ttl = 50
[[customer]]
id = "sticky"
names = ["sticky.cdn.example.net."]
origin_addresses = ["203.0.113.30"]
overflow = "origin"
fraction = 0.5
ttl = 30
draw = "resolver"
"#;

    fn setup() -> (Authority, Catalog) {
        let config = Config::parse(CONFIG, "t.toml").unwrap();
        let catalog = Catalog::from_config(&config).unwrap();
        catalog.set_serial(1000, None).unwrap();
        (Authority::new(&config), catalog)
    }

    /// `edns`: (version, the client's UDP size).
    fn ask(
        a: &Authority,
        c: &Catalog,
        name: &str,
        t: RecordType,
        edns: Option<(u8, u16)>,
        transport: Transport,
    ) -> Message {
        let mut q = Message::query();
        q.metadata.id = 0xbeef;
        q.metadata.recursion_desired = true;
        // from_ascii keeps case (from_str goes through IDNA and lowercases).
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if let Some((version, size)) = edns {
            let mut e = Edns::new();
            e.set_version(version);
            e.set_max_payload(size);
            q.set_edns(e);
        }
        let bytes =
            a.answer(&c.snapshot(), &q.to_vec().unwrap(), "192.0.2.1".parse().unwrap(), transport).expect("a reply");
        Message::from_vec(&bytes).unwrap()
    }

    fn udp(a: &Authority, c: &Catalog, name: &str, t: RecordType) -> Message {
        ask(a, c, name, t, None, Transport::Udp)
    }

    fn rdata(m: &Message) -> Vec<String> {
        m.answers.iter().map(|r| r.data.to_string()).collect()
    }

    /// Drawn per resolver: every query of a /24 gets the same side, about half of the /24s the
    /// proxies; a new re-draw period gives new seeds, so other /24s.
    #[test]
    fn per_resolver_draws_stick_to_the_prefix_until_the_redraw() {
        let (a, mut c) = setup();
        let side = |c: &Catalog, net: u8, host: u8| {
            let q = Message::query()
                .add_query(Query::query(Name::from_ascii("sticky.cdn.example.net.").unwrap(), RecordType::A))
                .to_vec()
                .unwrap();
            let from = std::net::IpAddr::from([10, net, 7, host]);
            let m = Message::from_vec(&a.answer(&c.snapshot(), &q, from, Transport::Udp).unwrap()).unwrap();
            rdata(&m) == ["198.51.100.10"]
        };
        let before: Vec<bool> = (0..200).map(|n| side(&c, n, 1)).collect();
        for n in 0..200 {
            assert_eq!(side(&c, n, 99), before[n as usize], "one /24, one side");
        }
        let proxied = before.iter().filter(|&&p| p).count();
        assert!((60..=140).contains(&proxied), "{proxied} of 200 on the proxies");
        let now = crate::engine::unix_now();
        assert_eq!(c.redraw(now, None).unwrap(), 0, "same period, no change");
        let seed = c.customer("sticky").unwrap().record.resolver_seed;
        assert_eq!(c.redraw(now + 3600, None).unwrap(), 1, "only the customer drawing per resolver");
        assert_ne!(c.customer("sticky").unwrap().record.resolver_seed, seed);
        let after: Vec<bool> = (0..200).map(|n| side(&c, n, 1)).collect();
        let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
        assert!(moved > 40, "a new seed re-draws the resolvers: {moved} of 200 moved");
    }

    #[test]
    fn customer_names_follow_the_shared_rule() {
        let (a, c) = setup();
        let m = udp(&a, &c, "ALWAYS.cdn.example.net.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.metadata.authoritative), (ResponseCode::NoError, true));
        assert!(m.metadata.recursion_desired && !m.metadata.recursion_available);
        assert_eq!(m.queries[0].name.to_string(), "ALWAYS.cdn.example.net.", "question case kept");
        assert_eq!(rdata(&m), ["198.51.100.10"]);
        assert_eq!(m.answers[0].ttl, 30);
        assert_eq!(rdata(&udp(&a, &c, "never.cdn.example.net.", RecordType::AAAA)), ["2001:db8:200::20"]);
        let m = udp(&a, &c, "cname.cdn.example.net.", RecordType::AAAA);
        assert_eq!(rdata(&m), ["Origin.Example."]);
        assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
        // Other types at a customer name: NODATA with the SOA.
        let m = udp(&a, &c, "never.cdn.example.net.", RecordType::MX);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(m.authorities[0].ttl, SOA_MINIMUM);
    }

    #[test]
    fn apex_soa_ns_and_glue() {
        let (a, c) = setup();
        let m = udp(&a, &c, "cdn.example.net.", RecordType::SOA);
        let RData::SOA(soa) = &m.answers[0].data else { panic!("{m:?}") };
        assert_eq!(soa.serial, 1000);
        assert_eq!(soa.mname.to_string(), "ns1.cdn.example.net.");
        let m = udp(&a, &c, "cdn.example.net.", RecordType::NS);
        assert_eq!(rdata(&m), ["ns1.cdn.example.net.", "ns2.cdn.example.net."]);
        let glue: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(glue, ["192.0.2.53", "2001:db8::53"]);
        assert_eq!(rdata(&udp(&a, &c, "ns1.cdn.example.net.", RecordType::AAAA)), ["2001:db8::53"]);
        assert_eq!(rdata(&udp(&a, &c, "edge-1.cdn.example.net.", RecordType::A)), ["198.51.100.10"]);
        // ANY is answered minimally (RFC 8482): one RRset, or a host's few addresses.
        assert_eq!(udp(&a, &c, "cdn.example.net.", RecordType::ANY).answers.len(), 1);
        assert_eq!(rdata(&udp(&a, &c, "always.cdn.example.net.", RecordType::ANY)), ["198.51.100.10"]);
        assert_eq!(rdata(&udp(&a, &c, "ns1.cdn.example.net.", RecordType::ANY)), ["192.0.2.53", "2001:db8::53"]);
    }

    #[test]
    fn delegated_customer_zone() {
        let text = CONFIG.replace(
            r#"names = ["never.cdn.example.net."]"#,
            r#"names = ["never.cdn.example.net.", "shop.example.", "www.shop.example."]
zones = ["shop.example."]"#,
        );
        let config = Config::parse(&text, "t.toml").unwrap();
        let (a, c) = (Authority::new(&config), Catalog::from_config(&config).unwrap());
        c.set_serial(7, None).unwrap();
        // Our SOA and NS at the delegated apex.
        let m = udp(&a, &c, "shop.example.", RecordType::SOA);
        let Some(RData::SOA(soa)) = m.answers.first().map(|r| &r.data) else { panic!("{m:?}") };
        assert_eq!((soa.mname.to_string(), soa.serial), ("ns1.cdn.example.net.".into(), 7));
        assert_eq!(rdata(&udp(&a, &c, "shop.example.", RecordType::NS)).len(), 2);
        // The apex is also a customer name: steered at the apex, where no CNAME could be.
        assert_eq!(rdata(&udp(&a, &c, "shop.example.", RecordType::A)), ["203.0.113.20"]);
        assert_eq!(rdata(&udp(&a, &c, "WWW.shop.example.", RecordType::AAAA)), ["2001:db8:200::20"]);
        let m = udp(&a, &c, "shop.example.", RecordType::MX);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        let m = udp(&a, &c, "nobody.shop.example.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.metadata.authoritative), (ResponseCode::NXDomain, true));
        // Still not ours: the parent zone.
        assert_eq!(udp(&a, &c, "example.", RecordType::SOA).metadata.response_code, ResponseCode::Refused);
    }

    /// Proxy answers carry the proxy TTL the catalog was given (kept across fraction changes),
    /// origin answers the customer's; a proxy TTL of 0 or above the customer's is refused.
    #[test]
    fn proxy_answers_carry_their_own_ttl() {
        let (a, mut c) = setup();
        c.set_proxy_ttl("always", 5, None).unwrap();
        c.set_fraction("always", 1.0, crate::catalog::Mode::Manual, None).unwrap();
        let ttls =
            |c: &Catalog, name| udp(&a, c, name, RecordType::A).answers.iter().map(|r| r.ttl).collect::<Vec<_>>();
        assert_eq!(ttls(&c, "always.cdn.example.net."), [5]);
        c.set_fraction("always", 0.0, crate::catalog::Mode::Manual, None).unwrap();
        assert_eq!(ttls(&c, "always.cdn.example.net."), [30], "the origin keeps the customer's TTL");
        for bad in [0, 31] {
            assert!(c.set_proxy_ttl("always", bad, None).is_err(), "{bad}");
        }
        assert_eq!(c.customer("always").unwrap().record.proxy_ttl, 5, "a refused TTL changes nothing");
    }

    /// A customer's entry replaced (what a buyer set for itself): the userspace server answers
    /// from the new record and CNAME target at once; a shortened proxy TTL stays within the
    /// new TTL; names are not changed this way.
    #[test]
    fn a_replaced_entry_answers_at_once() {
        let (a, mut c) = setup();
        let mut entry = c.customer("cname").unwrap().config.clone();
        entry.origin_cname = Some("Elsewhere.Example.".into());
        entry.ttl = 20;
        c.set_config("cname", entry.clone(), None).unwrap();
        let m = udp(&a, &c, "cname.cdn.example.net.", RecordType::A);
        assert_eq!((rdata(&m), m.answers[0].ttl), (vec!["Elsewhere.Example.".to_owned()], 20));
        entry.overflow = crate::config::Overflow::Origin;
        entry.origin_addresses = vec!["203.0.113.99".parse().unwrap()];
        c.set_config("cname", entry.clone(), None).unwrap();
        assert_eq!(rdata(&udp(&a, &c, "cname.cdn.example.net.", RecordType::A)), ["203.0.113.99"]);
        // The estimate is in force in auto mode (no market); the proxies' shortened TTL stays.
        c.set_proxy_ttl("cname", 7, None).unwrap();
        entry.fraction = 1.0;
        entry.ttl = 5;
        c.set_config("cname", entry.clone(), None).unwrap();
        let m = udp(&a, &c, "cname.cdn.example.net.", RecordType::A);
        assert_eq!((rdata(&m), m.answers[0].ttl), (vec!["198.51.100.10".to_owned()], 5));
        entry.names.push("more.cdn.example.net.".into());
        assert!(c.set_config("cname", entry, None).is_err(), "names change by their own request");
        assert_eq!(c.customer("cname").unwrap().config.names.len(), 1);
    }

    #[test]
    fn serial_changes_with_the_data() {
        let (a, mut c) = setup();
        c.set_fraction("never", 0.5, crate::catalog::Mode::Manual, None).unwrap();
        let m = udp(&a, &c, "cdn.example.net.", RecordType::SOA);
        let RData::SOA(soa) = &m.answers[0].data else { panic!() };
        assert_eq!(soa.serial, 1001);
    }

    #[test]
    fn negative_answers() {
        let (a, c) = setup();
        let m = udp(&a, &c, "nobody.cdn.example.net.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.metadata.authoritative), (ResponseCode::NXDomain, true));
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        // An empty non-terminal exists: NODATA, not NXDOMAIN.
        let m = udp(&a, &c, "sub.cdn.example.net.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
        let m = udp(&a, &c, "www.example.org.", RecordType::A);
        assert_eq!((m.metadata.response_code, m.metadata.authoritative), (ResponseCode::Refused, false));
    }

    #[test]
    fn edns_badvers_and_truncation() {
        let (a, c) = setup();
        let m = ask(&a, &c, "always.cdn.example.net.", RecordType::A, Some((0, 4096)), Transport::Udp);
        assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(OUR_EDNS_UDP_SIZE));
        let m = ask(&a, &c, "always.cdn.example.net.", RecordType::A, Some((1, 4096)), Transport::Udp);
        // Code 16 is BADVERS for OPT (RFC 6891); hickory names 16 BADSIG (its TSIG meaning).
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn too_big_for_udp_is_truncated_and_whole_over_tcp() {
        let ns: Vec<String> = (1..=20).map(|i| format!("\"ns{i}.cdn.example.net.\"")).collect();
        let glue: Vec<String> =
            (1..=20).map(|i| format!("\"ns{i}.cdn.example.net.\" = [\"192.0.2.{i}\", \"2001:db8::{i}\"]")).collect();
        let text = CONFIG
            .replace(
                r#"nameservers = ["ns1.cdn.example.net.", "ns2.cdn.example.net."]"#,
                &format!("nameservers = [{}]", ns.join(", ")),
            )
            .replace(
                r#"glue = { "ns1.cdn.example.net." = ["192.0.2.53", "2001:db8::53"] }"#,
                &format!("glue = {{ {} }}", glue.join(", ")),
            );
        let config = Config::parse(&text, "t.toml").unwrap();
        let (a, c) = (Authority::new(&config), Catalog::from_config(&config).unwrap());
        let m = ask(&a, &c, "cdn.example.net.", RecordType::NS, None, Transport::Udp);
        assert!(m.metadata.truncation && m.answers.is_empty(), "{m:?}");
        assert_eq!(m.queries.len(), 1);
        let m = ask(&a, &c, "cdn.example.net.", RecordType::NS, None, Transport::Tcp);
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (20, 40));
        // The limit is min(the client's EDNS size, 1232): this reply needs more than 1232 bytes, so
        // even a client offering 4096 gets TC over UDP.
        let whole = ask(&a, &c, "cdn.example.net.", RecordType::NS, None, Transport::Tcp).to_vec().unwrap();
        assert!(whole.len() > 1232 && whole.len() < 4096, "{}", whole.len());
        for size in [1232, 4096] {
            let m = ask(&a, &c, "cdn.example.net.", RecordType::NS, Some((0, size)), Transport::Udp);
            assert!(m.metadata.truncation && m.answers.is_empty(), "EDNS {size}");
        }
    }

    /// Found by the answer_udp fuzz target: six long questions made a 1 255-byte UDP reply.
    #[test]
    fn several_questions_never_make_a_large_reply() {
        let (a, c) = setup();
        let crash = include_bytes!("fuzz-six-questions.bin");
        let reply = a.answer(&c.snapshot(), crash, "192.0.2.1".parse().unwrap(), Transport::Udp).unwrap();
        assert!(reply.len() <= 512, "{} bytes", reply.len());
        let mut q = Message::query();
        for i in 0..6 {
            let long = format!("{}.{}.{}.cdn.example.net.", "a".repeat(60), "b".repeat(60), i);
            q.add_query(Query::query(Name::from_ascii(&long).unwrap(), RecordType::A));
        }
        let m = udp_bytes(&a, &c, &q.to_vec().unwrap());
        assert_eq!((m.metadata.response_code, m.queries.len()), (ResponseCode::FormErr, 0));
    }

    fn udp_bytes(a: &Authority, c: &Catalog, request: &[u8]) -> Message {
        let reply = a.answer(&c.snapshot(), request, "192.0.2.1".parse().unwrap(), Transport::Udp).unwrap();
        assert!(reply.len() <= 512, "{} bytes", reply.len());
        Message::from_vec(&reply).unwrap()
    }

    #[test]
    fn garbage_and_other_opcodes() {
        let (a, c) = setup();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(a.answer(&c.snapshot(), &[1, 2, 3], ip, Transport::Udp).is_none(), "shorter than a header");
        let mut junk = vec![0x12, 0x34, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        junk.extend_from_slice(&[0x3f, b'a']);
        let m = Message::from_vec(&a.answer(&c.snapshot(), &junk, ip, Transport::Udp).unwrap()).unwrap();
        assert_eq!((m.metadata.id, m.metadata.response_code), (0x1234, ResponseCode::FormErr));
        let mut response = junk.clone();
        response[2] = 0x80;
        assert!(a.answer(&c.snapshot(), &response, ip, Transport::Udp).is_none(), "responses are not answered");
        // Another opcode: NOTIMP, none of QUERY's flags, no question copied.
        let mut q = Message::query();
        q.metadata.op_code = OpCode::Notify;
        q.metadata.recursion_desired = true;
        q.metadata.checking_disabled = true;
        q.metadata.authentic_data = true;
        q.add_query(Query::query(Name::from_ascii("cdn.example.net.").unwrap(), RecordType::SOA));
        let bytes = a.answer(&c.snapshot(), &q.to_vec().unwrap(), ip, Transport::Udp).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!((m.metadata.response_code, m.metadata.op_code), (ResponseCode::NotImp, OpCode::Notify));
        assert_eq!(bytes[2] & 0x87, 0x80, "QR only: no AA, TC or RD");
        assert_eq!(bytes[3] & 0xb0, 0, "no RA, AD or CD");
        assert!(m.queries.is_empty(), "no question copied");
    }
}
