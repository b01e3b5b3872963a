//! The names-map key: a case-insensitive hash of a wire-format DNS name, computed byte by byte so
//! the XDP program can feed it while it walks the question, and userspace over a slice.

use crate::maps::NameKey;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const FX_SEED: u64 = 0x2545_f491_4f6c_dd1d;
const FX_K: u64 = 0x9e37_79b9_7f4a_7c15;

/// ASCII lowercase. Label length bytes (0..=63) are never in 'A'..='Z', so the whole wire name
/// can go through this without tracking where labels start.
#[inline(always)]
pub const fn ascii_lower(b: u8) -> u8 {
    if b.is_ascii_uppercase() { b | 0x20 } else { b }
}

/// Two independent hashes (FNV-1a and an Fx-style rotate-multiply) of the lowercased bytes.
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
        Self { h1: FNV_OFFSET, h2: FX_SEED }
    }

    /// Feed one byte of the wire-format name, label lengths and the root label included.
    #[inline(always)]
    pub fn push(&mut self, byte: u8) {
        let b = ascii_lower(byte) as u64;
        self.h1 = (self.h1 ^ b).wrapping_mul(FNV_PRIME);
        self.h2 = (self.h2.rotate_left(5) ^ b).wrapping_mul(FX_K);
    }

    #[inline(always)]
    pub const fn finish(&self) -> NameKey {
        NameKey { h1: self.h1, h2: self.h2 }
    }
}

/// Key of a whole wire-format name (root label included).
pub fn name_key(wire: &[u8]) -> NameKey {
    let mut h = NameHasher::new();
    for &b in wire {
        h.push(b);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
