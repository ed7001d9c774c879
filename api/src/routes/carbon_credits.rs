//! Carbon credits in the back office (being written).
