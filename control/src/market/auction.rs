//! The sealed-bid auction for one period: uniform price at the first rejected unit.
//!
//! The rule, as the README states it:
//! - Bids below the reserve price are rejected.
//! - The rest are ranked by price (highest first), then by submission order (earliest first),
//!   then by bid id; capacity is handed out down that ranking, and the bid where it runs out is
//!   filled in part.
//! - Every winner pays one price: that of the first unit demanded and not sold (the price of
//!   the partly filled or first fully rejected bid), or the reserve price if every bid was filled.
//!   A winner therefore never pays more than its bid, and a bidder outbid by others pays what
//!   the marginal loser offered, not its own bid.

use serde::{Deserialize, Serialize};

use super::units::Price;

/// A sealed bid: `quantity` requests/s for the period at up to `max_price` per million requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBid {
    pub id: u64,
    pub buyer: String,
    pub quantity: u64,
    pub max_price: Price,
    /// Submission order (lower = earlier): the tie-break at equal prices.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Won,
    Partial,
    Lost,
}

/// What one bid got, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Award {
    pub bid_id: u64,
    pub filled: u64,
    pub outcome: Outcome,
    /// What the bidder is told.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clearing {
    /// The uniform price every winner pays.
    pub price: Price,
    /// Requests/s sold (the sum of `filled`).
    pub sold: u64,
    /// One award per bid, in the order the bids were given.
    pub awards: Vec<Award>,
}

/// Clear an auction of `supply` requests/s with a `reserve` price.
pub fn clear(supply: u64, reserve: Price, bids: &[SealedBid]) -> Clearing {
    let mut ranked: Vec<usize> = (0..bids.len()).filter(|&i| bids[i].max_price >= reserve).collect();
    ranked.sort_by(|&a, &b| {
        let (a, b) = (&bids[a], &bids[b]);
        b.max_price.cmp(&a.max_price).then(a.seq.cmp(&b.seq)).then(a.id.cmp(&b.id))
    });
    let mut filled = vec![0u64; bids.len()];
    let mut left = supply;
    let mut first_rejected: Option<usize> = None;
    for &i in &ranked {
        let take = bids[i].quantity.min(left);
        filled[i] = take;
        left -= take;
        if take < bids[i].quantity && first_rejected.is_none() {
            first_rejected = Some(i);
        }
    }
    let price = first_rejected.map_or(reserve, |i| bids[i].max_price.max(reserve));
    let sold = supply - left;
    let awards = bids
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let f = filled[i];
            let (outcome, reason) = if b.max_price < reserve {
                (Outcome::Lost, format!("max price {} is below the reserve price {reserve}", b.max_price))
            } else if f == b.quantity {
                (Outcome::Won, format!("filled {f} rps at the clearing price {price}"))
            } else if f > 0 {
                (
                    Outcome::Partial,
                    format!("filled {f} of {} rps at {price}: capacity ran out at your price", b.quantity),
                )
            } else if supply == 0 {
                (Outcome::Lost, "no capacity was left to sell in this period".to_owned())
            } else if b.max_price < price {
                (Outcome::Lost, format!("outbid: the clearing price {price} is above your max price {}", b.max_price))
            } else {
                (Outcome::Lost, format!("outbid at your price {} by earlier bids (time priority)", b.max_price))
            };
            Award { bid_id: b.id, filled: f, outcome, reason }
        })
        .collect();
    Clearing { price, sold, awards }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bid(id: u64, quantity: u64, price: u64) -> SealedBid {
        SealedBid { id, buyer: format!("b{id}"), quantity, max_price: Price(price), seq: id }
    }

    #[test]
    fn uniform_price_at_first_rejected_bid() {
        // 100 rps for sale; demand 60@5, 30@4, 40@3, 10@2.
        let c = clear(100, Price(1), &[bid(1, 60, 5), bid(2, 30, 4), bid(3, 40, 3), bid(4, 10, 2)]);
        assert_eq!(c.sold, 100);
        assert_eq!(c.price, Price(3), "the partly filled bid sets the price");
        let filled: Vec<u64> = c.awards.iter().map(|a| a.filled).collect();
        assert_eq!(filled, [60, 30, 10, 0]);
        assert_eq!(c.awards[2].outcome, Outcome::Partial);
        assert!(c.awards[3].reason.contains("outbid"), "{}", c.awards[3].reason);
    }

    #[test]
    fn exact_fit_prices_at_next_bid_and_undersubscribed_at_reserve() {
        let c = clear(90, Price(1), &[bid(1, 60, 5), bid(2, 30, 4), bid(3, 40, 3)]);
        assert_eq!((c.sold, c.price), (90, Price(3)));
        assert_eq!(c.awards[2].outcome, Outcome::Lost);
        let c = clear(1000, Price(2), &[bid(1, 60, 5), bid(2, 30, 1)]);
        assert_eq!((c.sold, c.price), (60, Price(2)));
        assert!(c.awards[1].reason.contains("reserve"));
    }

    #[test]
    fn ties_go_to_the_earlier_bid() {
        let mut late = bid(1, 50, 4);
        late.seq = 9;
        let early = SealedBid { seq: 2, ..bid(2, 50, 4) };
        let c = clear(50, Price(0), &[late, early]);
        assert_eq!(c.awards[1].filled, 50);
        assert_eq!(c.awards[0].filled, 0);
        assert!(c.awards[0].reason.contains("time priority"), "{}", c.awards[0].reason);
    }

    #[test]
    fn nothing_to_sell() {
        let c = clear(0, Price(0), &[bid(1, 5, 5)]);
        assert_eq!((c.sold, c.awards[0].outcome), (0, Outcome::Lost));
        assert!(c.awards[0].reason.contains("no capacity"));
    }

    fn bids() -> impl Strategy<Value = Vec<SealedBid>> {
        prop::collection::vec((1u64..500, 0u64..20, 0u64..50), 0..40).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (q, p, seq))| SealedBid {
                    id: i as u64,
                    buyer: format!("b{}", i % 5),
                    quantity: q,
                    max_price: Price(p),
                    seq,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn clearing_properties(supply in 0u64..5000, reserve in 0u64..10, bids in bids()) {
            let reserve = Price(reserve);
            let c = clear(supply, reserve, &bids);
            let total: u64 = c.awards.iter().map(|a| a.filled).sum();
            // Conservation and never oversell.
            prop_assert_eq!(total, c.sold);
            prop_assert!(c.sold <= supply);
            prop_assert!(c.price >= reserve);
            for (b, a) in bids.iter().zip(&c.awards) {
                prop_assert!(a.filled <= b.quantity);
                if a.filled > 0 {
                    // No winner pays more than its bid.
                    prop_assert!(c.price <= b.max_price);
                }
                // Price-time priority: a bid ranked ahead of one that got anything is filled in full.
                for (o, oa) in bids.iter().zip(&c.awards) {
                    let ahead = b.max_price > o.max_price
                        || (b.max_price == o.max_price && (b.seq, b.id) < (o.seq, o.id));
                    if ahead && oa.filled > 0 && b.max_price >= reserve {
                        prop_assert_eq!(a.filled, b.quantity);
                    }
                }
            }
            // Demand at or above the price is served up to the supply.
            let eligible: u64 = bids.iter().filter(|b| b.max_price >= reserve).map(|b| b.quantity).sum();
            prop_assert_eq!(c.sold, eligible.min(supply));
            // Uniform price: the reserve if all eligible demand fit, else the first rejected unit's bid.
            if eligible <= supply {
                prop_assert_eq!(c.price, reserve);
            } else {
                let first_rejected = bids.iter().zip(&c.awards)
                    .filter(|(b, a)| b.max_price >= reserve && a.filled < b.quantity)
                    .map(|(b, _)| b.max_price).max().unwrap();
                prop_assert_eq!(c.price, first_rejected);
            }
        }
    }
}
