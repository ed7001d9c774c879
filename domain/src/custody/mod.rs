//! Custody: the rules for where customers' coins may be sent. Pure, no I/O.

pub mod address;
