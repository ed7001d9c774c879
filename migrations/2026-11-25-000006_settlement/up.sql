-- Daily settlement: what the pools earned, and how each pool-day-coin was
-- allocated and posted.

CREATE TABLE pool_earnings (
    id                 UUID PRIMARY KEY,
    pool_id            UUID NOT NULL REFERENCES pools (id),
    day                DATE NOT NULL,
    coin               TEXT NOT NULL CHECK (coin ~ '^[A-Z0-9]{2,10}$'),
    -- in whole coins, exact to the coin's smallest unit
    amount             NUMERIC(48, 18) NOT NULL CHECK (amount >= 0),
    delivered_hashrate NUMERIC(30, 6) NOT NULL CHECK (delivered_hashrate >= 0),
    difficulty         NUMERIC(40, 6) NOT NULL CHECK (difficulty > 0),
    pool_tx_ids        TEXT[] NOT NULL DEFAULT '{}',
    source             TEXT NOT NULL,
    -- a correction names the import it replaces; the original stays
    corrects_id        UUID REFERENCES pool_earnings (id),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One original import per (pool, day, coin); corrections are explicit.
CREATE UNIQUE INDEX pool_earnings_once ON pool_earnings (pool_id, day, coin) WHERE corrects_id IS NULL;
CREATE UNIQUE INDEX pool_earnings_one_correction_each ON pool_earnings (corrects_id) WHERE corrects_id IS NOT NULL;

CREATE TABLE settlements (
    id                 UUID PRIMARY KEY,
    earning_id         UUID NOT NULL UNIQUE REFERENCES pool_earnings (id),
    pool_id            UUID NOT NULL REFERENCES pools (id),
    day                DATE NOT NULL,
    coin               TEXT NOT NULL,
    state              TEXT NOT NULL CHECK (state IN ('posted', 'failed')),
    -- every input, so a recomputation gives the same result
    inputs             JSONB NOT NULL,
    earnings           NUMERIC(48, 18) NOT NULL,
    gross_total        NUMERIC(48, 18) NOT NULL,
    fees_total         NUMERIC(48, 18) NOT NULL,
    net_total          NUMERIC(48, 18) NOT NULL,
    house              NUMERIC(48, 18) NOT NULL,
    remainder          NUMERIC(48, 18) NOT NULL,
    contracts          INTEGER NOT NULL,
    delivered_ratio    NUMERIC(30, 12),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (gross_total = net_total + fees_total),
    CHECK (earnings = gross_total + house + remainder)
);
CREATE INDEX settlements_day ON settlements (day DESC, pool_id);

-- Each contract's share of one settlement: what its earnings page and
-- statements show.
CREATE TABLE settlement_lines (
    settlement_id  UUID NOT NULL REFERENCES settlements (id),
    contract_id    UUID NOT NULL REFERENCES contracts (id),
    day            DATE NOT NULL,
    coin           TEXT NOT NULL,
    hashrate       NUMERIC(30, 6) NOT NULL,
    active_seconds INTEGER NOT NULL,
    gross          NUMERIC(48, 18) NOT NULL,
    fee            NUMERIC(48, 18) NOT NULL,
    net            NUMERIC(48, 18) NOT NULL,
    payout_asset   TEXT NOT NULL,
    payout_amount  NUMERIC(48, 18) NOT NULL,
    -- payout asset per mined coin, with the spread, and its source
    rate           NUMERIC(40, 18) NOT NULL,
    rate_source    TEXT NOT NULL,
    usd_value      NUMERIC(30, 12) NOT NULL,
    PRIMARY KEY (settlement_id, contract_id)
);
CREATE INDEX settlement_lines_contract ON settlement_lines (contract_id, day);
