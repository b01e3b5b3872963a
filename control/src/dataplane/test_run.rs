//! BPF_PROG_TEST_RUN for XDP programs: run a program once or `repeat` times on a packet in the
//! kernel, without a device. aya 0.14 has no wrapper (it arrived in 0.15 as `test_run`); this one
//! is shaped like aya 0.15's `TestRunOptions`/`TestRunResult` so the upgrade is a swap.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
    time::Duration,
};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

#[derive(Debug, Clone)]
pub struct TestRunOptions<'a> {
    pub data_in: &'a [u8],
    /// Room for the output packet (the program may grow it).
    pub data_out_capacity: usize,
    /// Runs in one call; the kernel reports the mean duration. 0 and 1 both mean one run.
    pub repeat: u32,
}

impl<'a> TestRunOptions<'a> {
    pub fn new(data_in: &'a [u8]) -> Self {
        Self { data_in, data_out_capacity: 4096, repeat: 1 }
    }
}

#[derive(Debug, Clone)]
pub struct TestRunResult {
    pub return_value: u32,
    /// Mean time per run, as measured by the kernel.
    pub duration: Duration,
    pub data_out: Vec<u8>,
}

/// Run `prog` on a packet. Needs CAP_BPF (or root).
pub fn test_run(prog: BorrowedFd<'_>, opts: &TestRunOptions<'_>) -> io::Result<TestRunResult> {
    let mut out = vec![0u8; opts.data_out_capacity];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: opts.data_in.len() as u32,
        data_size_out: out.len() as u32,
        data_in: opts.data_in.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: opts.repeat,
        ..Default::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix for this command; the kernel writes at most
    // data_size_out bytes to `out`, which outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(TestRunResult { return_value: attr.retval, duration: Duration::from_nanos(attr.duration as u64), data_out: out })
}
