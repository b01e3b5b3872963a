//! The durable store: every change is one transaction, on one of two engines behind the same
//! SQL, schema and checks:
//!
//! - SQLite (a single host, the default): WAL mode with full sync, so a state change that was
//!   answered survives `kill -9` and a power cut; `PRAGMA user_version` says which version a
//!   file has;
//! - PostgreSQL (a cluster's control hosts): the same tables, created by the first host that
//!   opens an empty database; `spillway_schema` says which version it has.
//!
//! The schema lives in `schema.sql` and the `SCHEMA_V*` steps below; PostgreSQL's is the same
//! text with 64-bit integers.

mod db;
pub(crate) mod postgres;
mod rows;
#[cfg(test)]
pub mod testing;

use std::path::Path;

pub use self::db::Fence;
use self::db::{Conn, Db, Tx, vals};
pub use self::db::{Row, Value};
pub use self::rows::*;
use crate::market::{
    book::{Side, Tif},
    units::Price,
};
use crate::{
    config::{CustomerConfig, ProxyConfig, StoreConfig},
    settings::CustomerSettings,
    tls::ClientTls,
    tokens::TokenDigest,
};

const SCHEMA: &str = include_str!("schema.sql");
/// Each schema version's statements, from the first.
const STEPS: [(i64, &str); 5] = [(1, SCHEMA), (2, SCHEMA_V2), (3, SCHEMA_V3), (4, SCHEMA_V4), (5, SCHEMA_V5)];
const SCHEMA_VERSION: i64 = 5;

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

/// Version 5: the term of the control replica that leads (see [`Fence`]); 0 until one does.
const SCHEMA_V5: &str = "
CREATE TABLE spillway_leader (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    term    INTEGER NOT NULL,
    holder  TEXT NOT NULL,
    since   INTEGER NOT NULL
);
INSERT INTO spillway_leader (id, term, holder, since) VALUES (1, 0, '', 0);";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store ({target}): {message}")]
    Postgres { target: String, message: String },
    #[error("store: {0}")]
    Corrupt(String),
    #[error("cannot open the store {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("{0} would pass the largest integer (2^63 - 1)")]
    Overflow(String),
    #[error("store {path}: schema version {found} is newer than this binary's ({SCHEMA_VERSION})")]
    TooNew { path: String, found: i64 },
    #[error("store: cannot read the password file {path}: {message}")]
    PasswordFile { path: String, message: String },
    #[error("this control replica does not lead the cluster: only the leader writes")]
    NotLeader,
    #[error("the store is led by a newer leader (term {term}, {holder}): this replica writes no more")]
    Fenced { term: i64, holder: String },
}

pub type StoreResult<T> = Result<T, StoreError>;

pub struct Store {
    db: Db,
}

impl Store {
    /// Open the store a config names: its SQLite file, or its PostgreSQL database.
    pub fn open_config(c: &StoreConfig) -> StoreResult<Store> {
        match (&c.path, &c.url) {
            (_, Some(url)) => {
                let password = match &c.password_file {
                    Some(p) => Some(
                        std::fs::read_to_string(p)
                            .map_err(|e| StoreError::PasswordFile {
                                path: p.display().to_string(),
                                message: e.to_string(),
                            })?
                            .trim_end_matches(['\n', '\r'])
                            .to_owned(),
                    ),
                    None => None,
                };
                Store::open_postgres(url, password.as_deref(), c.tls().as_ref())
            }
            (Some(path), None) => Store::open(path),
            (None, None) => Store::open(Path::new(":memory:")),
        }
    }

    /// Open (creating if needed) and migrate a SQLite file.
    /// The directory must exist (the deploy creates it; we do not create directories
    /// wherever a config points).
    pub fn open(path: &Path) -> StoreResult<Store> {
        let conn = rusqlite::Connection::open(path)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.display().to_string(), found: version });
        }
        let store = Store { db: Db::new(Conn::Sqlite(conn)) };
        for (to, sql) in STEPS.into_iter().filter(|(to, _)| *to > version) {
            let tx = store.db.transaction()?;
            tx.batch(sql)?;
            if to == 2 {
                migrate_v2_tokens(&tx)?;
            }
            tx.batch(&format!("PRAGMA user_version = {to}"))?;
            tx.commit()?;
        }
        Ok(store)
    }

    /// Connect to a PostgreSQL database and create the schema in it if it is empty. Two hosts
    /// opening one database at once are ordered by an advisory lock held in the transaction.
    pub fn open_postgres(url: &str, password: Option<&str>, tls: Option<&ClientTls>) -> StoreResult<Store> {
        let conn = postgres::PgConn::connect(url, password, tls)?;
        let target = conn.target.clone();
        let store = Store { db: Db::new(Conn::Postgres(conn)) };
        let tx = store.db.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(?1)", vals![SCHEMA_LOCK])?;
        tx.batch("CREATE TABLE IF NOT EXISTS spillway_schema (version BIGINT NOT NULL)")?;
        let version: i64 =
            tx.query_opt("SELECT version FROM spillway_schema", &[])?.map(|r| r.get(0)).transpose()?.unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: target, found: version });
        }
        if version == 0 {
            // A new database starts at the current version (there is no older one to migrate).
            let all = STEPS.map(|(_, sql)| sql).join("\n");
            tx.batch(&postgres::schema(&all))?;
            tx.execute("INSERT INTO spillway_schema (version) VALUES (?1)", vals![SCHEMA_VERSION])?;
        } else {
            for (to, sql) in STEPS.into_iter().filter(|(to, _)| *to > version) {
                tx.batch(&postgres::schema(sql))?;
                tx.execute("UPDATE spillway_schema SET version = ?1", vals![to])?;
            }
        }
        tx.commit()?;
        Ok(store)
    }

    /// Which engine holds the store: `sqlite` or `postgresql`.
    pub fn engine(&self) -> &'static str {
        self.db.engine()
    }

    /// Where the store is: the SQLite file, or `postgresql host:port/dbname as user` (never
    /// a password).
    pub fn describe(&self) -> String {
        match &self.db.conn {
            Conn::Sqlite(c) => c.path().filter(|p| !p.is_empty()).unwrap_or(":memory:").to_owned(),
            Conn::Postgres(c) => c.target.clone(),
        }
    }

    /// What this connection may write (see [`Fence`]).
    pub fn fence(&self) -> Fence {
        self.db.fence()
    }

    pub fn set_fence(&self, f: Fence) {
        self.db.set_fence(f)
    }

    /// The term and holder the store names as the cluster's leader.
    pub fn term(&self) -> StoreResult<(i64, String)> {
        self.db.term()
    }

    /// Make `term` (a newer election's) the store's, for `holder`, and write as its leader
    /// from now on. It waits for the transactions of the term before (they read it under a
    /// share lock), and every one they begin after fails. A term no newer than the store's is
    /// refused: another replica was elected after this one.
    pub fn take_term(&mut self, term: i64, holder: &str, now: i64) -> StoreResult<()> {
        self.db.set_fence(Fence::Open);
        let taken = self.db.execute(
            "UPDATE spillway_leader SET term = ?1, holder = ?2, since = ?3
             WHERE id = 1 AND (term < ?1 OR (term = ?1 AND holder = ?2))",
            vals![term, holder, now],
        );
        match taken {
            Ok(1) => {
                self.db.set_fence(Fence::Leader(term));
                Ok(())
            }
            Ok(_) => {
                self.db.set_fence(Fence::Follower);
                let (term, holder) = self.db.term()?;
                Err(StoreError::Fenced { term, holder })
            }
            Err(e) => {
                self.db.set_fence(Fence::Follower);
                Err(e)
            }
        }
    }

    /// The schema version the store is at.
    pub fn schema_version(&self) -> StoreResult<i64> {
        match &self.db.conn {
            Conn::Sqlite(c) => Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            Conn::Postgres(_) => self.db.query_one("SELECT version FROM spillway_schema", &[])?.get(0),
        }
    }

    /// The engine's own check (SQLite's integrity_check) plus the market's invariants; empty
    /// when all is well.
    pub fn check(&self) -> StoreResult<Vec<String>> {
        let mut problems = Vec::new();
        if let Conn::Sqlite(c) = &self.db.conn {
            let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if ok != "ok" {
                problems.push(format!("integrity_check: {ok}"));
            }
        }
        // Every book order's filled quantity is exactly what its contracts sold.
        for r in self.db.query(
            "SELECT o.id, o.quantity_rps - o.remaining_rps,
                    CAST((SELECT COALESCE(SUM(c.rps), 0) FROM contracts c WHERE c.source = 'book'
                       AND ((o.side = 'bid' AND c.bid_id = o.id) OR (o.side = 'ask' AND c.ask_id = o.id))) AS BIGINT)
             FROM orders o",
            &[],
        )? {
            let (id, filled, contracted): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if filled != contracted {
                problems.push(format!("order {id}: filled {filled} rps but contracts for {contracted}"));
            }
        }
        // Every auction award has one contract of the filled size.
        for r in self.db.query(
            "SELECT b.id, b.filled_rps, CAST((SELECT COALESCE(SUM(c.rps), 0) FROM contracts c
                WHERE c.source = 'auction' AND c.bid_id = b.id) AS BIGINT) FROM bids b",
            &[],
        )? {
            let (id, filled, contracted): (i64, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if filled != contracted {
                problems.push(format!("bid {id}: filled {filled} rps but contracts for {contracted}"));
            }
        }
        Ok(problems)
    }

    /// Tests: make every write fail (as a full or broken disk would), or allow them again.
    #[cfg(test)]
    pub fn set_read_only(&self, on: bool) {
        match &self.db.conn {
            Conn::Sqlite(c) => c.pragma_update(None, "query_only", on).expect("pragma"),
            Conn::Postgres(_) => {
                let v = if on { "on" } else { "off" };
                self.db.batch(&format!("SET default_transaction_read_only = {v}")).expect("set")
            }
        }
    }

    // --- proxies -------------------------------------------------------------------------

    pub fn capacities(&self) -> StoreResult<Vec<(String, u64)>> {
        self.db
            .query("SELECT name, capacity_rps FROM proxy_capacity ORDER BY name", &[])?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))
            .collect()
    }

    pub fn set_capacity(&mut self, name: &str, capacity_rps: u64, now: i64) -> StoreResult<()> {
        self.db.execute(
            "INSERT INTO proxy_capacity (name, capacity_rps, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET capacity_rps = ?2, updated_at = ?3",
            vals![name, capacity_rps as i64, now],
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
        self.db.execute(
            "INSERT INTO proxies (name, config, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (name) DO UPDATE SET config = ?2, updated_at = ?3",
            vals![&p.name, json, now],
        )?;
        Ok(())
    }

    /// Forget a proxy added through the API: its entry, its capacity and whether it was
    /// drained, in one transaction.
    pub fn delete_proxy(&mut self, name: &str) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        for sql in [
            "DELETE FROM proxies WHERE name = ?1",
            "DELETE FROM proxy_drains WHERE name = ?1",
            "DELETE FROM proxy_capacity WHERE name = ?1",
        ] {
            tx.execute(sql, vals![name])?;
        }
        tx.commit()
    }

    pub fn drained_proxies(&self) -> StoreResult<Vec<String>> {
        self.db.query("SELECT name FROM proxy_drains ORDER BY name", &[])?.iter().map(|r| r.get(0)).collect()
    }

    pub fn set_drained(&mut self, name: &str, drained: bool, now: i64) -> StoreResult<()> {
        if drained {
            self.db.execute(
                "INSERT INTO proxy_drains (name, drained_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                vals![name, now],
            )?;
        } else {
            self.db.execute("DELETE FROM proxy_drains WHERE name = ?1", vals![name])?;
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
        let mut out = Vec::new();
        for r in self.db.query(sql, &[])? {
            let (id, json): (String, String) = (r.get(0)?, r.get(1)?);
            out.push((id, serde_json::from_str(&json).map_err(|e| format!("its stored {what}: {e}"))));
        }
        Ok(out)
    }

    /// Add a customer, with the digest of its token, in one transaction.
    pub fn insert_customer(&mut self, c: &CustomerConfig, token: Option<TokenDigest>, now: i64) -> StoreResult<()> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO customers (id, config, token, created_at, updated_at) VALUES (?1, ?2, NULL, ?3, ?3)",
            vals![&c.id, json, now],
        )?;
        if let Some(d) = token {
            tx.execute(
                "INSERT INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)",
                vals![&c.id, d.to_hex(), now],
            )?;
        }
        tx.commit()
    }

    /// The token digests the API set (added customers, rotations), by customer.
    pub fn token_digests(&self) -> StoreResult<Vec<(String, Option<TokenDigest>)>> {
        self.db
            .query("SELECT customer, digest FROM customer_tokens ORDER BY customer", &[])?
            .iter()
            .map(|r| Ok((r.get(0)?, TokenDigest::from_hex(&r.get::<String>(1)?))))
            .collect()
    }

    /// A customer's new token (rotation); it replaces the config file's, if any.
    pub fn set_token(&mut self, customer: &str, digest: TokenDigest, now: i64) -> StoreResult<()> {
        self.db.execute(
            "INSERT INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer) DO UPDATE SET digest = ?2, updated_at = ?3",
            vals![customer, digest.to_hex(), now],
        )?;
        Ok(())
    }

    pub fn update_customer(&mut self, c: &CustomerConfig, now: i64) -> StoreResult<()> {
        let json = serde_json::to_string(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.db.execute("UPDATE customers SET config = ?2, updated_at = ?3 WHERE id = ?1", vals![&c.id, json, now])?;
        Ok(())
    }

    /// What buyers set for themselves, by customer: each as stored, or why it cannot be read.
    pub fn customer_settings(&self) -> StoreResult<Vec<(String, Result<CustomerSettings, String>)>> {
        self.json_rows("SELECT customer, settings FROM customer_settings ORDER BY customer", "settings")
    }

    /// A customer's settings in force from now on; empty ones are deleted (the entry alone).
    pub fn set_customer_settings(&mut self, customer: &str, settings: &CustomerSettings, now: i64) -> StoreResult<()> {
        if settings.is_empty() {
            self.db.execute("DELETE FROM customer_settings WHERE customer = ?1", vals![customer])?;
            return Ok(());
        }
        let json = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.db.execute(
            "INSERT INTO customer_settings (customer, settings, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer) DO UPDATE SET settings = ?2, updated_at = ?3",
            vals![customer, json, now],
        )?;
        Ok(())
    }

    pub fn delete_customer(&mut self, id: &str) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        tx.execute("DELETE FROM customer_settings WHERE customer = ?1", vals![id])?;
        tx.execute("DELETE FROM customer_tokens WHERE customer = ?1", vals![id])?;
        tx.execute("DELETE FROM customers WHERE id = ?1", vals![id])?;
        tx.commit()
    }

    // --- usage and the ledger ---------------------------------------------------------------

    pub fn own_usage_since(&self, since: i64) -> StoreResult<Vec<(i64, u64)>> {
        self.db
            .query("SELECT interval_start, requests FROM own_usage WHERE interval_start >= ?1", vals![since])?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))
            .collect()
    }

    /// How many proxy reports the store holds (the audit trail's length).
    pub fn report_count(&self) -> StoreResult<i64> {
        self.db.query_one("SELECT COUNT(*) FROM proxy_reports", &[])?.get(0)
    }

    /// One proxy report: the audit row, the network's own usage and each buyer's ledger line.
    pub fn record_report(&mut self, report: &ReportRecord) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        let served =
            serde_json::to_string(&report.served.iter().map(|s| (&s.customer, s.requests)).collect::<Vec<_>>())
                .unwrap_or_default();
        let own_requests = add(0, report.own_requests, "own_requests")?;
        tx.execute(
            "INSERT INTO proxy_reports (proxy, at, own_requests, served) VALUES (?1, ?2, ?3, ?4)",
            vals![&report.proxy, report.at, own_requests, served],
        )?;
        // Sums are added here, checked: SQLite would turn an integer past i64 into a REAL.
        let own: Option<i64> = tx
            .query_opt("SELECT requests FROM own_usage WHERE interval_start = ?1", vals![report.interval_start])?
            .map(|r| r.get(0))
            .transpose()?;
        let own = add(own.unwrap_or(0), report.own_requests, "the network's own requests in the interval")?;
        tx.execute(
            "INSERT INTO own_usage (interval_start, requests) VALUES (?1, ?2)
             ON CONFLICT (interval_start) DO UPDATE SET requests = ?2",
            vals![report.interval_start, own],
        )?;
        for s in &report.served {
            let cur = tx.query_opt(
                "SELECT requests, uncontracted_requests, charge_micros FROM usage
                 WHERE customer = ?1 AND interval_start = ?2",
                vals![&s.customer, report.interval_start],
            )?;
            let (r0, u0, c0) = match cur {
                Some(r) => (r.get(0)?, r.get(1)?, r.get(2)?),
                None => (0, 0, 0),
            };
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
                vals![&s.customer, report.interval_start, r1, u1, c1],
            )?;
        }
        tx.commit()
    }

    pub fn usage(&self, customer: Option<&str>, from: i64, to: i64) -> StoreResult<Vec<UsageRow>> {
        self.db
            .query(
                "SELECT customer, interval_start, requests, uncontracted_requests, charge_micros FROM usage
                 WHERE (CAST(?1 AS TEXT) IS NULL OR customer = ?1) AND interval_start >= ?2 AND interval_start < ?3
                 ORDER BY interval_start, customer",
                vals![customer, from, to],
            )?
            .iter()
            .map(UsageRow::from_row)
            .collect()
    }

    // --- auctions ------------------------------------------------------------------------

    pub fn insert_auction(&mut self, a: &NewAuction) -> StoreResult<AuctionRow> {
        let id: i64 = self
            .db
            .query_one(
                "INSERT INTO auctions (period_start, period_end, closes_at, quantity_rps, reserve_micros, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6) RETURNING id",
                vals![a.period_start, a.period_end, a.closes_at, a.quantity_rps as i64, a.reserve.0 as i64, a.created_at],
            )?
            .get(0)?;
        Ok(AuctionRow {
            id,
            period_start: a.period_start,
            period_end: a.period_end,
            closes_at: a.closes_at,
            quantity_rps: a.quantity_rps,
            reserve_price: a.reserve,
            state: "open".into(),
            clearing_price: None,
            sold_rps: None,
            created_at: a.created_at,
            cleared_at: None,
        })
    }

    pub fn auction(&self, id: i64) -> StoreResult<Option<AuctionRow>> {
        self.by_id(id)
    }

    pub fn auctions(&self, open_only: bool) -> StoreResult<Vec<AuctionRow>> {
        let filter = if open_only { " WHERE state = 'open'" } else { "" };
        self.db
            .query(&format!("{}{filter} ORDER BY id", AuctionRow::SELECT), &[])?
            .iter()
            .map(AuctionRow::from_row)
            .collect()
    }

    pub fn insert_bid(
        &mut self,
        auction_id: i64,
        customer: &str,
        quantity: u64,
        max_price: Price,
        now: i64,
    ) -> StoreResult<BidRow> {
        let id: i64 = self
            .db
            .query_one(
                "INSERT INTO bids (auction_id, customer, quantity_rps, max_price_micros, submitted_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open') RETURNING id",
                vals![auction_id, customer, quantity as i64, max_price.0 as i64, now],
            )?
            .get(0)?;
        Ok(BidRow {
            id,
            auction_id,
            customer: customer.to_owned(),
            quantity_rps: quantity,
            max_price,
            submitted_at: now,
            state: "open".into(),
            filled_rps: 0,
            price: None,
            reason: None,
        })
    }

    pub fn bid(&self, id: i64) -> StoreResult<Option<BidRow>> {
        self.by_id(id)
    }

    pub fn bids(&self, auction_id: i64, customer: Option<&str>) -> StoreResult<Vec<BidRow>> {
        self.db
            .query(
                &format!(
                    "{} WHERE auction_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR customer = ?2) ORDER BY id",
                    BidRow::SELECT
                ),
                vals![auction_id, customer],
            )?
            .iter()
            .map(BidRow::from_row)
            .collect()
    }

    pub fn withdraw_bid(&mut self, id: i64) -> StoreResult<()> {
        self.db.execute("UPDATE bids SET state = 'withdrawn' WHERE id = ?1 AND state = 'open'", vals![id])?;
        Ok(())
    }

    /// Close an auction: its result, every bid's award, and the contracts, in one transaction.
    pub fn settle_auction(&mut self, settle: &AuctionSettlement) -> StoreResult<Vec<ContractRow>> {
        let tx = self.db.transaction()?;
        let changed = tx.execute(
            "UPDATE auctions SET state = 'cleared', clearing_price_micros = ?2, sold_rps = ?3, cleared_at = ?4
             WHERE id = ?1 AND state = 'open'",
            vals![settle.auction_id, settle.price.0 as i64, settle.sold as i64, settle.at],
        )?;
        if changed != 1 {
            // Already cleared (a replay): nothing more to do.
            return Ok(Vec::new());
        }
        for a in &settle.awards {
            tx.execute(
                "UPDATE bids SET state = ?2, filled_rps = ?3, price_micros = ?4, reason = ?5 WHERE id = ?1",
                vals![a.bid_id, a.state, a.filled as i64, (a.filled > 0).then_some(settle.price.0 as i64), &a.reason],
            )?;
        }
        let created = insert_contracts(&tx, &settle.contracts)?;
        tx.commit()?;
        Ok(created)
    }

    // --- the book ------------------------------------------------------------------------

    pub fn max_order_id(&self) -> StoreResult<i64> {
        self.db.query_one("SELECT COALESCE(MAX(id), 0) FROM orders", &[])?.get(0)
    }

    /// One book operation: orders inserted and updated, contracts for the fills.
    pub fn apply_book_change(&mut self, change: &BookChange) -> StoreResult<Vec<ContractRow>> {
        let tx = self.db.transaction()?;
        for o in &change.inserted {
            tx.execute(
                "INSERT INTO orders (id, period_start, period_end, side, owner, price_micros, quantity_rps,
                   remaining_rps, tif, state, created_at, closed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                vals![
                    o.id,
                    o.period_start,
                    o.period_end,
                    side_str(o.side),
                    &o.owner,
                    o.price.0 as i64,
                    o.quantity_rps as i64,
                    o.remaining_rps as i64,
                    tif_str(o.tif),
                    &o.state,
                    o.created_at,
                    o.closed_at
                ],
            )?;
        }
        for u in &change.updated {
            tx.execute(
                "UPDATE orders SET remaining_rps = ?2, state = ?3, closed_at = ?4 WHERE id = ?1",
                vals![u.id, u.remaining_rps as i64, u.state, u.closed_at],
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
        let id: i64 = self
            .db
            .query_one(
                "INSERT INTO standing_orders (customer, quantity_rps, price_micros, state, next_period, created_at)
                 VALUES (?1, ?2, ?3, 'active', ?4, ?5) RETURNING id",
                vals![&s.customer, s.quantity_rps as i64, s.price.0 as i64, s.next_period, s.created_at],
            )?
            .get(0)?;
        Ok(StandingRow {
            id,
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
        self.by_id(id)
    }

    /// One row of `T`'s table by its id.
    fn by_id<T: FromRow>(&self, id: i64) -> StoreResult<Option<T>> {
        self.db.query_opt(&format!("{} WHERE id = ?1", T::SELECT), vals![id])?.as_ref().map(T::from_row).transpose()
    }

    /// Standing orders, oldest first: one buyer's (or all), only the active ones or all.
    pub fn standing_orders(&self, customer: Option<&str>, active_only: bool) -> StoreResult<Vec<StandingRow>> {
        let sql = format!(
            "{} WHERE (CAST(?1 AS TEXT) IS NULL OR customer = ?1) AND (?2 = 0 OR state = 'active') ORDER BY id",
            StandingRow::SELECT
        );
        self.db.query(&sql, vals![customer, active_only])?.iter().map(StandingRow::from_row).collect()
    }

    /// A standing order's progress alone (a period it could not place for).
    pub fn record_standing(&mut self, u: &StandingUpdate) -> StoreResult<()> {
        update_standing(&self.db, u)
    }

    pub fn cancel_standing(&mut self, id: i64, now: i64) -> StoreResult<()> {
        self.db.execute(
            "UPDATE standing_orders SET state = 'cancelled', cancelled_at = ?2 WHERE id = ?1",
            vals![id, now],
        )?;
        Ok(())
    }

    pub fn order(&self, id: i64) -> StoreResult<Option<OrderRow>> {
        self.by_id(id)
    }

    /// Orders, oldest first: all open ones (`open_only`), or everyone's / one owner's.
    pub fn orders(&self, owner: Option<&str>, open_only: bool) -> StoreResult<Vec<OrderRow>> {
        self.db
            .query(
                &format!(
                    "{} WHERE (CAST(?1 AS TEXT) IS NULL OR owner = ?1) AND (?2 = 0 OR state = 'open') ORDER BY id",
                    OrderRow::SELECT
                ),
                vals![owner, open_only],
            )?
            .iter()
            .map(OrderRow::from_row)
            .collect()
    }

    // --- contracts -----------------------------------------------------------------------

    pub fn contracts(&self, customer: Option<&str>) -> StoreResult<Vec<ContractRow>> {
        self.db
            .query(
                &format!("{} WHERE (CAST(?1 AS TEXT) IS NULL OR customer = ?1) ORDER BY id", ContractRow::SELECT),
                vals![customer],
            )?
            .iter()
            .map(ContractRow::from_row)
            .collect()
    }

    /// Contracts not yet ended, for the scheduler.
    pub fn unfinished_contracts(&self) -> StoreResult<Vec<ContractRow>> {
        self.db
            .query(&format!("{} WHERE ended_at IS NULL ORDER BY id", ContractRow::SELECT), &[])?
            .iter()
            .map(ContractRow::from_row)
            .collect()
    }

    /// Record activations and ends, in one transaction; each is written once (a second
    /// write of the same transition changes nothing).
    pub fn mark_contracts(&mut self, activated: &[(i64, i64)], ended: &[(i64, i64)]) -> StoreResult<()> {
        let tx = self.db.transaction()?;
        for (id, at) in activated {
            tx.execute(
                "UPDATE contracts SET activated_at = ?2 WHERE id = ?1 AND activated_at IS NULL",
                vals![*id, *at],
            )?;
        }
        for (id, at) in ended {
            tx.execute("UPDATE contracts SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL", vals![*id, *at])?;
        }
        tx.commit()
    }
}

/// The advisory lock that orders hosts creating the schema in one PostgreSQL database.
const SCHEMA_LOCK: i64 = 0x5350_494c_4c00_0001;

fn update_standing(db: &Db, u: &StandingUpdate) -> StoreResult<()> {
    db.execute(
        "UPDATE standing_orders SET next_period = ?2, placed = ?3, last_order_id = ?4, last_error = ?5 WHERE id = ?1",
        vals![u.id, u.next_period, u.placed as i64, u.last_order_id, u.last_error.as_deref()],
    )?;
    Ok(())
}

/// `sum + more`, or an overflow error naming `what`.
fn add(sum: i64, more: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(more).ok().and_then(|m| sum.checked_add(m)).ok_or_else(|| StoreError::Overflow(what.to_owned()))
}

/// Version 1 kept API customers' tokens as text (SQLite only): they become digests, and the
/// text goes.
fn migrate_v2_tokens(tx: &Tx<'_>) -> StoreResult<()> {
    for r in tx.query("SELECT id, token, updated_at FROM customers WHERE token IS NOT NULL", &[])? {
        let (id, token, at): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
        tx.execute(
            "INSERT INTO customer_tokens (customer, digest, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (customer) DO NOTHING",
            vals![id, TokenDigest::of(&token).to_hex(), at],
        )?;
    }
    tx.execute("UPDATE customers SET token = NULL", &[])?;
    Ok(())
}

/// Insert contracts; returns them as written, built from what the transaction wrote (memory
/// follows the commit, never a second read that may fail).
fn insert_contracts(tx: &Db, contracts: &[NewContract]) -> StoreResult<Vec<ContractRow>> {
    let mut rows = Vec::with_capacity(contracts.len());
    for c in contracts {
        let id: i64 = tx
            .query_one(
                "INSERT INTO contracts (customer, period_start, period_end, rps, price_micros, source, auction_id,
                   bid_id, ask_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
                vals![
                    &c.customer,
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
            )?
            .get(0)?;
        rows.push(ContractRow {
            id,
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
    use super::testing::Place;
    use super::*;

    #[test]
    fn open_migrates_once_and_reopens() {
        let place = Place::new("reopen");
        let mut s = place.open();
        s.set_capacity("edge-1", 100, 1).unwrap();
        drop(s);
        let s = place.open();
        assert_eq!(s.capacities().unwrap(), [("edge-1".to_owned(), 100)]);
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.engine(), if place.is_postgres() { "postgresql" } else { "sqlite" });
        assert!(s.check().unwrap().is_empty());
    }

    /// A store of the release before (version 4) takes the leader's table when opened.
    #[test]
    fn version_4_is_migrated_to_5() {
        let place = Place::new("v4");
        let s = place.open();
        s.db.batch("DROP TABLE spillway_leader").unwrap();
        match &s.db.conn {
            Conn::Sqlite(_) => s.db.batch("PRAGMA user_version = 4").unwrap(),
            Conn::Postgres(_) => s.db.batch("UPDATE spillway_schema SET version = 4").unwrap(),
        }
        drop(s);
        let s = place.open();
        assert_eq!(s.schema_version().unwrap(), 5);
        assert_eq!(s.term().unwrap(), (0, String::new()));
    }

    /// Two control replicas on one store: only the holder of the newest term writes, a
    /// follower writes nothing, and the leader before is fenced off at its next write (inside
    /// a transaction or not), with what it wrote before kept.
    #[test]
    fn only_the_newest_term_writes() {
        let place = Place::new("fence");
        let (mut a, mut b) = (place.open(), place.open());
        assert_eq!(a.term().unwrap(), (0, String::new()));
        a.set_fence(Fence::Follower);
        assert!(matches!(a.set_capacity("edge-1", 100, 1), Err(StoreError::NotLeader)));
        assert!(a.capacities().unwrap().is_empty(), "a follower's write changed nothing");
        a.take_term(10, "ctl-a", 1).unwrap();
        a.set_capacity("edge-1", 100, 1).unwrap();
        // Taken again by its holder (a promotion retried): still the leader.
        a.take_term(10, "ctl-a", 1).unwrap();
        let auction = |period_start: i64| NewAuction {
            period_start,
            period_end: period_start + 60,
            closes_at: period_start - 30,
            quantity_rps: 5,
            reserve: Price(0),
            created_at: 1,
        };
        let id = a.insert_auction(&auction(60)).unwrap().id;
        // An older election's term is refused, and that replica does not write.
        let e = b.take_term(9, "ctl-b", 2).unwrap_err();
        assert!(matches!(&e, StoreError::Fenced { term: 10, holder } if holder == "ctl-a"), "{e}");
        assert!(matches!(b.set_capacity("edge-2", 1, 2), Err(StoreError::NotLeader)));
        b.take_term(11, "ctl-b", 2).unwrap();
        assert_eq!(b.term().unwrap(), (11, "ctl-b".into()));
        // The old leader: a plain write, a write in a transaction, an insert that returns its id.
        assert!(matches!(a.set_capacity("edge-1", 200, 3), Err(StoreError::Fenced { term: 11, .. })));
        assert_eq!(a.fence(), Fence::Follower);
        a.set_fence(Fence::Leader(10));
        assert!(matches!(a.mark_contracts(&[(1, 3)], &[]), Err(StoreError::Fenced { .. })));
        a.set_fence(Fence::Leader(10));
        assert!(matches!(a.insert_auction(&auction(120)), Err(StoreError::Fenced { .. })));
        b.set_capacity("edge-2", 7, 4).unwrap();
        assert_eq!(b.capacities().unwrap(), [("edge-1".to_owned(), 100), ("edge-2".to_owned(), 7)]);
        assert_eq!(b.auctions(false).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    }

    #[test]
    fn settings_are_kept_replaced_and_deleted() {
        let place = Place::new("settings");
        let mut s = place.open();
        let set: CustomerSettings = serde_json::from_str(r#"{"estimate": 0.4, "origin_cname": null}"#).unwrap();
        s.set_customer_settings("shop", &set, 1).unwrap();
        s.set_customer_settings("news", &set.merged(&serde_json::from_str(r#"{"ttl": 9}"#).unwrap()), 1).unwrap();
        drop(s);
        let mut s = place.open();
        let got = s.customer_settings().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], ("shop".to_owned(), Ok(set)));
        assert_eq!(got[0].1.as_ref().unwrap().ttl, Some(9));
        s.set_customer_settings("shop", &CustomerSettings::default(), 2).unwrap();
        assert_eq!(s.customer_settings().unwrap().len(), 1, "empty settings are the entry alone");
    }

    #[test]
    fn customers_tokens_and_proxies_change_in_one_transaction_each() {
        let place = Place::new("customers");
        let mut s = place.open();
        let c: CustomerConfig = serde_json::from_value(serde_json::json!({
            "id": "shop", "names": ["www.shop.cdn.example.net."], "origin_addresses": ["203.0.113.20"], "overflow": "origin", "fraction": 0.5
        }))
        .unwrap();
        s.insert_customer(&c, Some(TokenDigest::of("t1")), 1).unwrap();
        // A second customer with the same id is refused, and its token with it.
        assert!(s.insert_customer(&c, Some(TokenDigest::of("t2")), 2).is_err());
        assert_eq!(s.token_digests().unwrap(), [("shop".to_owned(), Some(TokenDigest::of("t1")))]);
        s.set_token("shop", TokenDigest::of("t3"), 3).unwrap();
        assert_eq!(s.token_digests().unwrap()[0].1, Some(TokenDigest::of("t3")));
        assert_eq!(s.customers().unwrap()[0].1.as_ref().unwrap().id, "shop");
        s.delete_customer("shop").unwrap();
        assert!(s.customers().unwrap().is_empty() && s.token_digests().unwrap().is_empty());

        let p: ProxyConfig = serde_json::from_value(serde_json::json!({
            "name": "p9", "addresses": ["198.51.100.9"], "capacity_rps": 100
        }))
        .unwrap();
        s.put_proxy(&p, 1).unwrap();
        s.set_capacity("p9", 50, 1).unwrap();
        s.set_drained("p9", true, 1).unwrap();
        s.set_drained("p9", true, 2).unwrap();
        assert_eq!(s.drained_proxies().unwrap(), ["p9"]);
        s.delete_proxy("p9").unwrap();
        assert!(s.proxies().unwrap().is_empty() && s.drained_proxies().unwrap().is_empty());
        assert!(s.capacities().unwrap().is_empty());
    }

    #[test]
    fn usage_sums_never_pass_i64() {
        let place = Place::new("usage");
        let mut s = place.open();
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
        assert_eq!(s.own_usage_since(0).unwrap(), [(0, 1 << 62)]);
        assert_eq!(s.report_count().unwrap(), 1);
        // The store goes on taking reports after refusing some.
        s.record_report(&report(1, 1)).unwrap();
        assert_eq!(s.usage(Some("shop"), 0, 1).unwrap()[0].requests, (1 << 62) + 1);
    }

    #[test]
    fn version_1_tokens_become_digests() {
        // SQLite only: PostgreSQL stores start at the current version.
        let place = Place::new("v1");
        let path = place.dir.join("v1.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
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
        let left: Option<String> = s.db.query_one("SELECT token FROM customers", &[]).unwrap().get(0).unwrap();
        assert_eq!(left, None, "the token's text is gone");
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        // The unreadable stored config is reported, not fatal.
        assert!(s.customers().unwrap()[0].1.is_err());
    }

    #[test]
    fn settlement_is_written_once() {
        let place = Place::new("settle");
        let mut s = place.open();
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
        assert_eq!(format!("{a:?}"), format!("{:?}", s.auction(a.id).unwrap().unwrap()), "as written");
        let b = s.insert_bid(a.id, "shop", 10, Price(5), 1).unwrap();
        assert_eq!(format!("{b:?}"), format!("{:?}", s.bid(b.id).unwrap().unwrap()), "as written");
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
        let made = s.settle_auction(&settle).unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!(format!("{:?}", made[0]), format!("{:?}", s.contracts(None).unwrap()[0]), "as written");
        assert_eq!(s.settle_auction(&settle).unwrap().len(), 0, "a replay settles nothing");
        assert_eq!(s.contracts(None).unwrap().len(), 1);
        // An activation and an end are each written once.
        let id = made[0].id;
        s.mark_contracts(&[(id, 100)], &[]).unwrap();
        s.mark_contracts(&[(id, 150)], &[(id, 200)]).unwrap();
        let c = &s.contracts(Some("shop")).unwrap()[0];
        assert_eq!((c.activated_at, c.ended_at), (Some(100), Some(200)));
        assert!(s.unfinished_contracts().unwrap().is_empty());
        assert_eq!(s.bid(b.id).unwrap().unwrap().state, "won");
        assert!(s.check().unwrap().is_empty());
        // A second contract for the same award is refused by the schema itself.
        let mut again = settle.contracts[0].clone();
        again.created_at = 91;
        assert!(insert_contracts(&s.db, &[again]).is_err());
    }

    #[test]
    fn a_failed_transaction_changes_nothing() {
        let place = Place::new("rollback");
        let mut s = place.open();
        let change = |id: i64| BookChange {
            inserted: vec![OrderRow {
                id,
                period_start: 60,
                period_end: 120,
                side: Side::Bid,
                owner: "shop".into(),
                price: Price(1),
                quantity_rps: 10,
                remaining_rps: 10,
                tif: Tif::Gtc,
                state: "open".into(),
                created_at: 1,
                closed_at: None,
            }],
            // The update refers to a column value the schema refuses: the insert goes too.
            updated: vec![OrderUpdate { id, remaining_rps: 11, state: "open", closed_at: None }],
            ..Default::default()
        };
        assert!(s.apply_book_change(&change(7)).is_err());
        assert_eq!(s.max_order_id().unwrap(), 0);
        assert!(s.order(7).unwrap().is_none());
        let mut ok = change(7);
        ok.updated.clear();
        s.apply_book_change(&ok).unwrap();
        assert_eq!(s.orders(Some("shop"), true).unwrap().len(), 1);
        assert_eq!(s.max_order_id().unwrap(), 7);
    }
}
