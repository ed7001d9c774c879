-- Settlement at scale (a million contracts a pool-day) and corrections of
-- settled days.
--
-- The ledger gets one payout transfer per account and settlement (the sum
-- of that account's contracts); each contract's share stays a row of
-- settlement_lines, which names the account it was paid to.
--
-- settlement_lines is the biggest table of the platform (a row per contract
-- per day). Its foreign keys cost one lookup per row on insert (measured:
-- 7 to 10 s per million rows and key on the reference machine), so they are
-- replaced by guarantees that hold by construction: lines are inserted from
-- the contracts the settlement read in the same transaction, contracts are
-- never deleted, and lines and settlements are immutable (triggers below).

ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_settlement_id_fkey;
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_contract_id_fkey;
ALTER TABLE settlement_lines DROP CONSTRAINT settlement_lines_pkey;
DROP INDEX settlement_lines_contract;
-- Each contract once per settlement; also the index of a contract's earnings page.
CREATE UNIQUE INDEX settlement_lines_once ON settlement_lines (contract_id, settlement_id);

-- The account the line was paid to (its transfer: payout:<settlement>:<account>).
ALTER TABLE settlement_lines ADD COLUMN account_id BIGINT;
UPDATE settlement_lines l SET account_id = a.id
FROM contracts c, accounts a
WHERE c.id = l.contract_id AND a.asset = l.payout_asset
  AND ((c.partner_id IS NULL AND a.owner = 'user:' || c.user_id AND a.kind = 'customer')
    OR (c.partner_id IS NOT NULL AND a.owner = 'partner:' || c.partner_id AND a.kind = 'partner'));

-- A correction of a settled day settles the corrected import again and posts
-- only the differences; it names the settlement it corrects.
ALTER TABLE settlements ADD COLUMN corrects_id UUID UNIQUE REFERENCES settlements (id);

CREATE FUNCTION settlement_records_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER settlement_lines_immutable BEFORE UPDATE OR DELETE ON settlement_lines
    FOR EACH ROW EXECUTE FUNCTION settlement_records_are_immutable();
CREATE TRIGGER settlement_lines_no_truncate BEFORE TRUNCATE ON settlement_lines
    FOR EACH STATEMENT EXECUTE FUNCTION settlement_records_are_immutable();
CREATE TRIGGER settlements_immutable BEFORE UPDATE OR DELETE ON settlements
    FOR EACH ROW EXECUTE FUNCTION settlement_records_are_immutable();
CREATE TRIGGER contracts_never_deleted BEFORE DELETE ON contracts
    FOR EACH ROW EXECUTE FUNCTION settlement_records_are_immutable();

-- The stop rule looks up the few contracts that are counting zero-net days.
CREATE INDEX contracts_counting_zero_net ON contracts (id) WHERE zero_net_days <> 0;

-- Balances change daily on every customer account: leave room on each page
-- so those updates stay HOT (no new index entries per update).
ALTER TABLE accounts SET (fillfactor = 70);
