//! Waiting until no program run can still be reading a map slot: an RCU grace period.
//!
//! XDP programs (and BPF_PROG_TEST_RUN) run inside RCU read-side sections. The kernel has no
//! syscall that only waits for a grace period, but it waits for one (`synchronize_rcu`) on
//! every userspace update of a map-of-maps, so that userspace knows no program still uses the
//! inner map it replaced (`maybe_wait_bpf_programs`, kernel/bpf/syscall.c). So a private
//! one-entry array of maps, updated with the same inner map, is the wait. aya creates neither
//! a standalone map-of-maps nor takes a raw inner fd, hence the three raw `bpf` calls.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Error, Result};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

pub struct GracePeriod {
    outer: OwnedFd,
    inner: OwnedFd,
}

/// `union bpf_attr` for `BPF_MAP_CREATE`, the fields used here; the rest zero, as the kernel
/// wants.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    rest: [u32; 26],
}

/// `union bpf_attr` for the element commands.
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
    rest: [u64; 12],
}

fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> std::io::Result<i64> {
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>() as u32) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(r) }
}

/// A one-entry array map with 4-byte keys and values, of `map_type` (`inner`: its inner map).
fn create(map_type: u32, inner: Option<&OwnedFd>) -> std::io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
        inner_map_fd: inner.map_or(0, |fd| fd.as_raw_fd() as u32),
        ..Default::default()
    };
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl GracePeriod {
    pub fn new() -> Result<Self> {
        let err = |what: &str, e: std::io::Error| Error::GracePeriod(format!("creating the {what}: {e}"));
        let inner = create(BPF_MAP_TYPE_ARRAY, None).map_err(|e| err("inner array", e))?;
        let outer = create(BPF_MAP_TYPE_ARRAY_OF_MAPS, Some(&inner)).map_err(|e| err("array of maps", e))?;
        Ok(Self { outer, inner })
    }

    /// Return once every program run that began before the call has ended (milliseconds).
    pub fn wait(&self) -> Result<()> {
        let key = 0u32;
        let value = self.inner.as_raw_fd() as u32;
        let mut attr = ElemAttr {
            map_fd: self.outer.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|e| Error::GracePeriod(format!("updating: {e}")))?;
        Ok(())
    }
}
