DROP TABLE settlement_lines;
DROP TABLE settlements;
DROP TABLE pool_earnings;
