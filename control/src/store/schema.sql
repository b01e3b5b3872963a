-- Spillway's durable state (SQLite, WAL). Version 1.
-- Every state change is one transaction; times are unix seconds; prices are micros of the
-- currency unit per million requests; quantities are requests/s.

CREATE TABLE proxy_capacity (
    name          TEXT PRIMARY KEY,
    capacity_rps  INTEGER NOT NULL CHECK (capacity_rps > 0),
    updated_at    INTEGER NOT NULL
);

-- Customers added through the API (those in the config file are not stored). The config is
-- the customer's JSON; the token is kept apart because it is never shown.
CREATE TABLE customers (
    id          TEXT PRIMARY KEY,
    config      TEXT NOT NULL,
    token       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The network's own requests per interval, summed over the proxies' reports.
CREATE TABLE own_usage (
    interval_start INTEGER PRIMARY KEY,
    requests       INTEGER NOT NULL
);

-- Every proxy report as received (the audit trail behind own_usage and usage).
CREATE TABLE proxy_reports (
    id            INTEGER PRIMARY KEY,
    proxy         TEXT NOT NULL,
    at            INTEGER NOT NULL,
    own_requests  INTEGER NOT NULL,
    served        TEXT NOT NULL
);

-- The ledger: requests served by the proxies per buyer per interval, and their charge.
CREATE TABLE usage (
    customer              TEXT NOT NULL,
    interval_start        INTEGER NOT NULL,
    requests              INTEGER NOT NULL,
    uncontracted_requests INTEGER NOT NULL,
    charge_micros         INTEGER NOT NULL,
    PRIMARY KEY (customer, interval_start)
);

CREATE TABLE auctions (
    id                    INTEGER PRIMARY KEY,
    period_start          INTEGER NOT NULL,
    period_end            INTEGER NOT NULL,
    closes_at             INTEGER NOT NULL,
    quantity_rps          INTEGER NOT NULL,
    reserve_micros        INTEGER NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('open', 'cleared')),
    clearing_price_micros INTEGER,
    sold_rps              INTEGER,
    created_at            INTEGER NOT NULL,
    cleared_at            INTEGER
);

CREATE TABLE bids (
    id               INTEGER PRIMARY KEY,
    auction_id       INTEGER NOT NULL REFERENCES auctions (id),
    customer         TEXT NOT NULL,
    quantity_rps     INTEGER NOT NULL CHECK (quantity_rps > 0),
    max_price_micros INTEGER NOT NULL,
    submitted_at     INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('open', 'won', 'partial', 'lost', 'withdrawn')),
    filled_rps       INTEGER NOT NULL DEFAULT 0,
    price_micros     INTEGER,
    reason           TEXT
);
CREATE INDEX bids_auction ON bids (auction_id);

CREATE TABLE orders (
    id            INTEGER PRIMARY KEY,
    period_start  INTEGER NOT NULL,
    period_end    INTEGER NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('bid', 'ask')),
    owner         TEXT NOT NULL,
    price_micros  INTEGER NOT NULL,
    quantity_rps  INTEGER NOT NULL CHECK (quantity_rps > 0),
    remaining_rps INTEGER NOT NULL CHECK (remaining_rps >= 0 AND remaining_rps <= quantity_rps),
    tif           TEXT NOT NULL CHECK (tif IN ('gtc', 'ioc')),
    state         TEXT NOT NULL CHECK (state IN ('open', 'filled', 'cancelled', 'expired')),
    created_at    INTEGER NOT NULL,
    closed_at     INTEGER
);
CREATE INDEX orders_state ON orders (state, period_start);

-- A sale: from an auction award or a book fill.
CREATE TABLE contracts (
    id            INTEGER PRIMARY KEY,
    customer      TEXT NOT NULL,
    period_start  INTEGER NOT NULL,
    period_end    INTEGER NOT NULL,
    rps           INTEGER NOT NULL CHECK (rps > 0),
    price_micros  INTEGER NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('auction', 'book')),
    auction_id    INTEGER REFERENCES auctions (id),
    bid_id        INTEGER,
    ask_id        INTEGER,
    created_at    INTEGER NOT NULL,
    activated_at  INTEGER,
    ended_at      INTEGER
);
-- One contract per auction award and per book fill (a bid/ask pair trades at most once):
-- a replayed transaction cannot create a second.
CREATE UNIQUE INDEX contracts_award ON contracts (bid_id) WHERE source = 'auction';
CREATE UNIQUE INDEX contracts_fill ON contracts (bid_id, ask_id) WHERE source = 'book';
CREATE INDEX contracts_period ON contracts (period_start);
CREATE INDEX contracts_customer ON contracts (customer);
