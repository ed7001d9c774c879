//! The withdrawal sender (being written).
