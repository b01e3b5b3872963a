//! Forecast of the network's own usage: an hour-of-week profile with a safety margin.
//!
//! Method: for an hour in the future, look at the same hour of the week in each of the last
//! `weeks` weeks of history and take that hour's peak (the highest per-interval requests/s in it).
//! The forecast is `(mean + sigmas * stddev) * (1 + margin)` of those peaks: a busy week raises
//! it, a noisy hour widens it, and the margin covers growth. An hour with no history in any
//! of those weeks has no forecast (the caller decides how to treat it; see `Capacity`).
//! A period's forecast is the highest forecast of the hours it overlaps.

use std::collections::BTreeMap;

pub const HOUR_S: i64 = 3600;
pub const WEEK_S: i64 = 7 * 24 * HOUR_S;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastParams {
    pub weeks: u32,
    pub sigmas: f64,
    pub margin: f64,
}

impl Default for ForecastParams {
    fn default() -> Self {
        Self { weeks: 4, sigmas: 2.0, margin: 0.1 }
    }
}

/// Own usage per interval: interval start (unix seconds) -> requests served in it.
#[derive(Debug, Clone, Default)]
pub struct UsageHistory {
    interval_s: i64,
    samples: BTreeMap<i64, u64>,
}

impl UsageHistory {
    pub fn new(interval_s: u32) -> Self {
        Self { interval_s: i64::from(interval_s.max(1)), samples: BTreeMap::new() }
    }

    pub fn interval_s(&self) -> i64 {
        self.interval_s
    }

    /// The start of the interval holding `t`.
    pub fn interval_of(&self, t: i64) -> i64 {
        t.div_euclid(self.interval_s) * self.interval_s
    }

    /// Add requests served in the interval holding `t`.
    pub fn add(&mut self, t: i64, requests: u64) {
        let i = self.interval_of(t);
        let e = self.samples.entry(i).or_default();
        *e = e.saturating_add(requests);
    }

    /// Forget intervals before `t` (history older than the profile needs).
    pub fn prune_before(&mut self, t: i64) {
        self.samples = self.samples.split_off(&t);
    }

    /// Highest requests/s of an interval in [from, to), if any interval there has data.
    pub fn peak_rps(&self, from: i64, to: i64) -> Option<f64> {
        self.samples.range(from..to).map(|(_, &r)| r as f64 / self.interval_s as f64).reduce(f64::max)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Forecast of own requests/s in the hour holding `t`, from the same hour in past weeks.
pub fn forecast_hour(history: &UsageHistory, t: i64, p: &ForecastParams) -> Option<f64> {
    let hour = t.div_euclid(HOUR_S) * HOUR_S;
    let peaks: Vec<f64> = (1..=i64::from(p.weeks))
        .filter_map(|k| history.peak_rps(hour - k * WEEK_S, hour - k * WEEK_S + HOUR_S))
        .collect();
    if peaks.is_empty() {
        return None;
    }
    let n = peaks.len() as f64;
    let mean = peaks.iter().sum::<f64>() / n;
    let var = peaks.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    Some((mean + p.sigmas * var.sqrt()) * (1.0 + p.margin))
}

/// Forecast for a period [start, end): the highest hourly forecast it overlaps; `None` if
/// no hour of it has history.
pub fn forecast_period(history: &UsageHistory, start: i64, end: i64, p: &ForecastParams) -> Option<f64> {
    let mut hour = start.div_euclid(HOUR_S) * HOUR_S;
    let mut out: Option<f64> = None;
    while hour < end {
        if let Some(f) = forecast_hour(history, hour, p) {
            out = Some(out.map_or(f, |o| o.max(f)));
        }
        hour += HOUR_S;
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;

    /// A weekly pattern: a diurnal wave peaking mid-afternoon, quieter weekends, 10% noise.
    fn synthetic(t: i64, rng: &mut StdRng) -> f64 {
        let day = (t.rem_euclid(WEEK_S) / 86_400) as u32;
        let hour_of_day = (t.rem_euclid(86_400)) as f64 / 3600.0;
        let diurnal = 1.0 + 0.8 * ((hour_of_day - 9.0) / 24.0 * std::f64::consts::TAU).sin();
        let weekly = if day == 2 || day == 3 { 0.6 } else { 1.0 }; // the epoch is a Thursday
        let base = 5000.0 * diurnal * weekly;
        base * (1.0 + rng.random_range(-0.1..0.1))
    }

    #[test]
    fn weekly_pattern_with_noise_is_covered_without_gross_overestimate() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut h = UsageHistory::new(60);
        let week0 = 1_700_000_000i64.div_euclid(WEEK_S) * WEEK_S;
        // Four weeks of history, one sample a minute.
        for m in 0..(4 * WEEK_S / 60) {
            let t = week0 + m * 60;
            h.add(t, (synthetic(t, &mut rng) * 60.0) as u64);
        }
        let p = ForecastParams::default();
        // The fifth week, as it happens.
        let mut actual = UsageHistory::new(60);
        let start = week0 + 4 * WEEK_S;
        for m in 0..(WEEK_S / 60) {
            let t = start + m * 60;
            actual.add(t, (synthetic(t, &mut rng) * 60.0) as u64);
        }
        let (mut covered, mut hours, mut ratio_sum) = (0, 0, 0.0);
        for hr in 0..168 {
            let t = start + hr * HOUR_S;
            let f = forecast_hour(&h, t, &p).expect("history covers every hour");
            let peak = actual.peak_rps(t, t + HOUR_S).unwrap();
            hours += 1;
            if f >= peak {
                covered += 1;
            }
            ratio_sum += f / peak;
        }
        let coverage = covered as f64 / hours as f64;
        let mean_ratio = ratio_sum / hours as f64;
        assert!(coverage >= 0.99, "forecast below the real peak too often: {coverage}");
        assert!(mean_ratio < 1.35, "forecast too pessimistic on average: {mean_ratio}");
        // It follows the shape: the weekend trough is forecast lower than the weekday peak.
        let weekday = forecast_hour(&h, start + 15 * HOUR_S, &p).unwrap();
        let weekend = forecast_hour(&h, start + 2 * 86_400 + 15 * HOUR_S, &p).unwrap();
        assert!(weekend < 0.75 * weekday, "weekend {weekend} vs weekday {weekday}");
    }

    #[test]
    fn no_history_no_forecast_and_periods_take_their_worst_hour() {
        let p = ForecastParams { weeks: 1, sigmas: 0.0, margin: 0.0 };
        let mut h = UsageHistory::new(60);
        assert_eq!(forecast_hour(&h, 10 * WEEK_S, &p), None);
        h.add(9 * WEEK_S, 600); // 10 rps in the first hour a week earlier
        h.add(9 * WEEK_S + HOUR_S, 1200); // 20 rps in the second
        assert_eq!(forecast_hour(&h, 10 * WEEK_S + 5, &p), Some(10.0));
        assert_eq!(forecast_period(&h, 10 * WEEK_S, 10 * WEEK_S + 2 * HOUR_S, &p), Some(20.0));
        assert_eq!(forecast_period(&h, 10 * WEEK_S + 3 * HOUR_S, 10 * WEEK_S + 4 * HOUR_S, &p), None);
        h.prune_before(9 * WEEK_S + 1);
        assert_eq!(h.len(), 1);
    }
}
