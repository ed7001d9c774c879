//! What the platform sells: algorithms, facilities, pools and products;
//! reference prices; quotes and the yield estimate.

pub mod admin;
pub mod model;
pub mod prices;
pub mod pricing;
pub mod store;
