//! The names-map key: a case-insensitive hash of a wire-format DNS name, taken 8 bytes at a
//! time so the XDP program hashes a 22-byte name in three steps instead of 22. Userspace hashes
//! a slice with the same code.
//!
//! The name is read as little-endian 64-bit words of its wire form (label lengths and the root
//! label included), the last word zero-padded, and each word is lowercased in one go
//! ([`lower_word`]) before it is mixed in.

use crate::maps::NameKey;

/// Longest wire-format name, and so the words a name can span.
pub const NAME_WORDS: usize = 32;

const SEED1: u64 = 0xcbf2_9ce4_8422_2325;
const SEED2: u64 = 0x2545_f491_4f6c_dd1d;
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xff51_afd7_ed55_8ccd;
const BYTES_01: u64 = 0x0101_0101_0101_0101;
const BYTES_7F: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const BYTES_80: u64 = 0x8080_8080_8080_8080;

/// ASCII lowercase. Label length bytes (0..=63) are never in 'A'..='Z', so the whole wire name
/// can go through this without tracking where labels start.
#[inline(always)]
pub const fn ascii_lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// [`ascii_lower`] on each byte of a word. For every byte: add to its low 7 bits so that the
/// top bit says ">= 'A'", and likewise "> 'Z'" (no carry crosses a byte: 0x7f + 0x3f < 0x100);
/// a byte with its own top bit set is not ASCII. The top bit of an uppercase byte, moved down
/// two places, is 0x20.
#[inline(always)]
pub const fn lower_word(w: u64) -> u64 {
    let low7 = w & BYTES_7F;
    let ge_a = low7.wrapping_add((0x80 - b'A' as u64) * BYTES_01);
    let gt_z = low7.wrapping_add((0x80 - b'Z' as u64 - 1) * BYTES_01);
    let upper = ge_a & !gt_z & !w & BYTES_80;
    w | (upper >> 2)
}

/// The end of MurmurHash3's 64-bit finalizer: every input bit reaches every output bit.
#[inline(always)]
const fn fmix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Two independent hashes of the lowercased words.
#[derive(Clone, Copy, Debug)]
pub struct NameHasher {
    h1: u64,
    h2: u64,
}

impl Default for NameHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl NameHasher {
    pub const fn new() -> Self {
        Self { h1: SEED1, h2: SEED2 }
    }

    /// Feed the next little-endian word of the wire name as received; bytes past the name's end
    /// must be zero.
    #[inline(always)]
    pub fn push_word(&mut self, raw: u64) {
        let w = lower_word(raw);
        self.h1 = (self.h1.rotate_left(5) ^ w).wrapping_mul(K1);
        let h2 = (self.h2 ^ w).wrapping_mul(K2);
        self.h2 = h2 ^ (h2 >> 29);
    }

    /// The key of a name of `len` wire bytes.
    #[inline(always)]
    pub const fn finish(&self, len: usize) -> NameKey {
        NameKey { h1: fmix(self.h1 ^ len as u64), h2: fmix(self.h2 ^ ((len as u64) << 32)) }
    }
}

/// Key of a whole wire-format name (root label included).
pub fn name_key(wire: &[u8]) -> NameKey {
    let mut h = NameHasher::new();
    for chunk in wire.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h.push_word(u64::from_le_bytes(word));
    }
    h.finish(wire.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashSet, vec::Vec};

    #[test]
    fn case_insensitive_and_distinct() {
        let a = name_key(b"\x04shop\x03cdn\x07example\x03net\x00");
        let b = name_key(b"\x04SHoP\x03CDN\x07Example\x03NET\x00");
        let c = name_key(b"\x04shoq\x03cdn\x07example\x03net\x00");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a.h1, a.h2);
    }

    #[test]
    fn label_boundaries_matter() {
        // "ab.c" and "a.bc" have the same letters but different label lengths.
        assert_ne!(name_key(b"\x02ab\x01c\x00"), name_key(b"\x01a\x02bc\x00"));
    }

    #[test]
    fn lower_word_is_ascii_lower_on_every_byte() {
        for b in 0..=255u8 {
            for at in 0..8 {
                // The byte among neighbours that must not change it or be changed by it.
                let mut bytes = [b'Z', b'@', b'a', 0xff, b'[', 0x7f, b'A', 0x00];
                bytes[at] = b;
                let mut want = bytes;
                for x in &mut want {
                    *x = ascii_lower(*x);
                }
                let got = lower_word(u64::from_le_bytes(bytes)).to_le_bytes();
                assert_eq!(got, want, "byte {b:#04x} at {at}");
            }
        }
    }

    #[test]
    fn every_length_and_each_byte_counts() {
        // Names across word boundaries: a change in any byte, or one more zero byte, is a
        // different key.
        let mut seen = HashSet::new();
        for len in 1..=40usize {
            let wire: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(seen.insert(name_key(&wire)), "length {len}");
            for at in 0..len {
                let mut changed = wire.clone();
                changed[at] ^= 0x01;
                assert_ne!(name_key(&changed), name_key(&wire), "length {len}, byte {at}");
            }
            let mut padded = wire.clone();
            padded.push(0);
            assert_ne!(name_key(&padded), name_key(&wire), "length {len} and a zero more");
        }
    }
}
