//! The one way the program touches packet bytes: a bounds-checked pointer at an offset.
//!
//! Every read and write goes through [`ptr_at`], which checks `data + off + size_of::<T>()`
//! against `data_end` right before the pointer is made, so the verifier always sees the check
//! next to the access (LLVM may otherwise merge or drop checks it thinks redundant).

use aya_ebpf::{helpers::generated::bpf_xdp_store_bytes, programs::XdpContext};
use spillway_common::stats::XdpOutcome;

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Result<*mut T, XdpOutcome> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() > end {
        return Err(XdpOutcome::PassMalformed);
    }
    Ok((start + off) as *mut T)
}

/// `N` packet bytes at an offset, checked once: the fields of a fixed-size header are then
/// read without a check each. Offsets are constants within `N` (the verifier refuses the
/// program otherwise).
#[derive(Clone, Copy)]
pub struct View<const N: usize>(*const u8);

impl<const N: usize> View<N> {
    #[inline(always)]
    pub fn at(ctx: &XdpContext, off: usize) -> Result<Self, XdpOutcome> {
        Ok(Self(ptr_at::<[u8; N]>(ctx, off)? as *const u8))
    }

    #[inline(always)]
    pub fn u8(self, i: usize) -> u8 {
        unsafe { *self.0.add(i) }
    }

    #[inline(always)]
    pub fn be16(self, i: usize) -> u16 {
        u16::from_be(unsafe { core::ptr::read_unaligned(self.0.add(i) as *const u16) })
    }

    #[inline(always)]
    pub fn be32(self, i: usize) -> u32 {
        u32::from_be(unsafe { core::ptr::read_unaligned(self.0.add(i) as *const u32) })
    }

    #[inline(always)]
    pub fn bytes<const M: usize>(self, i: usize) -> Aligned<[u8; M]> {
        Aligned(unsafe { core::ptr::read_unaligned(self.0.add(i) as *const [u8; M]) })
    }
}

#[inline(always)]
pub fn read_u8(ctx: &XdpContext, off: usize) -> Result<u8, XdpOutcome> {
    Ok(unsafe { *ptr_at::<u8>(ctx, off)? })
}

#[inline(always)]
pub fn read_be16(ctx: &XdpContext, off: usize) -> Result<u16, XdpOutcome> {
    let p = ptr_at::<u16>(ctx, off)?;
    Ok(u16::from_be(unsafe { core::ptr::read_unaligned(p) }))
}

/// Bytes on the stack, 8-aligned. The program is built with unaligned word access allowed (see
/// `build.rs`), so LLVM may move byte arrays a word at a time; the verifier takes that from the
/// packet and map values but refuses unaligned words on the stack, so every byte array the
/// program keeps on the stack is one of these.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Aligned<T>(pub T);

#[inline(always)]
pub fn read<const N: usize>(ctx: &XdpContext, off: usize) -> Result<Aligned<[u8; N]>, XdpOutcome> {
    Ok(Aligned(unsafe { core::ptr::read_unaligned(ptr_at::<[u8; N]>(ctx, off)?) }))
}

/// Copy `len` bytes from `src` into the packet at `off`, bounds-checked by the kernel. For
/// writes at offsets that depend on the name length: LLVM addresses such writes from the end of
/// the checked range, with negative offsets the verifier rejects.
#[inline(always)]
pub fn store(ctx: &XdpContext, off: usize, src: *const u8, len: usize) -> Result<(), XdpOutcome> {
    if len == 0 {
        // The helper takes no empty copies; nothing to do anyway.
        return Ok(());
    }
    let rc = unsafe { bpf_xdp_store_bytes(ctx.ctx, off as u32, src as *mut _, len as u32) };
    if rc != 0 {
        return Err(XdpOutcome::PassMalformed);
    }
    Ok(())
}
