//! `spillway run`: load and attach XDP, fill the maps, serve the API, stop cleanly on a signal.

use std::sync::{Arc, atomic::Ordering};

use tokio::{io::unix::AsyncFd, net::TcpListener, signal::unix::SignalKind};

use crate::{
    api::{self, AppState, Principal},
    catalog::Catalog,
    config::Config,
    dataplane::{Dataplane, LoadOptions},
    dns::{self, Authority},
    engine::{Engine, unix_now},
    error::{Error, Result},
};

pub async fn run(config: Config) -> Result<()> {
    let token = config.api_token()?;
    // The store and the contracts in force decide the fractions before anything is attached.
    let mut engine = Engine::new(&config, Catalog::from_config(&config)?, None, unix_now())?;
    let mut tokens = vec![(token.clone(), Principal::Operator)];
    for c in config.customers().chain(engine.api_customers.iter()) {
        if let Some(t) = &c.token {
            if *t == token {
                return Err(Error::Record(c.id.clone(), "its token is the operator's token".into()));
            }
            tokens.push((t.clone(), Principal::Buyer(c.id.clone())));
        }
    }
    tracing::info!(path = %config.store.path.display(), market = engine.market.is_some(), "store open");

    let dataplane = if config.server.xdp_interfaces.is_empty() {
        tracing::info!("no xdp_interfaces: XDP is off");
        None
    } else {
        let mut dp = Dataplane::load(LoadOptions::default())?;
        // Maps first, then attach: the first packet already finds every record.
        engine.catalog.install(&mut dp)?;
        if let Some(logger) = dp.take_logger() {
            spawn_ebpf_logger(logger);
        }
        for iface in &config.server.xdp_interfaces {
            dp.attach(iface, config.server.xdp_mode)?;
            tracing::info!(interface = %iface, mode = ?config.server.xdp_mode, "XDP attached");
        }
        Some(dp)
    };
    engine.dataplane = dataplane;
    let state = AppState::new(engine, tokens);
    if state.engine().market.is_some() {
        tokio::spawn(market_scheduler(state.clone()));
        tokio::spawn(controller_loop(state.clone()));
    }
    for p in config.proxies() {
        if let Some(url) = &p.metrics_url {
            tokio::spawn(scrape_loop(state.clone(), p.name.clone(), url.clone()));
        }
    }
    if !config.server.listen.is_empty() {
        let serial_base =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        let zone = state.engine().catalog.published();
        let cx = Arc::new(dns::server::DnsContext {
            authority: Authority::new(&config, serial_base),
            zone,
            state: state.clone(),
        });
        dns::server::serve(&config.server.listen, cx).await?;
    }
    let listener = TcpListener::bind(config.api.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "control API listening");
    state.ready.store(true, Ordering::Release);

    axum::serve(listener, api::router(state.clone())).with_graceful_shutdown(shutdown_signal()).await?;
    state.ready.store(false, Ordering::Release);
    // Dropping the data plane detaches the programs and frees the maps. The store needs no
    // closing: every change was committed when it was answered.
    if state.engine().dataplane.take().is_some() {
        tracing::info!("stopped: XDP detached");
    } else {
        tracing::info!("stopped");
    }
    Ok(())
}

/// Wake at every market deadline (an auction closing, a contract starting or ending, to the
/// second) and at least once a second, and do the market's work.
async fn market_scheduler(state: Arc<AppState>) {
    loop {
        let next = {
            let engine = state.engine();
            let now = unix_now();
            engine.market.as_ref().and_then(|m| m.next_event(now)).unwrap_or(now + 1).min(now + 1)
        };
        let wake = std::time::UNIX_EPOCH + std::time::Duration::from_secs(next.max(0) as u64);
        let wait = wake.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.market_changed.notified() => {}
        }
        let mut engine = state.engine();
        if let Err(e) = engine.tick(unix_now()) {
            tracing::error!("market tick: {e}");
        }
    }
}

/// The controller's tick, once a second (a fifth of a second past it, so the proxies'
/// reports of that second are in).
async fn controller_loop(state: Arc<AppState>) {
    loop {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let next = std::time::Duration::from_secs(now.as_secs() + 1) + std::time::Duration::from_millis(200);
        tokio::time::sleep(next.saturating_sub(now)).await;
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut engine = state.engine();
        if let Err(e) = engine.control_tick(t) {
            tracing::error!("controller tick: {e}");
        }
    }
}

/// Scrape a proxy's metrics every second; each scrape after the first is a report (the
/// counters' growth since the previous one). A failed scrape is no report: the proxy goes
/// stale, then down, as if silent.
async fn scrape_loop(state: Arc<AppState>, proxy: String, url: String) {
    use crate::controller::scrape;
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build() {
        Ok(c) => c,
        Err(e) => return tracing::error!(%proxy, "no HTTP client for scraping: {e}"),
    };
    let mut prev: Option<(f64, scrape::Counters)> = None;
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        interval.tick().await;
        let text = match client.get(&url).send().await.and_then(|r| r.error_for_status()) {
            Ok(r) => r.text().await,
            Err(e) => Err(e),
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!(%proxy, %url, "scrape failed: {e}");
                continue;
            }
        };
        let at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let counters = scrape::parse(&text);
        if let Some((t0, before)) = prev.replace((at, counters.clone())) {
            let (own, mut served) = scrape::delta(&before, &counters);
            let mut engine = state.engine();
            served.retain(|c, _| engine.catalog.customer(c).is_some());
            if let Err(e) = engine.record_report(&proxy, own, &served, Some(at - t0), at) {
                tracing::error!(%proxy, "recording a scrape: {e}");
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

fn spawn_ebpf_logger(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    // SAFETY: the logger owns its ring-buffer fd and keeps it open, unchanged, until dropped,
    // and it is dropped only with the AsyncFd.
    match unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) } {
        Ok(mut fd) => {
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else { break };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => tracing::warn!("eBPF log reader not started: {e}"),
    }
}
