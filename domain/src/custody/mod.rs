//! Custody: where customers' coins come from and may go: address validation and
//! deposit-address derivation (pure), the withdrawal allow-list (stored) and
//! the withdrawal state machine (pure); deposits seen by the scanners and
//! their credits (stored).

pub mod address;
pub mod allowlist;
pub mod deposit;
pub mod deposits;
pub mod hd;
pub mod withdrawal;
pub mod withdrawals;
