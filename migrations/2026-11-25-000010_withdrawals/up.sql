-- Withdrawals: what a customer asked to send, its state, and — once the
-- worker signed it — the exact bytes and txid, stored before broadcasting so
-- a crashed worker re-sends the same transaction instead of signing anew.

-- The policy of each asset-network (amounts in the asset's units). Seeded
-- with defaults on insert; operators change them in the database, the seed
-- never overwrites them.
ALTER TABLE asset_networks
    ADD COLUMN withdrawal_fee      NUMERIC NOT NULL DEFAULT 0 CHECK (withdrawal_fee >= 0),
    ADD COLUMN withdrawal_min      NUMERIC NOT NULL DEFAULT 0 CHECK (withdrawal_min >= 0),
    -- at most this much is approved automatically once the e-mail link is clicked
    ADD COLUMN auto_approve_max    NUMERIC NOT NULL DEFAULT 0 CHECK (auto_approve_max >= 0),
    -- per customer, over the last 24 hours, amount + fee of live withdrawals
    ADD COLUMN daily_limit         NUMERIC NOT NULL DEFAULT 0 CHECK (daily_limit >= 0),
    ADD COLUMN withdrawals_enabled BOOLEAN NOT NULL DEFAULT TRUE;

CREATE TABLE withdrawals (
    id                     UUID PRIMARY KEY,
    user_id                UUID NOT NULL REFERENCES users (id),
    asset                  TEXT NOT NULL,
    network                TEXT NOT NULL,
    -- normalised by domain::custody::address; on the customer's allow-list
    address                TEXT NOT NULL CHECK (address <> ''),
    -- what arrives at the address
    amount                 NUMERIC NOT NULL CHECK (amount > 0),
    -- what the platform charges on top
    fee                    NUMERIC NOT NULL CHECK (fee >= 0),
    state                  TEXT NOT NULL CHECK (state IN ('requested', 'confirmed', 'approved', 'signed',
                                                          'broadcast', 'completed', 'failed', 'rejected', 'cancelled')),
    needs_two_approvals    BOOLEAN NOT NULL,
    approvals              UUID[] NOT NULL DEFAULT '{}',
    required_confirmations INTEGER NOT NULL CHECK (required_confirmations > 0),
    -- the ledger holds placed at request time (amount → custody, fee → revenue)
    hold_id                UUID NOT NULL UNIQUE,
    fee_hold_id            UUID UNIQUE,
    -- SHA-256 of the e-mailed confirmation token; single use
    confirm_token_hash     BYTEA UNIQUE,
    confirm_expires_at     TIMESTAMPTZ NOT NULL,
    -- set by the worker when it signs: which hot wallet, which nonce (EVM),
    -- the exact signed bytes and their txid
    hot_wallet             TEXT,
    nonce                  BIGINT CHECK (nonce >= 0),
    signed_tx              BYTEA,
    txid                   TEXT,
    confirmations          INTEGER NOT NULL DEFAULT 0,
    -- why an approved withdrawal is not being sent yet (e.g. hot wallet short)
    waiting_reason         TEXT,
    reason                 TEXT,
    -- the worker's lease
    claimed_by             TEXT,
    claimed_until          TIMESTAMPTZ,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (asset, network) REFERENCES asset_networks (asset, network),
    -- signed bytes and txid come together and never before signing
    CHECK ((signed_tx IS NULL) = (txid IS NULL)),
    CHECK ((txid IS NOT NULL) = (state IN ('signed', 'broadcast', 'completed'))
           OR (state = 'failed')),
    CHECK (cardinality(approvals) <= 2)
);
-- A transaction is one withdrawal's; a nonce of a hot wallet is used once.
CREATE UNIQUE INDEX withdrawals_txid ON withdrawals (network, txid) WHERE txid IS NOT NULL;
CREATE UNIQUE INDEX withdrawals_nonce ON withdrawals (network, hot_wallet, nonce) WHERE nonce IS NOT NULL;
CREATE INDEX withdrawals_user ON withdrawals (user_id, created_at DESC);
-- The worker's queue and the admin queue.
CREATE INDEX withdrawals_open ON withdrawals (network, state, created_at)
    WHERE state IN ('requested', 'confirmed', 'approved', 'signed', 'broadcast');

-- Every transition, for the customer's timeline (the audit log has them too).
CREATE TABLE withdrawal_events (
    id            BIGSERIAL PRIMARY KEY,
    withdrawal_id UUID NOT NULL REFERENCES withdrawals (id),
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    event         TEXT NOT NULL,
    -- user:<id>, admin:<id> or worker:<id>
    actor         TEXT NOT NULL,
    detail        JSONB NOT NULL DEFAULT '{}',
    at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX withdrawal_events_withdrawal ON withdrawal_events (withdrawal_id, id);

CREATE FUNCTION withdrawal_events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'withdrawal_events are append-only';
END $$;
CREATE TRIGGER withdrawal_events_no_update BEFORE UPDATE OR DELETE ON withdrawal_events
    FOR EACH ROW EXECUTE FUNCTION withdrawal_events_immutable();
-- Withdrawals are never deleted.
CREATE FUNCTION withdrawals_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'withdrawals are never deleted';
END $$;
CREATE TRIGGER withdrawals_no_delete BEFORE DELETE ON withdrawals
    FOR EACH ROW EXECUTE FUNCTION withdrawals_no_delete();
