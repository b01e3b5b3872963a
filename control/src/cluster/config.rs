//! The `[cluster]` section: which roles this host plays, and where etcd is.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// What a host does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// XDP and the userspace DNS server, answering from the state in etcd; no market.
    Edge,
    /// The API, the market, the controller and the ledger; no DNS.
    Control,
    /// Both on one host.
    Both,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Control => "control",
            Role::Both => "both",
        }
    }

    /// Answers DNS (and registers as an edge).
    pub fn serves_dns(self) -> bool {
        matches!(self, Role::Edge | Role::Both)
    }

    /// Runs the API's writes, the market, the controller and the ledger.
    pub fn controls(self) -> bool {
        matches!(self, Role::Control | Role::Both)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub role: Role,
    /// etcd's client URLs (`http://host:2379`, or `https://` with `etcd_ca_file`), every
    /// member or some of them.
    #[serde(default)]
    pub etcd_endpoints: Vec<String>,
    /// PEM file of the authorities etcd's server certificates chain to (https endpoints).
    pub etcd_ca_file: Option<PathBuf>,
    /// This host's client certificate and its key, PEM (etcd's `--client-cert-auth`).
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
    /// Every key Spillway writes starts with this (one etcd may serve several clusters).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// This host's name in the cluster (its lease key); the host name when absent.
    pub name: Option<String>,
    /// Where the control hosts read this edge's `/metrics`; `http://<api.listen>/metrics` when
    /// absent.
    pub metrics_url: Option<String>,
    /// Where clients reach this host's API (a control replica: what the others name as the
    /// leader's address when they refuse a write); `http://<api.listen>` when absent.
    pub api_url: Option<String>,
    /// Seconds a host's registration outlives its last keep-alive.
    #[serde(default = "default_lease_ttl_s")]
    pub lease_ttl_s: u32,
    /// Milliseconds any one etcd request may take before it counts as failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
}

fn default_key_prefix() -> String {
    "/spillway/".into()
}

fn default_lease_ttl_s() -> u32 {
    5
}

fn default_timeout_ms() -> u32 {
    2000
}

/// A name fit for a key and a label: letters, digits, `.`, `-`, `_`; 1 to 63 characters.
fn is_host_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `http://host:port` (`https://` with `tls`) with a host and a port, nothing after but an
/// optional `/`.
fn endpoint_problem(e: &str, tls: bool) -> Option<String> {
    let (scheme, other) = if tls { ("https://", "http://") } else { ("http://", "https://") };
    let Some(rest) = e.strip_prefix(scheme) else {
        return Some(match (e.starts_with(other), tls) {
            (true, false) => format!("{e:?}: an https endpoint needs etcd_ca_file (the CA of etcd's certificates)"),
            (true, true) => format!("{e:?}: etcd_ca_file is set, so every endpoint is https://"),
            _ => format!("{e:?} is not a URL like \"{scheme}10.0.0.1:2379\""),
        });
    };
    let hostport = rest.trim_end_matches('/');
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !hostport.contains('/') && port.parse::<u16>().is_ok() => None,
        _ => Some(format!("{e:?} needs a host and a port, like \"http://10.0.0.1:2379\"")),
    }
}

impl ClusterConfig {
    /// What is wrong, as (key under `cluster`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if self.etcd_endpoints.is_empty() {
            v.push((
                "etcd_endpoints".into(),
                "at least one etcd endpoint is needed, like [\"http://10.0.0.1:2379\"]".into(),
            ));
        }
        let tls = self.etcd_ca_file.is_some();
        for (i, e) in self.etcd_endpoints.iter().enumerate() {
            if let Some(p) = endpoint_problem(e, tls) {
                v.push((format!("etcd_endpoints[{i}]"), p));
            }
        }
        v.extend(self.tls_problems());
        let p = &self.key_prefix;
        if !(p.starts_with('/') && p.ends_with('/') && p.len() > 1) || p.contains("//") {
            v.push(("key_prefix".into(), format!("{p:?} must start and end with '/', like \"/spillway/\"")));
        }
        if let Some(n) = &self.name
            && !is_host_name(n)
        {
            v.push(("name".into(), format!("{n:?} must be 1 to 63 letters, digits, '.', '-' or '_'")));
        }
        if let Some(u) = &self.metrics_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            v.push(("metrics_url".into(), format!("{u:?} is not an http:// URL")));
        }
        if let Some(u) = &self.api_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            v.push(("api_url".into(), format!("{u:?} is not an http:// URL")));
        }
        if !(2..=300).contains(&self.lease_ttl_s) {
            v.push(("lease_ttl_s".into(), format!("{} is outside 2..=300", self.lease_ttl_s)));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            v.push(("timeout_ms".into(), format!("{} is outside 100..=60000", self.timeout_ms)));
        }
        v
    }

    /// The TLS files: set together as they must be, and readable.
    fn tls_problems(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(ca) = &self.etcd_ca_file
            && let Err(e) = crate::tls::roots(ca)
        {
            v.push(("etcd_ca_file".into(), e.to_string()));
        }
        let identity = crate::tls::identity_problems(
            ("etcd_cert_file", self.etcd_cert_file.as_deref()),
            ("etcd_key_file", self.etcd_key_file.as_deref()),
            ("etcd_ca_file", self.etcd_ca_file.is_some()),
        );
        v.extend(identity.into_iter().map(|(key, message)| (key.to_owned(), message)));
        v
    }

    /// This host's name: `name`, or the host name.
    pub fn node_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| is_host_name(h))
                .unwrap_or_else(|| "spillway".into())
        })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.lease_ttl_s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_need_http_a_host_and_a_port() {
        assert_eq!(endpoint_problem("http://10.0.0.1:2379", false), None);
        assert_eq!(endpoint_problem("http://etcd-1.example:2379/", false), None);
        assert!(endpoint_problem("10.0.0.1:2379", false).is_some());
        assert!(endpoint_problem("http://10.0.0.1", false).is_some());
        assert!(endpoint_problem("http://:2379", false).is_some());
        assert!(endpoint_problem("http://h:2379/x", false).is_some());
        assert!(endpoint_problem("https://h:2379", false).unwrap().contains("etcd_ca_file"));
        assert_eq!(endpoint_problem("https://h:2379", true), None);
        assert!(endpoint_problem("http://h:2379", true).unwrap().contains("every endpoint is https"));
    }

    #[test]
    fn host_names() {
        assert!(is_host_name("edge-1.fra"));
        assert!(!is_host_name(""));
        assert!(!is_host_name("a/b"));
        assert!(!is_host_name(&"a".repeat(64)));
    }
}
