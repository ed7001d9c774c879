//! Starts anvil for tests (being written).
