//! Config -> map records. Pure functions, so they are tested without a kernel.

use std::net::IpAddr;

use hickory_proto::{rr::Name, serialize::binary::BinEncodable};
use spillway_common::{
    answers::fill_answers,
    decision::{fraction_to_threshold, mix64},
    maps::{
        CustomerRecord, MAX_CNAME_LEN, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS, NameKey, ProxySet, assignment, draw, overflow,
    },
    name::name_key,
    negative::{ZONE_KEY_LEN, ZoneRecord, zone_key},
};

use crate::config::{Assignment, CustomerConfig, Draw, Overflow, parse_name};

/// Wire format of a name, as the name is written (case kept).
pub fn name_wire(name: &Name) -> Vec<u8> {
    name.to_bytes().expect("an uncompressed name always encodes")
}

/// The names-map key of a configured name.
pub fn key_of(text: &str) -> Result<NameKey, String> {
    Ok(name_key(&name_wire(&parse_name(text)?)))
}

/// One zone in the `ZONES` LPM trie.
#[derive(Debug, Clone, Copy)]
pub struct ZoneEntry {
    /// [`zone_key`] of the apex; `prefix_len` bits of it are the apex.
    pub key: [u8; ZONE_KEY_LEN],
    pub prefix_len: u32,
    pub record: ZoneRecord,
}

impl ZoneEntry {
    pub fn new(apex: &Name, record: ZoneRecord) -> Self {
        let wire = name_wire(apex);
        Self { key: zone_key(&wire), prefix_len: (wire.len() * 8) as u32, record }
    }
}

/// The seed of a customer drawing per resolver in re-draw period `epoch` (Unix time over
/// `server.resolver_redraw_s`): from its id, so every edge and restart agrees, and different
/// customers put different resolvers on the proxies.
pub fn resolver_seed(id: &str, epoch: u64) -> u32 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (mix64(h ^ mix64(epoch)) >> 32) as u32
}

/// The record the data plane answers from, at `fraction`, with the resolver seed of `epoch`
/// (the proxies' records are apart: see `spillway_common::answers::proxy_rings`).
pub fn customer_record(c: &CustomerConfig, fraction: f64, epoch: u64) -> Result<CustomerRecord, String> {
    let mut r = CustomerRecord::zeroed();
    r.proxy_threshold = fraction_to_threshold(fraction);
    r.draw = match c.draw {
        Draw::Query => draw::QUERY,
        Draw::Resolver => draw::RESOLVER,
    };
    r.resolver_seed = resolver_seed(&c.id, epoch);
    r.ttl = c.ttl;
    r.proxy_ttl = c.ttl;
    r.overflow = match c.overflow {
        Overflow::Origin => overflow::ORIGIN,
        Overflow::Cname => overflow::CNAME,
    };
    r.assignment = match c.assignment {
        Assignment::RoundRobin => assignment::ROUND_ROBIN,
        Assignment::Weighted => assignment::WEIGHTED,
        Assignment::Hash => assignment::HASH,
    };
    let weights = c.origin_weights.clone().unwrap_or_else(|| vec![1; c.origin_addresses.len()]);
    let (mut n4, mut n6) = (0usize, 0usize);
    let (mut cum4, mut cum6) = (0u32, 0u32);
    for (addr, w) in c.origin_addresses.iter().zip(weights) {
        match addr {
            IpAddr::V4(a) if n4 < MAX_ORIGIN_ADDRS => {
                cum4 = cum4.checked_add(w).ok_or("origin weights overflow")?;
                r.origin_v4[n4] = a.octets();
                r.origin_v4_cum_weight[n4] = cum4;
                n4 += 1;
            }
            IpAddr::V6(a) if n6 < MAX_ORIGIN_ADDRS => {
                cum6 = cum6.checked_add(w).ok_or("origin weights overflow")?;
                r.origin_v6[n6] = a.octets();
                r.origin_v6_cum_weight[n6] = cum6;
                n6 += 1;
            }
            _ => return Err(format!("more than {MAX_ORIGIN_ADDRS} origin addresses of a family")),
        }
    }
    r.origin_v4_len = n4 as u8;
    r.origin_v6_len = n6 as u8;
    let cname = match &c.origin_cname {
        Some(cname) => name_wire(&parse_name(cname)?),
        None => Vec::new(),
    };
    if cname.len() > MAX_CNAME_LEN {
        return Err("origin_cname longer than 255 bytes".into());
    }
    fill_answers(&mut r, &cname)?;
    Ok(r)
}

/// Proxy addresses by family, in the order given.
pub fn proxy_set<'a>(addresses: impl IntoIterator<Item = &'a IpAddr>) -> Result<ProxySet, String> {
    let mut s = ProxySet::empty();
    for addr in addresses {
        match addr {
            IpAddr::V4(a) if (s.v4_len as usize) < MAX_PROXY_ADDRS => {
                s.v4[s.v4_len as usize] = a.octets();
                s.v4_len += 1;
            }
            IpAddr::V6(a) if (s.v6_len as usize) < MAX_PROXY_ADDRS => {
                s.v6[s.v6_len as usize] = a.octets();
                s.v6_len += 1;
            }
            _ => return Err(format!("more than {MAX_PROXY_ADDRS} proxy addresses of a family")),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_common::checksum::csum16;

    fn customer() -> CustomerConfig {
        CustomerConfig {
            id: "shop".into(),
            names: vec!["shop.cdn.example.net.".into()],
            zones: vec![],
            origin_addresses: vec![
                "203.0.113.10".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
                "203.0.113.11".parse().unwrap(),
            ],
            origin_weights: Some(vec![3, 5, 1]),
            origin_cname: Some("Origin.Shop.Example.".into()),
            overflow: Overflow::Cname,
            assignment: Assignment::Weighted,
            fraction: 0.5,
            ttl: 60,
            draw: Draw::Query,
            token: None,
        }
    }

    #[test]
    fn the_draw_mode_and_its_seed() {
        let r = customer_record(&customer(), 0.5, 7).unwrap();
        assert_eq!(r.draw, draw::QUERY);
        let by_resolver = CustomerConfig { draw: Draw::Resolver, ..customer() };
        let r = customer_record(&by_resolver, 0.5, 7).unwrap();
        assert_eq!((r.draw, r.resolver_seed), (draw::RESOLVER, resolver_seed("shop", 7)));
        assert_ne!(resolver_seed("shop", 7), resolver_seed("shop", 8), "a new period, a new seed");
        assert_ne!(resolver_seed("shop", 7), resolver_seed("shoe", 7), "customers differ");
    }

    #[test]
    fn record_fields() {
        let r = customer_record(&customer(), 0.5, 0).unwrap();
        assert_eq!(r.proxy_threshold, 1 << 31);
        assert_eq!((r.ttl, r.proxy_ttl), (60, 60), "proxy answers keep the customer's TTL until told");
        assert_eq!(r.overflow, overflow::CNAME);
        assert_eq!(r.assignment, assignment::WEIGHTED);
        assert_eq!((r.origin_v4_len, r.origin_v6_len), (2, 1));
        assert_eq!(r.origin_v4_cum_weight[..2], [3, 4]);
        assert_eq!(r.origin_v6_cum_weight[0], 5);
        let wire = b"\x06Origin\x04Shop\x07Example\x00";
        assert_eq!(&r.cname_rr[12..r.cname_rr_len as usize], wire);
        assert_eq!(r.cname_rr_sum, csum16(&r.cname_rr[..r.cname_rr_len as usize]));
        assert_eq!(&r.origin_v4_rr[16 + 12..32], &[203, 0, 113, 11]);
    }

    #[test]
    fn fraction_edges() {
        assert_eq!(customer_record(&customer(), 0.0, 0).unwrap().proxy_threshold, 0);
        assert_eq!(customer_record(&customer(), 1.0, 0).unwrap().proxy_threshold, 1 << 32);
    }

    #[test]
    fn keys_ignore_case_and_trailing_dot() {
        assert_eq!(key_of("Shop.CDN.example.net.").unwrap(), key_of("shop.cdn.example.net").unwrap());
    }
}
