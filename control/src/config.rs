//! The TOML configuration: serde structs, and validation that reports every problem with its
//! line and key path, so `spillway check` can list them all at once.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    path::{Path, PathBuf},
};

use crate::cluster::config::Role;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};
use spillway_common::maps::{MAX_CNAME_LEN, MAX_CUSTOMERS, MAX_ORIGIN_ADDRS, MAX_PROXY_ADDRS};
use toml::Spanned;

pub use crate::controller::scrape::MetricsMapping;

/// Largest TTL allowed by RFC 2181 §8.
pub const MAX_TTL: u32 = 0x7fff_ffff;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub api: ApiConfig,
    /// Where the market, the ledger and the API's changes are kept; an edge of a cluster keeps
    /// nothing and needs none.
    #[serde(default)]
    pub store: Option<StoreConfig>,
    /// Present: the market is on, and a customer's names answer with proxies only while one
    /// of its contracts is in force. Absent: customers are served at their estimate always.
    pub market: Option<MarketConfig>,
    /// The traffic controller (runs with the market); defaults when absent.
    #[serde(default)]
    pub controller: ControllerConfig,
    /// Response rate limiting, in XDP and in userspace; on unless `enabled = false`.
    #[serde(default)]
    pub rrl: RrlConfig,
    /// How the proxies' metrics are read, for every proxy without its own `metrics`.
    #[serde(default)]
    pub proxy_metrics: MetricsMapping,
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<Spanned<ProxyConfig>>,
    #[serde(default, rename = "customer")]
    pub customers: Vec<Spanned<CustomerConfig>>,
    /// Present: this host is one of a cluster's edges or control hosts (etcd holds what
    /// every edge answers from). Absent: one host does everything.
    pub cluster: Option<crate::cluster::config::ClusterConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Zones this server is authoritative for.
    pub zones: Vec<String>,
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Userspace UDP+TCP listeners; empty = XDP only.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Interfaces to attach the XDP program to; empty = no XDP.
    #[serde(default)]
    pub xdp_interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpModeConfig,
    /// Where the XDP program's maps and links are pinned, so that XDP keeps answering when
    /// the daemon stops and the next one takes over without a gap.
    #[serde(default = "default_bpffs_dir")]
    pub bpffs_dir: PathBuf,
    /// CPUs the userspace DNS threads run on (one UDP socket and thread per CPU listed);
    /// empty = any CPU, one socket per CPU.
    #[serde(default)]
    pub dns_cpus: Vec<usize>,
    /// CPUs of everything else: the API, the market, the controller, the scrapes and the
    /// store's writes; empty = any CPU. With `dns_cpus`, it keeps a CPU for DNS alone.
    #[serde(default)]
    pub background_cpus: Vec<usize>,
    /// Destination addresses the XDP program answers for; empty = the host's addresses (as
    /// they are when the daemon starts). Queries to any other address go to the kernel.
    #[serde(default)]
    pub xdp_addresses: Vec<IpAddr>,
    /// Addresses of in-zone nameserver names (glue), e.g. `{ "ns1.cdn.example.net." = ["192.0.2.53"] }`.
    #[serde(default)]
    pub glue: std::collections::BTreeMap<String, Vec<IpAddr>>,
    /// Customers with `draw = "resolver"` get a new seed every this many seconds (of Unix
    /// time, so every edge re-draws at once): which resolvers get the proxies is re-drawn.
    #[serde(default = "default_resolver_redraw_s")]
    pub resolver_redraw_s: u32,
    /// The TTLs a buyer may set for itself through the API (`PUT /v1/customers/{id}/settings`),
    /// seconds; the operator's own changes are bound only by the largest TTL.
    #[serde(default = "default_buyer_ttl_min_s")]
    pub buyer_ttl_min_s: u32,
    #[serde(default = "default_buyer_ttl_max_s")]
    pub buyer_ttl_max_s: u32,
}

fn default_resolver_redraw_s() -> u32 {
    3600
}

fn default_buyer_ttl_min_s() -> u32 {
    5
}

fn default_buyer_ttl_max_s() -> u32 {
    3600
}

/// Response rate limiting (`[rrl]`), on the model of BIND's and Knot's: see
/// `spillway_common::rrl`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrlConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// UDP responses a second per client /24 (IPv6: /56) and class (per name and type for
    /// answers and NODATA).
    #[serde(default = "default_rrl_rate")]
    pub rate: u32,
    /// Seconds of debt a flood builds up at most.
    #[serde(default = "default_rrl_window")]
    pub window_s: u32,
    /// Every `slip`-th limited response goes out truncated (TC=1); 0 = none, 1 = all.
    #[serde(default = "default_rrl_slip")]
    pub slip: u32,
    /// Prefixes never limited (besides 127.0.0.0/8 and ::1, always exempt), e.g. "10.0.0.0/8".
    #[serde(default)]
    pub exempt: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_rrl_rate() -> u32 {
    200
}
fn default_rrl_window() -> u32 {
    15
}
fn default_rrl_slip() -> u32 {
    2
}

impl Default for RrlConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate: default_rrl_rate(),
            window_s: default_rrl_window(),
            slip: default_rrl_slip(),
            exempt: Vec::new(),
        }
    }
}

impl RrlConfig {
    /// The parameters of the shared rule (rate 0 when off).
    pub fn params(&self) -> spillway_common::rrl::RrlParams {
        spillway_common::rrl::RrlParams {
            rate: if self.enabled { self.rate } else { 0 },
            window_s: self.window_s,
            slip: self.slip,
            _pad: 0,
        }
    }

    /// The exempt prefixes, localhost's included (validated: none fails to parse).
    pub fn exempt_nets(&self) -> Vec<ipnet::IpNet> {
        let mut nets: Vec<ipnet::IpNet> = self.exempt.iter().filter_map(|e| e.parse().ok()).collect();
        nets.push("127.0.0.0/8".parse().expect("valid"));
        nets.push("::1/128".parse().expect("valid"));
        nets
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeConfig {
    /// In the driver (fastest; on veth the peer needs an XDP program too).
    #[default]
    Native,
    /// Generic XDP in the kernel's network stack: works on any device.
    Skb,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Bearer token for every /v1 request.
    pub token: Option<String>,
    /// File holding the token (first line), instead of `token`.
    pub token_file: Option<PathBuf>,
    /// Writes (anything but GET) per second allowed to each buyer's token; more get 429.
    #[serde(default = "default_write_rate")]
    pub write_rate: NonZeroU32,
    /// How many writes a buyer's token may send at once above that rate.
    #[serde(default = "default_write_burst")]
    pub write_burst: NonZeroU32,
}

fn default_write_rate() -> NonZeroU32 {
    NonZeroU32::new(100).expect("non-zero")
}

fn default_write_burst() -> NonZeroU32 {
    NonZeroU32::new(200).expect("non-zero")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A SQLite file (one host).
    pub path: Option<PathBuf>,
    /// A PostgreSQL database (a cluster's control hosts), as a `postgresql://` URL or
    /// `key=value` words; its password is better in `password_file` than here.
    pub url: Option<String>,
    /// A file holding the database password alone (with `url`).
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate: the connection is TLS, the
    /// certificate checked against it and the URL's host (with `url`).
    pub ca_file: Option<PathBuf>,
    /// PEM files of the certificate (and its key) this host shows when the server asks for
    /// one (`hostssl ... cert` in pg_hba.conf); with `ca_file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl StoreConfig {
    /// TLS to PostgreSQL: set when `ca_file` is.
    pub fn tls(&self) -> Option<crate::tls::ClientTls> {
        let identity = self.cert_file.clone().zip(self.key_file.clone());
        self.ca_file.clone().map(|ca_file| crate::tls::ClientTls { ca_file, identity })
    }

    /// What is wrong with the section, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        match (&self.path, &self.url) {
            (Some(_), Some(_)) => v.push(("url", "set path (SQLite) or url (PostgreSQL), not both".into())),
            (None, None) => v.push(("path", "set path (a SQLite file) or url (a PostgreSQL database)".into())),
            (None, Some(url)) => match url.parse::<postgres::Config>() {
                Err(e) => v.push(("url", format!("not a PostgreSQL connection string: {e}"))),
                Ok(c) => {
                    if let Some(p) = crate::store::postgres::tls_problem(&c, self.ca_file.is_some()) {
                        v.push(("url", p.into()));
                    }
                }
            },
            (Some(_), None) => {}
        }
        if self.password_file.is_some() && self.url.is_none() {
            v.push(("password_file", "only with url (a SQLite file has no password)".into()));
        }
        match &self.ca_file {
            Some(_) if self.url.is_none() => {
                v.push(("ca_file", "only with url (a SQLite file is not reached over TLS)".into()))
            }
            Some(ca) => {
                if let Err(e) = crate::tls::roots(ca) {
                    v.push(("ca_file", e.to_string()));
                }
            }
            None => {}
        }
        v.extend(crate::tls::identity_problems(
            ("cert_file", self.cert_file.as_deref()),
            ("key_file", self.key_file.as_deref()),
            ("ca_file", self.ca_file.is_some()),
        ));
        v
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// Length of a sale period in seconds; periods start at multiples of it (UTC).
    #[serde(default = "default_period_s")]
    pub period_s: u32,
    /// How many periods ahead (after the current one) the book sells.
    #[serde(default = "default_horizon")]
    pub horizon_periods: u32,
    /// The network's ask price, and the default auction reserve, per million requests.
    #[serde(default)]
    pub reserve_price: f64,
    /// Length of a usage (ledger) interval in seconds.
    #[serde(default = "default_interval_s")]
    pub interval_s: u32,
    /// Share of capacity assumed in own use for hours with no usage history.
    #[serde(default = "default_assumed_own_load")]
    pub assumed_own_load: f64,
    /// Weeks of history in the hour-of-week forecast.
    #[serde(default = "default_forecast_weeks")]
    pub forecast_weeks: u32,
    /// Standard deviations of the weekly peaks added to their mean.
    #[serde(default = "default_forecast_sigmas")]
    pub forecast_sigmas: f64,
    /// Safety margin on top (0.1 = 10%).
    #[serde(default = "default_forecast_margin")]
    pub forecast_margin: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Load a proxy should stay under: buyers get `target_load x capacity - own traffic`.
    pub target_load: f64,
    /// A proxy's report is fresh this long; then its numbers are unknown (the fractions hold).
    pub report_stale_s: f64,
    /// A proxy silent this long counts as down: out of the served sum and the spare capacity.
    pub proxy_down_s: f64,
    /// A fraction is written to the data plane only when it moves at least this much.
    pub min_change: f64,
    /// The shortest TTL the controller gives proxy answers of a buyer near its purchase; 0:
    /// always the customer's TTL.
    pub proxy_ttl_min_s: u32,
    /// The queries short proxy TTLs may cost a buyer, as a multiple of those at its own TTL.
    pub max_query_factor: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            target_load: 0.9,
            report_stale_s: 3.0,
            proxy_down_s: 10.0,
            min_change: 0.005,
            proxy_ttl_min_s: 0,
            max_query_factor: 3.0,
        }
    }
}

fn default_bpffs_dir() -> PathBuf {
    PathBuf::from(crate::dataplane::pins::DEFAULT_BPFFS_DIR)
}

fn default_period_s() -> u32 {
    3600
}
fn default_horizon() -> u32 {
    24
}
fn default_interval_s() -> u32 {
    60
}
fn default_assumed_own_load() -> f64 {
    0.5
}
fn default_forecast_weeks() -> u32 {
    4
}
fn default_forecast_sigmas() -> f64 {
    2.0
}
fn default_forecast_margin() -> f64 {
    0.1
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub name: String,
    pub addresses: Vec<IpAddr>,
    pub capacity_rps: u64,
    /// The proxy's Prometheus endpoint, scraped every second for its request counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// Which series of `metrics_url` count its requests (default: `proxy_metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsMapping>,
    /// An active health check; without one, only silence takes the proxy out of the answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
}

impl ProxyConfig {
    /// What is wrong with this proxy on its own, as (key under the proxy, message): its
    /// bounds, then the rules the API's document cannot state.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut v = self.out_of_bounds();
        for (j, a) in self.addresses.iter().enumerate() {
            if !is_host_address(a) {
                v.push((format!("addresses[{j}]"), format!("{a} is not a unicast address")));
            } else if self.addresses[..j].contains(a) {
                v.push((format!("addresses[{j}]"), format!("{a} is listed twice")));
            }
        }
        for (key, url) in
            [("metrics_url", &self.metrics_url), ("health.url", &self.health.as_ref().map(|h| h.url.clone()))]
        {
            if let Some(url) = url
                && !is_http_url(url)
            {
                v.push((key.into(), format!("{url:?} is not an http(s) URL")));
            }
        }
        if let Some(m) = &self.metrics {
            v.extend(m.problems().into_iter().map(|(k, msg)| (format!("metrics.{k}"), msg)));
        }
        if let Some(h) = &self.health
            && h.timeout_ms > h.interval_ms
        {
            v.push(("health.timeout_ms".into(), format!("{} is above interval_ms ({})", h.timeout_ms, h.interval_ms)));
        }
        v
    }

    /// The problems that are bounds of single values (the API's document states them: 400).
    pub fn out_of_bounds(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if self.name.is_empty() || self.name.len() > 63 || !self.name.bytes().all(|b| b.is_ascii_graphic()) {
            v.push(("name".into(), "must be 1 to 63 printable characters without spaces".into()));
        }
        if self.addresses.is_empty() {
            v.push(("addresses".into(), "at least one address is needed".into()));
        }
        if self.capacity_rps == 0 || self.capacity_rps > crate::market::MAX_RPS {
            v.push(("capacity_rps".into(), format!("must be between 1 and {}", crate::market::MAX_RPS)));
        }
        if let Some(h) = &self.health {
            let bounds = [
                ("interval_ms", h.interval_ms, 100, 60_000),
                ("timeout_ms", h.timeout_ms, 10, 60_000),
                ("rise", u64::from(h.rise), 1, 10),
                ("fall", u64::from(h.fall), 1, 10),
            ];
            for (key, n, min, max) in bounds {
                if !(min..=max).contains(&n) {
                    v.push((format!("health.{key}"), format!("{n} is not within {min}..={max}")));
                }
            }
        }
        v
    }
}

fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// An active health check of a proxy, as HAProxy's `check inter .. fall .. rise ..`: an HTTP
/// GET of `url` every `interval_ms`; an answer of 2xx or 3xx within `timeout_ms` passes.
/// `fall` failures in a row take the proxy out of the answers, `rise` passes in a row bring it
/// back. A proxy starts as up (a restart does not empty the answers).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub url: String,
    #[serde(default = "default_check_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_check_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_check_count")]
    pub rise: u32,
    #[serde(default = "default_check_count")]
    pub fall: u32,
}

fn default_check_interval_ms() -> u64 {
    1000
}
fn default_check_timeout_ms() -> u64 {
    500
}
fn default_check_count() -> u32 {
    2
}

impl HealthCheck {
    /// The longest a dead proxy stays in the answers after it stops answering checks.
    pub fn detect_ms(&self) -> u64 {
        u64::from(self.fall) * self.interval_ms + self.timeout_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    Origin,
    Cname,
}

/// How a query's side (proxies or overflow) is drawn (see `spillway_common::maps::draw`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Draw {
    /// Per query: the fraction is the share of answers.
    #[default]
    Query,
    /// Per resolver prefix (/24, /56): the fraction is the share of resolvers, each keeping its
    /// side until `server.resolver_redraw_s` re-draws them.
    Resolver,
}

impl Draw {
    pub fn is_query(&self) -> bool {
        *self == Draw::Query
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    RoundRobin,
    Weighted,
    Hash,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerConfig {
    pub id: String,
    pub names: Vec<String>,
    /// Sub-zones the buyer delegates to us by NS (e.g. `shop.example.`): we answer SOA/NS for
    /// their apex, and the customer's names may lie inside them (the apex included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    #[serde(default)]
    pub origin_addresses: Vec<IpAddr>,
    /// Weights for `assignment = "weighted"`, one per origin address; default 1 each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_weights: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_cname: Option<String>,
    pub overflow: Overflow,
    #[serde(default = "default_assignment")]
    pub assignment: Assignment,
    /// The buyer's estimate: the share of its queries to answer with proxies.
    pub fraction: f64,
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default, skip_serializing_if = "Draw::is_query")]
    pub draw: Draw,
    /// The buyer's own API token: it sees and changes only its own bids, orders, contracts
    /// and usage.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
}

fn default_assignment() -> Assignment {
    Assignment::RoundRobin
}

fn default_ttl() -> u32 {
    30
}

/// An address an answer may name: a host, not "any", a group or the limited broadcast.
fn is_host_address(a: &IpAddr) -> bool {
    !(a.is_unspecified() || a.is_multicast() || matches!(a, IpAddr::V4(v4) if v4.is_broadcast()))
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigIssue {
    pub line: Option<usize>,
    /// Key path, e.g. `customer[1] (id "shop").fraction`.
    pub path: String,
    pub message: String,
}

/// Every problem found, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match issue.line {
                Some(line) => write!(f, "{}:{}: ", self.file, line)?,
                None => write!(f, "{}: ", self.file)?,
            }
            if issue.path.is_empty() {
                write!(f, "{}", issue.message)?;
            } else {
                write!(f, "{}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> crate::Result<Config> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::Error::Read { path: path.to_owned(), source })?;
        let file = path.display().to_string();
        let config = Config::parse(&text, &file)?;
        // The operator's token from token_file takes part in the uniqueness rule too.
        if config.api.token_file.is_some() {
            let issue = |path: String, message: String| ConfigErrors {
                file: file.clone(),
                issues: vec![ConfigIssue { line: None, path, message }],
            };
            let token = config.api_token().map_err(|e| issue("api.token_file".into(), e.to_string()))?;
            if token.is_empty() {
                return Err(issue("api.token_file".into(), "its first line is empty".into()).into());
            }
            if let Some((i, c)) = config.customers().enumerate().find(|(_, c)| c.token.as_deref() == Some(&token)) {
                let at = format!("customer[{i}] (id {:?}).token", c.id);
                return Err(
                    issue(at, "is the same as another token (the operator's, from api.token_file)".into()).into()
                );
            }
        }
        Ok(config)
    }

    /// Parse and validate config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let lines = LineIndex::new(text);
        let config: Config = toml::from_str(text).map_err(|e| ConfigErrors {
            file: file.to_owned(),
            issues: vec![ConfigIssue {
                line: e.span().map(|s| lines.line(s.start)),
                path: String::new(),
                message: e.message().to_owned(),
            }],
        })?;
        let issues = config.validate(&lines, text);
        if issues.is_empty() { Ok(config) } else { Err(ConfigErrors { file: file.to_owned(), issues }) }
    }

    pub fn proxies(&self) -> impl Iterator<Item = &ProxyConfig> {
        self.proxies.iter().map(|p| p.get_ref())
    }

    pub fn customers(&self) -> impl Iterator<Item = &CustomerConfig> {
        self.customers.iter().map(|c| c.get_ref())
    }

    /// The API token, from `token` or the first line of `token_file`.
    pub fn api_token(&self) -> crate::Result<String> {
        if let Some(t) = &self.api.token {
            return Ok(t.clone());
        }
        let path = self.api.token_file.as_ref().expect("validated: token or token_file");
        let text = std::fs::read_to_string(path).map_err(|source| crate::Error::Read { path: path.clone(), source })?;
        Ok(text.lines().next().unwrap_or("").trim().to_owned())
    }

    /// Check customers added at run time (through the API) by the same rules as the file:
    /// `added` come after the file's customers; returns the problems of the added ones only,
    /// as `id.key: message`.
    pub fn check_added_customers(&self, added: &[CustomerConfig]) -> Vec<String> {
        let first = self.customers.len();
        self.customer_problems(None, added, |n| added.get(n.checked_sub(first)?))
    }

    /// Check a config-file customer whose settings changed at run time (through the API), with
    /// the customers added through the API after it: the problems of `changed` only, as
    /// `id.key: message`. Empty when `changed` is not a file customer's id.
    pub fn check_changed_file_customer(&self, changed: &CustomerConfig, added: &[CustomerConfig]) -> Vec<String> {
        let Some(at) = self.customers().position(|c| c.id == changed.id) else { return Vec::new() };
        self.customer_problems(Some((at, changed)), added, |n| (n == at).then_some(changed))
    }

    /// Validate the file's customers (one of them replaced) followed by `added`, and keep the
    /// problems of the customers `pick` returns for a customer index.
    fn customer_problems<'a>(
        &self,
        replace: Option<(usize, &CustomerConfig)>,
        added: &[CustomerConfig],
        pick: impl Fn(usize) -> Option<&'a CustomerConfig>,
    ) -> Vec<String> {
        let mut all = self.clone();
        if let Some((at, c)) = replace {
            all.customers[at] = Spanned::new(0..0, c.clone());
        }
        all.customers.extend(added.iter().cloned().map(|c| Spanned::new(0..0, c)));
        let issues = all.validate(&LineIndex::new(""), "");
        issues
            .into_iter()
            .filter_map(|i| {
                let (head, rest) = i.path.split_once(']')?;
                let n: usize = head.strip_prefix("customer[")?.parse().ok()?;
                let c = pick(n)?;
                let key = rest.split_once(").").map_or("", |(_, k)| k);
                let at = if key.is_empty() { c.id.clone() } else { format!("{}.{key}", c.id) };
                Some(format!("{at}: {}", i.message))
            })
            .collect()
    }

    fn validate(&self, lines: &LineIndex, text: &str) -> Vec<ConfigIssue> {
        let mut v = Validator { issues: Vec::new(), text, spans: Vec::new() };
        let s = &self.server;
        if s.zones.is_empty() {
            v.push(None, "server.zones", "at least one zone is needed".into());
        }
        let mut zones = Vec::new();
        for (i, z) in s.zones.iter().enumerate() {
            match parse_name(z) {
                Ok(n) => zones.push(n),
                Err(e) => v.push(None, &format!("server.zones[{i}]"), e),
            }
        }
        for (i, n) in s.nameservers.iter().enumerate() {
            if let Err(e) = parse_name(n) {
                v.push(None, &format!("server.nameservers[{i}]"), e);
            }
        }
        for (n, addrs) in &s.glue {
            if !s.nameservers.iter().any(|ns| parse_name(ns).ok() == parse_name(n).ok()) {
                v.push(None, &format!("server.glue.{n:?}"), "is not one of server.nameservers".into());
            }
            if addrs.is_empty() {
                v.push(None, &format!("server.glue.{n:?}"), "needs at least one address".into());
            }
        }
        let role = self.cluster.as_ref().map(|c| c.role);
        if role == Some(Role::Control) {
            if !s.listen.is_empty() || !s.xdp_interfaces.is_empty() {
                v.push(
                    None,
                    "server",
                    "a control host (cluster.role = \"control\") answers no DNS: remove listen and \
                     xdp_interfaces, or make it role = \"both\""
                        .into(),
                );
            }
        } else if s.listen.is_empty() && s.xdp_interfaces.is_empty() {
            v.push(None, "server", "neither listen nor xdp_interfaces is set: nothing would answer".into());
        }
        match &self.store {
            None if role != Some(Role::Edge) => v.push(
                None,
                "store",
                "the [store] section (path = ... or url = ...) is needed on every host but a cluster's edges".into(),
            ),
            Some(st) => {
                for (key, message) in st.problems() {
                    v.push(None, &format!("store.{key}"), message);
                }
            }
            None => {}
        }
        if let Some(c) = &self.cluster {
            for (key, message) in c.problems() {
                v.push(None, &format!("cluster.{key}"), message);
            }
            if c.role.serves_dns() && c.metrics_url.is_none() && self.api.listen.ip().is_unspecified() {
                v.push(
                    None,
                    "cluster.metrics_url",
                    format!(
                        "needed when api.listen is {}: the URL the control hosts read this edge's /metrics at",
                        self.api.listen
                    ),
                );
            }
            if c.role == Role::Edge {
                let moved =
                    "belongs in the control hosts' config: an edge (cluster.role = \"edge\") takes it from etcd";
                if !self.customers.is_empty() {
                    v.push(None, "customer", moved.into());
                }
                if !self.proxies.is_empty() {
                    v.push(None, "proxy", moved.into());
                }
                if self.market.is_some() {
                    v.push(None, "market", moved.into());
                }
            }
        }
        let mut seen_if = HashSet::new();
        for (i, ifname) in s.xdp_interfaces.iter().enumerate() {
            if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
                v.push(None, &format!("server.xdp_interfaces[{i}]"), format!("{ifname:?} is not an interface name"));
            }
            if !seen_if.insert(ifname) {
                v.push(None, &format!("server.xdp_interfaces[{i}]"), format!("{ifname:?} is listed twice"));
            }
        }
        let cpus = crate::affinity::cpus_configured();
        for (key, list) in [("server.dns_cpus", &s.dns_cpus), ("server.background_cpus", &s.background_cpus)] {
            let mut seen = HashSet::new();
            for (i, &c) in list.iter().enumerate() {
                if c >= cpus {
                    v.push(
                        None,
                        &format!("{key}[{i}]"),
                        format!("CPU {c} does not exist (this host has {cpus}: 0 to {})", cpus - 1),
                    );
                } else if !seen.insert(c) {
                    v.push(None, &format!("{key}[{i}]"), format!("CPU {c} is listed twice"));
                }
            }
        }
        let mut seen_addr = HashSet::new();
        for (i, a) in s.xdp_addresses.iter().enumerate() {
            if a.is_unspecified() || a.is_multicast() {
                v.push(None, &format!("server.xdp_addresses[{i}]"), format!("{a} is not a unicast address"));
            } else if !seen_addr.insert(a) {
                v.push(None, &format!("server.xdp_addresses[{i}]"), format!("{a} is listed twice"));
            }
        }
        if s.xdp_addresses.len() > spillway_common::maps::MAX_LOCAL_ADDRS as usize {
            v.push(
                None,
                "server.xdp_addresses",
                format!("at most {} addresses", spillway_common::maps::MAX_LOCAL_ADDRS),
            );
        }
        let r = &self.rrl;
        if r.rate == 0 || r.rate > 1_000_000 {
            v.push(None, "rrl.rate", format!("{} is outside 1..=1000000 (set enabled = false to turn it off)", r.rate));
        }
        if r.window_s == 0 || r.window_s > 3600 {
            v.push(None, "rrl.window_s", format!("{} is outside 1..=3600", r.window_s));
        }
        if r.slip > 10 {
            v.push(None, "rrl.slip", format!("{} is outside 0..=10", r.slip));
        }
        if r.exempt.len() + 2 > spillway_common::rrl::MAX_RRL_EXEMPT as usize {
            v.push(None, "rrl.exempt", format!("at most {} prefixes", spillway_common::rrl::MAX_RRL_EXEMPT - 2));
        }
        for (i, e) in r.exempt.iter().enumerate() {
            if let Err(err) = e.parse::<ipnet::IpNet>() {
                v.push(None, &format!("rrl.exempt[{i}]"), format!("{e:?} is not a prefix like 192.0.2.0/24: {err}"));
            }
        }
        for (key, message) in self.proxy_metrics.problems() {
            v.push(None, &format!("proxy_metrics.{key}"), message);
        }
        if !s.bpffs_dir.is_absolute() || s.bpffs_dir.to_str().is_none_or(|p| p.contains(['\n', '\0'])) {
            v.push(None, "server.bpffs_dir", format!("{} must be an absolute path", s.bpffs_dir.display()));
        }
        if s.resolver_redraw_s == 0 || s.resolver_redraw_s > 604_800 {
            v.push(
                None,
                "server.resolver_redraw_s",
                format!("{} is not within 1..=604800 (a week)", s.resolver_redraw_s),
            );
        }
        if s.buyer_ttl_max_s > MAX_TTL {
            v.push(None, "server.buyer_ttl_max_s", format!("{} is above the largest TTL {MAX_TTL}", s.buyer_ttl_max_s));
        }
        if s.buyer_ttl_min_s > s.buyer_ttl_max_s {
            v.push(
                None,
                "server.buyer_ttl_min_s",
                format!("{} is above server.buyer_ttl_max_s ({})", s.buyer_ttl_min_s, s.buyer_ttl_max_s),
            );
        }
        match (&self.api.token, &self.api.token_file) {
            (None, None) => v.push(None, "api", "set token or token_file".into()),
            (Some(_), Some(_)) => v.push(None, "api", "set token or token_file, not both".into()),
            (Some(t), None) if t.trim().is_empty() => v.push(None, "api.token", "must not be empty".into()),
            _ => {}
        }

        if let Some(m) = &self.market {
            if m.period_s == 0 || 86_400 % m.period_s != 0 {
                v.push(None, "market.period_s", format!("{} must divide a day (86400) evenly", m.period_s));
            }
            if m.horizon_periods == 0 || m.horizon_periods > 10_000 {
                v.push(None, "market.horizon_periods", "must be between 1 and 10000".into());
            }
            if let Err(e) = crate::market::units::Price::from_decimal(m.reserve_price) {
                v.push(None, "market.reserve_price", e);
            }
            if m.interval_s == 0 || 86_400 % m.interval_s != 0 {
                v.push(None, "market.interval_s", format!("{} must divide a day (86400) evenly", m.interval_s));
            }
            if !(0.0..=1.0).contains(&m.assumed_own_load) {
                v.push(None, "market.assumed_own_load", format!("{} is outside [0, 1]", m.assumed_own_load));
            }
            if m.forecast_weeks == 0 || m.forecast_weeks > 52 {
                v.push(None, "market.forecast_weeks", "must be between 1 and 52".into());
            }
            if !(0.0..=10.0).contains(&m.forecast_sigmas) {
                v.push(None, "market.forecast_sigmas", "must be between 0 and 10".into());
            }
            if !(0.0..=10.0).contains(&m.forecast_margin) {
                v.push(None, "market.forecast_margin", "must be between 0 and 10".into());
            }
        }
        let ctl = &self.controller;
        if !(ctl.target_load > 0.0 && ctl.target_load <= 1.0) {
            v.push(None, "controller.target_load", format!("{} is outside (0, 1]", ctl.target_load));
        }
        if !(ctl.report_stale_s > 0.0 && ctl.report_stale_s < ctl.proxy_down_s) {
            v.push(None, "controller.report_stale_s", "must be above 0 and below controller.proxy_down_s".into());
        }
        if !(0.0..=0.5).contains(&ctl.min_change) {
            v.push(None, "controller.min_change", format!("{} is outside [0, 0.5]", ctl.min_change));
        }
        if ctl.proxy_ttl_min_s > 3600 {
            v.push(None, "controller.proxy_ttl_min_s", format!("{} is above 3600", ctl.proxy_ttl_min_s));
        }
        if !(1.0..=100.0).contains(&ctl.max_query_factor) {
            v.push(None, "controller.max_query_factor", format!("{} is outside [1, 100]", ctl.max_query_factor));
        }
        let mut tokens: HashSet<&str> = self.api.token.iter().map(String::as_str).collect();

        let mut proxy_names = HashSet::new();
        let (mut v4, mut v6) = (0, 0);
        for (i, p) in self.proxies.iter().enumerate() {
            let header = lines.line(p.span().start);
            v.spans.push((header, p.span()));
            let line = Some(header);
            let p = p.get_ref();
            let at = format!("proxy[{i}] (name {:?})", p.name);
            if !proxy_names.insert(p.name.as_str()) {
                v.push(line, &at, "a proxy of this name is already defined".into());
            }
            for (key, message) in p.problems() {
                v.push(line, &format!("{at}.{key}"), message);
            }
            v4 += p.addresses.iter().filter(|a| a.is_ipv4()).count();
            v6 += p.addresses.iter().filter(|a| a.is_ipv6()).count();
        }
        if v4 > MAX_PROXY_ADDRS || v6 > MAX_PROXY_ADDRS {
            v.push(
                None,
                "proxy",
                format!("at most {MAX_PROXY_ADDRS} proxy addresses per family (have {v4} IPv4, {v6} IPv6)"),
            );
        }

        let mut ids = HashSet::new();
        let mut owner: HashMap<Name, &str> = HashMap::new();
        let mut delegated: Vec<(Name, &str)> = Vec::new();
        // Every zone we answer for, ours and the customers', for the CNAME loop check.
        let answered: Vec<Name> = zones
            .iter()
            .cloned()
            .chain(self.customers.iter().flat_map(|c| c.get_ref().zones.iter().filter_map(|z| parse_name(z).ok())))
            .collect();
        for (i, c) in self.customers.iter().enumerate() {
            let header = lines.line(c.span().start);
            v.spans.push((header, c.span()));
            let line = Some(header);
            let c = c.get_ref();
            let at = format!("customer[{i}] (id {:?})", c.id);
            if i >= MAX_CUSTOMERS as usize {
                v.push(line, &at, format!("one customer too many: an edge holds at most {MAX_CUSTOMERS}"));
            }
            if c.id.is_empty() || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
                v.push(line, &format!("{at}.id"), "must be non-empty letters, digits, '-', '_' or '.'".into());
            }
            if !ids.insert(c.id.as_str()) {
                v.push(line, &at, "a customer of this id is already defined".into());
            }
            if c.names.is_empty() {
                v.push(line, &format!("{at}.names"), "at least one name is needed".into());
            }
            let mut own_zones = Vec::new();
            for (j, z) in c.zones.iter().enumerate() {
                let key = format!("{at}.zones[{j}]");
                match parse_name(z) {
                    Err(e) => v.push(line, &key, e),
                    Ok(zone) => {
                        if zones.iter().any(|ours| ours.zone_of(&zone) || zone.zone_of(ours)) {
                            v.push(line, &key, format!("{z:?} overlaps server.zones"));
                        } else if let Some((_, other)) =
                            delegated.iter().find(|(d, _)| d.zone_of(&zone) || zone.zone_of(d))
                        {
                            v.push(line, &key, format!("{z:?} overlaps a zone of customer {other:?}"));
                        } else {
                            delegated.push((zone.clone(), &c.id));
                        }
                        own_zones.push(zone);
                    }
                }
            }
            for (j, n) in c.names.iter().enumerate() {
                let key = format!("{at}.names[{j}]");
                match parse_name(n) {
                    Err(e) => v.push(line, &key, e),
                    Ok(name) => {
                        let in_own = own_zones.iter().any(|z| z.zone_of(&name));
                        if !in_own && !zones.iter().any(|z| z.zone_of(&name)) {
                            v.push(line, &key, format!("{n:?} is not inside server.zones or the customer's zones"));
                        } else if zones.contains(&name) {
                            v.push(line, &key, format!("{n:?} is a zone apex; customer names live below it"));
                        } else if own_zones.contains(&name) && c.overflow == Overflow::Cname {
                            v.push(line, &key, format!("{n:?} is a zone apex, where a CNAME cannot stand"));
                        }
                        if let Some(prev) = owner.insert(name.to_lowercase(), &c.id) {
                            v.push(line, &key, format!("{n:?} is already a name of customer {prev:?}"));
                        }
                    }
                }
            }
            if !(0.0..=1.0).contains(&c.fraction) {
                v.push(line, &format!("{at}.fraction"), format!("{} is outside [0, 1]", c.fraction));
            }
            if let Some(t) = &c.token {
                if t.trim().is_empty() {
                    v.push(line, &format!("{at}.token"), "must not be empty".into());
                } else if !tokens.insert(t.as_str()) {
                    v.push(line, &format!("{at}.token"), "is the same as another token".into());
                }
            }
            if c.id == crate::market::NETWORK {
                v.push(line, &format!("{at}.id"), "\"network\" is reserved for the network's own asks".into());
            }
            if c.ttl > MAX_TTL {
                v.push(line, &format!("{at}.ttl"), format!("{} is above the largest TTL {MAX_TTL}", c.ttl));
            }
            let o4 = c.origin_addresses.iter().filter(|a| a.is_ipv4()).count();
            let o6 = c.origin_addresses.len() - o4;
            if o4 > MAX_ORIGIN_ADDRS || o6 > MAX_ORIGIN_ADDRS {
                v.push(line, &format!("{at}.origin_addresses"), format!("at most {MAX_ORIGIN_ADDRS} per family"));
            }
            let unique: HashSet<_> = c.origin_addresses.iter().collect();
            if unique.len() != c.origin_addresses.len() {
                v.push(line, &format!("{at}.origin_addresses"), "an address is listed twice".into());
            }
            for (j, a) in c.origin_addresses.iter().enumerate() {
                if !is_host_address(a) {
                    v.push(line, &format!("{at}.origin_addresses[{j}]"), format!("{a} is not a unicast address"));
                }
            }
            match c.overflow {
                Overflow::Origin if c.origin_addresses.is_empty() => v.push(
                    line,
                    &format!("{at}.origin_addresses"),
                    "overflow = \"origin\" needs at least one origin address".into(),
                ),
                Overflow::Cname if c.origin_cname.is_none() => {
                    v.push(line, &format!("{at}.origin_cname"), "overflow = \"cname\" needs origin_cname".into())
                }
                _ => {}
            }
            if let Some(cn) = &c.origin_cname {
                match parse_name(cn) {
                    Err(e) => v.push(line, &format!("{at}.origin_cname"), e),
                    Ok(n) if c.names.iter().filter_map(|x| parse_name(x).ok()).any(|x| x == n) => {
                        v.push(line, &format!("{at}.origin_cname"), "points at one of the customer's own names".into())
                    }
                    // The overflow would come back to us: a resolver following it asks us
                    // again, and the answer can be the proxies or another CNAME.
                    Ok(n) => {
                        if let Some(z) = answered.iter().find(|z| z.zone_of(&n)) {
                            v.push(
                                line,
                                &format!("{at}.origin_cname"),
                                format!("{cn:?} is inside {z}, a zone we answer for: the overflow must leave us"),
                            )
                        }
                    }
                }
            }
            if let Some(w) = &c.origin_weights {
                if w.len() != c.origin_addresses.len() {
                    v.push(
                        line,
                        &format!("{at}.origin_weights"),
                        format!("{} weights for {} origin addresses", w.len(), c.origin_addresses.len()),
                    );
                }
                if w.contains(&0) {
                    v.push(line, &format!("{at}.origin_weights"), "weights must be at least 1".into());
                }
                if w.iter().map(|&x| x as u64).sum::<u64>() > u32::MAX as u64 {
                    v.push(line, &format!("{at}.origin_weights"), "weights add up to more than 2^32-1".into());
                }
            }
        }
        v.issues.sort_by_key(|i| i.line.unwrap_or(0));
        v.issues
    }
}

struct Validator<'a> {
    issues: Vec<ConfigIssue>,
    text: &'a str,
    /// (header line, byte span) of each array-of-tables entry seen so far.
    spans: Vec<(usize, std::ops::Range<usize>)>,
}

impl Validator<'_> {
    /// Record a problem. `line` is the entry's header line; when the path ends in a key
    /// (`...fraction`, `...names[0]`), the line of that key inside the entry is used instead.
    fn push(&mut self, line: Option<usize>, path: &str, message: String) {
        let line = line.map(|l| self.key_line(l, path).unwrap_or(l));
        self.issues.push(ConfigIssue { line, path: path.to_owned(), message });
    }

    fn key_line(&self, header_line: usize, path: &str) -> Option<usize> {
        let (_, key) = path.rsplit_once(").")?;
        let key = key.split('[').next()?;
        let (_, span) = self.spans.iter().find(|(l, _)| *l == header_line)?;
        // The entry runs from its header to the next table header.
        let body = self.text.get(span.start..)?;
        body.lines().enumerate().skip(1).take_while(|(_, l)| !l.trim_start().starts_with('[')).find_map(|(i, l)| {
            let rest = l.trim_start().strip_prefix(key)?;
            rest.trim_start().starts_with('=').then_some(header_line + i)
        })
    }
}

/// A fully qualified DNS name; a missing trailing dot is added.
pub fn parse_name(text: &str) -> Result<Name, String> {
    let mut name = Name::from_ascii(text).map_err(|e| format!("{text:?} is not a DNS name: {e}"))?;
    name.set_fqdn(true);
    if name.is_root() {
        return Err("the root is not allowed here".into());
    }
    let wire_len = name.len();
    if wire_len > MAX_CNAME_LEN {
        return Err(format!("{text:?} is longer than 255 bytes in wire format"));
    }
    Ok(name)
}

/// Byte offset -> 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_common::rrl::RrlParams;

    pub const EXAMPLE: &str = r#"
[server]
zones = ["cdn.example.net."]
nameservers = ["ns1.cdn.example.net."]
listen = ["0.0.0.0:53", "[::]:53"]
xdp_interfaces = ["eth0"]
xdp_mode = "native"

[api]
listen = "127.0.0.1:8053"
token = "change-me"

[store]
path = "/var/lib/spillway/spillway.db"

[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10", "2001:db8:100::10"]
capacity_rps = 20000

[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10", "2001:db8:200::10"]
origin_cname = "origin.shop.example."
overflow = "origin"
assignment = "round-robin"
fraction = 0.25
ttl = 30
"#;

    #[test]
    fn interface_example_parses() {
        let c = Config::parse(EXAMPLE, "example.toml").unwrap();
        assert_eq!(c.server.xdp_mode, XdpModeConfig::Native);
        assert_eq!(c.proxies().count(), 1);
        let shop = c.customers().next().unwrap();
        assert_eq!(shop.assignment, Assignment::RoundRobin);
        assert_eq!(shop.overflow, Overflow::Origin);
        assert_eq!(shop.fraction, 0.25);
        assert_eq!(c.api_token().unwrap(), "change-me");
    }

    #[test]
    fn cluster_roles_are_checked() {
        let cluster = "\n[cluster]\nrole = \"ROLE\"\netcd_endpoints = [\"http://10.0.0.1:2379\"]\n";
        let control = format!("{EXAMPLE}{}", cluster.replace("ROLE", "control"));
        let e = Config::parse(&control, "x.toml").unwrap_err().to_string();
        assert!(e.contains("answers no DNS"), "a control host with DNS listeners: {e}");
        let control = control.replace("listen = [\"0.0.0.0:53\", \"[::]:53\"]\nxdp_interfaces = [\"eth0\"]", "");
        let c = Config::parse(&control, "x.toml").unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(
            (cl.role, cl.key_prefix.as_str(), cl.lease_ttl_s, cl.timeout_ms),
            (Role::Control, "/spillway/", 5, 2000)
        );

        // An edge takes customers, proxies and the market from etcd, and needs no store.
        let edge = format!("{EXAMPLE}{}", cluster.replace("ROLE", "edge"));
        let e = Config::parse(&edge, "x.toml").unwrap_err().to_string();
        assert!(e.contains("customer: belongs in the control hosts' config"), "{e}");
        assert!(e.contains("proxy: belongs in the control hosts' config"), "{e}");
        let bare = EXAMPLE.split("[store]").next().unwrap();
        let edge = format!("{bare}{}", cluster.replace("ROLE", "edge"));
        assert!(Config::parse(&edge, "x.toml").unwrap().store.is_none());
        let e = Config::parse(bare, "x.toml").unwrap_err().to_string();
        assert!(e.contains("store: the [store] section"), "one host without a store: {e}");
        // The store: a SQLite path or a PostgreSQL URL, exactly one, and a URL that parses.
        let with_store = |section: &str| format!("{bare}[store]\n{section}\n");
        let pg =
            Config::parse(&with_store("url = \"postgresql://spillway@127.0.0.1:5432/spillway\""), "x.toml").unwrap();
        assert!(pg.store.as_ref().unwrap().url.is_some());
        for (section, key) in [
            ("path = \"/tmp/s.db\"\nurl = \"postgresql://h/db\"", "store.url: set path (SQLite) or url"),
            ("", "store.path: set path (a SQLite file) or url"),
            ("url = \"postgresql://h:notaport/db\"", "store.url: not a PostgreSQL connection string"),
            ("path = \"/tmp/s.db\"\npassword_file = \"/etc/pw\"", "store.password_file: only with url"),
            ("path = \"/tmp/s.db\"\nca_file = \"/etc/ca.pem\"", "store.ca_file: only with url"),
            ("url = \"postgresql://h/db?sslmode=require\"", "store.url: sslmode=require needs [store] ca_file"),
            ("url = \"postgresql://h/db?sslmode=disable\"\nca_file = \"/none/ca.pem\"", "store.url: sslmode=disable"),
            ("url = \"postgresql://h/db\"\nca_file = \"/none/ca.pem\"", "store.ca_file: cannot read /none/ca.pem"),
            ("url = \"postgresql://h/db\"\ncert_file = \"/none/c.pem\"", "store.key_file: is needed with cert_file"),
            (
                "url = \"postgresql://h/db\"\ncert_file = \"/none/c.pem\"\nkey_file = \"/none/c.key\"",
                "store.cert_file: a client certificate needs TLS: set ca_file too",
            ),
            ("url = \"postgresql://h/db\"\nkey_file = \"/none/c.key\"", "store.cert_file: is needed with key_file"),
        ] {
            let e = Config::parse(&with_store(section), "x.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{section}: {e}");
        }
        // Its metrics must be reachable: not at an unspecified address.
        let any = edge.replace("127.0.0.1:8053", "0.0.0.0:8053");
        assert!(Config::parse(&any, "x.toml").unwrap_err().to_string().contains("cluster.metrics_url"));
        let with_url = format!("{any}metrics_url = \"http://10.0.0.5:8053/metrics\"\n");
        assert!(Config::parse(&with_url, "x.toml").is_ok());

        // Bad values: each one named.
        let e = Config::parse(&format!("{bare}{}", cluster.replace("ROLE", "edgy")), "x.toml").unwrap_err().to_string();
        assert!(e.contains("unknown variant `edgy`"), "{e}");
        let bad = format!("{bare}\n[cluster]\nrole = \"edge\"\nkey_prefix = \"x\"\nlease_ttl_s = 1\nname = \"a b\"\n");
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        for key in ["cluster.etcd_endpoints", "cluster.key_prefix", "cluster.lease_ttl_s", "cluster.name"] {
            assert!(e.contains(key), "{key} not reported: {e}");
        }
        // TLS to etcd: the files set together, readable, with https endpoints.
        let tls = format!(
            "{bare}\n[cluster]\nrole = \"edge\"\netcd_endpoints = [\"https://10.0.0.1:2379\"]\n\
             etcd_ca_file = \"/none/ca.pem\"\netcd_cert_file = \"/none/c.pem\"\n"
        );
        let e = Config::parse(&tls, "x.toml").unwrap_err().to_string();
        for key in
            ["cluster.etcd_ca_file: cannot read /none/ca.pem", "cluster.etcd_key_file: is needed with etcd_cert_file"]
        {
            assert!(e.contains(key), "{key} not reported: {e}");
        }
    }

    #[test]
    fn market_section_defaults_and_validation() {
        assert!(Config::parse(EXAMPLE, "x.toml").unwrap().market.is_none(), "no [market]: the market is off");
        let on = format!("{EXAMPLE}\n[market]\nreserve_price = 0.5\n");
        let m = Config::parse(&on, "x.toml").unwrap().market.unwrap();
        assert_eq!((m.period_s, m.horizon_periods, m.interval_s, m.forecast_weeks), (3600, 24, 60, 4));
        assert_eq!((m.reserve_price, m.assumed_own_load, m.forecast_margin), (0.5, 0.5, 0.1));
        let bad = format!(
            "{EXAMPLE}\n[market]\nperiod_s = 7\nreserve_price = -1.0\nassumed_own_load = 2.0\nforecast_weeks = 0\n"
        );
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        for key in ["market.period_s", "market.reserve_price", "market.assumed_own_load", "market.forecast_weeks"] {
            assert!(e.contains(key), "{key} not reported: {e}");
        }
    }

    #[test]
    fn metrics_mappings_are_checked() {
        let haproxy = format!(
            "{EXAMPLE}\n[proxy_metrics]\nserved = {{ metric = \"haproxy_backend_http_requests_total\", label = \"proxy\" }}\n"
        );
        let c = Config::parse(&haproxy, "x.toml").unwrap();
        assert_eq!(c.proxy_metrics.served.label, "proxy");
        assert_eq!(c.proxy_metrics.own, None);
        let d = Config::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!(d.proxy_metrics.served.metric, "spillway_proxy_requests_total", "Spillway's own by default");
        let bad = haproxy.replace("label = \"proxy\"", "label = \"a b\"").replace(
            "capacity_rps = 20000",
            "capacity_rps = 20000\nmetrics = { served = { metric = \"-\", label = \"x\" } }",
        );
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("proxy_metrics.served.label: \"a b\" is not a Prometheus label name"), "{e}");
        assert!(e.contains("metrics.served.metric: \"-\" is not a Prometheus metric name"), "{e}");
    }

    #[test]
    fn short_proxy_ttl_keys_are_checked() {
        let c = Config::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!((c.controller.proxy_ttl_min_s, c.controller.max_query_factor), (0, 3.0), "off by default");
        let on = format!("{EXAMPLE}\n[controller]\nproxy_ttl_min_s = 5\nmax_query_factor = 2.0\n");
        let c = Config::parse(&on, "x.toml").unwrap();
        assert_eq!((c.controller.proxy_ttl_min_s, c.controller.max_query_factor), (5, 2.0));
        let bad = format!("{EXAMPLE}\n[controller]\nproxy_ttl_min_s = 3601\nmax_query_factor = 0.5\n");
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("controller.proxy_ttl_min_s") && e.contains("controller.max_query_factor"), "{e}");
    }

    #[test]
    fn answers_name_hosts_only() {
        let bad = EXAMPLE.replacen("203.0.113.10", "0.0.0.0", 1).replacen("198.51.100.10", "ff02::1", 1);
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("origin_addresses[0]: 0.0.0.0 is not a unicast address"), "{e}");
        assert!(e.contains("addresses[0]: ff02::1 is not a unicast address"), "{e}");
        let bad = EXAMPLE.replacen("203.0.113.10", "255.255.255.255", 1);
        assert!(Config::parse(&bad, "x.toml").unwrap_err().to_string().contains("255.255.255.255 is not a unicast"));
    }

    #[test]
    fn a_changed_file_customer_is_checked_among_the_others() {
        let c = Config::parse(EXAMPLE, "x.toml").unwrap();
        let mut shop = c.customers().next().unwrap().clone();
        assert!(c.check_changed_file_customer(&shop, &[]).is_empty(), "as the file has it");
        shop.overflow = Overflow::Cname;
        shop.origin_cname = None;
        let p = c.check_changed_file_customer(&shop, &[]);
        assert_eq!(p, ["shop.origin_cname: overflow = \"cname\" needs origin_cname"]);
        shop.id = "elsewhere".into();
        assert!(c.check_changed_file_customer(&shop, &[]).is_empty(), "not a file customer");
    }

    #[test]
    fn draw_and_redraw_keys_are_checked() {
        let c = Config::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!(
            (c.customers().next().unwrap().draw, c.server.resolver_redraw_s),
            (Draw::Query, 3600),
            "the defaults"
        );
        let on = EXAMPLE
            .replace("xdp_mode = \"native\"", "xdp_mode = \"native\"\nresolver_redraw_s = 600")
            .replace("id = \"shop\"", "id = \"shop\"\ndraw = \"resolver\"");
        let c = Config::parse(&on, "x.toml").unwrap();
        assert_eq!((c.customers().next().unwrap().draw, c.server.resolver_redraw_s), (Draw::Resolver, 600));
        let bad = on.replace("resolver_redraw_s = 600", "resolver_redraw_s = 0");
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("server.resolver_redraw_s"), "{e}");
        let bad = on
            .replace("resolver_redraw_s = 600", "resolver_redraw_s = 600\nbuyer_ttl_min_s = 60\nbuyer_ttl_max_s = 30");
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("server.buyer_ttl_min_s") && e.contains("above server.buyer_ttl_max_s"), "{e}");
        assert_eq!((c.server.buyer_ttl_min_s, c.server.buyer_ttl_max_s), (5, 3600), "the defaults");
        let bad = on.replace("draw = \"resolver\"", "draw = \"client\"");
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml:") && e.contains("`client`") && e.contains("resolver"), "{e}");
    }

    /// One customer more than an edge's maps hold is a config error, not a failure at load.
    #[test]
    fn customers_fit_the_maps() {
        let customer = |i: u32| {
            format!(
                "[[customer]]\nid = \"c{i}\"\nnames = [\"c{i}.cdn.example.net.\"]\norigin_addresses = [\"203.0.113.10\"]\noverflow = \"origin\"\nassignment = \"hash\"\nfraction = 0.5\nttl = 30\n"
            )
        };
        let base = EXAMPLE.split("[[customer]]").next().unwrap().to_owned();
        let mut config = base.clone();
        for i in 0..MAX_CUSTOMERS {
            config.push_str(&customer(i));
        }
        assert_eq!(Config::parse(&config, "x.toml").unwrap().customers().count(), MAX_CUSTOMERS as usize);
        config.push_str(&customer(MAX_CUSTOMERS));
        let e = Config::parse(&config, "x.toml").unwrap_err().to_string();
        let want = format!("customer[{MAX_CUSTOMERS}] (id \"c{MAX_CUSTOMERS}\"): one customer too many");
        assert!(e.contains(&want), "{e}");
    }

    #[test]
    fn cpu_lists_name_real_cpus_once() {
        let with = |dns: &str, bg: &str| {
            EXAMPLE.replacen("[server]", &format!("[server]\ndns_cpus = {dns}\nbackground_cpus = {bg}"), 1)
        };
        let c = Config::parse(&with("[0]", "[0]"), "x.toml").unwrap();
        assert_eq!((c.server.dns_cpus, c.server.background_cpus), (vec![0], vec![0]));
        let e = Config::parse(&with("[0, 0]", "[100000]"), "x.toml").unwrap_err().to_string();
        assert!(e.contains("server.dns_cpus[1]: CPU 0 is listed twice"), "{e}");
        assert!(e.contains("server.background_cpus[0]: CPU 100000 does not exist"), "{e}");
        assert!(Config::parse(EXAMPLE, "x.toml").unwrap().server.dns_cpus.is_empty(), "any CPU by default");
    }

    #[test]
    fn rate_limit_and_xdp_addresses_are_checked() {
        let c = Config::parse(EXAMPLE, "x.toml").unwrap();
        assert_eq!(c.rrl.params(), RrlParams { rate: 200, window_s: 15, slip: 2, _pad: 0 }, "on by default");
        assert_eq!(c.rrl.exempt_nets().len(), 2, "localhost, both families");
        let off = Config::parse(&format!("{EXAMPLE}\n[rrl]\nenabled = false\n"), "x.toml").unwrap();
        assert_eq!(off.rrl.params().rate, 0, "off: rate 0 for both paths");
        let bad = format!(
            "{}\n[rrl]\nrate = 0\nwindow_s = 0\nslip = 11\nexempt = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"nope\"]\n",
            EXAMPLE.replacen(
                "[server]",
                "[server]\nxdp_addresses = [\"192.0.2.1\", \"192.0.2.1\", \"0.0.0.0\", \"ff02::1\"]",
                1
            )
        );
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        for want in [
            "rrl.rate: 0 is outside 1..=1000000",
            "rrl.window_s: 0 is outside 1..=3600",
            "rrl.slip: 11 is outside 0..=10",
            "rrl.exempt[1]: \"10.0.0.0/33\" is not a prefix",
            "rrl.exempt[2]: \"nope\" is not a prefix",
            "server.xdp_addresses[1]: 192.0.2.1 is listed twice",
            "server.xdp_addresses[2]: 0.0.0.0 is not a unicast address",
            "server.xdp_addresses[3]: ff02::1 is not a unicast address",
        ] {
            assert!(e.contains(want), "{want:?} not in:\n{e}");
        }
        assert!(!e.contains("rrl.exempt[0]"), "{e}");
        let unknown = Config::parse(&format!("{EXAMPLE}\n[rrl]\nburst = 5\n"), "x.toml");
        assert!(unknown.is_err(), "unknown keys are errors");
    }

    #[test]
    fn buyer_tokens_are_distinct_and_not_the_operators() {
        let with = |t: &str| EXAMPLE.replace("ttl = 30", &format!("ttl = 30\ntoken = \"{t}\""));
        assert_eq!(
            Config::parse(&with("shop-secret"), "x.toml").unwrap().customers().next().unwrap().token.as_deref(),
            Some("shop-secret")
        );
        let e = Config::parse(&with("change-me"), "x.toml").unwrap_err().to_string();
        assert!(e.contains("token: is the same as another token"), "{e}");
        let e = Config::parse(&with(" "), "x.toml").unwrap_err().to_string();
        assert!(e.contains("token: must not be empty"), "{e}");
    }

    #[test]
    fn the_token_file_takes_part_in_the_uniqueness_rule() {
        let dir = std::env::temp_dir().join(format!("spillway-token-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, "shop-secret\n").unwrap();
        let text = EXAMPLE
            .replace("token = \"change-me\"", &format!("token_file = \"{}\"", token_file.display()))
            .replace("ttl = 30", "ttl = 30\ntoken = \"shop-secret\"");
        let path = dir.join("x.toml");
        std::fs::write(&path, &text).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.contains("customer[0] (id \"shop\").token: is the same as another token"), "{e}");
        std::fs::write(&token_file, "operator-secret\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().api_token().unwrap(), "operator-secret");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let text = EXAMPLE.replace("fraction = 0.25", "fraction = = 0.25");
        let e = Config::parse(&text, "x.toml").unwrap_err();
        assert_eq!(e.issues.len(), 1);
        assert_eq!(e.issues[0].line, Some(28));
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = EXAMPLE.replace("ttl = 30", "ttl = 30\nfracton = 0.5");
        let e = Config::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("fracton"), "{e}");
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_place() {
        let text = EXAMPLE
            .replace("fraction = 0.25", "fraction = 1.5")
            .replace("names = [\"shop.cdn.example.net.\"]", "names = [\"shop.other.example.\"]")
            .replace("capacity_rps = 20000", "capacity_rps = 0")
            .replace("overflow = \"origin\"", "overflow = \"cname\"\norigin_weights = [1]");
        let e = Config::parse(&text, "bad.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("bad.toml:19: proxy[0] (name \"edge-1\").capacity_rps: must be between 1 and"), "{s}");
        assert!(s.contains("bad.toml:29: customer[0] (id \"shop\").fraction: 1.5 is outside [0, 1]"), "{s}");
        assert!(s.contains("is not inside server.zones or the customer's zones"), "{s}");
        assert!(s.contains("1 weights for 2 origin addresses"), "{s}");
        assert_eq!(e.issues.len(), 4, "{s}");
    }

    #[test]
    fn duplicate_names_across_customers_are_rejected() {
        let text = format!(
            "{EXAMPLE}\n[[customer]]\nid = \"other\"\nnames = [\"SHOP.cdn.example.net\"]\norigin_addresses = [\"192.0.2.1\"]\noverflow = \"origin\"\nfraction = 0.1\n"
        );
        let e = Config::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("already a name of customer \"shop\""), "{e}");
    }

    #[test]
    fn delegated_zones() {
        let ok = EXAMPLE.replace(
            r#"names = ["shop.cdn.example.net."]"#,
            r#"names = ["shop.cdn.example.net.", "shop.example.", "www.shop.example."]
zones = ["shop.example."]"#,
        );
        // Its CNAME target is inside the zone it now delegates to us: a loop back to us.
        let e = Config::parse(&ok, "x.toml").unwrap_err().to_string();
        assert!(e.contains("origin_cname") && e.contains("inside shop.example., a zone we answer for"), "{e}");
        let into_ours = EXAMPLE.replace("origin.shop.example.", "origin.cdn.example.net.");
        let e = Config::parse(&into_ours, "x.toml").unwrap_err().to_string();
        assert!(e.contains("inside cdn.example.net., a zone we answer for"), "{e}");
        let ok = ok.replace("origin.shop.example.", "origin.shop-hosting.example.");
        let c = Config::parse(&ok, "x.toml").unwrap();
        assert_eq!(c.customers().next().unwrap().zones, ["shop.example."]);
        let bad = ok.replace(r#"zones = ["shop.example."]"#, r#"zones = ["sub.cdn.example.net."]"#);
        let e = Config::parse(&bad, "x.toml").unwrap_err().to_string();
        assert!(e.contains("overlaps server.zones"), "{e}");
        assert!(e.contains("\"shop.example.\" is not inside server.zones or the customer's zones"), "{e}");
        let cname = ok.replace(r#"overflow = "origin""#, r#"overflow = "cname""#);
        let e = Config::parse(&cname, "x.toml").unwrap_err().to_string();
        assert!(e.contains("where a CNAME cannot stand"), "{e}");
    }

    #[test]
    fn overflow_needs_its_target() {
        let text = EXAMPLE.replace("origin_addresses = [\"203.0.113.10\", \"2001:db8:200::10\"]\n", "");
        let e = Config::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("needs at least one origin address"), "{e}");
    }
}
