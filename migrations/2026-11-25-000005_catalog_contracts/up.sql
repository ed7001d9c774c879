-- The catalog (algorithms, facilities, pools, products), reference prices,
-- quotes, orders, contracts and their lifecycle, and idempotency keys.

CREATE TABLE algorithms (
    code          TEXT PRIMARY KEY CHECK (code ~ '^[a-z0-9_-]{2,20}$'),
    name          TEXT NOT NULL,
    -- the unit hashrate is sold in: TH/s for SHA-256, MH/s for Scrypt
    hashrate_unit TEXT NOT NULL CHECK (hashrate_unit IN ('H/s', 'KH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s'))
);

CREATE TABLE facilities (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    country           TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    region            TEXT NOT NULL,
    miner_model       TEXT NOT NULL,
    -- joules per unit of the algorithm's hashrate unit (J/TH, J/MH)
    efficiency        NUMERIC(20, 6) NOT NULL CHECK (efficiency > 0),
    efficiency_unit   TEXT NOT NULL CHECK (efficiency_unit IN ('J/TH', 'J/GH', 'J/MH')),
    pue               NUMERIC(6, 3) NOT NULL CHECK (pue >= 1 AND pue < 5),
    total_hashrate    NUMERIC(30, 6) NOT NULL CHECK (total_hashrate >= 0),
    sellable_hashrate NUMERIC(30, 6) NOT NULL CHECK (sellable_hashrate >= 0 AND sellable_hashrate <= total_hashrate),
    algorithm         TEXT NOT NULL REFERENCES algorithms (code),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE pools (
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    algorithm        TEXT NOT NULL REFERENCES algorithms (code),
    -- the coins the pool pays, e.g. {LTC,DOGE} for merged Scrypt mining
    coins            TEXT[] NOT NULL CHECK (cardinality(coins) > 0),
    facility_id      UUID NOT NULL REFERENCES facilities (id),
    external_account TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL,
    algorithm            TEXT NOT NULL REFERENCES algorithms (code),
    mined_coins          TEXT[] NOT NULL CHECK (cardinality(mined_coins) > 0),
    pool_id              UUID NOT NULL REFERENCES pools (id),
    facility_id          UUID NOT NULL REFERENCES facilities (id),
    hashrate_unit        TEXT NOT NULL,
    hashrate_min         NUMERIC(30, 6) NOT NULL CHECK (hashrate_min > 0),
    hashrate_max         NUMERIC(30, 6) NOT NULL,
    hashrate_step        NUMERIC(30, 6) NOT NULL CHECK (hashrate_step > 0),
    price_usd_per_unit   NUMERIC(20, 6) NOT NULL CHECK (price_usd_per_unit > 0),
    duration_days        INTEGER NOT NULL CHECK (duration_days BETWEEN 1 AND 3650),
    fee_usd_per_unit_day NUMERIC(20, 8) NOT NULL CHECK (fee_usd_per_unit_day >= 0),
    pay_assets           TEXT[] NOT NULL CHECK (cardinality(pay_assets) > 0),
    payout_assets        TEXT[] NOT NULL CHECK (cardinality(payout_assets) > 0),
    -- the published spread on conversions, in basis points
    spread_bps           INTEGER NOT NULL DEFAULT 50 CHECK (spread_bps BETWEEN 0 AND 1000),
    -- what happens after stop_after_days consecutive days with zero net
    stop_rule            TEXT NOT NULL CHECK (stop_rule IN ('none', 'pause_extend', 'stop')),
    stop_after_days      INTEGER NOT NULL DEFAULT 3 CHECK (stop_after_days >= 1),
    -- hashrate for sale in total, and sold to live contracts
    inventory            NUMERIC(30, 6) NOT NULL CHECK (inventory >= 0),
    sold                 NUMERIC(30, 6) NOT NULL DEFAULT 0 CHECK (sold >= 0),
    state                TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'on_sale', 'paused', 'retired')),
    version              INTEGER NOT NULL DEFAULT 1,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (hashrate_max >= hashrate_min),
    -- never oversold: the database refuses it whatever the code does
    CONSTRAINT products_not_oversold CHECK (sold <= inventory)
);
CREATE INDEX products_on_sale ON products (state) WHERE state = 'on_sale';

-- Reference prices in USD, append-only; the newest per asset is current.
CREATE TABLE prices (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset       TEXT NOT NULL CHECK (asset ~ '^[A-Z0-9]{2,10}$'),
    usd         NUMERIC(30, 12) NOT NULL CHECK (usd > 0),
    source      TEXT NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX prices_latest ON prices (asset, observed_at DESC);

-- The daily fixing at 00:00 UTC, kept forever with its source.
CREATE TABLE price_fixings (
    asset       TEXT NOT NULL,
    day         DATE NOT NULL,
    usd         NUMERIC(30, 12) NOT NULL CHECK (usd > 0),
    source      TEXT NOT NULL,
    observed_at TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, day)
);

-- Network inputs of the yield estimate (hashprice).
CREATE TABLE network_stats (
    coin           TEXT PRIMARY KEY,
    difficulty     NUMERIC(40, 6) NOT NULL CHECK (difficulty > 0),
    block_reward   NUMERIC(30, 12) NOT NULL CHECK (block_reward >= 0),
    fees_per_block NUMERIC(30, 12) NOT NULL DEFAULT 0 CHECK (fees_per_block >= 0),
    source         TEXT NOT NULL,
    observed_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE quotes (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id),
    -- set when a partner buys for its sub-customer and pays
    partner_id  UUID REFERENCES partners (id),
    product_id  UUID NOT NULL REFERENCES products (id),
    -- the product's terms as quoted: the contract keeps this copy
    terms       JSONB NOT NULL,
    hashrate    NUMERIC(30, 6) NOT NULL CHECK (hashrate > 0),
    pay_asset   TEXT NOT NULL REFERENCES assets (code),
    -- hashrate (6 decimals) × price per unit (6 decimals): 12 decimals, exact
    price_usd   NUMERIC(40, 12) NOT NULL CHECK (price_usd > 0),
    usd_rate    NUMERIC(30, 12) NOT NULL CHECK (usd_rate > 0),
    rate_source TEXT NOT NULL,
    spread_bps  INTEGER NOT NULL,
    amount      NUMERIC(48, 18) NOT NULL CHECK (amount > 0),
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX quotes_user ON quotes (user_id, created_at DESC);

CREATE TABLE contracts (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id),
    partner_id     UUID REFERENCES partners (id),
    product_id     UUID NOT NULL REFERENCES products (id),
    terms          JSONB NOT NULL,
    hashrate       NUMERIC(30, 6) NOT NULL CHECK (hashrate > 0),
    pay_asset      TEXT NOT NULL,
    paid_amount    NUMERIC(48, 18) NOT NULL CHECK (paid_amount > 0),
    payout_asset   TEXT NOT NULL REFERENCES assets (code),
    state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'active', 'suspended', 'expired', 'terminated')),
    starts_at      TIMESTAMPTZ NOT NULL,
    ends_at        TIMESTAMPTZ NOT NULL,
    -- hours added for facility outages and pauses
    extended_hours INTEGER NOT NULL DEFAULT 0 CHECK (extended_hours >= 0),
    -- consecutive settled days with zero net (the stop rule reads it)
    zero_net_days  INTEGER NOT NULL DEFAULT 0 CHECK (zero_net_days >= 0),
    suspended_at   TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX contracts_user ON contracts (user_id, created_at DESC);
CREATE INDEX contracts_due ON contracts (state, starts_at, ends_at) WHERE state IN ('pending', 'active', 'suspended');
CREATE INDEX contracts_product ON contracts (product_id, state);

CREATE TABLE orders (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id),
    partner_id  UUID REFERENCES partners (id),
    quote_id    UUID NOT NULL UNIQUE REFERENCES quotes (id),
    contract_id UUID NOT NULL UNIQUE REFERENCES contracts (id),
    pay_asset   TEXT NOT NULL,
    amount      NUMERIC(48, 18) NOT NULL CHECK (amount > 0),
    transfer_id UUID NOT NULL REFERENCES transfers (id),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX orders_user ON orders (user_id, created_at DESC);

-- What happened to a contract, shown to its owner (activation, outage
-- extensions, suspension, payout-asset changes, termination).
CREATE TABLE contract_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract_id UUID NOT NULL REFERENCES contracts (id),
    kind        TEXT NOT NULL,
    -- makes an event at most once, e.g. 'outage:<id>'
    dedupe_key  TEXT,
    detail      JSONB NOT NULL DEFAULT '{}'::jsonb,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (contract_id, dedupe_key)
);
CREATE INDEX contract_events_contract ON contract_events (contract_id, id);

CREATE TABLE facility_outages (
    id          UUID PRIMARY KEY,
    facility_id UUID NOT NULL REFERENCES facilities (id),
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

-- Idempotency keys of money-moving writes: the first response is stored and
-- replayed; another body under the same key is refused.
CREATE TABLE idempotency_keys (
    owner           TEXT NOT NULL,
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    BYTEA NOT NULL,
    response_status INTEGER NOT NULL,
    response_body   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, key)
);
