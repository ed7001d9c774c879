//! EVM JSON-RPC adapter and local signer (being written).
