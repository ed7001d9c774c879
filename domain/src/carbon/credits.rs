//! Carbon credits (being written).
