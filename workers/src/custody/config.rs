//! Which chain nodes custody talks to, from the environment:
//!
//! - `HASHGRID_CHAIN_NETWORK` = `mainnet` (default) | `testnet` | `regtest`:
//!   which addresses are valid (the api reads the same variable).
//! - `HASHGRID_EVM_RPC` = `ethereum=http://host:8545,bsc=http://host:8546`
//! - `HASHGRID_EVM_HOT_KEYS` = `ethereum=0x<private key hex>,bsc=…` — the
//!   hot wallets that send withdrawals (only this process reads it).
//! - `HASHGRID_EVM_TOKENS` = `USDT@ethereum=0x<contract>,USDC@bsc=…`
//! - `HASHGRID_BITCOIN_RPC` = `bitcoin=http://user:password@host:port/wallet/hot`
//!   — a node speaking Bitcoin Core's wallet RPC (tests use litecoind in
//!   regtest); its wallet signs withdrawals and watches deposit addresses.
//!
//! A network without a node is simply not scanned nor paid out (its
//! withdrawals wait, shown in the admin report).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use domain::custody::address::NetworkKind;
use domain::money::{Asset, Network};

/// An EVM network's node, hot wallet and token contracts.
#[derive(Clone)]
pub struct EvmNode {
    pub network: Network,
    pub url: String,
    /// Private key hex of the hot wallet; never logged.
    pub hot_key: Option<String>,
    /// Token contracts by asset (EIP-55 addresses).
    pub tokens: BTreeMap<Asset, String>,
}

impl std::fmt::Debug for EvmNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmNode")
            .field("network", &self.network)
            .field("url", &self.url)
            .field("hot_key", &self.hot_key.as_ref().map(|_| "<redacted>"))
            .field("tokens", &self.tokens)
            .finish()
    }
}

/// A bitcoin-like network's node (Bitcoin Core wallet RPC).
#[derive(Clone)]
pub struct BitcoinNode {
    pub network: Network,
    /// Base URL without credentials, e.g. `http://127.0.0.1:18443`.
    pub url: String,
    pub user: String,
    pub password: String,
    pub wallet: Option<String>,
}

impl std::fmt::Debug for BitcoinNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinNode")
            .field("network", &self.network)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("wallet", &self.wallet)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub kind: NetworkKind,
    pub evm: Vec<EvmNode>,
    pub bitcoin: Vec<BitcoinNode>,
}

fn pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn network(name: &str, var: &str) -> anyhow::Result<Network> {
    name.trim()
        .parse()
        .with_context(|| format!("{var}: unknown network {name:?}"))
}

impl ChainConfig {
    pub fn from_env() -> anyhow::Result<ChainConfig> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self::parse(
            get("HASHGRID_CHAIN_NETWORK").as_deref(),
            get("HASHGRID_EVM_RPC").as_deref(),
            get("HASHGRID_EVM_HOT_KEYS").as_deref(),
            get("HASHGRID_EVM_TOKENS").as_deref(),
            get("HASHGRID_BITCOIN_RPC").as_deref(),
        )
    }

    pub fn parse(
        kind: Option<&str>,
        evm_rpc: Option<&str>,
        evm_keys: Option<&str>,
        evm_tokens: Option<&str>,
        bitcoin_rpc: Option<&str>,
    ) -> anyhow::Result<ChainConfig> {
        let kind = match kind.unwrap_or("mainnet") {
            "mainnet" => NetworkKind::Mainnet,
            "testnet" => NetworkKind::Testnet,
            "regtest" => NetworkKind::Regtest,
            other => bail!("HASHGRID_CHAIN_NETWORK={other:?}: mainnet, testnet or regtest"),
        };
        let mut evm: Vec<EvmNode> = Vec::new();
        for (name, url) in pairs(evm_rpc.unwrap_or("")) {
            let network = network(name, "HASHGRID_EVM_RPC")?;
            if !matches!(network, Network::Ethereum | Network::Bsc) {
                bail!("HASHGRID_EVM_RPC: {network} is not an EVM network");
            }
            if !url.starts_with("http://") && !url.starts_with("https://") {
                bail!("HASHGRID_EVM_RPC: {network} needs an http(s) URL");
            }
            evm.push(EvmNode {
                network,
                url: url.to_owned(),
                hot_key: None,
                tokens: BTreeMap::new(),
            });
        }
        for (name, key) in pairs(evm_keys.unwrap_or("")) {
            let network = network(name, "HASHGRID_EVM_HOT_KEYS")?;
            let node = evm
                .iter_mut()
                .find(|n| n.network == network)
                .with_context(|| {
                    format!("HASHGRID_EVM_HOT_KEYS: {network} has no HASHGRID_EVM_RPC node")
                })?;
            node.hot_key = Some(key.to_owned());
        }
        for (name, contract) in pairs(evm_tokens.unwrap_or("")) {
            let (asset, net) = name
                .split_once('@')
                .with_context(|| format!("HASHGRID_EVM_TOKENS: {name:?} is not ASSET@network"))?;
            let asset: Asset = asset
                .parse()
                .with_context(|| format!("HASHGRID_EVM_TOKENS: unknown asset {asset:?}"))?;
            let network = network(net, "HASHGRID_EVM_TOKENS")?;
            let valid = domain::custody::address::validate(
                domain::custody::allowlist::chain_of(network),
                kind,
                contract,
            )
            .with_context(|| format!("HASHGRID_EVM_TOKENS: {asset}@{network} contract"))?;
            let node = evm
                .iter_mut()
                .find(|n| n.network == network)
                .with_context(|| {
                    format!("HASHGRID_EVM_TOKENS: {network} has no HASHGRID_EVM_RPC node")
                })?;
            node.tokens.insert(asset, valid.normalized);
        }
        let mut bitcoin = Vec::new();
        for (name, url) in pairs(bitcoin_rpc.unwrap_or("")) {
            let network = network(name, "HASHGRID_BITCOIN_RPC")?;
            if !matches!(network, Network::Bitcoin | Network::Dogecoin) {
                bail!("HASHGRID_BITCOIN_RPC: {network} is not bitcoin-like");
            }
            let (scheme, rest) = url
                .split_once("://")
                .with_context(|| format!("HASHGRID_BITCOIN_RPC: {network} needs an http URL"))?;
            let (auth, hostpath) = rest.rsplit_once('@').with_context(|| {
                format!("HASHGRID_BITCOIN_RPC: {network} needs user:password@ in the URL")
            })?;
            let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
            let (host, wallet) = match hostpath.split_once("/wallet/") {
                Some((h, w)) => (h, Some(w.trim_end_matches('/').to_owned())),
                None => (hostpath.trim_end_matches('/'), None),
            };
            bitcoin.push(BitcoinNode {
                network,
                url: format!("{scheme}://{host}"),
                user: user.to_owned(),
                password: password.to_owned(),
                wallet,
            });
        }
        Ok(ChainConfig { kind, evm, bitcoin })
    }

    pub fn evm_node(&self, network: Network) -> Option<&EvmNode> {
        self.evm.iter().find(|n| n.network == network)
    }

    pub fn bitcoin_node(&self, network: Network) -> Option<&BitcoinNode> {
        self.bitcoin.iter().find(|n| n.network == network)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_nodes_keys_tokens_and_bitcoin_urls() {
        let c = ChainConfig::parse(
            Some("regtest"),
            Some("ethereum=http://127.0.0.1:8545, bsc=http://127.0.0.1:8546"),
            Some("ethereum=0xabc"),
            Some("USDT@ethereum=0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
            Some("bitcoin=http://u:p:w@127.0.0.1:18443/wallet/hot"),
        )
        .unwrap();
        assert_eq!(c.kind, NetworkKind::Regtest);
        let eth = c.evm_node(Network::Ethereum).unwrap();
        assert_eq!(eth.hot_key.as_deref(), Some("0xabc"));
        assert_eq!(
            eth.tokens.get(&Asset::USDT).map(String::as_str),
            Some("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
        );
        assert!(
            !format!("{eth:?}").contains("0xabc"),
            "the key is never printed"
        );
        assert!(c.evm_node(Network::Bsc).unwrap().hot_key.is_none());
        let btc = c.bitcoin_node(Network::Bitcoin).unwrap();
        assert_eq!(
            (
                btc.url.as_str(),
                btc.user.as_str(),
                btc.password.as_str(),
                btc.wallet.as_deref()
            ),
            ("http://127.0.0.1:18443", "u", "p:w", Some("hot"))
        );
        assert!(!format!("{btc:?}").contains("p:w"));
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(ChainConfig::parse(Some("moon"), None, None, None, None).is_err());
        assert!(ChainConfig::parse(None, Some("bitcoin=http://x"), None, None, None).is_err());
        assert!(ChainConfig::parse(None, Some("ethereum=ftp://x"), None, None, None).is_err());
        assert!(ChainConfig::parse(None, None, Some("ethereum=0x1"), None, None).is_err());
        assert!(
            ChainConfig::parse(
                None,
                Some("ethereum=http://x"),
                None,
                Some("USDT@ethereum=0x12"),
                None
            )
            .is_err()
        );
        assert!(
            ChainConfig::parse(None, None, None, None, Some("bitcoin=http://127.0.0.1:1")).is_err()
        );
        assert_eq!(
            ChainConfig::parse(None, None, None, None, None)
                .unwrap()
                .evm
                .len(),
            0
        );
    }
}
