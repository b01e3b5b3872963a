//! The tasks that watch the proxies: one scrape loop per proxy with a `metrics_url` (read by
//! its mapping, or `proxy_metrics`), one
//! health check loop per proxy with a `health` check, started, replaced and stopped as the
//! fleet changes, and the fleet judged once a second (silence and load) so the answers follow.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::watch, task::AbortHandle};

use crate::{
    api::AppState,
    config::{HealthCheck, MetricsMapping},
    daemon::running,
    error::Error,
    handover::Phase,
};

/// How often the fleet is judged (so silence and load act within this of their threshold).
pub const JUDGE_EVERY: Duration = Duration::from_secs(1);

/// What a proxy's tasks are started from: a change of either restarts them.
#[derive(PartialEq)]
struct Watched {
    metrics_url: Option<String>,
    /// The proxy's mapping, or `proxy_metrics`.
    metrics: MetricsMapping,
    health: Option<HealthCheck>,
}

struct Tasks {
    watched: Watched,
    handles: Vec<AbortHandle>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Judge the fleet every [`JUDGE_EVERY`] (or at once when the API changed it), and keep one
/// set of tasks per proxy as its entry says.
pub async fn watch_proxies(state: Arc<AppState>, phase: watch::Receiver<Phase>) {
    let mut tasks: HashMap<String, Tasks> = HashMap::new();
    loop {
        let p = phase.clone();
        let fleet = state
            .with_engine(move |engine| {
                if running(&p)
                    && let Err(e) = engine.evaluate_proxies(crate::engine::unix_now_f64())
                {
                    tracing::error!("putting the proxies in force: {e}");
                }
                engine
                    .fleet
                    .proxies()
                    .iter()
                    .map(|p| {
                        let w = Watched {
                            metrics_url: p.config.metrics_url.clone(),
                            metrics: p.config.metrics.clone().unwrap_or_else(|| engine.config.proxy_metrics.clone()),
                            health: p.config.health.clone(),
                        };
                        (p.config.name.clone(), w)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
        tasks.retain(|name, t| fleet.iter().any(|(n, w)| n == name && *w == t.watched));
        for (name, watched) in fleet {
            if tasks.contains_key(&name) {
                continue;
            }
            let mut handles = Vec::new();
            if let Some(url) = &watched.metrics_url {
                let scrape =
                    scrape_loop(state.clone(), name.clone(), url.clone(), watched.metrics.clone(), phase.clone());
                handles.push(tokio::spawn(scrape).abort_handle());
            }
            if let Some(check) = &watched.health {
                handles.push(
                    tokio::spawn(check_loop(state.clone(), name.clone(), check.clone(), phase.clone())).abort_handle(),
                );
            }
            tasks.insert(name, Tasks { watched, handles });
        }
        tokio::select! {
            _ = tokio::time::sleep(JUDGE_EVERY) => {}
            _ = state.proxies_changed.notified() => {}
        }
    }
}

/// Check a proxy every `interval_ms`, and count each result (the engine takes it out of the
/// answers, or back, when the count says so).
async fn check_loop(state: Arc<AppState>, proxy: String, check: HealthCheck, phase: watch::Receiver<Phase>) {
    let client = match super::health::client() {
        Ok(c) => c,
        Err(e) => return tracing::error!(%proxy, "no HTTP client for health checks: {e}"),
    };
    let mut interval = tokio::time::interval(Duration::from_millis(check.interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let result = super::health::check_once(&client, &check).await;
        if let Err(e) = &result {
            tracing::debug!(%proxy, url = %check.url, "health check failed: {e}");
        }
        let (name, phase) = (proxy.clone(), phase.clone());
        let done = state
            .with_engine(move |engine| {
                if !running(&phase) {
                    return Ok(());
                }
                engine.record_check(&name, result, crate::engine::unix_now_f64())
            })
            .await;
        if let Err(e) = done {
            tracing::error!(%proxy, "health check result: {e}");
        }
    }
}

/// Scrape a proxy's metrics every second; each scrape after the first is a report (the
/// counters' growth since the previous one). A failed scrape is no report: the proxy goes
/// stale, then down, as if silent. The baseline moves only when a report was recorded, so a
/// report the store did not take is counted in the next one.
pub async fn scrape_loop(
    state: Arc<AppState>,
    proxy: String,
    url: String,
    mapping: MetricsMapping,
    phase: watch::Receiver<Phase>,
) {
    use crate::controller::scrape;
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(2)).build() {
        Ok(c) => c,
        Err(e) => return tracing::error!(%proxy, "no HTTP client for scraping: {e}"),
    };
    let mut prev: Option<(f64, scrape::Counters)> = None;
    let mut unmatched = false;
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
        let at = crate::engine::unix_now_f64();
        let Some(counters) = scrape::parse(&text, &mapping) else {
            // Alive, but its numbers are unknown (not zero): the controller holds, and the
            // operator is told once until the mapping matches.
            if !unmatched {
                tracing::warn!(%proxy, %url, served = %mapping.served.metric,
                    own = ?mapping.own.as_ref().map(|o| &o.metric),
                    "the scrape has none of the mapped metrics: the proxy's numbers are unknown");
                unmatched = true;
            }
            let name = proxy.clone();
            state.with_engine(move |engine| engine.feed.heard(&name, at)).await;
            continue;
        };
        if std::mem::take(&mut unmatched) {
            tracing::info!(%proxy, "the scrape matches the mapping again");
        }
        let Some((t0, before)) = &prev else {
            prev = Some((at, counters));
            continue;
        };
        let (own, mut served) = scrape::delta(before, &counters);
        let (phase, name, interval) = (phase.clone(), proxy.clone(), at - t0);
        let recorded = state
            .with_engine(move |engine| {
                if !running(&phase) {
                    return Ok(false);
                }
                served.retain(|c, _| engine.catalog.customer(c).is_some());
                engine.record_report(&name, own, &served, Some(interval), at).map(|_| true)
            })
            .await;
        match recorded {
            Ok(true) => prev = Some((at, counters)),
            Ok(false) => {}
            // Counts no report may carry are dropped; a store that failed counts them again.
            Err(e @ Error::Market(crate::market::MarketError::Invalid(_))) => {
                tracing::warn!(%proxy, "scrape dropped: {e}");
                prev = Some((at, counters));
            }
            Err(e) => tracing::error!(%proxy, "recording a scrape (counted again in the next one): {e}"),
        }
    }
}
