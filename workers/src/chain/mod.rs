//! Chain adapters: JSON-RPC clients for the nodes custody talks to.
//!
//! - [`evm`]: Ethereum-compatible nodes (ethereum, bsc): blocks, ERC-20
//!   `Transfer` logs, receipts, and a local signer with explicit nonces.
//! - [`bitcoin`]: nodes speaking Bitcoin Core's wallet RPC (bitcoin,
//!   litecoin, dogecoin): `listsinceblock`, the node wallet signs.

pub mod bitcoin;
pub mod evm;
