//! Hashgrid's business rules and their storage. No HTTP, no chain I/O.

pub mod carbon;
pub mod catalog;
pub mod contracts;
pub mod custody;
pub mod db;
pub mod idempotency;
pub mod identity;
pub mod ledger;
pub mod money;
pub mod outbox;
pub mod schema;
pub mod seed;
pub mod settlement;
