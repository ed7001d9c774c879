//! Custody jobs: the deposit scanners and the withdrawal sender, talking to
//! the chain nodes configured in [`config::ChainConfig`] (the only process
//! that holds hot-wallet keys is this one; the api never does).

pub mod config;
pub mod deposits;
pub mod withdraw;
