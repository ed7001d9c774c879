-- Assets and networks the platform supports. The rows are kept in step with
-- domain::money by the reference-data seed that runs at every start.
CREATE TABLE assets (
    code            TEXT PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{2,10}$'),
    name            TEXT NOT NULL,
    ledger_decimals INTEGER NOT NULL CHECK (ledger_decimals BETWEEN 0 AND 18)
);

CREATE TABLE networks (
    code          TEXT PRIMARY KEY CHECK (code ~ '^[a-z0-9_]{2,20}$'),
    name          TEXT NOT NULL,
    -- the coin that pays fees on the network (TRX on tron is not an asset we hold)
    native_symbol TEXT NOT NULL,
    confirmations INTEGER NOT NULL CHECK (confirmations > 0)
);

CREATE TABLE asset_networks (
    asset    TEXT NOT NULL REFERENCES assets (code),
    network  TEXT NOT NULL REFERENCES networks (code),
    decimals INTEGER NOT NULL CHECK (decimals BETWEEN 0 AND 18),
    PRIMARY KEY (asset, network)
);
