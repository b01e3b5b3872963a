//! Any datagram: the userspace server answers or stays silent, never panics; a reply is a
//! DNS message with the query's id that fits the UDP limit (1232 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway::dns::Transport;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (authority, zone) = common::zone();
    let client = "192.0.2.1".parse().expect("address");
    if let Some(reply) = authority.answer(zone, data, client, Transport::Udp) {
        assert!(reply.len() >= 12, "a reply holds at least a header");
        assert!(reply.len() <= 1232, "UDP replies stay within 1232 bytes: {}", reply.len());
        assert_eq!(reply[..2], data[..2], "the reply carries the query's id");
        assert_ne!(reply[2] & 0x80, 0, "QR is set");
    }
});
