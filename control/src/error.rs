//! The control plane's error type.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigErrors),
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program {name}: {source}")]
    Program { name: String, source: aya::programs::ProgramError },
    #[error("BPF map {name}: {source}")]
    Map { name: String, source: aya::maps::MapError },
    #[error("BPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("BPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("handover: {0}")]
    Handover(String),
    #[error("pinned XDP state: {0}")]
    Pin(String),
    #[error("waiting for the XDP program's readers (RCU grace period): {0}")]
    GracePeriod(String),
    #[error("customer {0:?}: {1}")]
    Record(String, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Market(#[from] crate::market::MarketError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
