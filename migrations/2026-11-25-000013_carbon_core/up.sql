-- Carbon accounting: emission factors (versions never overwritten), each
-- facility's grid region and contracted renewable supply, metered energy,
-- and the daily energy and emissions of every contract.

-- A factor version applies from valid_from until the next version of the
-- same region and basis: a day is computed with the version valid that day.
CREATE TABLE emission_factors (
    id            UUID PRIMARY KEY,
    region        TEXT NOT NULL CHECK (region ~ '^[A-Za-z0-9 ._()-]{2,64}$'),
    -- location: grid average; residual_mix: what is left after certificates
    basis         TEXT NOT NULL CHECK (basis IN ('location', 'residual_mix')),
    gco2e_per_kwh NUMERIC(12, 4) NOT NULL CHECK (gco2e_per_kwh >= 0 AND gco2e_per_kwh < 5000),
    source        TEXT NOT NULL CHECK (source <> ''),
    year          INTEGER NOT NULL CHECK (year BETWEEN 1990 AND 2100),
    valid_from    DATE NOT NULL,
    note          TEXT NOT NULL DEFAULT '',
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (region, basis, valid_from)
);
CREATE FUNCTION emission_factors_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'emission factor versions are never changed or deleted; add a new version';
END $$;
CREATE TRIGGER emission_factors_immutable BEFORE UPDATE OR DELETE ON emission_factors
    FOR EACH ROW EXECUTE FUNCTION emission_factors_immutable();
CREATE TRIGGER emission_factors_no_truncate BEFORE TRUNCATE ON emission_factors
    FOR EACH STATEMENT EXECUTE FUNCTION emission_factors_immutable();

-- The carbon side of a facility (efficiency and PUE live on facilities).
CREATE TABLE facility_energy (
    facility_id         UUID PRIMARY KEY REFERENCES facilities (id),
    -- an emission_factors.region
    grid_region         TEXT NOT NULL,
    -- share of consumption covered by contracted renewable supply (backed by certificates)
    renewable_share_pct NUMERIC(5, 2) NOT NULL DEFAULT 0 CHECK (renewable_share_pct BETWEEN 0 AND 100),
    updated_by          TEXT NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Metered energy per facility and day, or per hour (hour 0-23) where available.
CREATE TABLE meter_readings (
    facility_id UUID NOT NULL REFERENCES facilities (id),
    day         DATE NOT NULL,
    hour        SMALLINT CHECK (hour BETWEEN 0 AND 23),
    kwh         NUMERIC(20, 3) NOT NULL CHECK (kwh >= 0),
    source      TEXT NOT NULL DEFAULT '',
    imported_by TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX meter_readings_once ON meter_readings (facility_id, day, coalesce(hour, -1));

-- One row per facility and day once the day is computed: what was metered or
-- estimated, what the contracts got, and what certificates covered.
CREATE TABLE carbon_facility_days (
    facility_id    UUID NOT NULL REFERENCES facilities (id),
    day            DATE NOT NULL,
    metered        BOOLEAN NOT NULL,
    meter_kwh      NUMERIC(20, 3),
    contracts_kwh  NUMERIC(20, 3) NOT NULL,
    -- the metered energy not attributed to sold hashrate (the platform's own)
    unsold_kwh     NUMERIC(20, 3) NOT NULL DEFAULT 0,
    covered_kwh    NUMERIC(20, 3) NOT NULL DEFAULT 0,
    location_factor_id UUID REFERENCES emission_factors (id),
    market_factor_id   UUID REFERENCES emission_factors (id),
    contracts      INTEGER NOT NULL,
    computed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (facility_id, day),
    CHECK (NOT metered OR meter_kwh = contracts_kwh + unsold_kwh)
);

-- Energy and emissions of a contract on a day, exactly once.
CREATE TABLE carbon_days (
    contract_id        UUID NOT NULL REFERENCES contracts (id),
    day                DATE NOT NULL,
    user_id            UUID NOT NULL REFERENCES users (id),
    facility_id        UUID NOT NULL REFERENCES facilities (id),
    hashrate           NUMERIC(30, 6) NOT NULL,
    active_seconds     INTEGER NOT NULL CHECK (active_seconds BETWEEN 0 AND 86400),
    energy_kwh         NUMERIC(20, 3) NOT NULL CHECK (energy_kwh >= 0),
    metered            BOOLEAN NOT NULL,
    covered_kwh        NUMERIC(20, 3) NOT NULL DEFAULT 0 CHECK (covered_kwh >= 0 AND covered_kwh <= energy_kwh),
    location_kgco2e    NUMERIC(24, 6) NOT NULL CHECK (location_kgco2e >= 0),
    market_kgco2e      NUMERIC(24, 6) NOT NULL CHECK (market_kgco2e >= 0),
    location_factor_id UUID REFERENCES emission_factors (id),
    market_factor_id   UUID REFERENCES emission_factors (id),
    computed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (contract_id, day),
    FOREIGN KEY (facility_id, day) REFERENCES carbon_facility_days (facility_id, day)
);
CREATE INDEX carbon_days_user ON carbon_days (user_id, day);
CREATE INDEX carbon_days_facility ON carbon_days (facility_id, day);
