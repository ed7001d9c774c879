DROP TABLE deposit_address_imports;
DROP TABLE deposit_scan_blocks;
DROP TABLE deposit_scan_cursors;
DROP TABLE deposits;
