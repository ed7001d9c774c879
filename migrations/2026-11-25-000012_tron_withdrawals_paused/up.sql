-- No Tron node adapter exists yet: its withdrawals would only wait. The seed
-- sets the same for a fresh database (rows it creates after this runs).
UPDATE asset_networks SET withdrawals_enabled = FALSE WHERE network = 'tron';
