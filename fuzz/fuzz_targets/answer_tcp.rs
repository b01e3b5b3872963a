//! Any byte stream on a TCP connection, split as the server splits it (a 2-byte length, then
//! the message; one shorter than a header ends the connection): every message is answered or
//! not, nothing panics, and every reply can be framed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spillway::dns::{Transport, tcp};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (authority, zone) = common::zone();
    let client = "2001:db8::1".parse().expect("address");
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let Some(len) = tcp::message_len(u16::from_be_bytes([*a, *b])) else { break };
        if tail.len() < len {
            break;
        }
        let (message, next) = tail.split_at(len);
        if let Some(reply) = authority.answer(zone, message, client, Transport::Tcp) {
            let framed = tcp::frame(&reply).expect("a reply fits a TCP frame");
            assert_eq!(usize::from(u16::from_be_bytes([framed[0], framed[1]])), reply.len());
        }
        rest = next;
    }
});
