//! Billing on actual usage: each proxy report's requests served per buyer are put in the
//! buyer's ledger line for the interval, charged at the price of the contracts in force then
//! (the rps-weighted mean if several). Requests served with no contract in force are recorded
//! as uncontracted and not charged.

use std::collections::BTreeMap;

use crate::{
    contracts,
    store::{ContractRow, ReportRecord, ServedRecord},
};

/// Price one report's served requests. `contracts` are those in force or pending.
pub fn price_report(
    contracts: &[ContractRow],
    proxy: &str,
    at: i64,
    interval_start: i64,
    own_requests: u64,
    served: &BTreeMap<String, u64>,
) -> ReportRecord {
    let served = served
        .iter()
        .map(|(customer, &requests)| match contracts::charge_micros(contracts, customer, at, requests) {
            Some(charge_micros) => {
                ServedRecord { customer: customer.clone(), requests, uncontracted: 0, charge_micros }
            }
            None => ServedRecord { customer: customer.clone(), requests, uncontracted: requests, charge_micros: 0 },
        })
        .collect();
    ReportRecord { proxy: proxy.to_owned(), at, interval_start, own_requests, served }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::units::Price;

    #[test]
    fn charged_at_the_contract_price_and_uncontracted_free() {
        let c = ContractRow {
            id: 1,
            customer: "shop".into(),
            period_start: 0,
            period_end: 60,
            rps: 10,
            price: Price(2_000_000),
            source: "book".into(),
            auction_id: None,
            bid_id: Some(1),
            ask_id: Some(2),
            created_at: 0,
            activated_at: Some(0),
            ended_at: None,
        };
        let served = BTreeMap::from([("shop".to_owned(), 500_000), ("blog".to_owned(), 7)]);
        let r = price_report(&[c], "edge-1", 30, 0, 100, &served);
        let blog = &r.served[0];
        let shop = &r.served[1];
        assert_eq!((blog.uncontracted, blog.charge_micros), (7, 0));
        // 0.5 million requests at 2.00 per million = 1.00.
        assert_eq!((shop.uncontracted, shop.charge_micros), (0, 1_000_000));
    }
}
