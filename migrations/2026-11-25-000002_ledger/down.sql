DROP FUNCTION ledger_reconciliation();
DROP TABLE transfers;
DROP FUNCTION transfers_are_immutable();
DROP TABLE accounts;
