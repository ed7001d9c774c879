DROP TABLE withdrawal_events;
DROP FUNCTION withdrawal_events_immutable();
DROP TABLE withdrawals;
DROP FUNCTION withdrawals_no_delete();
ALTER TABLE asset_networks
    DROP COLUMN withdrawal_fee, DROP COLUMN withdrawal_min, DROP COLUMN auto_approve_max,
    DROP COLUMN daily_limit, DROP COLUMN withdrawals_enabled;
