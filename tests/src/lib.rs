//! Shared pieces of Spillway's privileged integration tests: the privilege gate, packet and DNS
//! builders, reply checks, network-namespace guards, and the fixture config.

pub mod client;
pub mod cluster;
pub mod daemon;
pub mod dnswire;
pub mod fixture;
pub mod frame;
pub mod load;
pub mod netns;
pub mod peers;
pub mod postgres;
pub mod privileged;
pub mod proxies;
pub mod sim;
pub mod tls;
