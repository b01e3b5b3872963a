//! Types and rules shared by the XDP program (`dns-ebpf`) and the userspace control plane.
//!
//! Everything here is `no_std` and allocation-free so the kernel side can use it. The rule that
//! decides an answer (proxy or overflow, which origin) lives once, in [`decision`], and both the
//! XDP program and the userspace server call it.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod answers;
pub mod checksum;
pub mod decision;
pub mod dns;
pub mod maps;
pub mod name;
pub mod negative;
pub mod rrl;
pub mod stats;
