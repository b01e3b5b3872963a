//! Internet checksums (RFC 1071) built from the pieces the program already holds, so the UDP
//! checksum of a reply never needs a second pass over the packet.
//!
//! A 16-bit word at an odd offset contributes its byte-swapped value: the ones-complement sum
//! commutes with byte swapping, so each piece can be summed on its own and placed afterwards.

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Csum(u64);

impl Csum {
    #[inline(always)]
    pub const fn new() -> Self {
        Self(0)
    }

    #[inline(always)]
    pub fn add16(&mut self, w: u16) {
        self.0 += w as u64;
    }

    /// A big-endian word at byte offset `off` from the start of the summed region.
    #[inline(always)]
    pub fn add16_at(&mut self, off: usize, w: u16) {
        self.0 += if off & 1 == 0 { w } else { w.swap_bytes() } as u64;
    }

    #[inline(always)]
    pub fn add32(&mut self, w: u32) {
        self.0 += (w >> 16) as u64 + (w & 0xffff) as u64;
    }

    #[inline(always)]
    pub fn add_bytes4(&mut self, b: &[u8; 4]) {
        self.add32(u32::from_be_bytes(*b));
    }

    #[inline(always)]
    pub fn add_bytes16(&mut self, b: &[u8; 16]) {
        let mut i = 0;
        while i < 16 {
            self.add16(u16::from_be_bytes([b[i], b[i + 1]]));
            i += 2;
        }
    }

    /// Add another sum placed at `off`.
    #[inline(always)]
    pub fn add_sum_at(&mut self, off: usize, other: Csum) {
        self.add16_at(off, other.fold());
    }

    #[inline(always)]
    pub fn add_raw(&mut self, v: u64) {
        self.0 += v;
    }

    /// The folded 16-bit ones-complement sum.
    #[inline(always)]
    pub fn fold(self) -> u16 {
        let mut s = self.0;
        s = (s & 0xffff_ffff) + (s >> 32);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s = (s & 0xffff) + (s >> 16);
        s as u16
    }

    /// The checksum field value: the complement of the sum.
    #[inline(always)]
    pub fn finish(self) -> u16 {
        !self.fold()
    }

    /// UDP transmits a computed 0 as 0xffff (RFC 768), since 0 means "no checksum" over IPv4.
    #[inline(always)]
    pub fn finish_udp(self) -> u16 {
        match self.finish() {
            0 => 0xffff,
            c => c,
        }
    }
}
