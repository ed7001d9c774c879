-- Carbon credits (Verra VCUs, Gold Standard VERs) and their retirements: a
-- separate ledger from Scope 2 certificates. A credit is a block of unit
-- numbers from one registry serial; a retirement is a sub-range of one block
-- for one beneficiary and emissions period. A unit is retired at most once,
-- which the database enforces (see credit_retirements_unit_once).

-- Equality on text next to range overlap in one exclusion constraint.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE carbon_credits (
    id              UUID PRIMARY KEY,
    registry        TEXT NOT NULL CHECK (registry IN ('verra', 'gold_standard')),
    -- as normalised by domain::carbon::credits::parse_serial
    serial          TEXT NOT NULL UNIQUE CHECK (serial ~ '^[A-Z0-9-]{1,200}$'),
    -- where unit numbers are unique: 'verra' (registry-wide), or
    -- 'gold_standard:<project>:<vintage>:<batch>' (see the module doc)
    number_space    TEXT NOT NULL CHECK (number_space <> ''),
    block_start     BIGINT NOT NULL CHECK (block_start >= 0),
    block_end       BIGINT NOT NULL CHECK (block_end >= block_start),
    units           BIGINT NOT NULL CHECK (units = block_end - block_start + 1),
    project         TEXT NOT NULL CHECK (project <> ''),
    country         TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    vintage_start   DATE NOT NULL,
    vintage_end     DATE NOT NULL CHECK (vintage_end >= vintage_start),
    program         TEXT NOT NULL,
    unit_type       TEXT NOT NULL,
    batch           TEXT NOT NULL,
    sectoral_scope  INTEGER NOT NULL,
    -- Verra: the number after VCS-VCU (methodology/program reference)
    methodology_ref TEXT,
    kind            TEXT NOT NULL CHECK (kind IN ('avoidance', 'removal')),
    project_name    TEXT,
    description     TEXT,
    created_by      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Two blocks of one numbering space never share a unit, even when
    -- inserted concurrently (the second waits for the first and fails).
    CONSTRAINT carbon_credits_no_overlap EXCLUDE USING gist (
        number_space WITH =,
        int8range(block_start, block_end, '[]') WITH &&
    )
);
CREATE INDEX carbon_credits_fifo ON carbon_credits (vintage_start, vintage_end, block_start);

-- One row per (beneficiary, period): what makes an allocation idempotent
-- (NULL beneficiary = the platform's own emissions; one per period).
CREATE TABLE credit_demands (
    id                  UUID PRIMARY KEY,
    beneficiary_user_id UUID REFERENCES users (id),
    beneficiary_name    TEXT NOT NULL CHECK (beneficiary_name <> ''),
    period_from         DATE NOT NULL,
    period_to           DATE NOT NULL CHECK (period_to >= period_from),
    created_by          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_demands_once UNIQUE NULLS NOT DISTINCT (beneficiary_user_id, period_from, period_to)
);

CREATE TABLE credit_retirements (
    id                  UUID PRIMARY KEY,
    credit_id           UUID NOT NULL REFERENCES carbon_credits (id),
    demand_id           UUID NOT NULL REFERENCES credit_demands (id),
    -- inclusive sub-range of the credit's block
    unit_start          BIGINT NOT NULL,
    unit_end            BIGINT NOT NULL CHECK (unit_end >= unit_start),
    units               BIGINT NOT NULL CHECK (units = unit_end - unit_start + 1),
    beneficiary_user_id UUID REFERENCES users (id),
    beneficiary_name    TEXT NOT NULL CHECK (beneficiary_name <> ''),
    reason              TEXT NOT NULL CHECK (reason <> ''),
    -- the emissions period the retirement covers
    period_from         DATE NOT NULL,
    period_to           DATE NOT NULL CHECK (period_to >= period_from),
    created_by          TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT credit_retirements_unit_once EXCLUDE USING gist (
        credit_id WITH =,
        int8range(unit_start, unit_end, '[]') WITH &&
    )
);
CREATE INDEX credit_retirements_period ON credit_retirements (period_from, period_to);
CREATE INDEX credit_retirements_demand ON credit_retirements (demand_id);

-- A retirement lies inside its credit's block (credits never change, so the
-- check made at insert stays true).
CREATE FUNCTION credit_retirements_within_block() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b carbon_credits%ROWTYPE;
BEGIN
    SELECT * INTO b FROM carbon_credits WHERE id = NEW.credit_id;
    IF NEW.unit_start < b.block_start OR NEW.unit_end > b.block_end THEN
        RAISE EXCEPTION 'retired units %..% lie outside the block %..% of credit %',
            NEW.unit_start, NEW.unit_end, b.block_start, b.block_end, b.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER credit_retirements_within_block BEFORE INSERT ON credit_retirements
    FOR EACH ROW EXECUTE FUNCTION credit_retirements_within_block();

-- Credits, demands and retirements are records: never changed or deleted.
CREATE FUNCTION carbon_credit_records_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never changed or deleted', TG_TABLE_NAME;
END $$;
CREATE TRIGGER carbon_credits_immutable BEFORE UPDATE OR DELETE ON carbon_credits
    FOR EACH ROW EXECUTE FUNCTION carbon_credit_records_are_immutable();
CREATE TRIGGER carbon_credits_no_truncate BEFORE TRUNCATE ON carbon_credits
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_credit_records_are_immutable();
CREATE TRIGGER credit_demands_immutable BEFORE UPDATE OR DELETE ON credit_demands
    FOR EACH ROW EXECUTE FUNCTION carbon_credit_records_are_immutable();
CREATE TRIGGER credit_demands_no_truncate BEFORE TRUNCATE ON credit_demands
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_credit_records_are_immutable();
CREATE TRIGGER credit_retirements_immutable BEFORE UPDATE OR DELETE ON credit_retirements
    FOR EACH ROW EXECUTE FUNCTION carbon_credit_records_are_immutable();
CREATE TRIGGER credit_retirements_no_truncate BEFORE TRUNCATE ON credit_retirements
    FOR EACH STATEMENT EXECUTE FUNCTION carbon_credit_records_are_immutable();
