//! The ledger: double-entry accounts and immutable transfers, after TigerBeetle.
//!
//! Every balance change is a transfer from a debit account to a credit account
//! of one asset. A hold is a `pending` transfer that is later `post`ed or
//! `void`ed exactly once. Balances are cached on the account rows and updated
//! only by [`post_batch`], in the same transaction as the transfer rows.

pub mod bulk;
mod store;
mod types;

pub use bulk::{BulkPosted, BulkTransfers, open_accounts, post_bulk};
pub use store::{
    account, account_by_key, balances_of_owner, open_account, post_batch, reconcile, transfer,
    transfer_by_reference, transfers_of_account,
};
pub use types::*;
