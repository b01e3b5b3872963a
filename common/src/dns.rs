//! DNS wire constants used by both sides.

pub const DNS_PORT: u16 = 53;
pub const HEADER_LEN: usize = 12;
/// Longest name in wire format, root label included (RFC 1035 §3.1).
pub const MAX_NAME_WIRE_LEN: usize = 255;
pub const MAX_LABEL_LEN: u8 = 63;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// Header flag bits (second 16-bit word of the header).
pub const FLAG_QR: u16 = 0x8000;
pub const OPCODE_MASK: u16 = 0x7800;
pub const FLAG_AA: u16 = 0x0400;
pub const FLAG_TC: u16 = 0x0200;
pub const FLAG_RD: u16 = 0x0100;
pub const FLAG_CD: u16 = 0x0010;
/// EDNS DO bit in the OPT record's TTL field (RFC 3225).
pub const EDNS_FLAG_DO: u32 = 0x0000_8000;

/// Largest UDP reply without EDNS (RFC 1035 §4.2.1).
pub const PLAIN_UDP_LIMIT: u16 = 512;
/// The UDP payload size we advertise in OPT (the DNS flag day 2020 value, avoids fragmentation).
pub const OUR_EDNS_UDP_SIZE: u16 = 1232;
/// A compression pointer to the question name, which always starts at offset 12.
pub const PTR_TO_QNAME: u16 = 0xC00C;
/// Length of an OPT record with no options: root name, type, class, ttl, rdlen.
pub const OPT_RR_LEN: usize = 11;
/// Fixed part of an answer RR using a compression pointer: ptr, type, class, ttl, rdlen.
pub const RR_FIXED_LEN: usize = 12;
