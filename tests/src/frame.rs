//! Ethernet/VLAN/IPv4/IPv6/UDP frames for the fixture tests, built and checked with etherparse so
//! the tests do not share code with the program under test.

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice, VlanId};

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT_V4: [u8; 4] = [192, 0, 2, 1];
pub const SERVER_V4: [u8; 4] = [192, 0, 2, 53];
pub const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
pub const SERVER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53];
pub const TTL: u8 = 64;

/// Where a query travels: Ethernet (with an optional 802.1Q tag), IPv4 or IPv6, UDP ports.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    pub vlan: Option<u16>,
    pub ipv6: bool,
    pub sport: u16,
    pub dport: u16,
    /// The client's address of the family (`CLIENT_V4` / `CLIENT_V6` unless set).
    pub client_v4: [u8; 4],
    pub client_v6: [u8; 16],
}

impl Transport {
    pub const V4: Transport =
        Transport { vlan: None, ipv6: false, sport: 40000, dport: 53, client_v4: CLIENT_V4, client_v6: CLIENT_V6 };
    pub const V6: Transport = Transport { ipv6: true, ..Self::V4 };

    pub fn vlan(self, id: u16) -> Self {
        Self { vlan: Some(id), ..self }
    }

    /// From another client (a resolver elsewhere).
    pub fn from_v4(self, client: [u8; 4]) -> Self {
        Self { client_v4: client, ..self }
    }

    pub fn from_v6(self, client: [u8; 16]) -> Self {
        Self { client_v6: client, ..self }
    }
}

fn build(t: &Transport, src_mac: [u8; 6], dst_mac: [u8; 6], to_server: bool, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let (sport, dport) = if to_server { (t.sport, t.dport) } else { (t.dport, t.sport) };
    let mut out = Vec::new();
    macro_rules! finish {
        ($b:expr) => {{
            let b = if t.ipv6 {
                let (s, d) = if to_server { (t.client_v6, SERVER_V6) } else { (SERVER_V6, t.client_v6) };
                $b.ipv6(s, d, TTL)
            } else {
                let (s, d) = if to_server { (t.client_v4, SERVER_V4) } else { (SERVER_V4, t.client_v4) };
                $b.ipv4(s, d, TTL)
            };
            b.udp(sport, dport).write(&mut out, payload).expect("frame builds");
        }};
    }
    match t.vlan {
        Some(id) => finish!(eth.single_vlan(VlanId::try_new(id).expect("vlan id"))),
        None => finish!(eth),
    }
    out
}

/// A client's query frame, checksums correct.
pub fn query_frame(t: &Transport, dns: &[u8]) -> Vec<u8> {
    build(t, CLIENT_MAC, SERVER_MAC, true, dns)
}

/// The reply frame the server should send for `query_frame(t, ..)`: addresses and ports swapped,
/// TTL/hop limit 64, checksums correct.
pub fn reply_frame(t: &Transport, dns: &[u8]) -> Vec<u8> {
    build(t, SERVER_MAC, CLIENT_MAC, false, dns)
}

/// Offset of the IP header in a frame built here.
pub fn l3_offset(t: &Transport) -> usize {
    if t.vlan.is_some() { 18 } else { 14 }
}

/// Offset of the UDP header.
pub fn l4_offset(t: &Transport) -> usize {
    l3_offset(t) + if t.ipv6 { 40 } else { 20 }
}

/// Parse a reply frame, check the IPv4 header and UDP checksums, and return the DNS message.
pub fn checked_dns_payload(frame: &[u8]) -> Result<Vec<u8>, String> {
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| format!("not a valid frame: {e}"))?;
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return Err("no UDP".into());
    };
    let udp_header = udp.to_header();
    let payload = udp.payload();
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header().to_header();
            if h.calc_header_checksum() != h.header_checksum {
                return Err(format!("bad IPv4 header checksum {:#06x}", h.header_checksum));
            }
            let want = udp_header.calc_checksum_ipv4(&h, payload).map_err(|e| e.to_string())?;
            if udp_header.checksum != want {
                return Err(format!("bad UDP checksum {:#06x}, want {want:#06x}", udp_header.checksum));
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header().to_header();
            let want = udp_header.calc_checksum_ipv6(&h, payload).map_err(|e| e.to_string())?;
            if udp_header.checksum != want {
                return Err(format!("bad UDP checksum {:#06x}, want {want:#06x}", udp_header.checksum));
            }
        }
        _ => return Err("not IP".into()),
    }
    Ok(payload.to_vec())
}
