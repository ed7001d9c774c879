//! Deposit scanners (being written).
