//! The ones'-complement sum (RFC 1071) of bytes precomputed by userspace, which the XDP program
//! adds to a reply's UDP checksum instead of summing the bytes again.

/// Ones'-complement sum of bytes starting at an even offset, folded to 16 bits.
pub fn csum16(bytes: &[u8]) -> u32 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let lo = if i + 1 < bytes.len() { bytes[i + 1] } else { 0 };
        sum += u16::from_be_bytes([bytes[i], lo]) as u64;
        i += 2;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_odd_lengths() {
        assert_eq!(csum16(&[0x01]), 0x0100);
        assert_eq!(csum16(&[0xff, 0xff, 0x00, 0x02]), 0x0002);
    }
}
