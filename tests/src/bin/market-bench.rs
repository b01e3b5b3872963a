//! `cargo xtask bench`, market part: order-book matching rate and auction clearing time for
//! 10 000 bids, for the pure algorithms and through the market with its SQLite store (every
//! order and every clearing one fsync'd transaction). Adds a "market" object to
//! target/bench/results.json.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use spillway::{
    capacity::{Capacity, forecast::ForecastParams},
    market::{
        AuctionRequest, BidRequest, Market, MarketParams, OrderRequest,
        auction::{self, SealedBid},
        book::{Book, Order, Side, Tif},
        units::Price,
    },
    store::Store,
};

const BIDS: usize = 10_000;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Orders per second through the pure book: a stream of bids and asks around one price,
/// a quarter IOC, so most orders trade and the book stays a few thousand deep.
fn book_rate(rng: &mut StdRng) -> (f64, usize, u64) {
    let mut book = Book::new();
    let n = 1_000_000usize;
    let orders: Vec<Order> = (0..n)
        .map(|i| Order {
            id: i as u64,
            side: if rng.random_bool(0.5) { Side::Bid } else { Side::Ask },
            owner: String::new(),
            price: Price(rng.random_range(95..=105) * 10_000),
            remaining: rng.random_range(1..100),
            tif: if rng.random_bool(0.25) { Tif::Ioc } else { Tif::Gtc },
        })
        .collect();
    let mut fills = 0u64;
    let t = Instant::now();
    for o in orders {
        fills += book.submit(o).fills.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    (n as f64 / secs, book.len(), fills)
}

fn clear_time(rng: &mut StdRng) -> Duration {
    let bids: Vec<SealedBid> = (0..BIDS)
        .map(|i| SealedBid {
            id: i as u64,
            buyer: format!("b{}", i % 100),
            quantity: rng.random_range(1..1000),
            max_price: Price(rng.random_range(0..5_000_000)),
            seq: i as u64,
        })
        .collect();
    median(
        (0..21)
            .map(|_| {
                let t = Instant::now();
                let c = auction::clear(2_000_000, Price(500_000), &bids);
                let d = t.elapsed();
                assert!(c.sold <= 2_000_000);
                d
            })
            .collect(),
    )
}

/// Through the market and a real store on disk: orders/s, and one 10 000-bid auction cleared
/// and settled (bids, awards and contracts in one transaction).
fn with_store(rng: &mut StdRng) -> (f64, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(&dir.path().join("bench.db")).expect("store");
    let mut cap = Capacity::new(60, ForecastParams::default(), 0.0);
    cap.set_proxy("edge", 10_000_000);
    let params = MarketParams { period_s: 3600, horizon_periods: 24, reserve: Price(500_000) };
    let mut m = Market::load(params, &store).expect("market");
    // Ten seconds into an hour; the orders go to the next hour.
    let hour: i64 = 500_000 * 3600;
    let now = hour + 10;
    let period = hour + 3600;
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        let req = OrderRequest {
            period_start: period,
            customer: format!("b{}", i % 50),
            price: Price(rng.random_range(100_000..900_000)),
            quantity_rps: rng.random_range(1..100),
            tif: Tif::Gtc,
        };
        m.place_order(&mut store, &cap, &req, now).expect("order");
    }
    let orders_per_s = n as f64 / t.elapsed().as_secs_f64();
    let a = m
        .open_auction(
            &mut store,
            &cap,
            &AuctionRequest {
                period_start: period + 3600,
                closes_at: now + 60,
                quantity_rps: Some(2_000_000),
                reserve: None,
            },
            now,
        )
        .expect("auction");
    for i in 0..BIDS {
        let bid = BidRequest {
            auction_id: a.id,
            customer: format!("b{}", i % 100),
            quantity_rps: rng.random_range(1..1000),
            max_price: Price(rng.random_range(0..5_000_000)),
        };
        m.place_bid(&mut store, &cap, &bid, now).expect("bid");
    }
    let t = Instant::now();
    m.clear_auction(&mut store, &cap, a.id, now + 60).expect("clear");
    (orders_per_s, t.elapsed())
}

fn main() {
    let mut rng = StdRng::seed_from_u64(1);
    let (rate, depth, fills) = book_rate(&mut rng);
    println!(
        "order book (pure): {:.0} orders/s over 1 000 000 orders ({fills} fills, {depth} resting at the end)",
        rate
    );
    let clear = clear_time(&mut rng);
    println!("auction clearing (pure), {BIDS} bids: {:.2} ms (median of 21)", clear.as_secs_f64() * 1e3);
    let (orders_per_s, settle) = with_store(&mut rng);
    println!("order book with the SQLite store (one fsync'd transaction per order): {orders_per_s:.0} orders/s");
    println!("auction with {BIDS} bids cleared and settled in the store: {:.1} ms", settle.as_secs_f64() * 1e3);

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let out = dir.join("results.json");
    let mut doc: Value =
        std::fs::read_to_string(&out).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(json!({}));
    doc["market"] = json!({
        "book_orders_per_s": rate,
        "book_fills": fills,
        "auction_clear_ms_10000_bids": clear.as_secs_f64() * 1e3,
        "store_orders_per_s": orders_per_s,
        "store_auction_clear_and_settle_ms_10000_bids": settle.as_secs_f64() * 1e3,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc).expect("json")).expect("write results");
    println!("wrote {}", out.display());
}
