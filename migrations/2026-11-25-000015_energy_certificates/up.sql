-- Energy attribute certificates (RECs, GOs, I-RECs, LGCs) and their matching
-- to the consumption of facility-days (Scope 2, market-based). One
-- certificate = 1 MWh; a row is a block of consecutive certificates.

-- btree_gist lets one exclusion constraint compare the registry and serial
-- prefix (=) together with the range of certificate numbers (&&). A trusted
-- extension: the database owner may create it. down.sql leaves it installed.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE energy_certificates (
    id               UUID PRIMARY KEY,
    scheme           TEXT NOT NULL CHECK (scheme IN ('REC', 'GO', 'I-REC', 'LGC')),
    -- e.g. M-RETS, AIB hub, Evident; compared without case and punctuation
    registry         TEXT NOT NULL CHECK (length(registry) BETWEEN 1 AND 100),
    -- the serials as the registry prints them
    serial_start     TEXT NOT NULL CHECK (length(serial_start) BETWEEN 1 AND 100),
    serial_end       TEXT NOT NULL CHECK (length(serial_end) BETWEEN 1 AND 100),
    -- what both serials share before their number (upper case), and the
    -- numbers (the last up to 18 digits): certificates range_first..range_last
    serial_prefix    TEXT NOT NULL,
    range_first      BIGINT NOT NULL CHECK (range_first >= 0),
    range_last       BIGINT NOT NULL,
    mwh              BIGINT NOT NULL CHECK (mwh > 0),
    generator        TEXT NOT NULL CHECK (length(generator) BETWEEN 1 AND 200),
    technology       TEXT NOT NULL CHECK (technology IN (
                         'solar', 'wind', 'hydro', 'geothermal', 'biomass', 'biogas', 'marine',
                         'nuclear', 'gas', 'coal', 'oil')),
    renewable        BOOLEAN NOT NULL GENERATED ALWAYS AS (
                         technology IN ('solar', 'wind', 'hydro', 'geothermal', 'biomass', 'biogas', 'marine')
                     ) STORED,
    -- ISO 3166-1 alpha-2 of the generator: the certificate's market
    country          TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    production_start DATE NOT NULL,
    production_end   DATE NOT NULL,
    -- of the source, gCO2e per kWh; 0 for renewables
    emission_factor_gco2e_per_kwh NUMERIC(10, 3) NOT NULL DEFAULT 0
                     CHECK (emission_factor_gco2e_per_kwh >= 0 AND emission_factor_gco2e_per_kwh < 5000),
    created_by       TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (range_last >= range_first AND mwh = range_last - range_first + 1),
    CHECK (production_end >= production_start),
    CHECK (emission_factor_gco2e_per_kwh = 0 OR technology NOT IN (
        'solar', 'wind', 'hydro', 'geothermal', 'biomass', 'biogas', 'marine')),
    -- A certificate number exists once per registry (and serial prefix).
    CONSTRAINT energy_certificates_no_overlap EXCLUDE USING gist (
        (lower(regexp_replace(registry, '[^[:alnum:]]', '', 'g'))) WITH =,
        serial_prefix WITH =,
        int8range(range_first, range_last, '[]') WITH &&
    )
);
CREATE INDEX energy_certificates_market ON energy_certificates (country, production_start, production_end);

-- A facility-day once matched: the kWh asked for and the facility's market
-- then. Matching again answers what was stored.
CREATE TABLE certificate_coverage_days (
    facility_id UUID NOT NULL REFERENCES facilities (id),
    day         DATE NOT NULL,
    country     TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    kwh_needed  NUMERIC(20, 3) NOT NULL CHECK (kwh_needed >= 0),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (facility_id, day)
);

-- kWh of a certificate used for a facility-day (hour NULL) or, for hourly
-- matching later, one hour of it (0-23).
CREATE TABLE certificate_allocations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    certificate_id UUID NOT NULL REFERENCES energy_certificates (id),
    facility_id    UUID NOT NULL,
    day            DATE NOT NULL,
    hour           INTEGER CHECK (hour BETWEEN 0 AND 23),
    kwh            NUMERIC(20, 3) NOT NULL CHECK (kwh > 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (facility_id, day) REFERENCES certificate_coverage_days (facility_id, day),
    CONSTRAINT certificate_allocations_once UNIQUE NULLS NOT DISTINCT (certificate_id, facility_id, day, hour)
);
CREATE INDEX certificate_allocations_day ON certificate_allocations (facility_id, day);

-- The database refuses an allocation beyond the certificate's MWh, outside
-- its market or outside its vintage window (production started on or before
-- the day and did not end before the day's calendar year), whoever inserts:
-- the certificate row is locked, so concurrent inserts are serialised.
CREATE FUNCTION certificate_allocation_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    cert   energy_certificates%ROWTYPE;
    market TEXT;
    used   NUMERIC;
BEGIN
    SELECT * INTO cert FROM energy_certificates WHERE id = NEW.certificate_id FOR UPDATE;
    SELECT country INTO market FROM certificate_coverage_days
        WHERE facility_id = NEW.facility_id AND day = NEW.day;
    IF NOT FOUND OR cert.id IS NULL THEN
        RETURN NEW; -- the foreign keys refuse it
    END IF;
    IF cert.country <> market THEN
        RAISE EXCEPTION 'certificate % (%) is outside the market % of the facility-day', cert.id, cert.country, market
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT (cert.production_start <= NEW.day
            AND cert.production_end >= date_trunc('year', NEW.day)::date) THEN
        RAISE EXCEPTION 'certificate % (produced % to %) is outside the vintage window of %',
            cert.id, cert.production_start, cert.production_end, NEW.day
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT coalesce(sum(kwh), 0) INTO used FROM certificate_allocations
        WHERE certificate_id = NEW.certificate_id;
    IF used + NEW.kwh > cert.mwh * 1000 THEN
        RAISE EXCEPTION 'certificate % holds % kWh: % used, % more refused', cert.id, cert.mwh * 1000, used, NEW.kwh
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER certificate_allocations_checked BEFORE INSERT ON certificate_allocations
    FOR EACH ROW EXECUTE FUNCTION certificate_allocation_checked();

-- Certificates, matched days and allocations are never changed or deleted:
-- a certificate is retired once.
CREATE FUNCTION energy_certificate_records_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;
CREATE TRIGGER energy_certificates_immutable BEFORE UPDATE OR DELETE ON energy_certificates
    FOR EACH ROW EXECUTE FUNCTION energy_certificate_records_immutable();
CREATE TRIGGER energy_certificates_no_truncate BEFORE TRUNCATE ON energy_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION energy_certificate_records_immutable();
CREATE TRIGGER certificate_coverage_days_immutable BEFORE UPDATE OR DELETE ON certificate_coverage_days
    FOR EACH ROW EXECUTE FUNCTION energy_certificate_records_immutable();
CREATE TRIGGER certificate_coverage_days_no_truncate BEFORE TRUNCATE ON certificate_coverage_days
    FOR EACH STATEMENT EXECUTE FUNCTION energy_certificate_records_immutable();
CREATE TRIGGER certificate_allocations_immutable BEFORE UPDATE OR DELETE ON certificate_allocations
    FOR EACH ROW EXECUTE FUNCTION energy_certificate_records_immutable();
CREATE TRIGGER certificate_allocations_no_truncate BEFORE TRUNCATE ON certificate_allocations
    FOR EACH STATEMENT EXECUTE FUNCTION energy_certificate_records_immutable();
