//! Custody: where customers' coins may be sent (address validation, pure)
//! the withdrawal allow-list (stored) and the withdrawal state machine (pure).

pub mod address;
pub mod allowlist;
pub mod hd;
pub mod withdrawal;
