//! Custody: where customers' coins may be sent (address validation, pure)
//! and the withdrawal allow-list (stored).

pub mod address;
pub mod allowlist;
