DROP TABLE withdrawal_addresses;
