//! The userspace authoritative server: everything the XDP program passes on (and everything, on
//! hosts without XDP). [`authority`] decides the answers; [`server`] carries them over UDP and
//! TCP.

pub mod authority;
pub mod rrl;
pub mod server;
pub mod snapshot;
pub mod tcp;
pub mod zones;

pub use authority::{Authority, Transport};
