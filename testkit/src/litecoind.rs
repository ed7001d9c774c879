//! Starts litecoind in regtest for tests (being written).
