//! The market as a whole over a real store (SQLite, and PostgreSQL in `cargo xtask test`): auctions and the book selling from one
//! pool, and a reload from the store giving back the same market.

use proptest::prelude::*;

use super::*;
use crate::capacity::forecast::ForecastParams;
use crate::store::testing::Place;

const P: i64 = 60;

fn setup(name: &str) -> (Place, Store, Capacity, Market) {
    let dir = Place::new(&format!("market-{name}"));
    let store = dir.open();
    let mut cap = Capacity::new(60, ForecastParams::default(), 0.0);
    cap.set_proxy("edge-1", 1000);
    let params = MarketParams { period_s: P, horizon_periods: 4, reserve: Price(1_000_000) };
    let market = Market::load(params, &store).unwrap();
    (dir, store, cap, market)
}

fn bid(auction_id: i64, customer: &str, quantity_rps: u64, max_price: Price) -> BidRequest {
    BidRequest { auction_id, customer: customer.into(), quantity_rps, max_price }
}

fn order(period: i64, customer: &str, q: u64, price: u64, tif: Tif) -> OrderRequest {
    OrderRequest { period_start: period, customer: customer.into(), price: Price(price), quantity_rps: q, tif }
}

#[test]
fn book_sells_the_unused_capacity_at_the_ask_and_no_more() {
    let (dir, mut store, cap, mut m) = setup("book");
    let now = 1000 * P + 5;
    let p = 1001 * P;
    // Below the reserve: rests, no contract.
    let (o, c) = m.place_order(&mut store, &cap, &order(p, "shop", 100, 500_000, Tif::Gtc), now).unwrap();
    assert_eq!((o.state.as_str(), c.len()), ("open", 0));
    // At or above: trades at the network's ask price (the resting order's).
    let (o, c) = m.place_order(&mut store, &cap, &order(p, "blog", 700, 3_000_000, Tif::Gtc), now).unwrap();
    assert_eq!((o.state.as_str(), c.len(), c[0].rps, c[0].price), ("filled", 1, 700, Price(1_000_000)));
    // Only 300 left: an IOC for 500 gets 300 and the rest is cancelled.
    let (o, c) = m.place_order(&mut store, &cap, &order(p, "blog", 500, 3_000_000, Tif::Ioc), now).unwrap();
    assert_eq!((o.state.as_str(), o.remaining_rps, c[0].rps), ("cancelled", 200, 300));
    assert_eq!(m.availability(&cap, p).available_rps, 0);
    assert!(m.depth(p).asks.is_empty());
    // Past periods and misaligned ones are refused.
    assert!(matches!(
        m.place_order(&mut store, &cap, &order(999 * P, "x", 1, 1, Tif::Gtc), now),
        Err(MarketError::Conflict(_))
    ));
    assert!(matches!(
        m.place_order(&mut store, &cap, &order(p + 1, "x", 1, 1, Tif::Gtc), now),
        Err(MarketError::Invalid(_))
    ));
    assert!(matches!(
        m.place_order(&mut store, &cap, &order(p, "x", 5000, 1, Tif::Gtc), now),
        Err(MarketError::Invalid(_))
    ));
    assert!(store.check().unwrap().is_empty(), "{:?}", store.check());
    drop(dir);
}

#[test]
fn a_block_buys_every_period_or_none() {
    let (dir, mut store, cap, mut m) = setup("block");
    let now = 1000 * P + 5;
    let p = 1001 * P;
    // 400 of the 1000 of p + P are sold already: a block of 700 a period cannot fill there.
    m.place_order(&mut store, &cap, &order(p + P, "blog", 400, 1_000_000, Tif::Gtc), now).unwrap();
    // (The network's asks in the block's periods are brought up to date: its own state.)
    let bought =
        |store: &Store| (store.orders(Some("shop"), false).unwrap().len(), store.contracts(None).unwrap().len());
    let before = bought(&store);
    let e = m.place_block(&mut store, &cap, &order(p, "shop", 700, 2_000_000, Tif::Gtc), 3, now).unwrap_err();
    assert!(
        matches!(&e, MarketError::Conflict(m) if m.contains(&format!("period {}", p + P)) && m.contains("offers 600")),
        "{e}"
    );
    assert_eq!(bought(&store), before, "nothing bought");
    assert_eq!(m.availability(&cap, p).available_rps, 1000);
    // Below the ask price: nothing either.
    assert!(matches!(
        m.place_block(&mut store, &cap, &order(p, "shop", 100, 500_000, Tif::Ioc), 2, now),
        Err(MarketError::Conflict(_))
    ));
    // 600 a period fits: three contracts at the ask, one per period, in one transaction.
    let (orders, contracts) =
        m.place_block(&mut store, &cap, &order(p, "shop", 600, 2_000_000, Tif::Gtc), 3, now).unwrap();
    let periods: Vec<i64> = contracts.iter().map(|c| c.period_start).collect();
    assert_eq!(periods, [p, p + P, p + 2 * P]);
    assert!(orders.iter().all(|o| o.state == "filled" && o.tif == Tif::Ioc));
    assert!(contracts.iter().all(|c| c.rps == 600 && c.price == Price(1_000_000) && c.customer == "shop"));
    assert_eq!(m.availability(&cap, p + P).available_rps, 0);
    // Periods out of range, or a block past the horizon.
    for (start, n) in [(p, 0), (p, 6), (p + 3 * P, 3), (p + 1, 2)] {
        assert!(
            m.place_block(&mut store, &cap, &order(start, "shop", 1, 2_000_000, Tif::Ioc), n, now).is_err(),
            "{start} {n}"
        );
    }
    assert!(store.check().unwrap().is_empty(), "{:?}", store.check());
    let again = Market::load(*m.params(), &store).unwrap();
    assert_eq!(again.availability(&cap, p + 2 * P), m.availability(&cap, p + 2 * P));
    drop(dir);
}

#[test]
fn a_standing_order_bids_once_in_every_new_period_until_cancelled() {
    use super::standing::StandingRequest;
    let (dir, mut store, cap, mut m) = setup("standing");
    let now = 1000 * P + 5;
    let req = |first| StandingRequest {
        customer: "shop".into(),
        quantity_rps: 300,
        price: Price(2_000_000),
        period_start: first,
    };
    let s = m.place_standing(&mut store, &cap, &req(None), now).unwrap();
    assert_eq!((s.next_period, s.placed), (1005 * P, 0), "from the next period to open for sale");
    m.tick(&mut store, &cap, now + 10).unwrap();
    assert_eq!(store.standing(s.id).unwrap().unwrap().placed, 0, "not open yet");
    // 1005P opens at 1001P: one bid, filled at the ask; a second tick, or a market rebuilt
    // from the store, places no second one.
    m.tick(&mut store, &cap, 1001 * P).unwrap();
    m.tick(&mut store, &cap, 1001 * P + 1).unwrap();
    let mut m = Market::load(*m.params(), &store).unwrap();
    m.tick(&mut store, &cap, 1001 * P + 2).unwrap();
    let got = store.standing(s.id).unwrap().unwrap();
    assert_eq!((got.placed, got.next_period, got.last_error.clone()), (1, 1006 * P, None));
    let order = store.order(got.last_order_id.unwrap()).unwrap().unwrap();
    assert_eq!((order.period_start, order.quantity_rps, order.state.as_str()), (1005 * P, 300, "filled"));
    assert_eq!(crate::contracts::active_rps(&store.contracts(Some("shop")).unwrap(), "shop", 1005 * P), 300);
    // From a period already open: a bid in each open period at once.
    let t = m.place_standing(&mut store, &cap, &req(Some(1002 * P)), 1001 * P + 3).unwrap();
    assert_eq!((t.placed, t.next_period), (4, 1006 * P));
    assert!(m.place_standing(&mut store, &cap, &req(Some(1001 * P + 7)), 1001 * P + 3).is_err(), "not a boundary");
    assert!(m.place_standing(&mut store, &cap, &req(Some(1007 * P)), 1001 * P + 3).is_err(), "beyond the next to open");
    // Cancelled: no more bids; another buyer cannot cancel it, nor can it be cancelled twice.
    assert!(matches!(m.cancel_standing(&mut store, t.id, Some("blog"), 1001 * P + 4), Err(MarketError::NotFound(_))));
    assert_eq!(m.cancel_standing(&mut store, t.id, Some("shop"), 1001 * P + 4).unwrap().state, "cancelled");
    assert!(matches!(m.cancel_standing(&mut store, t.id, None, 1001 * P + 4), Err(MarketError::Conflict(_))));
    m.tick(&mut store, &cap, 1002 * P).unwrap();
    assert_eq!(store.standing(t.id).unwrap().unwrap().placed, 4);
    assert_eq!(store.standing(s.id).unwrap().unwrap().placed, 2, "the active one goes on");
    // Down for a long while: the ended periods are skipped, said so, and the open ones bid.
    m.tick(&mut store, &cap, 1100 * P).unwrap();
    let got = store.standing(s.id).unwrap().unwrap();
    assert_eq!((got.placed, got.next_period), (7, 1105 * P));
    assert!(got.last_error.is_none(), "the last period it came to got its bid");
    assert!(store.check().unwrap().is_empty(), "{:?}", store.check());
    drop(dir);
}

#[test]
fn auction_reserves_its_share_and_returns_what_it_did_not_sell() {
    let (dir, mut store, cap, mut m) = setup("auction");
    let now = 1000 * P;
    let p = 1002 * P;
    m.tick(&mut store, &cap, now).unwrap();
    let a = m
        .open_auction(
            &mut store,
            &cap,
            &AuctionRequest { period_start: p, closes_at: now + 30, quantity_rps: Some(600), reserve: None },
            now,
        )
        .unwrap();
    assert_eq!(m.availability(&cap, p).available_rps, 400);
    assert_eq!(m.depth(p).asks[0].quantity_rps, 400, "the book offers only what the auction does not hold");
    m.place_bid(&mut store, &cap, &bid(a.id, "shop", 400, Price(5_000_000)), now + 1).unwrap();
    m.place_bid(&mut store, &cap, &bid(a.id, "blog", 100, Price(2_000_000)), now + 2).unwrap();
    m.place_bid(&mut store, &cap, &bid(a.id, "cheap", 100, Price(500_000)), now + 3).unwrap();
    assert!(matches!(
        m.place_bid(&mut store, &cap, &bid(a.id, "late", 1, Price(9)), now + 30),
        Err(MarketError::Conflict(_))
    ));
    // The tick at closes_at clears it: 500 sold at the reserve (all eligible demand fit).
    m.tick(&mut store, &cap, now + 30).unwrap();
    let a = store.auction(a.id).unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.sold_rps, a.clearing_price), ("cleared", Some(500), Some(Price(1_000_000))));
    let bids = store.bids(a.id, None).unwrap();
    assert_eq!(bids[2].state, "lost");
    assert!(bids[2].reason.as_deref().unwrap().contains("reserve"));
    // 100 unsold returns to the book.
    assert_eq!(m.availability(&cap, p).available_rps, 500);
    assert_eq!(m.depth(p).asks[0].quantity_rps, 500);
    // The contracts start at the period, to the second, even while the store takes no write:
    // in force in memory at once, recorded when the store comes back.
    let t = m.contract_transitions(&mut store, p - 1);
    assert!(t.activate.is_empty());
    store.set_read_only(true);
    let t = m.contract_transitions(&mut store, p);
    assert_eq!(t.activate.len(), 2);
    assert_eq!(crate::contracts::active_rps(m.contracts(), "shop", p), 400);
    assert!(store.unfinished_contracts().unwrap().iter().all(|c| c.activated_at.is_none()), "not recorded yet");
    store.set_read_only(false);
    assert!(m.contract_transitions(&mut store, p + 1).activate.is_empty(), "an activation is due once");
    assert!(store.unfinished_contracts().unwrap().iter().all(|c| c.activated_at == Some(p)), "recorded on retry");
    let t = m.contract_transitions(&mut store, p + P);
    assert_eq!(t.end.len(), 2);
    assert!(m.contracts().is_empty());
    assert!(store.check().unwrap().is_empty());
    drop(dir);
}

#[derive(Debug, Clone)]
enum Op {
    Order(u8, u64, u64, bool),
    Cancel(u8),
    Block(u8, u64, u64, u8),
    Auction(u8, u64),
    Bid(u8, u64, u64),
    Advance(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0u8..3, 1u64..600, 0u64..4, prop::bool::weighted(0.2)).prop_map(|(p, q, pr, ioc)| Op::Order(p, q, pr, ioc)),
            1 => (0u8..40).prop_map(Op::Cancel),
            1 => (0u8..3, 1u64..600, 0u64..4, 1u8..4).prop_map(|(p, q, pr, n)| Op::Block(p, q, pr, n)),
            1 => (1u8..3, 1u64..800).prop_map(|(p, q)| Op::Auction(p, q)),
            2 => (0u8..8, 1u64..600, 0u64..4).prop_map(|(a, q, pr)| Op::Bid(a, q, pr)),
            1 => (1u8..40).prop_map(Op::Advance),
        ],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn never_oversold_consistent_and_reloadable(ops in ops()) {
        let (dir, mut store, cap, mut m) = setup("prop");
        let mut now = 1000 * P + 1;
        let mut auctions: Vec<i64> = Vec::new();
        for op in ops {
            let base = m.period_of(now);
            // Errors (bad periods, closed auctions, nothing to auction) are fine; they must change nothing.
            match op {
                Op::Order(k, q, pr, ioc) => {
                    let tif = if ioc { Tif::Ioc } else { Tif::Gtc };
                    let _ = m.place_order(&mut store, &cap, &order(base + i64::from(k) * P, "b", q, pr * 1_000_000, tif), now);
                }
                Op::Cancel(id) => { let _ = m.cancel_order(&mut store, i64::from(id), None, now); }
                Op::Block(k, q, pr, n) => {
                    let req = order(base + i64::from(k) * P, "k", q, pr * 1_000_000, Tif::Ioc);
                    let bought_before = store.contracts(Some("k")).unwrap().len();
                    match m.place_block(&mut store, &cap, &req, i64::from(n), now) {
                        Ok((orders, _)) => prop_assert!(orders.len() == usize::from(n) && orders.iter().all(|o| o.remaining_rps == 0)),
                        Err(_) => prop_assert_eq!(store.contracts(Some("k")).unwrap().len(), bought_before, "all or none"),
                    }
                }
                Op::Auction(k, q) => {
                    let req = AuctionRequest { period_start: base + i64::from(k) * P, closes_at: now + 10, quantity_rps: Some(q), reserve: None };
                    if let Ok(a) = m.open_auction(&mut store, &cap, &req, now) { auctions.push(a.id); }
                }
                Op::Bid(i, q, pr) => {
                    if let Some(&a) = auctions.get(usize::from(i)) {
                        let _ = m.place_bid(&mut store, &cap, &bid(a, "c", q, Price(pr * 1_000_000)), now);
                    }
                }
                Op::Advance(s) => {
                    now += i64::from(s);
                    m.tick(&mut store, &cap, now).unwrap();
                    m.contract_transitions(&mut store, now);
                }
            }
            // Never more sold than unused, per period, counting every contract ever made.
            let mut sold = std::collections::BTreeMap::<i64, u64>::new();
            for c in store.contracts(None).unwrap() {
                *sold.entry(c.period_start).or_default() += c.rps;
            }
            for (p, s) in sold {
                prop_assert!(s <= cap.period(p, p + P).unused_rps, "period {} sold {}", p, s);
            }
            let problems = store.check().unwrap();
            prop_assert!(problems.is_empty(), "{:?}", problems);
        }
        // A market rebuilt from the store is the same market.
        let again = Market::load(*m.params(), &store).unwrap();
        for p in m.periods(now) {
            prop_assert_eq!(format!("{:?}", again.depth(p)), format!("{:?}", m.depth(p)));
            prop_assert_eq!(again.availability(&cap, p), m.availability(&cap, p));
        }
        drop(dir);
    }
}
