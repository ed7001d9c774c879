-- Deposits: what the scanners saw arrive at customers' deposit addresses,
-- one row per (network, txid, kind, index), credited once after the
-- network's confirmations.
CREATE TABLE deposits (
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL REFERENCES users (id),
    network         TEXT NOT NULL REFERENCES networks (code),
    asset           TEXT NOT NULL REFERENCES assets (code),
    txid            TEXT NOT NULL CHECK (txid <> ''),
    -- `output`: a bitcoin-like vout; `native`: an EVM transaction's value
    -- (index 0); `token`: an ERC-20/BEP-20 Transfer log (its log index)
    kind            TEXT NOT NULL CHECK (kind IN ('output', 'native', 'token')),
    output_index    BIGINT NOT NULL CHECK (output_index >= 0),
    address         TEXT NOT NULL,
    -- what is (or will be) credited: the on-chain amount floored to the
    -- asset's ledger precision
    amount          NUMERIC NOT NULL CHECK (amount > 0),
    -- the on-chain digits below the ledger precision, never credited
    dust            NUMERIC NOT NULL DEFAULT 0 CHECK (dust >= 0),
    block_height    BIGINT CHECK (block_height >= 0),
    block_hash      TEXT,
    confirmations   INTEGER NOT NULL DEFAULT 0 CHECK (confirmations >= 0),
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'credited', 'orphaned', 'reversed')),
    -- 1 for the first credit; a reversed deposit whose transaction comes
    -- back into the chain is credited again in the next round
    credit_round    INTEGER NOT NULL DEFAULT 1 CHECK (credit_round >= 1),
    transfer_id     UUID REFERENCES transfers (id),
    reversal_id     UUID REFERENCES transfers (id),
    -- of the last reversal: what the customer's balance could not cover,
    -- booked to their deposit receivable
    shortfall       NUMERIC NOT NULL DEFAULT 0 CHECK (shortfall >= 0),
    first_seen_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    credited_at     TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (network, txid, kind, output_index),
    CHECK ((block_hash IS NULL) = (block_height IS NULL)),
    CHECK (state <> 'credited' OR (transfer_id IS NOT NULL AND credited_at IS NOT NULL)),
    CHECK (state <> 'reversed' OR reversal_id IS NOT NULL)
);

CREATE INDEX deposits_user_idx ON deposits (user_id, first_seen_at DESC);
CREATE INDEX deposits_open_idx ON deposits (network, block_height)
    WHERE state IN ('pending', 'credited');

-- Where each network's scanner continues: EVM the last scanned height and
-- its hash; bitcoin-like the `lastblock` listsinceblock answered (height
-- informative).
CREATE TABLE deposit_scan_cursors (
    network      TEXT PRIMARY KEY REFERENCES networks (code),
    height       BIGINT CHECK (height >= 0),
    block_hash   TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The hashes of recently scanned EVM blocks: after a reorganisation the
-- scanner walks back through them to the last block still on the chain.
CREATE TABLE deposit_scan_blocks (
    network      TEXT NOT NULL REFERENCES networks (code),
    height       BIGINT NOT NULL CHECK (height >= 0),
    block_hash   TEXT NOT NULL,
    PRIMARY KEY (network, height)
);

-- Deposit addresses imported watch-only into a bitcoin-like node's wallet
-- (`watcher` names the node and wallet, without credentials: another node
-- gets every address imported again).
CREATE TABLE deposit_address_imports (
    network      TEXT NOT NULL,
    address      TEXT NOT NULL,
    watcher      TEXT NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (network, address, watcher),
    FOREIGN KEY (network, address) REFERENCES deposit_addresses (network, address)
);
