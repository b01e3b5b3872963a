//! Spillway's control plane: the `spillway` binary's library.
//!
//! - [`config`]: the TOML config and its validation.
//! - [`dataplane`]: loading/attaching the XDP program and the one owner of its maps.
//! - [`catalog`]: the live customers and the fraction in force for each.
//! - [`api`]: the HTTP control API and admin endpoints; [`metrics`]: Prometheus metrics;
//!   [`ui`]: the live dashboard at `/ui`.
//! - [`dns`]: the userspace authoritative server (UDP and TCP).
//! - [`capacity`]: proxies' capacity, own-usage history and its forecast; [`fleet`]: the
//!   proxies themselves, their drain and health, and which the answers may name.
//! - [`market`]: the auction and the order book; [`contracts`]: what is in force when;
//!   [`ledger`]: usage priced by the contracts; [`store`]: SQLite.
//! - [`engine`]: all of the above behind one lock; [`history`]: each buyer's last hour.
//! - [`cluster`]: many edges and control hosts sharing one market through etcd.
//! - [`daemon`]: `spillway run`; [`handover`]: planned restarts that pass the sockets on;
//!   [`ctl`]: `spillway ctl`.

pub mod affinity;
pub mod api;
pub mod capacity;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod contracts;
pub mod controller;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod dns;
pub mod engine;
pub mod error;
pub mod fleet;
pub mod handover;
pub mod history;
pub mod ledger;
pub mod market;
pub mod metrics;
pub mod settings;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod ui;

pub use error::{Error, Result};

/// The compiled XDP object (built by build.rs with aya-build).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns-ebpf"));
