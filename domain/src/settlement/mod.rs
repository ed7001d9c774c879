//! Daily settlement: pool earnings to payouts.

pub mod allocation;
pub mod earnings;
pub mod engine;
