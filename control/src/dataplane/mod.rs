//! The XDP data plane: loading and attaching the program, and the one owner of its map handles.
//! Everything that writes a BPF map goes through [`Dataplane`].

pub mod records;
pub mod test_run;

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use spillway_common::{
    maps::{
        CUSTOMER_STATS_MAP, CUSTOMERS_MAP, CustomerCounters, CustomerRecord, NAMES_MAP, NameKey, NameValue,
        PROXIES_MAP, ProxySet, XDP_STATS_MAP,
    },
    stats::XDP_OUTCOMES,
};

use crate::{
    EBPF_OBJECT,
    config::XdpModeConfig,
    error::{Error, Result},
};

/// The XDP programs in the object.
pub mod program {
    /// The DNS responder.
    pub const DNS: &str = "spillway_dns";
    /// Returns XDP_TX and nothing else: the cost floor for benchmarks.
    pub const TX_FLOOR: &str = "xdp_tx_floor";
    /// Returns XDP_PASS: for the peer of a veth pair in native mode.
    pub const PASS: &str = "xdp_pass";
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Benchmarks only: accept the program's own replies as queries.
    pub bench_replay: bool,
}

pub struct Dataplane {
    ebpf: Ebpf,
    names: HashMap<MapData, NameKey, NameValue>,
    customers: HashMap<MapData, u32, CustomerRecord>,
    proxies: HashMap<MapData, u32, ProxySet>,
    customer_stats: PerCpuArray<MapData, CustomerCounters>,
    xdp_stats: PerCpuArray<MapData, u64>,
}

fn map_err(name: &str) -> impl FnOnce(aya::maps::MapError) -> Error + '_ {
    move |source| Error::Map { name: name.to_owned(), source }
}

fn prog_err(name: &str) -> impl FnOnce(aya::programs::ProgramError) -> Error + '_ {
    move |source| Error::Program { name: name.to_owned(), source }
}

impl Dataplane {
    /// Load the object and the DNS program into the kernel (not attached yet).
    pub fn load(opts: LoadOptions) -> Result<Self> {
        let replay: u8 = opts.bench_replay.into();
        let mut ebpf = EbpfLoader::new().override_global("BENCH_REPLAY", &replay, true).load(EBPF_OBJECT)?;
        for name in [program::DNS, program::TX_FLOOR, program::PASS] {
            let prog: &mut Xdp =
                ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
            prog.load().map_err(prog_err(name))?;
        }
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(Error::MissingMap(name));
        let names = HashMap::try_from(take(NAMES_MAP)?).map_err(map_err(NAMES_MAP))?;
        let customers = HashMap::try_from(take(CUSTOMERS_MAP)?).map_err(map_err(CUSTOMERS_MAP))?;
        let proxies = HashMap::try_from(take(PROXIES_MAP)?).map_err(map_err(PROXIES_MAP))?;
        let customer_stats = PerCpuArray::try_from(take(CUSTOMER_STATS_MAP)?).map_err(map_err(CUSTOMER_STATS_MAP))?;
        let xdp_stats = PerCpuArray::try_from(take(XDP_STATS_MAP)?).map_err(map_err(XDP_STATS_MAP))?;
        Ok(Self { ebpf, names, customers, proxies, customer_stats, xdp_stats })
    }

    /// Start reading the program's log records (aya-log) into the `log` facade.
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }

    /// Attach the DNS program to an interface. Detached when the Dataplane is dropped.
    pub fn attach(&mut self, interface: &str, mode: XdpModeConfig) -> Result<()> {
        self.attach_program(program::DNS, interface, mode)
    }

    /// Attach one of the object's programs (see [`program`]) to an interface.
    pub fn attach_program(&mut self, name: &'static str, interface: &str, mode: XdpModeConfig) -> Result<()> {
        let prog: &mut Xdp =
            self.ebpf.program_mut(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
        let mode = match mode {
            XdpModeConfig::Native => XdpMode::Driver,
            XdpModeConfig::Skb => XdpMode::Skb,
        };
        prog.attach(interface, mode)
            .map_err(|source| Error::Program { name: format!("{name} on {interface}"), source })?;
        Ok(())
    }

    /// The fd of one of the object's programs, for BPF_PROG_TEST_RUN.
    pub fn program_fd(&self, name: &'static str) -> Result<BorrowedFd<'_>> {
        let prog: &Xdp =
            self.ebpf.program(name).ok_or(Error::MissingProgram(name))?.try_into().map_err(prog_err(name))?;
        Ok(prog.fd().map_err(prog_err(name))?.as_fd())
    }

    pub fn set_proxies(&mut self, set: &ProxySet) -> Result<()> {
        self.proxies.insert(0, set, 0).map_err(map_err(PROXIES_MAP))
    }

    /// Replace a customer's record whole (atomic for readers: see `CustomerRecord`).
    pub fn set_customer(&mut self, index: u32, record: &CustomerRecord) -> Result<()> {
        self.customers.insert(index, record, 0).map_err(map_err(CUSTOMERS_MAP))
    }

    pub fn set_name(&mut self, key: NameKey, customer: u32) -> Result<()> {
        self.names.insert(key, NameValue { customer, _pad: 0 }, 0).map_err(map_err(NAMES_MAP))
    }

    /// Remove a name; its queries are passed on to userspace from then on.
    pub fn remove_name(&mut self, key: NameKey) -> Result<()> {
        self.names.remove(&key).map_err(map_err(NAMES_MAP))
    }

    /// Per-outcome packet counts, summed over CPUs, indexed by `XdpOutcome`.
    pub fn xdp_stats(&self) -> Result<[u64; XDP_OUTCOMES as usize]> {
        let mut out = [0u64; XDP_OUTCOMES as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let per_cpu = self.xdp_stats.get(&(i as u32), 0).map_err(map_err(XDP_STATS_MAP))?;
            *slot = per_cpu.iter().sum();
        }
        Ok(out)
    }

    /// A customer's answer counts, summed over CPUs, indexed by `Target`.
    pub fn customer_answers(&self, index: u32) -> Result<[u64; 3]> {
        let per_cpu = self.customer_stats.get(&index, 0).map_err(map_err(CUSTOMER_STATS_MAP))?;
        let mut out = [0u64; 3];
        for c in per_cpu.iter() {
            for (o, v) in out.iter_mut().zip(c.answers) {
                *o += v;
            }
        }
        Ok(out)
    }
}
