DROP TABLE credit_retirements;
DROP TABLE credit_demands;
DROP TABLE carbon_credits;
DROP FUNCTION credit_retirements_within_block();
DROP FUNCTION carbon_credit_records_are_immutable();
-- btree_gist stays: harmless, and other migrations may rely on it.
