-- Withdrawal allow-list: a customer withdraws only to addresses they added,
-- confirmed by an e-mail link, and only 24 hours after confirming.
CREATE TABLE withdrawal_addresses (
    id                 UUID PRIMARY KEY,
    user_id            UUID NOT NULL REFERENCES users (id),
    network            TEXT NOT NULL REFERENCES networks (code),
    -- normalised by domain::custody::address (EIP-55, lower-case bech32)
    address            TEXT NOT NULL CHECK (address <> ''),
    label              TEXT NOT NULL DEFAULT '' CHECK (length(label) <= 64),
    state              TEXT NOT NULL CHECK (state IN ('pending', 'confirmed', 'removed')),
    -- SHA-256 of the e-mailed confirmation token; single use
    confirm_token_hash BYTEA UNIQUE,
    confirm_expires_at TIMESTAMPTZ NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at       TIMESTAMPTZ,
    usable_from        TIMESTAMPTZ,
    removed_at         TIMESTAMPTZ,
    CHECK ((state = 'confirmed') = (confirmed_at IS NOT NULL AND usable_from IS NOT NULL AND removed_at IS NULL)
           OR state = 'removed')
);
-- One live entry per customer, network and address.
CREATE UNIQUE INDEX withdrawal_addresses_once ON withdrawal_addresses (user_id, network, address)
    WHERE state <> 'removed';
CREATE INDEX withdrawal_addresses_user ON withdrawal_addresses (user_id, created_at DESC);
