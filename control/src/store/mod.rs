//! The durable store: SQLite in WAL mode with full sync, so a state change that was answered
//! survives `kill -9` and a power cut. Every change is one transaction.
//!
//! The schema lives in `schema.sql`; `PRAGMA user_version` says which version a file has.

mod rows;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

pub use self::rows::*;
use crate::market::{
    book::{Side, Tif},
    units::Price,
};
use crate::{
    config::{CustomerConfig, ProxyConfig},
    settings::CustomerSettings,
    tokens::TokenDigest,
};

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 4;

/// Version 2: tokens kept as SHA-256 digests, for every customer whose token the API set.
const SCHEMA_V2: &str = "
CREATE TABLE customer_tokens (
    customer    TEXT PRIMARY KEY,
    digest      TEXT NOT NULL UNIQUE,
    updated_at  INTEGER NOT NULL
);";

/// Version 3: what buyers set for themselves, laid over their entries (`settings`), and
/// standing orders (a bid placed in every new period).
const SCHEMA_V3: &str = "
CREATE TABLE customer_settings (
    customer    TEXT PRIMARY KEY,
    settings    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE standing_orders (
    id             INTEGER PRIMARY KEY,
    customer       TEXT NOT NULL,
    quantity_rps   INTEGER NOT NULL CHECK (quantity_rps > 0),
    price_micros   INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active', 'cancelled')),
    next_period    INTEGER NOT NULL,
    placed         INTEGER NOT NULL DEFAULT 0,
    last_order_id  INTEGER,
    last_error     TEXT,
    created_at     INTEGER NOT NULL,
    cancelled_at   INTEGER
);";

/// Version 4: proxies added through the API (config-file ones stay in the file), and which
/// proxies are drained (of either kind).
const SCHEMA_V4: &str = "
CREATE TABLE proxies (
    name        TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE proxy_drains (
    name        TEXT PRIMARY KEY,
    drained_at  INTEGER NOT NULL
);";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: {0}")]
    Corrupt(String),
    #[error("cannot open the store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("{0} would pass the largest integer (2^63 - 1)")]
    Overflow(String),
    #[error("store {path}: schema version {found} is newer than this binary's ({SCHEMA_VERSION})")]
    TooNew { path: String, found: i64 },
}

pub type StoreResult<T> = Result<T, StoreError>;

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Open (creating if needed) and migrate.
    /// The directory must exist (the deploy creates it; we do not create directories
    /// wherever a config points).
    pub fn open(path: &Path) -> StoreResult<Store> {
        let mut conn =
            Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.display().to_string(), found: version });
        }
        if version == 0 {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", 1)?;
            tx.commit()?;
        }
        if version < 2 {
            migrate_v2(&mut conn)?;
        }
        if version < 3 {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", 3)?;
            tx.commit()?;
        }
        if version < 4 {
            let tx = conn.transaction()?;
            tx.execute_batch(SCHEMA_V4)?;
            tx.pragma_update(None, "user_version", 4)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// `PRAGMA integrity_check` plus the market's own invariants; empty when all is well.
    pub fn check(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        let ok: String = self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if ok != "ok" {
            problems.push(format!("integrity_check: {ok}"));
        }
        // Every book order's filled quantity is exactly what its contracts sold.
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.quantity_rps - o.remaining_rps,
                    (SELECT COALESCE(SUM(c.rps), 0) FROM contracts c WHERE c.source = 'book'
                       AND ((o.side = 'bid' AND c.bid_id = o.id) OR (o.side = 'ask' AND c.ask_id = o.id)))
             FROM orders o",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (id, filled, contracted) = row?;
            if filled != contracted {
                problems.push(format!("order {id}: filled {filled} rps but contracts for {contracted}"));
            }
        }
        // Every auction award has one contract of the filled size.
        let mut stmt = self.conn.prepare(
            "SELECT b.id, b.filled_rps, (SELECT COALESCE(SUM(c.rps), 0) FROM contracts c
                WHERE c.source = 'auction' AND c.bid_id = b.id) FROM bids b",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (id, filled, contracted) = row?;
            if filled != contracted {
                problems.push(format!("bid {id}: filled {filled} rps but contracts for {contracted}"));
            }
        }
        Ok(problems)
    }

    /// Tests: make every write fail (as a full or broken disk would), or allow them again.
    #[cfg(test)]
    pub fn set_read_only(&self, on: bool) {
        self.conn.pragma_update(None, "query_only", on).expect("pragma");
    }

    // --- proxies -------------------------------------------------------------------------

    pub fn capacities(&self) -> StoreResult<Vec<(String, u64)>> {
        let mut stmt = self.conn.prepare("SELECT name, capacity_rps FROM proxy_capacity ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_capacity(&mut self, name: &str, capacity_rps: u64, now: i64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO proxy_capacity (name, capacity_rps, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET capacity_rps = ?2, updated_at = ?3",
            params![name, capacity_rps as i64, now],
        )?;
        Ok(())
    }

    /// The proxies added through the API, oldest first: each as stored, or why it cannot be
    /// read (the caller skips it and says so).
    pub fn proxies(&self) -> StoreResult<Vec<(String, Result<ProxyConfig, String>)>> {
        self.json_rows("SELECT name, config FROM proxies ORDER BY created_at, name", "config")
    }

    /// Add a proxy, or replace the one of its name.
    pub fn put_proxy(&mut self, p: &ProxyConfig, now: i64) -> StoreResult<()> {
        let json = serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO proxies (name, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET config = ?2, updated_at = ?3",
            params![p.name, json, now],
        )?;
        Ok(())
    }

    /// Forget a proxy added through the API: its entry, its capacity and whether it was
    /// drained, in one transaction.
    pub fn delete_proxy(&mut self, name: &str) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        for sql in [
            "DELETE FROM proxies WHERE name = ?1",
            "DELETE FROM proxy_drains WHERE name = ?1",
            "DELETE FROM proxy_capacity WHERE name = ?1",
        ] {
            tx.execute(sql, params![name])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn drained_proxies(&self) -> StoreResult<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT name FROM proxy_drains ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_drained(&mut self, name: &str, drained: bool, now: i64) -> StoreResult<()> {
        if drained {
            self.conn.execute(
                "INSERT INTO proxy_drains (name, drained_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, now],
            )?;
        } else {
            self.conn.execute("DELETE FROM proxy_drains WHERE name = ?1", params![name])?;
        }
        Ok(())
    }

    // --- customers added through the API ----------------------------------------------------

    /// The customers added through the API, oldest first: each as stored, or why it cannot be
    /// read (the caller skips it and says so).
    pub fn customers(&self) -> StoreResult<Vec<(String, Result<CustomerConfig, String>)>> {
        self.json_rows("SELECT id, config FROM customers ORDER BY created_at, id", "config")
    }

    /// Rows of (customer, JSON) from `sql`, each JSON read as a `T` or why it cannot be.
    fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        what: &str,
    ) -> StoreResult<Vec<(String, Result<T, String>)>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            out.push((id, serde_json::from_str(&json).map_err(|e| format!("its stored {what}: {e}"))));
        }
        Ok(out)
    }

    /// Add a customer, with the digest of its token, in one transaction.
    pub fn insert_customer(&mut self, c: &CustomerConfig, token: Option<TokenDigest>, now: i64) -> StoreResult<()> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO customers (id, config, token, created_at, updated_at) VALUES (?1, ?2, NULL, ?3, ?3)",
            params![c.id, json, now],
        )?;
        if let Some(d) = token {
            tx.execute(
                "INSERT INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)",
                params![c.id, d.to_hex(), now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The token digests the API set (added customers, rotations), by customer.
    pub fn token_digests(&self) -> StoreResult<Vec<(String, Option<TokenDigest>)>> {
        let mut stmt = self.conn.prepare("SELECT customer, digest FROM customer_tokens ORDER BY customer")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| r.map(|(c, d)| (c, TokenDigest::from_hex(&d))).map_err(StoreError::from)).collect()
    }

    /// A customer's new token (rotation); it replaces the config file's, if any.
    pub fn set_token(&mut self, customer: &str, digest: TokenDigest, now: i64) -> StoreResult<()> {
        self.conn.execute(
            "INSERT INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer) DO UPDATE SET digest = ?2, updated_at = ?3",
            params![customer, digest.to_hex(), now],
        )?;
        Ok(())
    }

    pub fn update_customer(&mut self, c: &CustomerConfig, now: i64) -> StoreResult<()> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn
            .execute("UPDATE customers SET config = ?2, updated_at = ?3 WHERE id = ?1", params![c.id, json, now])?;
        Ok(())
    }

    /// What buyers set for themselves, by customer: each as stored, or why it cannot be read.
    pub fn customer_settings(&self) -> StoreResult<Vec<(String, Result<CustomerSettings, String>)>> {
        self.json_rows("SELECT customer, settings FROM customer_settings ORDER BY customer", "settings")
    }

    /// A customer's settings in force from now on; empty ones are deleted (the entry alone).
    pub fn set_customer_settings(&mut self, customer: &str, settings: &CustomerSettings, now: i64) -> StoreResult<()> {
        if settings.is_empty() {
            self.conn.execute("DELETE FROM customer_settings WHERE customer = ?1", [customer])?;
            return Ok(());
        }
        let json = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO customer_settings (customer, settings, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer) DO UPDATE SET settings = ?2, updated_at = ?3",
            params![customer, json, now],
        )?;
        Ok(())
    }

    pub fn delete_customer(&mut self, id: &str) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM customer_settings WHERE customer = ?1", [id])?;
        tx.execute("DELETE FROM customer_tokens WHERE customer = ?1", [id])?;
        tx.execute("DELETE FROM customers WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    // --- usage and the ledger ---------------------------------------------------------------

    pub fn own_usage_since(&self, since: i64) -> StoreResult<Vec<(i64, u64)>> {
        let mut stmt =
            self.conn.prepare("SELECT interval_start, requests FROM own_usage WHERE interval_start >= ?1")?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One proxy report: the audit row, the network's own usage and each buyer's ledger line.
    pub fn record_report(&mut self, report: &ReportRecord) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        let served =
            serde_json::to_string(&report.served.iter().map(|s| (&s.customer, s.requests)).collect::<Vec<_>>())
                .unwrap_or_default();
        let own_requests = add(0, report.own_requests, "own_requests")?;
        tx.execute(
            "INSERT INTO proxy_reports (proxy, at, own_requests, served) VALUES (?1, ?2, ?3, ?4)",
            params![report.proxy, report.at, own_requests, served],
        )?;
        // Sums are added here, checked: SQLite would turn an integer past i64 into a REAL.
        let own: Option<i64> = tx
            .query_row("SELECT requests FROM own_usage WHERE interval_start = ?1", [report.interval_start], |r| {
                r.get(0)
            })
            .optional()?;
        let own = add(own.unwrap_or(0), report.own_requests, "the network's own requests in the interval")?;
        tx.execute(
            "INSERT INTO own_usage (interval_start, requests) VALUES (?1, ?2)
             ON CONFLICT (interval_start) DO UPDATE SET requests = ?2",
            params![report.interval_start, own],
        )?;
        for s in &report.served {
            let cur: Option<(i64, i64, i64)> = tx
                .query_row(
                    "SELECT requests, uncontracted_requests, charge_micros FROM usage
                     WHERE customer = ?1 AND interval_start = ?2",
                    params![s.customer, report.interval_start],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (r0, u0, c0) = cur.unwrap_or_default();
            let what = |k: &str| format!("{}'s {k} in the interval", s.customer);
            let (r1, u1, c1) = (
                add(r0, s.requests, &what("requests"))?,
                add(u0, s.uncontracted, &what("uncontracted requests"))?,
                add(c0, s.charge_micros, &what("charge"))?,
            );
            tx.execute(
                "INSERT INTO usage (customer, interval_start, requests, uncontracted_requests, charge_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (customer, interval_start) DO UPDATE SET requests = ?3,
                   uncontracted_requests = ?4, charge_micros = ?5",
                params![s.customer, report.interval_start, r1, u1, c1],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn usage(&self, customer: Option<&str>, from: i64, to: i64) -> StoreResult<Vec<UsageRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT customer, interval_start, requests, uncontracted_requests, charge_micros FROM usage
             WHERE (?1 IS NULL OR customer = ?1) AND interval_start >= ?2 AND interval_start < ?3
             ORDER BY interval_start, customer",
        )?;
        let rows = stmt.query_map(params![customer, from, to], UsageRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- auctions ------------------------------------------------------------------------

    pub fn insert_auction(&mut self, a: &NewAuction) -> StoreResult<AuctionRow> {
        self.conn.execute(
            "INSERT INTO auctions (period_start, period_end, closes_at, quantity_rps, reserve_micros, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6)",
            params![a.period_start, a.period_end, a.closes_at, a.quantity_rps as i64, a.reserve.0 as i64, a.created_at],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(self.auction(id)?.expect("just inserted"))
    }

    pub fn auction(&self, id: i64) -> StoreResult<Option<AuctionRow>> {
        Ok(self
            .conn
            .query_row(&format!("{} WHERE id = ?1", AuctionRow::SELECT), [id], AuctionRow::from_row)
            .optional()?)
    }

    pub fn auctions(&self, open_only: bool) -> StoreResult<Vec<AuctionRow>> {
        let filter = if open_only { " WHERE state = 'open'" } else { "" };
        let mut stmt = self.conn.prepare(&format!("{}{filter} ORDER BY id", AuctionRow::SELECT))?;
        let rows = stmt.query_map([], AuctionRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_bid(
        &mut self,
        auction_id: i64,
        customer: &str,
        quantity: u64,
        max_price: Price,
        now: i64,
    ) -> StoreResult<BidRow> {
        self.conn.execute(
            "INSERT INTO bids (auction_id, customer, quantity_rps, max_price_micros, submitted_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
            params![auction_id, customer, quantity as i64, max_price.0 as i64, now],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(self.bid(id)?.expect("just inserted"))
    }

    pub fn bid(&self, id: i64) -> StoreResult<Option<BidRow>> {
        Ok(self.conn.query_row(&format!("{} WHERE id = ?1", BidRow::SELECT), [id], BidRow::from_row).optional()?)
    }

    pub fn bids(&self, auction_id: i64, customer: Option<&str>) -> StoreResult<Vec<BidRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "{} WHERE auction_id = ?1 AND (?2 IS NULL OR customer = ?2) ORDER BY id",
            BidRow::SELECT
        ))?;
        let rows = stmt.query_map(params![auction_id, customer], BidRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn withdraw_bid(&mut self, id: i64) -> StoreResult<()> {
        self.conn.execute("UPDATE bids SET state = 'withdrawn' WHERE id = ?1 AND state = 'open'", [id])?;
        Ok(())
    }

    /// Close an auction: its result, every bid's award, and the contracts, in one transaction.
    pub fn settle_auction(&mut self, settle: &AuctionSettlement) -> StoreResult<Vec<ContractRow>> {
        let tx = self.conn.transaction()?;
        let changed = tx.execute(
            "UPDATE auctions SET state = 'cleared', clearing_price_micros = ?2, sold_rps = ?3, cleared_at = ?4
             WHERE id = ?1 AND state = 'open'",
            params![settle.auction_id, settle.price.0 as i64, settle.sold as i64, settle.at],
        )?;
        if changed != 1 {
            // Already cleared (a replay): nothing more to do.
            return Ok(Vec::new());
        }
        for a in &settle.awards {
            tx.execute(
                "UPDATE bids SET state = ?2, filled_rps = ?3, price_micros = ?4, reason = ?5 WHERE id = ?1",
                params![a.bid_id, a.state, a.filled as i64, (a.filled > 0).then_some(settle.price.0 as i64), a.reason],
            )?;
        }
        let created = insert_contracts(&tx, &settle.contracts)?;
        tx.commit()?;
        Ok(created)
    }

    // --- the book ------------------------------------------------------------------------

    pub fn max_order_id(&self) -> StoreResult<i64> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(id), 0) FROM orders", [], |r| r.get(0))?)
    }

    /// One book operation: orders inserted and updated, contracts for the fills.
    pub fn apply_book_change(&mut self, change: &BookChange) -> StoreResult<Vec<ContractRow>> {
        let tx = self.conn.transaction()?;
        for o in &change.inserted {
            tx.execute(
                "INSERT INTO orders (id, period_start, period_end, side, owner, price_micros, quantity_rps,
                   remaining_rps, tif, state, created_at, closed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    o.id,
                    o.period_start,
                    o.period_end,
                    side_str(o.side),
                    o.owner,
                    o.price.0 as i64,
                    o.quantity_rps as i64,
                    o.remaining_rps as i64,
                    tif_str(o.tif),
                    o.state,
                    o.created_at,
                    o.closed_at
                ],
            )?;
        }
        for u in &change.updated {
            tx.execute(
                "UPDATE orders SET remaining_rps = ?2, state = ?3, closed_at = ?4 WHERE id = ?1",
                params![u.id, u.remaining_rps as i64, u.state, u.closed_at],
            )?;
        }
        for u in &change.standing {
            update_standing(&tx, u)?;
        }
        let created = insert_contracts(&tx, &change.contracts)?;
        tx.commit()?;
        Ok(created)
    }

    // --- standing orders -----------------------------------------------------------------

    pub fn insert_standing(&mut self, s: &NewStanding) -> StoreResult<StandingRow> {
        self.conn.execute(
            "INSERT INTO standing_orders (customer, quantity_rps, price_micros, state, next_period, created_at)
             VALUES (?1, ?2, ?3, 'active', ?4, ?5)",
            params![s.customer, s.quantity_rps as i64, s.price.0 as i64, s.next_period, s.created_at],
        )?;
        Ok(StandingRow {
            id: self.conn.last_insert_rowid(),
            customer: s.customer.clone(),
            quantity_rps: s.quantity_rps,
            price: s.price,
            state: "active".into(),
            next_period: s.next_period,
            placed: 0,
            last_order_id: None,
            last_error: None,
            created_at: s.created_at,
            cancelled_at: None,
        })
    }

    pub fn standing(&self, id: i64) -> StoreResult<Option<StandingRow>> {
        let sql = format!("{} WHERE id = ?1", StandingRow::SELECT);
        Ok(self.conn.query_row(&sql, [id], StandingRow::from_row).optional()?)
    }

    /// Standing orders, oldest first: one buyer's (or all), only the active ones or all.
    pub fn standing_orders(&self, customer: Option<&str>, active_only: bool) -> StoreResult<Vec<StandingRow>> {
        let sql = format!(
            "{} WHERE (?1 IS NULL OR customer = ?1) AND (?2 = 0 OR state = 'active') ORDER BY id",
            StandingRow::SELECT
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![customer, active_only], StandingRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A standing order's progress alone (a period it could not place for).
    pub fn record_standing(&mut self, u: &StandingUpdate) -> StoreResult<()> {
        update_standing(&self.conn, u)
    }

    pub fn cancel_standing(&mut self, id: i64, now: i64) -> StoreResult<()> {
        self.conn.execute(
            "UPDATE standing_orders SET state = 'cancelled', cancelled_at = ?2 WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    pub fn order(&self, id: i64) -> StoreResult<Option<OrderRow>> {
        Ok(self.conn.query_row(&format!("{} WHERE id = ?1", OrderRow::SELECT), [id], OrderRow::from_row).optional()?)
    }

    /// Orders, oldest first: all open ones (`open_only`), or everyone's / one owner's.
    pub fn orders(&self, owner: Option<&str>, open_only: bool) -> StoreResult<Vec<OrderRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "{} WHERE (?1 IS NULL OR owner = ?1) AND (?2 = 0 OR state = 'open') ORDER BY id",
            OrderRow::SELECT
        ))?;
        let rows = stmt.query_map(params![owner, open_only as i64], OrderRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // --- contracts -----------------------------------------------------------------------

    pub fn contracts(&self, customer: Option<&str>) -> StoreResult<Vec<ContractRow>> {
        let mut stmt =
            self.conn.prepare(&format!("{} WHERE (?1 IS NULL OR customer = ?1) ORDER BY id", ContractRow::SELECT))?;
        let rows = stmt.query_map(params![customer], ContractRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Contracts not yet ended, for the scheduler.
    pub fn unfinished_contracts(&self) -> StoreResult<Vec<ContractRow>> {
        let mut stmt = self.conn.prepare(&format!("{} WHERE ended_at IS NULL ORDER BY id", ContractRow::SELECT))?;
        let rows = stmt.query_map([], ContractRow::from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record activations and ends, in one transaction; each is written once (a second
    /// write of the same transition changes nothing).
    pub fn mark_contracts(&mut self, activated: &[(i64, i64)], ended: &[(i64, i64)]) -> StoreResult<()> {
        let tx = self.conn.transaction()?;
        for (id, at) in activated {
            tx.execute(
                "UPDATE contracts SET activated_at = ?2 WHERE id = ?1 AND activated_at IS NULL",
                params![id, at],
            )?;
        }
        for (id, at) in ended {
            tx.execute("UPDATE contracts SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL", params![id, at])?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn update_standing(conn: &Connection, u: &StandingUpdate) -> StoreResult<()> {
    conn.execute(
        "UPDATE standing_orders SET next_period = ?2, placed = ?3, last_order_id = ?4, last_error = ?5 WHERE id = ?1",
        params![u.id, u.next_period, u.placed as i64, u.last_order_id, u.last_error],
    )?;
    Ok(())
}

/// `sum + more`, or an overflow error naming `what`.
fn add(sum: i64, more: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(more).ok().and_then(|m| sum.checked_add(m)).ok_or_else(|| StoreError::Overflow(what.to_owned()))
}

/// Version 1 kept API customers' tokens as text: they become digests, and the text goes.
fn migrate_v2(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA_V2)?;
    let plain: Vec<(String, String, i64)> = {
        let mut stmt = tx.prepare("SELECT id, token, updated_at FROM customers WHERE token IS NOT NULL")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    for (id, token, at) in plain {
        tx.execute(
            "INSERT OR IGNORE INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)",
            params![id, TokenDigest::of(&token).to_hex(), at],
        )?;
    }
    tx.execute("UPDATE customers SET token = NULL", [])?;
    tx.pragma_update(None, "user_version", 2)?;
    tx.commit()?;
    Ok(())
}

/// Insert contracts; returns them as written, built from what the transaction wrote (memory
/// follows the commit, never a second read that may fail).
fn insert_contracts(tx: &Transaction<'_>, contracts: &[NewContract]) -> StoreResult<Vec<ContractRow>> {
    let mut rows = Vec::with_capacity(contracts.len());
    for c in contracts {
        tx.execute(
            "INSERT INTO contracts (customer, period_start, period_end, rps, price_micros, source, auction_id,
               bid_id, ask_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                c.customer,
                c.period_start,
                c.period_end,
                c.rps as i64,
                c.price.0 as i64,
                c.source,
                c.auction_id,
                c.bid_id,
                c.ask_id,
                c.created_at
            ],
        )?;
        rows.push(ContractRow {
            id: tx.last_insert_rowid(),
            customer: c.customer.clone(),
            period_start: c.period_start,
            period_end: c.period_end,
            rps: c.rps,
            price: c.price,
            source: c.source.to_owned(),
            auction_id: c.auction_id,
            bid_id: c.bid_id,
            ask_id: c.ask_id,
            created_at: c.created_at,
            activated_at: None,
            ended_at: None,
        });
    }
    Ok(rows)
}

pub fn tif_str(tif: Tif) -> &'static str {
    match tif {
        Tif::Gtc => "gtc",
        Tif::Ioc => "ioc",
    }
}

pub fn side_str(side: Side) -> &'static str {
    match side {
        Side::Bid => "bid",
        Side::Ask => "ask",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_migrates_once_and_reopens() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut s = Store::open(&path).unwrap();
        s.set_capacity("edge-1", 100, 1).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.capacities().unwrap(), [("edge-1".to_owned(), 100)]);
        assert!(s.check().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn settings_are_kept_replaced_and_deleted() {
        let dir = tempdir();
        let path = dir.join("s.db");
        let mut s = Store::open(&path).unwrap();
        let set: CustomerSettings = serde_json::from_str(r#"{"estimate": 0.4, "origin_cname": null}"#).unwrap();
        s.set_customer_settings("shop", &set, 1).unwrap();
        s.set_customer_settings("news", &set.merged(&serde_json::from_str(r#"{"ttl": 9}"#).unwrap()), 1).unwrap();
        drop(s);
        let mut s = Store::open(&path).unwrap();
        let got = s.customer_settings().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("shop".to_owned(), Ok(set)));
        assert_eq!(got[0].1.as_ref().unwrap().ttl, Some(9));
        s.set_customer_settings("shop", &CustomerSettings::default(), 2).unwrap();
        assert_eq!(s.customer_settings().unwrap().len(), 1, "empty settings are the entry alone");
        let v: i64 = s.conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn usage_sums_never_pass_i64() {
        let dir = tempdir();
        let mut s = Store::open(&dir.join("s.db")).unwrap();
        let report = |own: u64, served: u64| ReportRecord {
            proxy: "edge-1".into(),
            at: 10,
            interval_start: 0,
            own_requests: own,
            served: vec![ServedRecord {
                customer: "shop".into(),
                requests: served,
                uncontracted: served,
                charge_micros: 0,
            }],
        };
        s.record_report(&report(1 << 62, 1 << 62)).unwrap();
        let e = s.record_report(&report(1 << 62, 1)).unwrap_err();
        assert!(matches!(e, StoreError::Overflow(_)), "{e}");
        assert!(matches!(s.record_report(&report(u64::MAX, 0)).unwrap_err(), StoreError::Overflow(_)));
        // Nothing of the refused reports was written.
        assert_eq!(s.usage(None, 0, i64::MAX).unwrap()[0].requests, 1 << 62);
        let n: i64 = s.conn.query_row("SELECT COUNT(*) FROM proxy_reports", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn version_1_tokens_become_digests() {
        let dir = tempdir();
        let path = dir.join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO customers (id, config, token, created_at, updated_at) VALUES ('news', '{}', 'news-secret', 1, 1)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.token_digests().unwrap(), [("news".to_owned(), Some(TokenDigest::of("news-secret")))]);
        let left: Option<String> = s.conn.query_row("SELECT token FROM customers", [], |r| r.get(0)).unwrap();
        assert_eq!(left, None, "the token's text is gone");
        // The unreadable stored config is reported, not fatal.
        assert!(s.customers().unwrap()[0].1.is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn settlement_is_written_once() {
        let dir = tempdir();
        let mut s = Store::open(&dir.join("s.db")).unwrap();
        let a = s
            .insert_auction(&NewAuction {
                period_start: 100,
                period_end: 200,
                closes_at: 90,
                quantity_rps: 10,
                reserve: Price(1),
                created_at: 0,
            })
            .unwrap();
        let b = s.insert_bid(a.id, "shop", 10, Price(5), 1).unwrap();
        let settle = AuctionSettlement {
            auction_id: a.id,
            price: Price(1),
            sold: 10,
            at: 90,
            awards: vec![AwardRecord { bid_id: b.id, state: "won", filled: 10, reason: "ok".into() }],
            contracts: vec![NewContract {
                customer: "shop".into(),
                period_start: 100,
                period_end: 200,
                rps: 10,
                price: Price(1),
                source: "auction",
                auction_id: Some(a.id),
                bid_id: Some(b.id),
                ask_id: None,
                created_at: 90,
            }],
        };
        assert_eq!(s.settle_auction(&settle).unwrap().len(), 1);
        assert_eq!(s.settle_auction(&settle).unwrap().len(), 0, "a replay settles nothing");
        assert_eq!(s.contracts(None).unwrap().len(), 1);
        assert!(s.check().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spillway-store-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
