//! Real proxy software for the tests: HAProxy (Debian's 2.6) as a proxy server, on an address
//! of its own, with a health URI, its Prometheus exporter, one backend per buyer (to the
//! buyer's origin) and one for the network's own sites; nginx (Debian's) as a buyer's origin;
//! and a population of web clients that resolve a name through Spillway and fetch from
//! whichever address the answer gave. Each is stopped when dropped.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    dnswire::Query,
    netns::{NetNs, Proc},
};

/// The header HAProxy adds to what it serves: the proxy's name.
pub const SERVED_BY: &str = "x-served-by";

/// One HAProxy listening on `addr`:80 in a namespace.
pub struct Haproxy {
    pub proc: Proc,
    pub addr: IpAddr,
}

fn host_port(addr: IpAddr, port: u16) -> String {
    SocketAddr::new(addr, port).to_string()
}

/// HAProxy's config: `/healthz` answers 200 while it runs (`monitor-uri`), `/metrics` is its
/// Prometheus exporter; a request for a buyer's host name goes to the backend named by the
/// buyer's id, which fetches from its origin; anything else to the backend `own` (the
/// network's own site: a short text). Every answer carries [`SERVED_BY`].
fn haproxy_config(name: &str, addr: IpAddr, buyers: &[(&str, &str, IpAddr)]) -> String {
    let mut c = format!(
        "global\n    log stderr format raw local0 warning\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n\
         frontend fe\n    bind {}\n    monitor-uri /healthz\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20   http-response set-header {SERVED_BY} {name}\n",
        host_port(addr, 80)
    );
    for (id, host, _) in buyers {
        c += &format!("    use_backend {id} if {{ hdr(host),field(1,:) -i {host} }}\n");
    }
    c += &format!(
        "    default_backend own\n\
         backend own\n    http-request return status 200 content-type text/plain string \"{name}\\n\"\n"
    );
    for (id, _, origin) in buyers {
        c += &format!("backend {id}\n    server origin {}\n", host_port(*origin, 80));
    }
    c
}

impl Haproxy {
    /// Start HAProxy named `name` on `addr` (which must be on an interface of `ns`), serving
    /// `buyers` (id, host name, origin address), with its config and log in `dir`, and wait
    /// up to 10 s for `/healthz` to answer.
    pub fn start(
        ns: &NetNs,
        dir: &Path,
        name: &str,
        addr: IpAddr,
        buyers: &[(&str, &str, IpAddr)],
    ) -> Result<Haproxy, String> {
        let conf = dir.join(format!("haproxy-{name}.cfg"));
        std::fs::write(&conf, haproxy_config(name, addr, buyers)).map_err(|e| e.to_string())?;
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
        format!("http://{}{path}", host_port(self.addr, 80))
    }

    /// The status of a GET of `path` from inside `ns` (None: no answer).
    pub fn get(&self, ns: &NetNs, path: &str) -> Option<u16> {
        get_text(ns, &self.url(path)).map(|(status, _)| status)
    }

    /// What HAProxy's exporter counts for a backend: `haproxy_backend_http_requests_total`.
    pub fn backend_requests(&self, ns: &NetNs, backend: &str) -> u64 {
        let (_, text) = get_text(ns, &self.url("/metrics")).expect("HAProxy's exporter answers");
        let series = format!("haproxy_backend_http_requests_total{{proxy=\"{backend}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}in HAProxy's exporter"))
    }
}

/// A GET from inside `ns`: (status, body), None when nothing answered.
fn get_text(ns: &NetNs, url: &str) -> Option<(u16, String)> {
    let url = url.to_owned();
    ns.run(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
        let r = client.get(&url).send().ok()?;
        Some((r.status().as_u16(), r.text().unwrap_or_default()))
    })
}

/// One GET of `host`'s page at `addr`, as a browser sends it after resolving `host`, from
/// inside `ns`: (status, who served it ([`SERVED_BY`], or `origin`), body).
pub fn fetch(ns: &NetNs, addr: IpAddr, host: &str) -> Option<(u16, String, String)> {
    let (url, host) = (format!("http://{}/", host_port(addr, 80)), host.to_owned());
    ns.run(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().ok()?;
        let r = client.get(&url).header("host", host).send().ok()?;
        let by = r.headers().get(SERVED_BY).and_then(|v| v.to_str().ok()).unwrap_or("origin").to_owned();
        Some((r.status().as_u16(), by, r.text().unwrap_or_default()))
    })
}

/// Route the documentation ranges of the proxies (198.51.100.0/24) and origins
/// (203.0.113.0/24) from the client namespace through the server's, where [`Haproxy`] and
/// [`Nginx`] listen on addresses of its loopback (`addrs`).
pub fn route_web(client: &NetNs, server: &NetNs, via: &str, addrs: &[&str]) {
    for a in addrs {
        server.exec_ok(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"]);
    }
    for net in ["198.51.100.0/24", "203.0.113.0/24"] {
        client.exec_ok(&["ip", "route", "add", net, "via", via]);
    }
}

/// nginx serving a buyer's origin on `addr`:80: a short text naming it.
pub struct Nginx {
    pub proc: Proc,
}

impl Nginx {
    pub fn start(ns: &NetNs, dir: &Path, name: &str, addr: IpAddr) -> Result<Nginx, String> {
        let d = dir.join(format!("nginx-{name}"));
        std::fs::create_dir_all(d.join("tmp")).map_err(|e| e.to_string())?;
        let t = d.join("tmp").display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {}/nginx.pid;\nerror_log stderr warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {t};\n    proxy_temp_path {t};\n\
             \x20   fastcgi_temp_path {t};\n    uwsgi_temp_path {t};\n    scgi_temp_path {t};\n\
             \x20   server {{ listen {}; location / {{ default_type text/plain; return 200 \"origin {name}\\n\"; }} }}\n}}\n",
            d.display(),
            host_port(addr, 80)
        );
        let path = d.join("nginx.conf");
        std::fs::write(&path, conf).map_err(|e| e.to_string())?;
        let p = d.to_str().ok_or("path")?;
        let proc = ns.spawn(&["nginx", "-p", p, "-c", path.to_str().ok_or("path")?, "-e", "stderr"], d.join("log"));
        let url = format!("http://{}/", host_port(addr, 80));
        let deadline = Instant::now() + Duration::from_secs(10);
        while get_text(ns, &url).is_none() {
            if Instant::now() > deadline {
                return Err(format!("nginx {name} never answered; log:\n{}", proc.log_text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nginx { proc })
    }
}

/// Web clients in a namespace: each resolves `host` through `dns` (keeping the answer for its
/// TTL, as a resolver and a browser do) and sends GETs to the first address it got, `rate`
/// requests/s in all. Counts the answers by who served them ([`SERVED_BY`], or `origin`).
pub struct WebClients {
    stop: Arc<AtomicBool>,
    served: Arc<Mutex<BTreeMap<String, u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebClients {
    pub fn start(ns: &NetNs, dns: SocketAddr, host: &str, clients: u32, rate: u32) -> WebClients {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(BTreeMap::new()));
        let path = format!("/var/run/netns/{}", ns.name);
        let (s, c, h) = (stop.clone(), served.clone(), host.to_owned());
        let thread = std::thread::spawn(move || {
            crate::netns::enter(&path);
            let every = Duration::from_secs_f64(f64::from(clients) / f64::from(rate));
            std::thread::scope(|scope| {
                for i in 0..clients {
                    let (s, c, h) = (&s, &c, &h);
                    scope.spawn(move || web_client(dns, h, every, i, s, c));
                }
            });
        });
        WebClients { stop, served, thread: Some(thread) }
    }

    /// Requests answered so far, by who served them.
    pub fn served(&self) -> BTreeMap<String, u64> {
        self.served.lock().expect("counts").clone()
    }

    pub fn stop(&mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("web clients");
        }
        self.served()
    }
}

impl Drop for WebClients {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first A address of `host` and the answer's TTL.
fn resolve(sock: &UdpSocket, dns: SocketAddr, host: &str) -> Option<(IpAddr, u32)> {
    use hickory_proto::{op::Message, rr::RData};
    sock.send_to(&Query::new(host, 1).bytes(), dns).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let msg = Message::from_vec(&buf[..n]).ok()?;
    msg.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some((IpAddr::V4(a.0), r.ttl)),
        _ => None,
    })
}

fn web_client(
    dns: SocketAddr,
    host: &str,
    every: Duration,
    i: u32,
    stop: &AtomicBool,
    served: &Mutex<BTreeMap<String, u64>>,
) {
    let sock = UdpSocket::bind("0.0.0.0:0").expect("client socket");
    sock.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build().expect("client");
    let mut cached: Option<(IpAddr, Instant)> = None;
    // Spread the clients over the interval.
    let mut next = Instant::now() + every.mul_f64(f64::from(i % 97) / 97.0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += every;
        let addr = match cached {
            Some((a, until)) if Instant::now() < until => a,
            _ => match resolve(&sock, dns, host) {
                Some((a, ttl)) => {
                    cached = Some((a, Instant::now() + Duration::from_secs(u64::from(ttl))));
                    a
                }
                None => continue,
            },
        };
        let url = format!("http://{}/", host_port(addr, 80));
        let Ok(r) = http.get(&url).header("host", host).send() else { continue };
        if r.status().is_success() {
            let by = r.headers().get(SERVED_BY).and_then(|v| v.to_str().ok()).unwrap_or("origin").to_owned();
            *served.lock().expect("counts").entry(by).or_default() += 1;
        }
    }
}
