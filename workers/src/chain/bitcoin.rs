//! A client for nodes speaking Bitcoin Core's JSON-RPC with a (legacy)
//! node wallet: bitcoind, litecoind, dogecoind. Custody's deposit scanner
//! reads [`BitcoinClient::list_since_block`]; the withdrawal worker signs
//! with [`BitcoinClient::create_signed`], stores the bytes, then broadcasts
//! them with [`BitcoinClient::send_raw`] and follows
//! [`BitcoinClient::tx_confirmations`].
//!
//! Requests are JSON-RPC 1.0 `POST`s with basic auth to the node's URL, or
//! to `<url>/wallet/<name>` when a wallet is named (required as soon as the
//! node has two wallets loaded: `-19 Wallet file not specified`). Each call
//! times out after [`RPC_TIMEOUT`] by default ([`BitcoinClient::with_timeout`]).
//!
//! # Amounts
//!
//! The node writes amounts as JSON numbers in coins with 8 decimals
//! (`0.12345678`). They are never read through `f64` (a double cannot tell
//! satoshis apart above 2^26 ≈ 67 M coins, which Dogecoin balances reach):
//! every non-integer number of an answer is read from its text, exactly,
//! with [`coins_to_sats`] (a number with more than 8 decimals is an error).
//! Amounts are sent as decimal strings with exactly 8 decimals
//! ([`sats_to_coins`]), which the node accepts wherever it takes an amount.
//!
//! # What litecoind 0.21.2.1 (Bitcoin Core 0.21) answers
//!
//! Observed against a real regtest node (`workers/tests/bitcoin_adapter.rs`):
//!
//! - `sendrawtransaction` of a transaction already in the mempool succeeds
//!   again with its txid (the node re-relays it); of one in a block with an
//!   unspent output: `-27 Transaction already in block chain`; of one in a
//!   block whose outputs are all spent: `-25 bad-txns-inputs-missingorspent`,
//!   the same answer as for a transaction whose inputs a *conflicting*
//!   transaction spent in a block (while that conflict is only in the
//!   mempool: `-26 txn-mempool-conflict`). [`BitcoinClient::send_raw`] tells
//!   those apart by asking the node about the txid.
//! - Litecoin Core refuses any replacement in its mempool (BIP125 signalling
//!   or not): a double spend only wins by being mined.
//! - `listsinceblock` lists a wallet transaction in `transactions` when it
//!   has 0 or more confirmations and is newer than the block asked about;
//!   one whose block left the chain goes back to the mempool (0
//!   confirmations, no `blockhash`). `removed` lists the wallet transactions
//!   of the blocks that left the chain *between the block asked about and the
//!   fork point*, with their **current** state: the same txid can be in both
//!   lists (re-mined: confirmations ≥ 1 and the new block in both). A
//!   transaction double-spent in a block gets **negative** confirmations (−1
//!   in the conflicting block, −2 one block later …) and is then left out of
//!   `transactions`: it shows only in `removed`, and only when the block
//!   asked about was on the abandoned branch. A scanner whose cursor was
//!   below the fork never hears of it: deposits credited but not final must
//!   be followed by txid ([`BitcoinClient::tx_confirmations`]).
//!   `walletconflicts` stays empty in a wallet that only watches the
//!   receiving address (it never saw the conflicting transaction).
//! - Coinbase outputs to wallet addresses are listed too (categories
//!   `generate`, `immature`, `orphan` once their block left the chain).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use serde_json::{Value, json};

/// How long one RPC call may take by default, connecting included.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle connection is kept for the next call: below the node's
/// `-rpcservertimeout` (30 s by default), after which the node closes it,
/// so that a call never goes out on a connection the node is closing.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read (a busy wallet's `listsinceblock` is big).
const MAX_BODY_BYTES: usize = 256 << 20;
const SATS_PER_COIN: i64 = 100_000_000;

/// Bitcoin Core RPC error codes (`src/rpc/protocol.h`).
pub mod codes {
    /// `RPC_WALLET_ERROR`, e.g. `fundrawtransaction`'s "Insufficient funds".
    pub const WALLET_ERROR: i64 = -4;
    /// `RPC_INVALID_ADDRESS_OR_KEY`: also "no such transaction".
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    /// `RPC_WALLET_INSUFFICIENT_FUNDS` (`sendtoaddress` and friends).
    pub const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    /// `RPC_WALLET_NOT_FOUND`: no such wallet loaded.
    pub const WALLET_NOT_FOUND: i64 = -18;
    /// `RPC_WALLET_NOT_SPECIFIED`: several wallets loaded, none named.
    pub const WALLET_NOT_SPECIFIED: i64 = -19;
    /// `RPC_VERIFY_ERROR`: e.g. `bad-txns-inputs-missingorspent`.
    pub const VERIFY_ERROR: i64 = -25;
    /// `RPC_VERIFY_REJECTED`: e.g. `txn-mempool-conflict`, fee too low.
    pub const VERIFY_REJECTED: i64 = -26;
    /// `RPC_VERIFY_ALREADY_IN_CHAIN`.
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    /// `RPC_IN_WARMUP`: the node is still starting.
    pub const IN_WARMUP: i64 = -28;
    /// `RPC_METHOD_NOT_FOUND` (e.g. wallet calls on a `-disablewallet` node).
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// What went wrong talking to the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitcoinError {
    /// No answer, an HTTP error without a JSON-RPC error, a bad URL.
    #[error("bitcoin node transport: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error.
    #[error("bitcoin node error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// The answer is not what was expected (shape, amount with more than 8
    /// decimals …).
    #[error("unexpected answer from the bitcoin node: {0}")]
    Decode(String),
    /// `signrawtransactionwithwallet` could not sign every input (the
    /// wallet lacks a key, or is locked).
    #[error("the node wallet could not sign the transaction: {0}")]
    Unsigned(String),
}

impl BitcoinError {
    /// The wallet cannot pay that much (what it has is spendable, confirmed
    /// or its own change, and not locked by another prepared transaction).
    pub fn is_insufficient_funds(&self) -> bool {
        match self {
            BitcoinError::Rpc { code, message } => {
                *code == codes::WALLET_INSUFFICIENT_FUNDS
                    || (*code == codes::WALLET_ERROR
                        && message.to_ascii_lowercase().contains("insufficient funds"))
            }
            _ => false,
        }
    }

    /// The JSON-RPC error code, if the node answered one.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            BitcoinError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Why [`BitcoinClient::send_raw`] did not return a txid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The transaction is already in a block of the active chain: it was
    /// broadcast before. Follow it with [`BitcoinClient::tx_confirmations`].
    #[error("the transaction is already in the chain")]
    AlreadyKnown,
    /// The node refused it for good as it stands (`code: message`): inputs
    /// spent by a conflicting transaction, fee too low, malformed …
    #[error("the node rejected the transaction: {0}")]
    Rejected(String),
    /// The outcome is unknown (no answer, timeout, garbled answer): sending
    /// the same bytes again is safe.
    #[error("sending the transaction: {0}")]
    Transport(String),
}

/// One entry of `listsinceblock`: one output of a wallet transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletTx {
    pub txid: String,
    pub vout: u32,
    pub address: Option<String>,
    /// `receive`, `send`, `generate`, `immature`, `orphan`.
    pub category: String,
    /// Signed as the node reports it (negative for `send`).
    pub amount_sats: i64,
    /// Negative: double-spent by a transaction that many blocks deep.
    pub confirmations: i64,
    pub blockhash: Option<String>,
    pub blockheight: Option<u64>,
}

/// What `listsinceblock` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinceBlock {
    pub transactions: Vec<WalletTx>,
    /// Entries of blocks that left the chain (see the module documentation).
    pub removed: Vec<WalletTx>,
    /// Where to continue from: the block `target_confirmations - 1` below
    /// the tip.
    pub lastblock: String,
}

/// A signed, not yet broadcast transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The raw transaction, hex.
    pub hex: String,
    pub txid: String,
    /// The fee the wallet added on top of the amount.
    pub fee_sats: i64,
}

/// A JSON-RPC client for one node (and optionally one of its wallets).
pub struct BitcoinClient {
    http: reqwest::Client,
    endpoint: Result<reqwest::Url, String>,
    user: String,
    password: String,
    next_id: AtomicU64,
}

impl std::fmt::Debug for BitcoinClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinClient")
            .field("endpoint", &self.endpoint)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Clone for BitcoinClient {
    fn clone(&self) -> Self {
        BitcoinClient {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            next_id: AtomicU64::new(self.next_id.load(Ordering::Relaxed)),
        }
    }
}

fn endpoint(url: &str, wallet: Option<&str>) -> Result<reqwest::Url, String> {
    let mut parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| format!("node URL {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("node URL {url:?} must be http:// or https://"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the node URL must not carry credentials (give user and password)".into());
    }
    if let Some(name) = wallet {
        parsed
            .path_segments_mut()
            .map_err(|()| format!("node URL {url:?} cannot have a path"))?
            .pop_if_empty()
            .extend(["wallet", name]);
    }
    Ok(parsed)
}

/// Every error and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl BitcoinClient {
    /// A client for the node at `url` (`http://host:port`), with basic auth
    /// `user`/`password`, on `/wallet/<wallet>` when given, with
    /// [`RPC_TIMEOUT`]. A bad URL makes every call fail with
    /// [`BitcoinError::Transport`].
    pub fn new(url: &str, user: &str, password: &str, wallet: Option<&str>) -> Self {
        Self::with_timeout(url, user, password, wallet, RPC_TIMEOUT)
    }

    /// Like [`Self::new`] with another timeout per call (`importaddress`
    /// with a rescan takes minutes on a real chain).
    pub fn with_timeout(
        url: &str,
        user: &str,
        password: &str,
        wallet: Option<&str>,
        timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("hashgrid-workers/", env!("CARGO_PKG_VERSION")))
            .build();
        let (http, endpoint) = match http {
            Ok(http) => (http, endpoint(url, wallet)),
            Err(e) => (
                reqwest::Client::new(),
                Err(format!("building the HTTP client: {}", chain(&e))),
            ),
        };
        BitcoinClient {
            http,
            endpoint,
            user: user.to_owned(),
            password: password.to_owned(),
            next_id: AtomicU64::new(1),
        }
    }

    /// One JSON-RPC call. In the result, every non-integer JSON number is
    /// a JSON **string** holding the number's exact text (see the module
    /// documentation); read amounts with [`sats_of`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, BitcoinError> {
        let url = self
            .endpoint
            .as_ref()
            .map_err(|e| BitcoinError::Transport(e.clone()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut res = self
            .http
            .post(url.clone())
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params}))
            .send()
            .await
            .map_err(|e| BitcoinError::Transport(format!("{method}: {}", chain(&e))))?;
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| BitcoinError::Transport(format!("{method}: reading: {}", chain(&e))))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(BitcoinError::Decode(format!(
                    "{method}: answer larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        // Errors come with 500 (404 for an unknown method) and a JSON body;
        // 401 (bad credentials), 403 and 503 (work queue full) without.
        let envelope: Value = match serde_json::from_slice(&quote_fractions(&body)) {
            Ok(v) => v,
            Err(e) if status.is_success() => {
                return Err(BitcoinError::Decode(format!("{method}: {e}")));
            }
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                return Err(BitcoinError::Transport(format!(
                    "{method}: HTTP {status} {}",
                    text.chars().take(200).collect::<String>().trim()
                )));
            }
        };
        match envelope.get("error") {
            Some(e) if !e.is_null() => Err(BitcoinError::Rpc {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_owned),
            }),
            _ if !status.is_success() => Err(BitcoinError::Transport(format!(
                "{method}: HTTP {status} without an error"
            ))),
            _ => Ok(envelope.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, BitcoinError> {
        let v = self.call(method, params).await?;
        serde_json::from_value(v).map_err(|e| BitcoinError::Decode(format!("{method}: {e}")))
    }

    /// The height of the tip (`getblockcount`).
    pub async fn block_count(&self) -> Result<u64, BitcoinError> {
        self.call_as("getblockcount", json!([])).await
    }

    /// The hash of the tip (`getbestblockhash`).
    pub async fn best_block_hash(&self) -> Result<String, BitcoinError> {
        self.call_as("getbestblockhash", json!([])).await
    }

    /// The hash of the active chain's block at `height` (`getblockhash`;
    /// above the tip: `Rpc { code: -8, .. }`).
    pub async fn block_hash(&self, height: u64) -> Result<String, BitcoinError> {
        self.call_as("getblockhash", json!([height])).await
    }

    /// `listsinceblock since target_confirmations true true`: the wallet's
    /// entries newer than `since` (all when `None`), watch-only ones
    /// included, and those of blocks that left the chain. `lastblock` is the
    /// block `target_confirmations - 1` below the tip (≥ 1): passing it back
    /// as `since` lists again what has fewer confirmations than that.
    pub async fn list_since_block(
        &self,
        since: Option<&str>,
        target_confirmations: u32,
    ) -> Result<SinceBlock, BitcoinError> {
        #[derive(Deserialize)]
        struct Wire {
            transactions: Vec<WireTx>,
            #[serde(default)]
            removed: Vec<WireTx>,
            lastblock: String,
        }
        let wire: Wire = self
            .call_as(
                "listsinceblock",
                json!([since.unwrap_or(""), target_confirmations, true, true]),
            )
            .await?;
        let convert = |list: Vec<WireTx>| {
            list.into_iter()
                .map(WireTx::into_wallet_tx)
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(SinceBlock {
            transactions: convert(wire.transactions)?,
            removed: convert(wire.removed)?,
            lastblock: wire.lastblock,
        })
    }

    /// Watches `address` in the (legacy) wallet: `importaddress address
    /// label rescan false`. Payments to it then show in
    /// [`Self::list_since_block`] (category `receive`). Without `rescan`
    /// only transactions the node sees from now on are found; a rescan
    /// reads the whole chain (slow on a real chain; one at a time per
    /// wallet). Importing an address again is harmless.
    pub async fn import_address(
        &self,
        address: &str,
        label: &str,
        rescan: bool,
    ) -> Result<(), BitcoinError> {
        self.call("importaddress", json!([address, label, rescan, false]))
            .await?;
        Ok(())
    }

    /// The wallet's trusted balance (`getbalances` → `mine.trusted`):
    /// confirmed outputs plus its own unconfirmed change; watch-only and
    /// immature coins excluded. Locked outputs are still counted.
    pub async fn balance_sats(&self) -> Result<i64, BitcoinError> {
        let v = self.call("getbalances", json!([])).await?;
        let trusted = v
            .get("mine")
            .and_then(|m| m.get("trusted"))
            .ok_or_else(|| BitcoinError::Decode(format!("getbalances: no mine.trusted in {v}")))?;
        sats_of(trusted)
    }

    /// Builds and signs, without broadcasting, a payment of exactly
    /// `amount_sats` to `to`: `createrawtransaction` →
    /// `fundrawtransaction` (the wallet picks inputs, the fee comes on top
    /// of the amount, change goes back to the wallet, watch-only outputs are
    /// never picked, and `lockUnspents` locks the inputs so that a second
    /// payment prepared before this one is broadcast uses other ones) →
    /// `signrawtransactionwithwallet` (must be complete).
    ///
    /// Store [`SignedTx::hex`] (and the txid) durably **before** calling
    /// [`Self::send_raw`], and only ever send those stored bytes: signing
    /// again would make a different transaction with another txid, and both
    /// could be mined if they use different inputs.
    ///
    /// The locks live in the node's memory only (0.21): they are lost when
    /// the node restarts, and a prepared transaction that is then never sent
    /// keeps its inputs locked until [`Self::unlock_inputs`]. On an error
    /// after funding, the inputs are unlocked again.
    pub async fn create_signed(
        &self,
        to: &str,
        amount_sats: u64,
    ) -> Result<SignedTx, BitcoinError> {
        #[derive(Deserialize)]
        struct Funded {
            hex: String,
            fee: Value,
        }
        #[derive(Deserialize)]
        struct Signed {
            hex: String,
            complete: bool,
            #[serde(default)]
            errors: Vec<Value>,
        }
        let amount = i64::try_from(amount_sats)
            .map_err(|_| BitcoinError::Decode(format!("amount {amount_sats} sats is too large")))?;
        let raw: String = self
            .call_as(
                "createrawtransaction",
                json!([[], [{ to: sats_to_coins(amount) }]]),
            )
            .await?;
        let funded: Funded = self
            .call_as(
                "fundrawtransaction",
                json!([raw, {"lockUnspents": true, "includeWatching": false}]),
            )
            .await?;
        let signed = async {
            let fee_sats = sats_of(&funded.fee)?;
            let signed: Signed = self
                .call_as("signrawtransactionwithwallet", json!([funded.hex]))
                .await?;
            if !signed.complete {
                return Err(BitcoinError::Unsigned(
                    Value::Array(signed.errors).to_string(),
                ));
            }
            let txid = self.txid_of(&signed.hex).await?;
            Ok(SignedTx {
                hex: signed.hex,
                txid,
                fee_sats,
            })
        }
        .await;
        if signed.is_err() {
            // best effort: the error that matters is the one returned
            let _ = self.unlock_inputs(&funded.hex).await;
        }
        signed
    }

    /// Unlocks the inputs of a transaction prepared by
    /// [`Self::create_signed`] that will never be sent, so later payments
    /// may use them.
    pub async fn unlock_inputs(&self, hex: &str) -> Result<(), BitcoinError> {
        let decoded = self.call("decoderawtransaction", json!([hex])).await?;
        let inputs: Vec<Value> = decoded
            .get("vin")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                BitcoinError::Decode(format!("decoderawtransaction: no vin in {decoded}"))
            })?
            .iter()
            .map(|i| json!({"txid": i.get("txid"), "vout": i.get("vout")}))
            .collect();
        self.call("lockunspent", json!([true, inputs])).await?;
        Ok(())
    }

    /// The txid of a raw transaction (`decoderawtransaction`).
    pub async fn txid_of(&self, hex: &str) -> Result<String, BitcoinError> {
        let decoded = self.call("decoderawtransaction", json!([hex])).await?;
        decoded
            .get("txid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                BitcoinError::Decode(format!("decoderawtransaction: no txid in {decoded}"))
            })
    }

    /// Broadcasts a signed transaction (`sendrawtransaction`); its txid.
    ///
    /// Idempotent: sending the same bytes again while the transaction is in
    /// the mempool returns the txid again; once it is in a block,
    /// [`SendError::AlreadyKnown`] (the node answers `-27`, or `-25
    /// bad-txns-inputs-missingorspent` when every output is spent already:
    /// the txid is then looked up to tell it from a conflict). Inputs spent
    /// by another transaction (`-26 txn-mempool-conflict`, or `-25` with
    /// the conflict mined), a fee too low, bad bytes: [`SendError::Rejected`].
    /// No answer: [`SendError::Transport`], outcome unknown, send again.
    pub async fn send_raw(&self, hex: &str) -> Result<String, SendError> {
        match self.call("sendrawtransaction", json!([hex])).await {
            Ok(Value::String(txid)) => Ok(txid),
            Ok(other) => Err(SendError::Transport(format!(
                "sendrawtransaction answered {other}"
            ))),
            Err(BitcoinError::Rpc { code, .. }) if code == codes::VERIFY_ALREADY_IN_CHAIN => {
                Err(SendError::AlreadyKnown)
            }
            Err(BitcoinError::Rpc { code, message })
                if code == codes::VERIFY_ERROR || code == codes::VERIFY_REJECTED =>
            {
                // Already mined with every output spent, or sent
                // concurrently (in the mempool now), or really a conflict?
                let rejected = || SendError::Rejected(format!("{code}: {message}"));
                match self.known_depth(hex).await {
                    Ok(Some(depth)) if depth >= 1 => Err(SendError::AlreadyKnown),
                    Ok(Some(0)) => self
                        .txid_of(hex)
                        .await
                        .map_err(|e| SendError::Transport(e.to_string())),
                    Ok(_) => Err(rejected()),
                    Err(BitcoinError::Rpc { .. }) => Err(rejected()),
                    Err(e) => Err(SendError::Transport(e.to_string())),
                }
            }
            Err(BitcoinError::Rpc { code, message }) => {
                Err(SendError::Rejected(format!("{code}: {message}")))
            }
            Err(e) => Err(SendError::Transport(e.to_string())),
        }
    }

    /// For [`Self::send_raw`]: `Some(0)` when the transaction is in the
    /// mempool, `Some(n ≥ 1)` in the active chain, else `None` or negative.
    async fn known_depth(&self, hex: &str) -> Result<Option<i64>, BitcoinError> {
        let txid = self.txid_of(hex).await?;
        if self.in_mempool(&txid).await? {
            return Ok(Some(0));
        }
        Ok(self.tx_confirmations(&txid).await?.filter(|&c| c != 0))
    }

    /// Whether `txid` is in the node's mempool (`getmempoolentry`).
    pub async fn in_mempool(&self, txid: &str) -> Result<bool, BitcoinError> {
        match self.call("getmempoolentry", json!([txid])).await {
            Ok(_) => Ok(true),
            Err(BitcoinError::Rpc { code, .. }) if code == codes::INVALID_ADDRESS_OR_KEY => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// How deep `txid` is: ≥ 1 in a block of the active chain, 0 in the
    /// mempool (or a wallet transaction that is neither in a block nor,
    /// any more, in the mempool), negative when the wallet saw it
    /// double-spent that many blocks deep. `None` when the node does not
    /// know it.
    ///
    /// Asks the wallet first (`gettransaction txid true`, watch-only
    /// included); for a transaction not in the wallet (`-5`), or without a
    /// usable wallet (`-18`, `-19`, `-32601`), the node
    /// (`getrawtransaction txid true`: the mempool, then `-txindex`); a
    /// transaction found only in a block that left the chain (what the
    /// txindex still points to) and not in the mempool is `None`.
    pub async fn tx_confirmations(&self, txid: &str) -> Result<Option<i64>, BitcoinError> {
        match self.call("gettransaction", json!([txid, true])).await {
            Ok(v) => {
                return v
                    .get("confirmations")
                    .and_then(Value::as_i64)
                    .map(Some)
                    .ok_or_else(|| {
                        BitcoinError::Decode(format!("gettransaction: no confirmations in {v}"))
                    });
            }
            Err(BitcoinError::Rpc { code, .. })
                if code == codes::INVALID_ADDRESS_OR_KEY
                    || code == codes::WALLET_NOT_FOUND
                    || code == codes::WALLET_NOT_SPECIFIED
                    || code == codes::METHOD_NOT_FOUND => {}
            Err(e) => return Err(e),
        }
        let v = match self.call("getrawtransaction", json!([txid, true])).await {
            Ok(v) => v,
            Err(BitcoinError::Rpc { code, .. }) if code == codes::INVALID_ADDRESS_OR_KEY => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if v.get("blockhash").is_none() {
            return Ok(Some(0)); // in the mempool
        }
        match v.get("confirmations").and_then(Value::as_i64) {
            Some(c) if c >= 1 => Ok(Some(c)),
            // a block off the active chain (0): is it back in the mempool?
            _ if self.in_mempool(txid).await? => Ok(Some(0)),
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct WireTx {
    txid: String,
    vout: u32,
    #[serde(default)]
    address: Option<String>,
    category: String,
    amount: Value,
    confirmations: i64,
    #[serde(default)]
    blockhash: Option<String>,
    #[serde(default)]
    blockheight: Option<u64>,
}

impl WireTx {
    fn into_wallet_tx(self) -> Result<WalletTx, BitcoinError> {
        Ok(WalletTx {
            amount_sats: sats_of(&self.amount)
                .map_err(|e| BitcoinError::Decode(format!("{} amount: {e}", self.txid)))?,
            txid: self.txid,
            vout: self.vout,
            address: self.address,
            category: self.category,
            confirmations: self.confirmations,
            blockhash: self.blockhash,
            blockheight: self.blockheight,
        })
    }
}

/// Rewrites every JSON number token with a fraction or an exponent into a
/// JSON string of the same text (`{"amount":0.10000000}` →
/// `{"amount":"0.10000000"}`), so that no amount goes through `f64`.
/// Integers, strings and everything else are copied as they are. Meant for
/// valid JSON; invalid input stays invalid.
pub fn quote_fractions(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8);
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        if b == b'"' {
            let start = i;
            i += 1;
            while let Some(&c) = body.get(i) {
                i += if c == b'\\' { 2 } else { 1 };
                if c == b'"' {
                    break;
                }
            }
            out.extend_from_slice(body.get(start..i.min(body.len())).unwrap_or_default());
        } else if b == b'-' || b.is_ascii_digit() {
            let start = i;
            while body
                .get(i)
                .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
            {
                i += 1;
            }
            let token = body.get(start..i).unwrap_or_default();
            if token.iter().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
            } else {
                out.extend_from_slice(token);
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// An amount in coins as the node writes it (`"0.12345678"`, `-1.5`,
/// `1e-8`, `50`) in satoshis, exactly; more than 8 decimals (after
/// trailing zeros) or out of `i64` range is an error.
pub fn coins_to_sats(text: &str) -> Result<i64, BitcoinError> {
    let text = text.trim();
    let bad = |why: &str| BitcoinError::Decode(format!("amount {text:?} {why}"));
    let coins = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    }
    .map_err(|_| bad("is not a decimal number"))?;
    let sats = coins
        .checked_mul(Decimal::from(SATS_PER_COIN))
        .ok_or_else(|| bad("is too large"))?;
    if !sats.fract().is_zero() {
        return Err(bad("has more than 8 decimals"));
    }
    sats.to_i64().ok_or_else(|| bad("is too large"))
}

/// An amount of a JSON answer ([`BitcoinClient::call`]: a string with the
/// number's text, or an integer) in satoshis, exactly. A JSON float is read
/// from its shortest round-trip text (`1e-8`, `0.1`), exact below 2^26
/// coins.
pub fn sats_of(v: &Value) -> Result<i64, BitcoinError> {
    match v {
        Value::String(s) => coins_to_sats(s),
        Value::Number(n) => coins_to_sats(&n.to_string()),
        other => Err(BitcoinError::Decode(format!(
            "amount {other} is not a number"
        ))),
    }
}

/// Satoshis as coins with exactly 8 decimals, as the node takes them
/// (`1` → `"0.00000001"`, `-150000000` → `"-1.50000000"`).
pub fn sats_to_coins(sats: i64) -> String {
    let sign = if sats < 0 { "-" } else { "" };
    let abs = sats.unsigned_abs();
    let per = SATS_PER_COIN.unsigned_abs();
    format!("{sign}{}.{:08}", abs / per, abs % per)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coins_to_sats_is_exact() {
        assert_eq!(coins_to_sats("0.1").unwrap(), 10_000_000);
        assert_eq!(coins_to_sats("0.10000000").unwrap(), 10_000_000);
        assert_eq!(coins_to_sats("0.00000001").unwrap(), 1);
        assert_eq!(coins_to_sats("1e-8").unwrap(), 1);
        assert_eq!(coins_to_sats("1E-8").unwrap(), 1);
        assert_eq!(coins_to_sats("1.5e-7").unwrap(), 15);
        assert_eq!(coins_to_sats("5e-5").unwrap(), 5_000);
        assert_eq!(coins_to_sats("1e2").unwrap(), 10_000_000_000);
        assert_eq!(
            coins_to_sats("20999999.9769").unwrap(),
            2_099_999_997_690_000
        );
        assert_eq!(coins_to_sats("50").unwrap(), 5_000_000_000);
        assert_eq!(coins_to_sats("50.00002820").unwrap(), 5_000_002_820);
        assert_eq!(coins_to_sats("-0.00001410").unwrap(), -1_410);
        assert_eq!(coins_to_sats("0").unwrap(), 0);
        assert_eq!(coins_to_sats("-0.0").unwrap(), 0);
        // Above 2^26 coins a double cannot hold every satoshi; text can.
        assert_eq!(
            coins_to_sats("83999999.99999999").unwrap(),
            8_399_999_999_999_999
        );
        assert_eq!(
            coins_to_sats("1234567890.12345679").unwrap(),
            123_456_789_012_345_679
        );
        assert_eq!(
            coins_to_sats("83999999.99999999").unwrap()
                - coins_to_sats("83999999.99999998").unwrap(),
            1
        );
    }

    #[test]
    fn coins_to_sats_refuses_what_is_not_whole_satoshis() {
        for bad in [
            "0.000000001",
            "1e-9",
            "0.123456789",
            "",
            "abc",
            "1.2.3",
            "NaN",
            "0x10",
            "100000000000000",
        ] {
            assert!(coins_to_sats(bad).is_err(), "{bad:?} accepted");
        }
        // trailing zeros beyond 8 decimals are fine
        assert_eq!(coins_to_sats("0.1000000000").unwrap(), 10_000_000);
    }

    #[test]
    fn f64_numbers_are_read_from_their_shortest_text() {
        for (f, sats) in [
            (0.1, 10_000_000),
            (0.00000001, 1),
            (1e-8, 1),
            (0.00001410, 1_410),
            (20999999.9769, 2_099_999_997_690_000),
            (0.3, 30_000_000),
            (1.1 + 2.2, 0), // 3.3000000000000003: not whole satoshis
            (12.34567891, 1_234_567_891),
            (-0.5, -50_000_000),
        ] {
            let v = json!(f);
            if sats == 0 {
                assert!(sats_of(&v).is_err(), "{v} accepted");
            } else {
                assert_eq!(sats_of(&v).unwrap(), sats, "{v}");
            }
        }
        assert_eq!(sats_of(&json!(50)).unwrap(), 5_000_000_000);
        assert_eq!(sats_of(&json!("0.12345678")).unwrap(), 12_345_678);
        assert!(sats_of(&json!(null)).is_err());
        assert!(sats_of(&json!(true)).is_err());
    }

    #[test]
    fn sats_to_coins_has_eight_decimals() {
        assert_eq!(sats_to_coins(1), "0.00000001");
        assert_eq!(sats_to_coins(0), "0.00000000");
        assert_eq!(sats_to_coins(10_000_000), "0.10000000");
        assert_eq!(sats_to_coins(2_099_999_997_690_000), "20999999.97690000");
        assert_eq!(sats_to_coins(-150_000_000), "-1.50000000");
        assert_eq!(sats_to_coins(i64::MIN), "-92233720368.54775808");
        for sats in [
            1,
            7,
            99_999_999,
            100_000_000,
            123_456_789_012_345_679,
            -1_410,
        ] {
            assert_eq!(coins_to_sats(&sats_to_coins(sats)).unwrap(), sats);
        }
    }

    #[test]
    fn quote_fractions_keeps_amounts_exact() {
        let body = br#"{"result":{"amount":0.10000000,"fee":-0.00001410,"tiny":1e-8,"big":83999999.99999999,"confirmations":-3,"vout":1,"n":0,"label":"a 1.5 \"0.25\" \\","list":[1,2.50,-7]},"error":null,"id":7}"#;
        let v: Value = serde_json::from_slice(&quote_fractions(body)).unwrap();
        let r = &v["result"];
        assert_eq!(r["amount"], json!("0.10000000"));
        assert_eq!(sats_of(&r["amount"]).unwrap(), 10_000_000);
        assert_eq!(sats_of(&r["fee"]).unwrap(), -1_410);
        assert_eq!(sats_of(&r["tiny"]).unwrap(), 1);
        assert_eq!(sats_of(&r["big"]).unwrap(), 8_399_999_999_999_999);
        assert_eq!(r["confirmations"], json!(-3));
        assert_eq!(r["vout"], json!(1));
        assert_eq!(r["label"], json!("a 1.5 \"0.25\" \\"));
        assert_eq!(r["list"], json!([1, "2.50", -7]));
        assert_eq!(v["id"], json!(7));
        assert!(v["error"].is_null());
        // non-ASCII text in strings passes through
        let v: Value =
            serde_json::from_slice(&quote_fractions("{\"é\":\"ü 0.5\",\"x\":0.5}".as_bytes()))
                .unwrap();
        assert_eq!(v, json!({"é": "ü 0.5", "x": "0.5"}));
    }

    #[test]
    fn wallet_urls_and_insufficient_funds() {
        let url = endpoint("http://127.0.0.1:9332", Some("hot")).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9332/wallet/hot");
        let url = endpoint("http://127.0.0.1:9332/", Some("a b/c")).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9332/wallet/a%20b%2Fc");
        let url = endpoint("http://127.0.0.1:9332", None).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9332/");
        assert!(endpoint("http://u:p@127.0.0.1:9332", None).is_err());
        assert!(endpoint("ftp://127.0.0.1", None).is_err());
        assert!(endpoint("nope", None).is_err());

        let e = BitcoinError::Rpc {
            code: -4,
            message: "Insufficient funds".into(),
        };
        assert!(e.is_insufficient_funds());
        let e = BitcoinError::Rpc {
            code: -6,
            message: "Insufficient funds".into(),
        };
        assert!(e.is_insufficient_funds());
        let e = BitcoinError::Rpc {
            code: -4,
            message: "Transaction amount too small".into(),
        };
        assert!(!e.is_insufficient_funds());
        assert!(!BitcoinError::Transport("Insufficient funds".into()).is_insufficient_funds());
    }

    #[tokio::test]
    async fn a_bad_url_is_a_transport_error() {
        let client = BitcoinClient::new("not a url", "u", "p", None);
        assert!(matches!(
            client.block_count().await,
            Err(BitcoinError::Transport(_))
        ));
        let client = BitcoinClient::with_timeout(
            "http://127.0.0.1:1",
            "u",
            "p",
            Some("hot"),
            Duration::from_secs(2),
        );
        assert!(matches!(
            client.block_count().await,
            Err(BitcoinError::Transport(_))
        ));
        assert!(matches!(
            client.send_raw("00").await,
            Err(SendError::Transport(_))
        ));
    }
}
