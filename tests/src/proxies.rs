//! Real proxy software for the tests: HAProxy (Debian's 2.6) in a namespace, on an address of
//! its own, with a health URI, its Prometheus exporter and a plain answer; stopped when dropped.

use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use crate::netns::{NetNs, Proc};

/// One HAProxy listening on `addr`:80 in a namespace.
pub struct Haproxy {
    pub proc: Proc,
    pub addr: IpAddr,
}

/// HAProxy's config: `/healthz` answers 200 while it runs (`monitor-uri`), `/metrics` is its
/// Prometheus exporter, anything else a short text naming the proxy.
fn haproxy_config(name: &str, addr: IpAddr) -> String {
    let bind = match addr {
        IpAddr::V4(a) => format!("{a}:80"),
        IpAddr::V6(a) => format!("[{a}]:80"),
    };
    format!(
        "global\n    log stderr format raw local0 warning\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind {bind}\n    monitor-uri /healthz\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20   http-request return status 200 content-type text/plain string \"{name}\\n\"\n"
    )
}

impl Haproxy {
    /// Start HAProxy named `name` on `addr` (which must be on an interface of `ns`), with its
    /// config and log in `dir`, and wait up to 10 s for `/healthz` to answer.
    pub fn start(ns: &NetNs, dir: &Path, name: &str, addr: IpAddr) -> Result<Haproxy, String> {
        let conf = dir.join(format!("haproxy-{name}.cfg"));
        std::fs::write(&conf, haproxy_config(name, addr)).map_err(|e| e.to_string())?;
        let proc = ns.spawn(
            &["haproxy", "-db", "-f", conf.to_str().ok_or("config path")?],
            dir.join(format!("haproxy-{name}.log")),
        );
        let h = Haproxy { proc, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.get(ns, "/healthz") != Some(200) {
            if Instant::now() > deadline {
                return Err(format!("haproxy {name} never answered; log:\n{}", h.proc.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(h)
    }

    pub fn url(&self, path: &str) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("http://{a}{path}"),
            IpAddr::V6(a) => format!("http://[{a}]{path}"),
        }
    }

    /// The status of a GET of `path` from inside `ns` (None: no answer).
    pub fn get(&self, ns: &NetNs, path: &str) -> Option<u16> {
        let url = self.url(path);
        ns.run(move || {
            let client =
                reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
            client.get(&url).send().ok().map(|r| r.status().as_u16())
        })
    }
}
