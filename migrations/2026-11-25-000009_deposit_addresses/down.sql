DROP TABLE deposit_addresses;
