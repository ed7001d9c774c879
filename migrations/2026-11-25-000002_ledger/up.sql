-- The ledger: double-entry accounts and immutable transfers, after TigerBeetle.
-- Balances are cached on the account and must always equal the sum of its
-- transfers (checked by ledger_reconciliation()).

CREATE TABLE accounts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- who the account belongs to: 'user:<uuid>', 'partner:<uuid>', 'pool:<id>', 'platform'
    owner      TEXT NOT NULL CHECK (owner <> ''),
    asset      TEXT NOT NULL REFERENCES assets (code),
    kind       TEXT NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]*$'),
    debits_pending  NUMERIC(48, 18) NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted   NUMERIC(48, 18) NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending NUMERIC(48, 18) NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted  NUMERIC(48, 18) NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_must_not_exceed_credits BOOLEAN NOT NULL DEFAULT false,
    credits_must_not_exceed_debits BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (owner, asset, kind),
    UNIQUE (id, asset),
    -- The last line of defence behind the conditional updates in domain::ledger.
    CONSTRAINT accounts_debits_within_credits CHECK (
        NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted),
    CONSTRAINT accounts_credits_within_debits CHECK (
        NOT credits_must_not_exceed_debits OR credits_posted + credits_pending <= debits_posted)
);

CREATE TABLE transfers (
    id                UUID PRIMARY KEY,
    -- the idempotency reference chosen by the caller, e.g. 'payout:<contract>:<day>'
    reference         TEXT NOT NULL UNIQUE CHECK (reference <> ''),
    kind              TEXT NOT NULL CHECK (kind IN (
                        'purchase', 'payout', 'fee', 'deposit', 'withdrawal_hold',
                        'withdrawal_settle', 'withdrawal_release', 'conversion',
                        'refund', 'adjustment', 'mining_income', 'house_share', 'rounding')),
    -- single: posted at once; pending: a hold; post / void: ends a hold
    phase             TEXT NOT NULL CHECK (phase IN ('single', 'pending', 'post', 'void')),
    asset             TEXT NOT NULL,
    debit_account_id  BIGINT NOT NULL,
    credit_account_id BIGINT NOT NULL,
    amount            NUMERIC(48, 18) NOT NULL CHECK (amount > 0),
    -- A hold is ended at most once: the unique index makes a second post or void fail.
    pending_id        UUID UNIQUE REFERENCES transfers (id),
    -- A correction names the transfer it corrects; the original is never edited.
    corrects_id       UUID REFERENCES transfers (id),
    metadata          JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((phase IN ('post', 'void')) = (pending_id IS NOT NULL)),
    -- The asset of a transfer is the asset of both its accounts.
    FOREIGN KEY (debit_account_id, asset) REFERENCES accounts (id, asset),
    FOREIGN KEY (credit_account_id, asset) REFERENCES accounts (id, asset)
);

CREATE INDEX transfers_debit_account ON transfers (debit_account_id, created_at);
CREATE INDEX transfers_credit_account ON transfers (credit_account_id, created_at);
CREATE INDEX transfers_corrects ON transfers (corrects_id) WHERE corrects_id IS NOT NULL;

-- Posted transfers are never changed: the database refuses, whoever asks.
CREATE FUNCTION transfers_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transfers are immutable: % refused; post a correcting transfer instead', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER transfers_no_update_delete BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_are_immutable();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION transfers_are_immutable();

-- Invariants 1-3 of RELIABILITY.md over the whole ledger. Each row is one
-- problem; an empty result means the ledger reconciles.
CREATE FUNCTION ledger_reconciliation()
RETURNS TABLE (problem TEXT, asset TEXT, account_id BIGINT, expected NUMERIC, actual NUMERIC)
LANGUAGE sql STABLE AS $$
    WITH resolved AS (
        SELECT pending_id FROM transfers WHERE pending_id IS NOT NULL
    ),
    legs AS (
        SELECT debit_account_id AS account_id,
               CASE WHEN phase IN ('single', 'post') THEN amount ELSE 0 END AS debits_posted,
               CASE WHEN phase = 'pending' AND id NOT IN (SELECT pending_id FROM resolved)
                    THEN amount ELSE 0 END AS debits_pending,
               0::numeric AS credits_posted, 0::numeric AS credits_pending
          FROM transfers WHERE phase <> 'void'
        UNION ALL
        SELECT credit_account_id,
               0, 0,
               CASE WHEN phase IN ('single', 'post') THEN amount ELSE 0 END,
               CASE WHEN phase = 'pending' AND id NOT IN (SELECT pending_id FROM resolved)
                    THEN amount ELSE 0 END
          FROM transfers WHERE phase <> 'void'
    ),
    sums AS (
        SELECT account_id, sum(debits_posted) dp, sum(debits_pending) dq,
               sum(credits_posted) cp, sum(credits_pending) cq
          FROM legs GROUP BY account_id
    ),
    cmp AS (
        SELECT a.id, a.asset, a.kind,
               a.debits_posted, a.debits_pending, a.credits_posted, a.credits_pending,
               coalesce(s.dp, 0) dp, coalesce(s.dq, 0) dq,
               coalesce(s.cp, 0) cp, coalesce(s.cq, 0) cq
          FROM accounts a LEFT JOIN sums s ON s.account_id = a.id
    )
    SELECT 'debits_posted_mismatch', asset, id, dp, debits_posted FROM cmp WHERE dp <> debits_posted
    UNION ALL
    SELECT 'debits_pending_mismatch', asset, id, dq, debits_pending FROM cmp WHERE dq <> debits_pending
    UNION ALL
    SELECT 'credits_posted_mismatch', asset, id, cp, credits_posted FROM cmp WHERE cp <> credits_posted
    UNION ALL
    SELECT 'credits_pending_mismatch', asset, id, cq, credits_pending FROM cmp WHERE cq <> credits_pending
    UNION ALL
    SELECT 'customer_balance_negative', asset, id, 0, credits_posted - debits_posted - debits_pending
      FROM cmp WHERE kind IN ('customer', 'partner')
                 AND credits_posted - debits_posted - debits_pending < 0
    UNION ALL
    SELECT 'asset_posted_unbalanced', asset, NULL, sum(debits_posted), sum(credits_posted)
      FROM accounts GROUP BY asset HAVING sum(debits_posted) <> sum(credits_posted)
    UNION ALL
    SELECT 'asset_pending_unbalanced', asset, NULL, sum(debits_pending), sum(credits_pending)
      FROM accounts GROUP BY asset HAVING sum(debits_pending) <> sum(credits_pending)
$$;
