-- Deposit addresses: one per customer and network, derived from the
-- configured account xpub (no private key on the api side) at the next free
-- index of that key.
CREATE TABLE deposit_addresses (
    network          TEXT NOT NULL REFERENCES networks (code),
    -- hex fingerprint of the account key the address was derived from
    key_fingerprint  TEXT NOT NULL CHECK (key_fingerprint ~ '^[0-9a-f]{8}$'),
    derivation_index INTEGER NOT NULL CHECK (derivation_index >= 0),
    user_id          UUID NOT NULL REFERENCES users (id),
    address          TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (network, key_fingerprint, derivation_index),
    UNIQUE (network, address),
    UNIQUE (user_id, network, key_fingerprint)
);
