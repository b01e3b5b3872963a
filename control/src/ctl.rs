//! `spillway ctl`: a command-line client of the control API. Every command is one request;
//! the answer is printed as JSON (CSV for `usage --csv`).

use clap::{Args, Subcommand};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Base URL of the control API.
    #[arg(long, env = "SPILLWAY_API", default_value = "http://127.0.0.1:8053")]
    pub api: String,
    /// Bearer token: the operator's, or a buyer's (which sees only its own).
    #[arg(long, env = "SPILLWAY_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Customers and the fraction in force.
    #[command(subcommand)]
    Customers(CustomersCommand),
    /// Proxies: capacity and usage reports.
    #[command(subcommand)]
    Proxies(ProxiesCommand),
    /// A cluster: this host's role and leader, etcd, and (a control host) the live edges.
    Cluster,
    /// Capacity, forecast, sold and available per period.
    Capacity {
        /// How many periods from the current one.
        #[arg(long)]
        periods: Option<u32>,
    },
    /// Sealed-bid auctions.
    #[command(subcommand)]
    Auctions(AuctionsCommand),
    /// A period's order book (price levels).
    Book { period_start: i64 },
    /// Orders in the continuous market.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Standing orders: a bid placed in every new period until cancelled.
    #[command(subcommand)]
    Standing(StandingCommand),
    /// Contracts.
    Contracts {
        #[arg(long)]
        customer: Option<String>,
    },
    /// The ledger: usage and charges per buyer per interval.
    Usage {
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long)]
        to: Option<i64>,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// List all customers.
    List,
    /// Show one customer.
    Get { id: String },
    /// The resolver prefixes asking for a customer that draws per resolver, most first.
    Resolvers {
        id: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The customer's last hour: fraction, purchased, served and setpoint every 5 s.
    History { id: String },
    /// Override a customer's fraction (manual mode), in the data plane at once.
    SetFraction { id: String, fraction: f64 },
    /// Hand the fraction back to the control plane (auto mode).
    Auto { id: String },
    /// Add a buyer: a `[[customer]]` entry as JSON, e.g. '{"id": "news", "names": [...], ...}'.
    Add {
        #[arg(value_parser = parse_json_arg)]
        json: Value,
    },
    /// Replace the names of a buyer added through the API.
    SetNames {
        id: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set what a buyer steers itself (with the buyer's token, or the operator's): JSON of the
    /// fields to change, e.g. '{"estimate": 0.3, "overflow": "cname", "origin_cname":
    /// "cdn.shop.example.", "ttl": 20}'; fields left out keep what they were.
    Settings {
        id: String,
        #[arg(value_parser = parse_json_arg)]
        json: Value,
    },
    /// Take a customer's settings away: it answers by its entry alone again.
    ResetSettings { id: String },
    /// Give a buyer a new API token (the old one stops working); without --new-token the
    /// server makes one. The answer shows it once.
    RotateToken {
        id: String,
        #[arg(long)]
        new_token: Option<String>,
    },
}

fn parse_json_arg(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

/// A proxy's entry as `ctl proxies add` and `change` take it.
#[derive(Debug, clap::Args)]
pub struct ProxyEntry {
    /// An address the answers give for this proxy (repeatable, both families).
    #[arg(long = "address", required = true)]
    addresses: Vec<std::net::IpAddr>,
    #[arg(long)]
    capacity_rps: u64,
    /// Its Prometheus endpoint, scraped every second.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Which series count its requests, as JSON (default: the config's proxy_metrics), e.g.
    /// '{"served": {"metric": "haproxy_backend_http_requests_total", "label": "proxy"}}'.
    #[arg(long, value_parser = parse_json_arg)]
    metrics: Option<Value>,
    /// An HTTP GET health check of this URL (2xx or 3xx passes).
    #[arg(long)]
    health_url: Option<String>,
    #[arg(long, requires = "health_url", default_value_t = 1000)]
    health_interval_ms: u64,
    #[arg(long, requires = "health_url", default_value_t = 500)]
    health_timeout_ms: u64,
    #[arg(long, requires = "health_url", default_value_t = 2)]
    health_rise: u32,
    #[arg(long, requires = "health_url", default_value_t = 2)]
    health_fall: u32,
}

impl ProxyEntry {
    fn body(&self) -> Value {
        let mut body = json!({ "addresses": self.addresses, "capacity_rps": self.capacity_rps });
        if let Some(u) = &self.metrics_url {
            body["metrics_url"] = json!(u);
        }
        if let Some(m) = &self.metrics {
            body["metrics"] = m.clone();
        }
        if let Some(u) = &self.health_url {
            body["health"] = json!({
                "url": u,
                "interval_ms": self.health_interval_ms,
                "timeout_ms": self.health_timeout_ms,
                "rise": self.health_rise,
                "fall": self.health_fall,
            });
        }
        body
    }
}

#[derive(Debug, Subcommand)]
pub enum ProxiesCommand {
    List,
    Get {
        name: String,
    },
    /// Add a proxy (stored; in the answers at once).
    Add {
        name: String,
        #[command(flatten)]
        entry: ProxyEntry,
    },
    /// Replace an added proxy's entry (config-file proxies change in the file).
    Change {
        name: String,
        #[command(flatten)]
        entry: ProxyEntry,
    },
    /// No new answers name it (it still reports what it serves); kept across restarts.
    Drain {
        name: String,
    },
    Undrain {
        name: String,
    },
    /// Remove an added proxy.
    Remove {
        name: String,
    },
    /// Set a proxy's capacity in requests/s.
    SetCapacity {
        name: String,
        capacity_rps: u64,
    },
    /// Report usage since the last report: own requests and `buyer=requests` pairs.
    Report {
        name: String,
        #[arg(long, default_value_t = 0)]
        own: u64,
        /// `customer=requests`, repeatable.
        #[arg(long = "served", value_parser = parse_served)]
        served: Vec<(String, u64)>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuctionsCommand {
    List,
    Get {
        id: i64,
    },
    /// Open an auction for a future period (operator).
    Open {
        #[arg(long)]
        period_start: i64,
        #[arg(long)]
        closes_at: i64,
        #[arg(long)]
        quantity_rps: Option<u64>,
        #[arg(long)]
        reserve_price: Option<f64>,
    },
    /// Place a sealed bid.
    Bid {
        id: i64,
        #[arg(long)]
        quantity_rps: u64,
        #[arg(long)]
        max_price: f64,
        /// The buyer (the operator must name one; a buyer's token implies itself).
        #[arg(long)]
        customer: Option<String>,
    },
    /// Withdraw a bid before the auction closes.
    Withdraw {
        id: i64,
        bid: i64,
    },
    /// Clear now, before closes_at (operator).
    Clear {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    List {
        #[arg(long)]
        open: bool,
    },
    Get {
        id: i64,
    },
    /// Place a limit bid in a period's book.
    Place {
        #[arg(long)]
        period_start: i64,
        #[arg(long)]
        quantity_rps: u64,
        #[arg(long)]
        price: f64,
        /// Immediate or cancel (default: good till cancelled).
        #[arg(long)]
        ioc: bool,
        #[arg(long)]
        customer: Option<String>,
    },
    /// Buy a block of consecutive periods, all or none.
    Block {
        #[arg(long)]
        period_start: i64,
        #[arg(long)]
        periods: u32,
        #[arg(long)]
        quantity_rps: u64,
        #[arg(long)]
        price: f64,
        #[arg(long)]
        customer: Option<String>,
    },
    Cancel {
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum StandingCommand {
    List {
        #[arg(long)]
        active: bool,
    },
    Get {
        id: i64,
    },
    /// Bid for `--quantity-rps` at `--price` in every period as it opens for sale.
    Place {
        #[arg(long)]
        quantity_rps: u64,
        #[arg(long)]
        price: f64,
        /// The first period (one open now, or the next to open: the default).
        #[arg(long)]
        period_start: Option<i64>,
        #[arg(long)]
        customer: Option<String>,
    },
    /// Stop it: no more bids (those it placed stay).
    Cancel {
        id: i64,
    },
}

/// `body` with `"customer"` when one is given (the operator acting for a buyer).
fn with_customer(mut body: Value, customer: &Option<String>) -> Value {
    if let Some(c) = customer {
        body["customer"] = json!(c);
    }
    body
}

fn parse_served(s: &str) -> Result<(String, u64), String> {
    let (c, n) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected customer=requests"))?;
    Ok((c.to_owned(), n.parse().map_err(|e| format!("{s:?}: {e}"))?))
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("request to {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_ref()?))).collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

/// The request a command stands for.
fn request(command: &CtlCommand) -> (Method, String, Option<Value>) {
    use CtlCommand as C;
    let get = |p: String| (Method::GET, p, None);
    match command {
        C::Customers(CustomersCommand::List) => get("/v1/customers".into()),
        C::Customers(CustomersCommand::Get { id }) => get(format!("/v1/customers/{id}")),
        C::Customers(CustomersCommand::History { id }) => get(format!("/v1/customers/{id}/history")),
        C::Customers(CustomersCommand::Resolvers { id, limit }) => {
            get(format!("/v1/customers/{id}/resolvers?limit={limit}"))
        }
        C::Customers(CustomersCommand::SetFraction { id, fraction }) => {
            (Method::PUT, format!("/v1/customers/{id}/fraction"), Some(json!({ "fraction": fraction })))
        }
        C::Customers(CustomersCommand::Auto { id }) => {
            (Method::PUT, format!("/v1/customers/{id}/fraction"), Some(json!({ "mode": "auto" })))
        }
        C::Customers(CustomersCommand::Add { json }) => (Method::POST, "/v1/customers".into(), Some(json.clone())),
        C::Customers(CustomersCommand::Settings { id, json }) => {
            (Method::PUT, format!("/v1/customers/{id}/settings"), Some(json.clone()))
        }
        C::Customers(CustomersCommand::ResetSettings { id }) => {
            (Method::DELETE, format!("/v1/customers/{id}/settings"), None)
        }
        C::Customers(CustomersCommand::SetNames { id, names }) => {
            (Method::PUT, format!("/v1/customers/{id}/names"), Some(json!({ "names": names })))
        }
        C::Customers(CustomersCommand::RotateToken { id, new_token }) => {
            let body = match new_token {
                Some(t) => json!({ "token": t }),
                None => json!({}),
            };
            (Method::PUT, format!("/v1/customers/{id}/token"), Some(body))
        }
        C::Proxies(ProxiesCommand::List) => get("/v1/proxies".into()),
        C::Proxies(ProxiesCommand::Get { name }) => get(format!("/v1/proxies/{name}")),
        C::Proxies(ProxiesCommand::Add { name, entry }) => {
            let mut body = entry.body();
            body["name"] = json!(name);
            (Method::POST, "/v1/proxies".into(), Some(body))
        }
        C::Proxies(ProxiesCommand::Change { name, entry }) => {
            (Method::PUT, format!("/v1/proxies/{name}"), Some(entry.body()))
        }
        C::Proxies(ProxiesCommand::Drain { name }) => (Method::POST, format!("/v1/proxies/{name}/drain"), None),
        C::Proxies(ProxiesCommand::Undrain { name }) => (Method::POST, format!("/v1/proxies/{name}/undrain"), None),
        C::Proxies(ProxiesCommand::Remove { name }) => (Method::DELETE, format!("/v1/proxies/{name}"), None),
        C::Proxies(ProxiesCommand::SetCapacity { name, capacity_rps }) => {
            (Method::PUT, format!("/v1/proxies/{name}/capacity"), Some(json!({ "capacity_rps": capacity_rps })))
        }
        C::Proxies(ProxiesCommand::Report { name, own, served }) => {
            let served: serde_json::Map<String, Value> = served.iter().map(|(c, n)| (c.clone(), json!(n))).collect();
            (Method::POST, format!("/v1/proxies/{name}/report"), Some(json!({ "own_requests": own, "served": served })))
        }
        C::Capacity { periods } => {
            get(format!("/v1/capacity{}", query(&[("periods", periods.map(|p| p.to_string()))])))
        }
        C::Auctions(AuctionsCommand::List) => get("/v1/auctions".into()),
        C::Auctions(AuctionsCommand::Get { id }) => get(format!("/v1/auctions/{id}")),
        C::Auctions(AuctionsCommand::Open { period_start, closes_at, quantity_rps, reserve_price }) => {
            let mut b = json!({ "period_start": period_start, "closes_at": closes_at });
            if let Some(q) = quantity_rps {
                b["quantity_rps"] = json!(q);
            }
            if let Some(r) = reserve_price {
                b["reserve_price"] = json!(r);
            }
            (Method::POST, "/v1/auctions".into(), Some(b))
        }
        C::Auctions(AuctionsCommand::Bid { id, quantity_rps, max_price, customer }) => {
            let mut b = json!({ "quantity_rps": quantity_rps, "max_price": max_price });
            if let Some(c) = customer {
                b["customer"] = json!(c);
            }
            (Method::POST, format!("/v1/auctions/{id}/bids"), Some(b))
        }
        C::Auctions(AuctionsCommand::Withdraw { id, bid }) => {
            (Method::DELETE, format!("/v1/auctions/{id}/bids/{bid}"), None)
        }
        C::Auctions(AuctionsCommand::Clear { id }) => (Method::POST, format!("/v1/auctions/{id}/clear"), None),
        C::Book { period_start } => get(format!("/v1/book/{period_start}")),
        C::Cluster => get("/v1/cluster".into()),
        C::Orders(OrdersCommand::List { open }) => get(format!("/v1/orders{}", if *open { "?open=true" } else { "" })),
        C::Orders(OrdersCommand::Get { id }) => get(format!("/v1/orders/{id}")),
        C::Orders(OrdersCommand::Place { period_start, quantity_rps, price, ioc, customer }) => {
            let b = json!({
                "period_start": period_start,
                "quantity_rps": quantity_rps,
                "price": price,
                "tif": if *ioc { "ioc" } else { "gtc" },
            });
            (Method::POST, "/v1/orders".into(), Some(with_customer(b, customer)))
        }
        C::Orders(OrdersCommand::Cancel { id }) => (Method::DELETE, format!("/v1/orders/{id}"), None),
        C::Orders(OrdersCommand::Block { period_start, periods, quantity_rps, price, customer }) => {
            let b =
                json!({"period_start": period_start, "periods": periods, "quantity_rps": quantity_rps, "price": price});
            (Method::POST, "/v1/blocks".into(), Some(with_customer(b, customer)))
        }
        C::Standing(StandingCommand::List { active }) => {
            get(format!("/v1/standing-orders{}", if *active { "?active=true" } else { "" }))
        }
        C::Standing(StandingCommand::Get { id }) => get(format!("/v1/standing-orders/{id}")),
        C::Standing(StandingCommand::Place { quantity_rps, price, period_start, customer }) => {
            let mut b = json!({"quantity_rps": quantity_rps, "price": price});
            if let Some(p) = period_start {
                b["period_start"] = json!(p);
            }
            (Method::POST, "/v1/standing-orders".into(), Some(with_customer(b, customer)))
        }
        C::Standing(StandingCommand::Cancel { id }) => (Method::POST, format!("/v1/standing-orders/{id}/cancel"), None),
        C::Contracts { customer } => get(format!("/v1/contracts{}", query(&[("customer", customer.clone())]))),
        C::Usage { customer, from, to, csv } => get(format!(
            "/v1/usage{}",
            query(&[
                ("customer", customer.clone()),
                ("from", from.map(|v| v.to_string())),
                ("to", to.map(|v| v.to_string())),
                ("format", csv.then(|| "csv".to_owned())),
            ])
        )),
    }
}

/// Run one command; a JSON answer, or a string for CSV.
pub async fn run(args: CtlArgs) -> Result<Value, CtlError> {
    let (method, path, body) = request(&args.command);
    let url = format!("{}{}", args.api.trim_end_matches('/'), path);
    let mut req = Client::new().request(method, &url).bearer_auth(&args.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let http = |source| CtlError::Http { url: url.clone(), source };
    let resp = req.send().await.map_err(http)?;
    let status = resp.status();
    let csv = resp.headers().get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/csv"));
    if csv && status.is_success() {
        return Ok(Value::String(resp.text().await.map_err(http)?));
    }
    let value: Value = resp.json().await.map_err(http)?;
    if !status.is_success() {
        let message = value.get("error").and_then(Value::as_str).unwrap_or("(no message)").to_owned();
        return Err(CtlError::Api { status, message });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(checked: bool) -> ProxyEntry {
        ProxyEntry {
            addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            capacity_rps: 100,
            metrics_url: checked.then(|| "http://192.0.2.1:8404/metrics".into()),
            metrics: checked
                .then(|| json!({"served": {"metric": "haproxy_backend_http_requests_total", "label": "proxy"}})),
            health_url: checked.then(|| "http://192.0.2.1/healthz".into()),
            health_interval_ms: 1000,
            health_timeout_ms: 500,
            health_rise: 2,
            health_fall: 3,
        }
    }

    /// Every ctl command is a documented API operation, with a body that fits the document.
    #[test]
    fn commands_match_the_openapi_document() {
        let doc = crate::api::openapi::document();
        let commands = [
            CtlCommand::Customers(CustomersCommand::List),
            CtlCommand::Customers(CustomersCommand::Get { id: "shop".into() }),
            CtlCommand::Customers(CustomersCommand::Resolvers { id: "shop".into(), limit: 10 }),
            CtlCommand::Customers(CustomersCommand::History { id: "shop".into() }),
            CtlCommand::Customers(CustomersCommand::SetFraction { id: "shop".into(), fraction: 0.5 }),
            CtlCommand::Customers(CustomersCommand::Auto { id: "shop".into() }),
            CtlCommand::Customers(CustomersCommand::Add {
                json: json!({"id": "n", "names": ["n.cdn.example.net."], "overflow": "origin", "fraction": 0.1}),
            }),
            CtlCommand::Customers(CustomersCommand::SetNames {
                id: "n".into(),
                names: vec!["m.cdn.example.net.".into()],
            }),
            CtlCommand::Customers(CustomersCommand::Settings {
                id: "shop".into(),
                json: json!({"estimate": 0.3, "overflow": "cname", "origin_cname": "cdn.shop.example.", "ttl": 20}),
            }),
            CtlCommand::Customers(CustomersCommand::ResetSettings { id: "shop".into() }),
            CtlCommand::Customers(CustomersCommand::RotateToken { id: "n".into(), new_token: None }),
            CtlCommand::Customers(CustomersCommand::RotateToken {
                id: "n".into(),
                new_token: Some("a-new-token".into()),
            }),
            CtlCommand::Proxies(ProxiesCommand::List),
            CtlCommand::Proxies(ProxiesCommand::Get { name: "e".into() }),
            CtlCommand::Proxies(ProxiesCommand::Add { name: "e".into(), entry: entry(true) }),
            CtlCommand::Proxies(ProxiesCommand::Change { name: "e".into(), entry: entry(false) }),
            CtlCommand::Proxies(ProxiesCommand::Drain { name: "e".into() }),
            CtlCommand::Proxies(ProxiesCommand::Undrain { name: "e".into() }),
            CtlCommand::Proxies(ProxiesCommand::Remove { name: "e".into() }),
            CtlCommand::Proxies(ProxiesCommand::SetCapacity { name: "e".into(), capacity_rps: 5 }),
            CtlCommand::Proxies(ProxiesCommand::Report { name: "e".into(), own: 1, served: vec![("shop".into(), 2)] }),
            CtlCommand::Capacity { periods: Some(2) },
            CtlCommand::Cluster,
            CtlCommand::Auctions(AuctionsCommand::List),
            CtlCommand::Auctions(AuctionsCommand::Get { id: 1 }),
            CtlCommand::Auctions(AuctionsCommand::Open {
                period_start: 60,
                closes_at: 30,
                quantity_rps: Some(5),
                reserve_price: Some(1.5),
            }),
            CtlCommand::Auctions(AuctionsCommand::Bid { id: 1, quantity_rps: 5, max_price: 2.0, customer: None }),
            CtlCommand::Auctions(AuctionsCommand::Withdraw { id: 1, bid: 2 }),
            CtlCommand::Auctions(AuctionsCommand::Clear { id: 1 }),
            CtlCommand::Book { period_start: 60 },
            CtlCommand::Orders(OrdersCommand::List { open: true }),
            CtlCommand::Orders(OrdersCommand::Get { id: 1 }),
            CtlCommand::Orders(OrdersCommand::Place {
                period_start: 60,
                quantity_rps: 5,
                price: 1.0,
                ioc: true,
                customer: Some("shop".into()),
            }),
            CtlCommand::Orders(OrdersCommand::Cancel { id: 1 }),
            CtlCommand::Orders(OrdersCommand::Block {
                period_start: 60,
                periods: 3,
                quantity_rps: 5,
                price: 1.0,
                customer: Some("shop".into()),
            }),
            CtlCommand::Standing(StandingCommand::List { active: true }),
            CtlCommand::Standing(StandingCommand::Get { id: 1 }),
            CtlCommand::Standing(StandingCommand::Place {
                quantity_rps: 5,
                price: 1.0,
                period_start: Some(60),
                customer: None,
            }),
            CtlCommand::Standing(StandingCommand::Cancel { id: 1 }),
            CtlCommand::Contracts { customer: Some("shop".into()) },
            CtlCommand::Usage { customer: None, from: Some(0), to: None, csv: true },
        ];
        for c in &commands {
            let (method, path, body) = request(c);
            let path = path.strip_prefix("/v1").unwrap();
            let (_, op) = crate::api::openapi::operation(&doc, method.as_str(), path)
                .unwrap_or_else(|| panic!("{method} {path} is not documented"));
            assert!(op.is_object());
            if let Some(b) = body {
                crate::api::openapi::check_request(&doc, method.as_str(), path, &b)
                    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            }
        }
        assert_eq!(parse_served("shop=12").unwrap(), ("shop".to_owned(), 12));
        assert!(parse_served("shop").is_err());
    }
}
