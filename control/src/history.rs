//! What each buyer's control loop did over the last hour, in memory: a sample every
//! [`SAMPLE_EVERY_S`] of the fraction in force, what its contracts bought, what the proxies
//! served for it and the controller's setpoint. For the operator's window (`GET
//! /v1/customers/{id}/history`); lost on restart, as a screen's recent past is.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

/// Seconds between samples.
pub const SAMPLE_EVERY_S: i64 = 5;
/// Samples kept per buyer: an hour.
pub const KEPT: usize = 720;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the epoch.
    pub t: i64,
    pub fraction: f64,
    pub contracted_rps: u64,
    /// `None` while unknown (no fresh reports).
    pub served_rps: Option<f64>,
    /// `None` before the controller's first decision (or with the market off).
    pub setpoint_rps: Option<f64>,
}

#[derive(Debug, Default)]
pub struct History {
    by_customer: HashMap<String, VecDeque<Sample>>,
    last: Option<i64>,
}

impl History {
    /// Whether a sample is due at `now` (one per [`SAMPLE_EVERY_S`]).
    pub fn due(&self, now: i64) -> bool {
        self.last.is_none_or(|t| now - t >= SAMPLE_EVERY_S)
    }

    /// Record one sample per buyer at `now`; buyers no longer there are forgotten.
    pub fn record(&mut self, now: i64, samples: impl IntoIterator<Item = (String, Sample)>) {
        let mut seen = HashMap::with_capacity(self.by_customer.len());
        for (id, s) in samples {
            let mut q = self.by_customer.remove(&id).unwrap_or_default();
            if q.len() == KEPT {
                q.pop_front();
            }
            q.push_back(s);
            seen.insert(id, q);
        }
        self.by_customer = seen;
        self.last = Some(now);
    }

    /// A buyer's samples, oldest first.
    pub fn of(&self, id: &str) -> Vec<Sample> {
        self.by_customer.get(id).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: i64, f: f64) -> Sample {
        Sample { t, fraction: f, contracted_rps: 100, served_rps: Some(50.0), setpoint_rps: None }
    }

    #[test]
    fn keeps_an_hour_per_buyer_and_forgets_the_gone() {
        let mut h = History::default();
        assert!(h.due(0));
        for i in 0..(KEPT as i64 + 10) {
            let t = i * SAMPLE_EVERY_S;
            assert!(h.due(t));
            h.record(t, [("shop".to_owned(), s(t, 0.5)), ("blog".to_owned(), s(t, 0.1))]);
            assert!(!h.due(t + SAMPLE_EVERY_S - 1));
        }
        let shop = h.of("shop");
        assert_eq!(shop.len(), KEPT);
        assert_eq!(shop[0].t, 10 * SAMPLE_EVERY_S, "the oldest went first");
        h.record(1_000_000, [("shop".to_owned(), s(1_000_000, 0.4))]);
        assert!(h.of("blog").is_empty(), "blog is gone");
        assert_eq!(h.of("shop").last().map(|x| x.fraction), Some(0.4));
    }
}
