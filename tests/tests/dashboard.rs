//! The live dashboard in a real browser: Debian's chromium, headless in the client namespace,
//! driven over the DevTools protocol (chromiumoxide), against the daemon in its namespace.
//! The page loads with no console error, logs in with the operator's token and shows every
//! customer of the config with its chart; a fraction changed through the API appears on the
//! page within 2 s; a buyer's token shows only its own customer and no proxies. A screenshot
//! goes to target/ui/dashboard.png.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chromiumoxide::{
    Page,
    browser::{Browser, BrowserConfig},
    cdp::{
        browser_protocol::log::{EnableParams, EventEntryAdded},
        js_protocol::runtime::{ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown},
    },
    page::ScreenshotParams,
};
use futures::StreamExt;
use serde_json::json;
use spillway_tests::{
    client::api_ok,
    daemon::Daemon,
    netns::{SERVER_ADDR4, Topology},
    require_privileges,
};

const OP: &str = "operator-token";
const SHOP: &str = "shop-token";

fn config(server_if: &str) -> String {
    format!(
        r#"
[server]
zones = ["cdn.example.net."]
xdp_interfaces = ["{server_if}"]
[api]
listen = "{SERVER_ADDR4}:8053"
token = "{OP}"
[store]
path = "@DIR@/spillway.db"
[market]
period_s = 600
horizon_periods = 3
reserve_price = 1.0
assumed_own_load = 0.2
[[proxy]]
name = "edge-1"
addresses = ["198.51.100.10"]
capacity_rps = 10000
[[customer]]
id = "shop"
names = ["shop.cdn.example.net."]
origin_addresses = ["203.0.113.10"]
overflow = "origin"
fraction = 0.5
token = "{SHOP}"
[[customer]]
id = "blog"
names = ["blog.cdn.example.net."]
origin_addresses = ["203.0.113.20"]
overflow = "origin"
fraction = 0.5
"#
    )
}

/// Evaluate `js` on the page until it returns `want` (as a string), for up to `within`.
async fn wait_text(page: &Page, js: &str, want: &str, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let got: Option<String> = page.evaluate(js).await.ok().and_then(|v| v.into_value().ok());
        if got.as_deref() == Some(want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(format!("{js} is {got:?}, not {want:?}, after {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn log_in(page: &Page, token: &str) -> Result<(), String> {
    let e = |e: chromiumoxide::error::CdpError| e.to_string();
    // A mark on the old document: the login form counts only once the reloaded document (which
    // has no mark) is complete, or a click may land on a node the reload has just removed.
    page.evaluate("window.spwOldDocument = true; sessionStorage.clear(); location.reload()").await.map_err(e)?;
    let fresh_login = "String(window.spwOldDocument === undefined && document.readyState === 'complete' \
        && !document.querySelector('#login').hidden)";
    wait_text(page, fresh_login, "true", Duration::from_secs(5)).await?;
    page.find_element("#token").await.map_err(e)?.click().await.map_err(e)?.type_str(token).await.map_err(e)?;
    page.find_element("#enter").await.map_err(e)?.click().await.map_err(e)?;
    wait_text(page, "String(!document.querySelector('#app').hidden)", "true", Duration::from_secs(5)).await.map(drop)
}

/// Everything the page says is wrong: console errors, uncaught exceptions, log errors (a
/// failed load).
type Errors = Arc<Mutex<Vec<String>>>;

async fn watch_errors(page: &Page, errors: Errors) -> Result<(), chromiumoxide::error::CdpError> {
    page.execute(EnableParams::default()).await?;
    let mut console = page.event_listener::<EventConsoleApiCalled>().await?;
    let mut thrown = page.event_listener::<EventExceptionThrown>().await?;
    let mut log = page.event_listener::<EventEntryAdded>().await?;
    let (e1, e2, e3) = (errors.clone(), errors.clone(), errors);
    tokio::spawn(async move {
        while let Some(ev) = console.next().await {
            if ev.r#type == ConsoleApiCalledType::Error {
                e1.lock().unwrap().push(format!("console.error: {:?}", ev.args));
            }
        }
    });
    tokio::spawn(async move {
        while let Some(ev) = thrown.next().await {
            e2.lock().unwrap().push(format!("exception: {:?}", ev.exception_details));
        }
    });
    tokio::spawn(async move {
        while let Some(ev) = log.next().await {
            if format!("{:?}", ev.entry.level).to_lowercase().contains("error") {
                e3.lock().unwrap().push(format!("log: {} {:?}", ev.entry.text, ev.entry.url));
            }
        }
    });
    Ok(())
}

/// What the test asks of the daemon while the page is open.
struct Control {
    set_fraction: Box<dyn Fn(f64) + Send>,
    /// Reports of what the proxy served for shop, once a second, until the history has
    /// `samples` samples (for a screenshot with lines in it).
    history: Box<dyn Fn(usize) + Send>,
}

async fn browse(control: Control) -> Result<(), String> {
    let e = |e: chromiumoxide::error::CdpError| e.to_string();
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        .no_sandbox()
        .user_data_dir(profile.path())
        .window_size(1280, 1400)
        .args(["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--headless=new"])
        .build()?;
    let (mut browser, mut handler) = Browser::launch(cfg).await.map_err(e)?;
    // The handler must be polled for anything to move; a message this chromiumoxide does not
    // know (a newer Chromium's event) is an error to skip, not the end.
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let result = async {
        let page = browser.new_page("about:blank").await.map_err(e)?;
        let errors: Errors = Default::default();
        watch_errors(&page, errors.clone()).await.map_err(e)?;
        // Navigate without waiting on the browser's idea of "loaded" (the page polls forever).
        page.evaluate(format!("location.href = 'http://{SERVER_ADDR4}:8053/ui'")).await.map_err(e)?;
        wait_text(&page, "document.title", "Spillway", Duration::from_secs(10)).await?;
        log_in(&page, OP).await?;
        // Every customer of the config, with its chart.
        let rows = "Array.from(document.querySelectorAll('#customers tbody tr')).map(r => r.dataset.customer).sort().join(',')";
        wait_text(&page, rows, "blog,shop", Duration::from_secs(5)).await?;
        let charts = "String(document.querySelectorAll('#charts figure svg').length)";
        wait_text(&page, charts, "2", Duration::from_secs(10)).await?;
        wait_text(&page, "String(!!document.querySelector('#proxies tr[data-proxy=\"edge-1\"]'))", "true", Duration::from_secs(5)).await?;
        // A fraction changed through the API is on the page within 2 s.
        (control.set_fraction)(0.37);
        let fraction = "document.querySelector('#customers tr[data-customer=\"shop\"] .fraction').textContent";
        let took = wait_text(&page, fraction, "0.37", Duration::from_secs(2)).await?;
        eprintln!("the new fraction was on the page {took:?} after the API answered");
        // Some history, and the charts drawn again with it, for the screenshot.
        (control.history)(4);
        page.evaluate("lastCharts = 0").await.map_err(e)?;
        let lines = "String(document.querySelectorAll('#charts figure[data-customer=\"shop\"] polyline').length >= 3)";
        wait_text(&page, lines, "true", Duration::from_secs(5)).await?;
        let png = page.screenshot(ScreenshotParams::builder().full_page(true).build()).await.map_err(e)?;
        let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui");
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        std::fs::write(out.join("dashboard.png"), png).map_err(|e| e.to_string())?;
        // A buyer sees its own customer only, and no proxies.
        log_in(&page, SHOP).await?;
        wait_text(&page, rows, "shop", Duration::from_secs(5)).await?;
        wait_text(&page, "String(document.querySelector('#proxies-section').hidden)", "true", Duration::from_secs(5)).await?;
        let errors = errors.lock().unwrap().clone();
        if !errors.is_empty() {
            return Err(format!("the page reported errors: {errors:#?}"));
        }
        Ok(())
    }
    .await;
    let _ = browser.close().await;
    let _ = browser.wait().await;
    events.abort();
    result
}

#[test]
fn the_dashboard_shows_the_customers_and_follows_a_fraction_change() {
    require_privileges!();
    let topo = Arc::new(Topology::new());
    let _daemon = Daemon::start(&topo, &config(&topo.server_if)).expect("spillway starts");
    // A contract in force for shop, so its fraction is its own (not the market's 0).
    spillway_tests::client::buy_now(&topo, OP, "shop", 100, 600);
    let (t, t2) = (topo.clone(), topo.clone());
    let control = Control {
        set_fraction: Box::new(move |f: f64| {
            api_ok(&t, "PUT", "/v1/customers/shop/fraction", OP, Some(json!({"fraction": f})));
        }),
        history: Box::new(move |samples: usize| {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 60;
            loop {
                let body = json!({"own_requests": 500, "served": {"shop": served}, "interval_s": 1.0});
                api_ok(&t2, "POST", "/v1/proxies/edge-1/report", OP, Some(body));
                served += 7;
                let h = api_ok(&t2, "GET", "/v1/customers/shop/history", OP, None);
                if h["samples"].as_array().map_or(0, Vec::len) >= samples {
                    return;
                }
                assert!(Instant::now() < deadline, "no history: {h}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }),
    };
    let path = format!("/var/run/netns/{}", topo.client.name);
    let result = std::thread::spawn(move || {
        spillway_tests::netns::enter(&path);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(browse(control))
    })
    .join()
    .expect("browser thread");
    result.unwrap();
}
