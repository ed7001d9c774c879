DROP TABLE asset_networks; DROP TABLE networks; DROP TABLE assets;
