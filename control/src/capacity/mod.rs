//! The proxy network's capacity: each proxy's requests/s, the network's own usage history
//! from the proxies' reports, and the forecast of own usage per future period.
//! What is left for sale in a period (after what is already sold) is the market's business.

pub mod forecast;

use std::collections::BTreeMap;

use serde::Serialize;

use self::forecast::{ForecastParams, UsageHistory, WEEK_S, forecast_period};

#[derive(Debug, Clone)]
pub struct Capacity {
    /// Proxy name -> capacity in requests/s.
    proxies: BTreeMap<String, u64>,
    history: UsageHistory,
    params: ForecastParams,
    /// Share of capacity assumed in own use for an hour with no history (a new network is not
    /// assumed idle).
    assumed_own_load: f64,
}

/// Own usage forecast and what is unused in one period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PeriodForecast {
    pub capacity_rps: u64,
    /// Forecast own requests/s (the period's worst hour).
    pub forecast_own_rps: u64,
    /// True when the forecast comes from history, false when assumed (`assumed_own_load`).
    pub from_history: bool,
    /// capacity - forecast, never below 0.
    pub unused_rps: u64,
}

impl Capacity {
    pub fn new(interval_s: u32, params: ForecastParams, assumed_own_load: f64) -> Self {
        Self { proxies: BTreeMap::new(), history: UsageHistory::new(interval_s), params, assumed_own_load }
    }

    pub fn set_proxy(&mut self, name: &str, capacity_rps: u64) {
        self.proxies.insert(name.to_owned(), capacity_rps);
    }

    pub fn remove_proxy(&mut self, name: &str) {
        self.proxies.remove(name);
    }

    pub fn proxy(&self, name: &str) -> Option<u64> {
        self.proxies.get(name).copied()
    }

    pub fn proxies(&self) -> &BTreeMap<String, u64> {
        &self.proxies
    }

    pub fn total_rps(&self) -> u64 {
        self.proxies.values().sum()
    }

    pub fn history(&self) -> &UsageHistory {
        &self.history
    }

    /// Record own requests served in the interval holding `t`, and drop history the profile
    /// no longer reads.
    pub fn record_own(&mut self, t: i64, requests: u64) {
        self.history.add(t, requests);
        let keep_from = t - i64::from(self.params.weeks + 1) * WEEK_S;
        if self.history.len() > 1 && self.history.peak_rps(i64::MIN, keep_from).is_some() {
            self.history.prune_before(keep_from);
        }
    }

    /// How far back the history must be loaded at start.
    pub fn history_window(&self) -> i64 {
        i64::from(self.params.weeks + 1) * WEEK_S
    }

    pub fn period(&self, start: i64, end: i64) -> PeriodForecast {
        let capacity = self.total_rps();
        let (own, from_history) = match forecast_period(&self.history, start, end, &self.params) {
            Some(f) => (f.ceil() as u64, true),
            None => ((capacity as f64 * self.assumed_own_load).ceil() as u64, false),
        };
        PeriodForecast {
            capacity_rps: capacity,
            forecast_own_rps: own,
            from_history,
            unused_rps: capacity.saturating_sub(own),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_is_capacity_minus_forecast_or_assumed_load() {
        let p = ForecastParams { weeks: 1, sigmas: 0.0, margin: 0.0 };
        let mut c = Capacity::new(60, p, 0.5);
        c.set_proxy("a", 600);
        c.set_proxy("b", 400);
        let t = 10 * WEEK_S;
        assert_eq!(
            c.period(t, t + 3600),
            PeriodForecast { capacity_rps: 1000, forecast_own_rps: 500, from_history: false, unused_rps: 500 }
        );
        c.record_own(t - WEEK_S, 300 * 60); // 300 rps a week earlier
        assert_eq!(c.period(t, t + 3600).unused_rps, 700);
        c.record_own(t - WEEK_S + 60, 2000 * 60); // above capacity: nothing unused
        assert_eq!(c.period(t, t + 3600).unused_rps, 0);
    }
}
