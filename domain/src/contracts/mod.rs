//! Orders, contracts and their lifecycle.

pub mod lifecycle;
pub mod orders;
pub mod store;
