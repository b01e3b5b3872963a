//! What etcd holds, and under which keys (all below `cluster.key_prefix`):
//!
//! ```text
//! <prefix>state/customers/<id>   one customer as the edges answer for it (CustomerEntry)
//! <prefix>state/proxies          the proxy addresses the answers name (ProxiesEntry)
//! <prefix>state/zones            the zones the control hosts serve (ZonesEntry)
//! <prefix>state/serial           the zones' SOA serial, written in every transaction of state
//!                                (SerialEntry): every edge answers with the same one
//! <prefix>edges/<name>           an edge, on its lease (NodeEntry)
//! ```
//!
//! Values are JSON. A change of one customer is one key, written whole: an edge never sees
//! half of it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{ClusterError, ClusterResult};
use crate::config::CustomerConfig;

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What a key under `state/` is.
#[derive(Debug, PartialEq, Eq)]
pub enum StateKey {
    Customer(String),
    Proxies,
    Zones,
    Serial,
    Other,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub fn state(&self) -> String {
        format!("{}state/", self.prefix)
    }

    pub fn customers(&self) -> String {
        format!("{}state/customers/", self.prefix)
    }

    pub fn customer(&self, id: &str) -> String {
        format!("{}state/customers/{id}", self.prefix)
    }

    pub fn proxies(&self) -> String {
        format!("{}state/proxies", self.prefix)
    }

    pub fn zones(&self) -> String {
        format!("{}state/zones", self.prefix)
    }

    pub fn serial(&self) -> String {
        format!("{}state/serial", self.prefix)
    }

    /// The control replicas' election.
    pub fn election(&self) -> String {
        format!("{}leader", self.prefix)
    }

    pub fn edges(&self) -> String {
        format!("{}edges/", self.prefix)
    }

    pub fn edge(&self, name: &str) -> String {
        format!("{}edges/{name}", self.prefix)
    }

    pub fn parse(&self, key: &[u8]) -> StateKey {
        let Ok(key) = std::str::from_utf8(key) else { return StateKey::Other };
        let Some(rest) = key.strip_prefix(&self.prefix).and_then(|k| k.strip_prefix("state/")) else {
            return StateKey::Other;
        };
        match rest {
            "proxies" => StateKey::Proxies,
            "zones" => StateKey::Zones,
            "serial" => StateKey::Serial,
            _ => match rest.strip_prefix("customers/") {
                Some(id) if !id.is_empty() => StateKey::Customer(id.to_owned()),
                _ => StateKey::Other,
            },
        }
    }
}

/// One customer as every edge answers for it: its entry (settings over it, no token), the
/// fraction and proxy TTL in force, and what its contracts in force bought.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerEntry {
    pub config: CustomerConfig,
    pub fraction: f64,
    pub proxy_ttl: u32,
    pub contracted_rps: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxiesEntry {
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ZonesEntry {
    pub zones: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SerialEntry {
    pub serial: u32,
}

/// `a` comes after `b` in serial number arithmetic (RFC 1982: serials wrap).
pub fn later(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A host on its lease: who it is, where its `/metrics` are, and where its answer counters
/// are in the compact form the control hosts read (`/cluster/answers` on the same listener).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub role: String,
    pub metrics_url: String,
    pub answers_url: String,
}

impl NodeEntry {
    pub fn new(name: String, role: &str, metrics_url: String) -> Self {
        // scheme://host:port of the metrics URL, then the answers' path.
        let origin_end = metrics_url.find("://").map_or(0, |i| i + 3);
        let origin_end = metrics_url[origin_end..].find('/').map_or(metrics_url.len(), |j| origin_end + j);
        let answers_url = format!("{}/cluster/answers", &metrics_url[..origin_end]);
        Self { name, role: role.to_owned(), metrics_url, answers_url }
    }
}

/// A value read from `key`, or why it cannot be.
pub fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> ClusterResult<T> {
    serde_json::from_slice(value)
        .map_err(|e| ClusterError::Value { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() })
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_live_next_to_the_metrics() {
        let e = NodeEntry::new("e".into(), "edge", "http://10.0.0.1:8053/metrics".into());
        assert_eq!(e.answers_url, "http://10.0.0.1:8053/cluster/answers");
        let e = NodeEntry::new("e".into(), "edge", "http://[2001:db8::1]:8053".into());
        assert_eq!(e.answers_url, "http://[2001:db8::1]:8053/cluster/answers");
    }

    #[test]
    fn serials_wrap() {
        assert!(later(2, 1) && !later(1, 2) && !later(5, 5));
        assert!(later(3, u32::MAX - 2), "a serial after the wrap is later");
    }

    #[test]
    fn keys_round_trip() {
        let k = Keys::new("/spw/");
        assert_eq!(k.parse(k.customer("shop").as_bytes()), StateKey::Customer("shop".into()));
        assert_eq!(k.parse(k.proxies().as_bytes()), StateKey::Proxies);
        assert_eq!(k.parse(k.zones().as_bytes()), StateKey::Zones);
        assert_eq!(k.parse(k.serial().as_bytes()), StateKey::Serial);
        assert_eq!(k.parse(k.customers().as_bytes()), StateKey::Other);
        assert_eq!(k.parse(b"/other/state/proxies"), StateKey::Other);
        assert_eq!(k.parse(k.edge("e1").as_bytes()), StateKey::Other);
    }
}
