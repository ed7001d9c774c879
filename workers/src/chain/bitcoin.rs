//! Bitcoin Core JSON-RPC adapter (being written).
