//! Hashgrid's background workers: the job runner and the jobs it runs.

pub mod builtin;
pub mod carbon;
pub mod chain;
pub mod custody;
pub mod lifecycle;
pub mod mailer;
pub mod pooladapter;
pub mod pricefeed;
pub mod runner;
pub mod settle;
