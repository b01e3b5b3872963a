//! Real DNS clients and API calls from the client namespace, shared by the end-to-end tests.

use serde_json::Value;

use crate::{daemon, netns::Topology};

/// The addresses in a dig/kdig +short answer, sorted.
pub fn short(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

/// `dig +short` from the client namespace; panics with the output if dig fails.
pub fn dig(topo: &Topology, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["dig", "+short", "+tries=1", "+time=2"];
    argv.extend_from_slice(args);
    let out = topo.client.exec(&argv);
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    short(&String::from_utf8_lossy(&out.stdout))
}

/// One series' value in a `/metrics` text, e.g. `spillway_rrl_total{action="sent"}`; panics
/// with the text when it is not there.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
}

/// An API request that must succeed (200), parsed as JSON.
pub fn api_ok(topo: &Topology, method: &'static str, path: &str, token: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let (status, text) = daemon::http(topo, method, path, Some(token), body.as_deref());
    assert_eq!(status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"))
}

/// Buy `rps` for `customer` in the running period and the next (`period_s` long) through the
/// book at once (IOC, with the operator's `token`): a test started just before a period
/// boundary still has a contract in force when it checks.
pub fn buy_now(topo: &Topology, token: &str, customer: &str, rps: u64, period_s: i64) {
    let period = (now_f64() as i64 / period_s) * period_s;
    for start in [period, period + period_s] {
        let body = serde_json::json!({"customer": customer, "period_start": start, "quantity_rps": rps, "price": 1.0, "tif": "ioc"});
        let r = api_ok(topo, "POST", "/v1/orders", token, Some(body));
        assert_eq!(r["order"]["state"], "filled", "{r}");
    }
}

/// Seconds since the epoch, with a fraction.
pub fn now_f64() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Sleep until the wall clock reads `t` (seconds since the epoch).
pub fn sleep_until(t: f64) {
    let d = t - now_f64();
    if d > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(d));
    }
}
