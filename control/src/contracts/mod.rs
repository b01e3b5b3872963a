//! Contracts in force: which are active at a time, which start or end next, and the price a
//! buyer's usage is charged at. A contract is active on [period_start, period_end), to the
//! second; the scheduler (in the daemon) wakes at each boundary and puts the result in the
//! data plane, and records each activation and end once in the store.

use std::collections::BTreeSet;

use crate::store::ContractRow;

/// Contracts that became due at `now`: to activate, and to end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub activate: Vec<i64>,
    pub end: Vec<i64>,
    /// Buyers whose active set changed.
    pub customers: BTreeSet<String>,
}

pub fn is_active(c: &ContractRow, now: i64) -> bool {
    c.period_start <= now && now < c.period_end
}

/// Transitions due at `now` that the store has not recorded yet. A contract whose whole
/// period passed while the daemon was down ends without ever having been active.
pub fn due(contracts: &[ContractRow], now: i64) -> Transitions {
    let mut t = Transitions::default();
    for c in contracts {
        if c.ended_at.is_none() && c.period_end <= now {
            t.end.push(c.id);
            t.customers.insert(c.customer.clone());
        } else if c.activated_at.is_none() && is_active(c, now) {
            t.activate.push(c.id);
            t.customers.insert(c.customer.clone());
        }
    }
    t
}

/// The next second at which a contract starts or ends after `now`.
pub fn next_boundary(contracts: &[ContractRow], now: i64) -> Option<i64> {
    contracts.iter().flat_map(|c| [c.period_start, c.period_end]).filter(|&t| t > now).min()
}

/// Requests/s a buyer has bought for `now`.
pub fn active_rps(contracts: &[ContractRow], customer: &str, now: i64) -> u64 {
    contracts.iter().filter(|c| c.customer == customer && is_active(c, now)).map(|c| c.rps).sum()
}

/// The charge in micros for `requests` served at `t`, at the rps-weighted mean price, rounded
/// down once at the end; `None` with no contract in force.
pub fn charge_micros(contracts: &[ContractRow], customer: &str, t: i64, requests: u64) -> Option<u64> {
    let (rps, weighted) = weights(contracts, customer, t);
    (rps > 0).then(|| {
        let m = u128::from(requests) * weighted / (rps * u128::from(crate::market::units::MICROS));
        u64::try_from(m).unwrap_or(u64::MAX)
    })
}

/// (sum of rps, sum of rps x price) over the buyer's contracts in force at `t`.
fn weights(contracts: &[ContractRow], customer: &str, t: i64) -> (u128, u128) {
    let (mut rps, mut weighted) = (0u128, 0u128);
    for c in contracts.iter().filter(|c| c.customer == customer && is_active(c, t)) {
        rps += u128::from(c.rps);
        weighted += u128::from(c.rps) * u128::from(c.price.0);
    }
    (rps, weighted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::units::Price;

    fn contract(id: i64, customer: &str, start: i64, end: i64, rps: u64, price: u64) -> ContractRow {
        ContractRow {
            id,
            customer: customer.into(),
            period_start: start,
            period_end: end,
            rps,
            price: Price(price),
            source: "book".into(),
            auction_id: None,
            bid_id: None,
            ask_id: None,
            created_at: 0,
            activated_at: None,
            ended_at: None,
        }
    }

    #[test]
    fn transitions_to_the_second() {
        let mut cs = vec![contract(1, "shop", 100, 200, 10, 1), contract(2, "blog", 150, 160, 5, 1)];
        assert_eq!(due(&cs, 99), Transitions::default());
        assert_eq!(next_boundary(&cs, 99), Some(100));
        let t = due(&cs, 100);
        assert_eq!((t.activate.as_slice(), t.end.is_empty()), (&[1][..], true));
        cs[0].activated_at = Some(100);
        assert_eq!(due(&cs, 120), Transitions::default(), "an activation is due once");
        assert_eq!(next_boundary(&cs, 120), Some(150));
        // The daemon was down over blog's whole period: it ends, never activated.
        let t = due(&cs, 170);
        assert_eq!((t.activate.as_slice(), t.end.as_slice()), (&[][..], &[2][..]));
        assert_eq!(due(&cs, 200).end, [1, 2]);
        assert_eq!(active_rps(&cs, "shop", 199), 10);
        assert_eq!(active_rps(&cs, "shop", 200), 0);
    }

    #[test]
    fn price_is_the_rps_weighted_mean() {
        let cs = vec![contract(1, "shop", 0, 10, 30, 1_000_000), contract(2, "shop", 0, 10, 10, 3_000_000)];
        // 30 rps at 1.0 and 10 at 3.0: 1.5 per million.
        assert_eq!(charge_micros(&cs, "shop", 5, 1_000_000), Some(1_500_000));
        assert_eq!(charge_micros(&cs, "blog", 5, 1_000_000), None);
        // 3000 rps at 0.8 and 15000 at 1.2: 1.2 million requests cost 1.36 exactly.
        let cs = vec![contract(1, "shop", 0, 10, 3000, 800_000), contract(2, "shop", 0, 10, 15000, 1_200_000)];
        assert_eq!(charge_micros(&cs, "shop", 5, 1_200_000), Some(1_360_000));
        assert_eq!(charge_micros(&cs, "shop", 10, 1_200_000), None);
    }
}
