UPDATE asset_networks SET withdrawals_enabled = TRUE WHERE network = 'tron';
