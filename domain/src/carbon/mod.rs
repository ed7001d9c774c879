//! Carbon accounting: emission factors (versioned, never overwritten),
//! metered and estimated energy per contract-day, location- and market-based
//! emissions, energy attribute certificates matched to consumption, carbon
//! credits and their retirements, and the statements built from them.

pub mod certificates;
pub mod credits;
pub mod daily;
pub mod energy;
pub mod factors;
pub mod meter;
pub mod report;
pub mod statement;
