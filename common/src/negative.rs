//! Negative answers (NXDOMAIN and NODATA), one layout for the XDP program and the userspace
//! server, so the two send the same bytes:
//!
//! ```text
//! header | question, as received | SOA owner: pointer to the zone's apex inside the question
//!        | the zone's SOA record after its owner (ZoneRecord::soa, serial filled in) | OPT?
//! ```
//!
//! The SOA's names are written whole (no compression): the record is then the same bytes for
//! every query, precomputed once per zone with its checksum, and the program copies it.

use crate::{
    checksum::csum16,
    dns::{HEADER_LEN, OUR_EDNS_UDP_SIZE, TYPE_OPT},
};

/// Room for the SOA record after its owner: type, class, TTL, RDLENGTH (10), both names,
/// five timers (20). A zone whose SOA is longer is passed to userspace.
pub const MAX_SOA_LEN: usize = 256;
/// Zones the program answers negatively for.
pub const MAX_ZONES: u32 = 4096;

const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;
const SOA_FIXED: usize = 10;
const SOA_TIMERS: usize = 20;

/// One zone's negative-answer data (map `ZONES`, keyed by the apex's names-map key).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ZoneRecord {
    /// Wire length of the apex, root label included.
    pub zone_len: u16,
    /// Bytes of `soa` in use; 0: the SOA does not fit, userspace answers for the zone.
    pub soa_len: u16,
    /// Offset of the serial in `soa`; the serial is filled in per reply (see `ZoneInfo`).
    pub serial_off: u16,
    pub _pad: u16,
    /// Ones'-complement sum of `soa[..soa_len]` with the serial zero, as at an even offset.
    pub soa_sum: u32,
    pub _pad2: u32,
    pub soa: [u8; MAX_SOA_LEN],
}

/// What every zone shares (map `ZONE_INFO`, key 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneInfo {
    /// The SOA serial of every zone (the userspace server's: a base plus the data's changes).
    pub serial: u32,
    pub _pad: u32,
}

/// Longest zone key: a whole wire name, in whole words.
pub const ZONE_KEY_LEN: usize = 256;

/// The `ZONES` LPM trie's key data for a wire name: its bytes lowercased and reversed, so that
/// a zone's apex is a prefix of the key of every name under it and the longest match is the
/// closest enclosing zone. The prefix length is `wire.len() * 8`.
pub fn zone_key(wire: &[u8]) -> [u8; ZONE_KEY_LEN] {
    let mut out = [0u8; ZONE_KEY_LEN];
    for (o, b) in out.iter_mut().zip(wire.iter().rev()) {
        *o = crate::name::ascii_lower(*b);
    }
    out
}

/// The SOA timers.
#[derive(Clone, Copy, Debug)]
pub struct SoaTimers {
    /// The record's own TTL in negative answers.
    pub ttl: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

impl ZoneRecord {
    /// The record for a zone whose apex is `zone_len` wire bytes, with SOA names `mname` and
    /// `rname` (wire format, case as configured).
    pub fn new(zone_len: usize, mname: &[u8], rname: &[u8], t: SoaTimers) -> Self {
        let mut r = Self {
            zone_len: zone_len as u16,
            soa_len: 0,
            serial_off: 0,
            _pad: 0,
            soa_sum: 0,
            _pad2: 0,
            soa: [0; MAX_SOA_LEN],
        };
        let rdlen = mname.len() + rname.len() + SOA_TIMERS;
        if SOA_FIXED + rdlen > MAX_SOA_LEN || zone_len == 0 || zone_len > 255 {
            return r;
        }
        let b = &mut r.soa;
        b[0..2].copy_from_slice(&TYPE_SOA.to_be_bytes());
        b[2..4].copy_from_slice(&CLASS_IN.to_be_bytes());
        b[4..8].copy_from_slice(&t.ttl.to_be_bytes());
        b[8..10].copy_from_slice(&(rdlen as u16).to_be_bytes());
        let mut at = SOA_FIXED;
        b[at..at + mname.len()].copy_from_slice(mname);
        at += mname.len();
        b[at..at + rname.len()].copy_from_slice(rname);
        at += rname.len();
        r.serial_off = at as u16;
        at += 4;
        for v in [t.refresh, t.retry, t.expire, t.minimum] {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            at += 4;
        }
        r.soa_len = at as u16;
        r.soa_sum = csum16(&r.soa[..at]);
        r
    }

    /// Offset of the SOA owner in the reply: the question's last `zone_len` bytes.
    #[inline(always)]
    pub const fn owner_pointer(qname_len: usize, zone_len: usize) -> u16 {
        0xC000 | (HEADER_LEN + qname_len - zone_len) as u16
    }

    /// The SOA record as sent (after its owner pointer), serial filled in.
    pub fn soa_bytes(&self, serial: u32, out: &mut [u8; MAX_SOA_LEN]) -> usize {
        let len = self.soa_len as usize;
        out[..len].copy_from_slice(&self.soa[..len]);
        let s = self.serial_off as usize;
        if len > 0 {
            out[s..s + 4].copy_from_slice(&serial.to_be_bytes());
        }
        len
    }
}

/// The OPT record of every reply to an EDNS query: root name, our UDP size, extended rcode 0,
/// version 0, the DO bit copied, no options.
#[inline(always)]
pub const fn opt_record(do_bit: bool) -> [u8; 11] {
    let s = OUR_EDNS_UDP_SIZE.to_be_bytes();
    let t = TYPE_OPT.to_be_bytes();
    let d = if do_bit { 0x80 } else { 0 };
    [0, t[0], t[1], s[0], s[1], 0, 0, d, 0, 0, 0]
}

/// Whether the program decides negative answers for a question type: data types only. Meta
/// types (OPT, TKEY, TSIG, IXFR, AXFR, ANY, ...), type 0 and the reserved range go to
/// userspace.
#[inline(always)]
pub const fn decidable_type(qtype: u16) -> bool {
    matches!(qtype, 1..=40 | 42..=127 | 256..=65279)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SoaTimers = SoaTimers { ttl: 60, refresh: 3600, retry: 600, expire: 604_800, minimum: 60 };

    #[test]
    fn soa_layout_and_sum() {
        let mname = b"\x03ns1\x03cdn\x07example\x03net\x00";
        let rname = b"\x0ahostmaster\x03cdn\x07example\x03net\x00";
        let z = ZoneRecord::new(17, mname, rname, T);
        let rdlen = mname.len() + rname.len() + 20;
        assert_eq!(z.soa_len as usize, 10 + rdlen);
        assert_eq!(&z.soa[..4], &[0, 6, 0, 1]);
        assert_eq!(u16::from_be_bytes([z.soa[8], z.soa[9]]) as usize, rdlen);
        assert_eq!(z.serial_off as usize, 10 + mname.len() + rname.len());
        assert_eq!(z.soa_sum, csum16(&z.soa[..z.soa_len as usize]));
        let mut out = [0u8; MAX_SOA_LEN];
        let n = z.soa_bytes(0x0102_0304, &mut out);
        let s = z.serial_off as usize;
        assert_eq!(&out[s..s + 4], &[1, 2, 3, 4]);
        assert_eq!(&out[s + 4..n], &[0, 0, 0x0e, 0x10, 0, 0, 2, 0x58, 0, 9, 0x3a, 0x80, 0, 0, 0, 60]);
        assert_eq!(ZoneRecord::owner_pointer(24, 17), 0xC000 | 19);
    }

    #[test]
    fn too_long_a_soa_is_left_to_userspace() {
        let long = [1u8; 200];
        assert_eq!(ZoneRecord::new(17, &long, &long, T).soa_len, 0);
    }

    #[test]
    fn zone_keys_are_reversed_prefixes() {
        let zone = b"\x03cdn\x07example\x03net\x00";
        let name = b"\x06NoBody\x03CDN\x07example\x03net\x00";
        assert_eq!(zone_key(zone)[..zone.len()], zone_key(name)[..zone.len()]);
        assert_eq!(zone_key(zone)[zone.len() - 1], 3, "ends with the apex's first label length");
        assert_eq!(&zone_key(name)[zone.len()..name.len()], b"ydobon\x06");
    }

    #[test]
    fn types() {
        assert!(decidable_type(15) && decidable_type(257) && decidable_type(6));
        assert!(!decidable_type(0) && !decidable_type(41) && !decidable_type(255) && !decidable_type(252));
        assert_eq!(opt_record(true)[7], 0x80);
    }
}
