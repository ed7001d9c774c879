//! EVM JSON-RPC adapter (ethereum, bsc) and local signer.
//!
//! [`EvmClient`] speaks plain JSON-RPC 2.0 over HTTP to a geth-compatible
//! node (geth, bsc-geth, anvil): blocks with their transactions, ERC-20
//! `Transfer` logs, receipts, nonces, balances, and `eth_sendRawTransaction`.
//! [`LocalSigner`] signs legacy EIP-155 transactions with an explicit nonce
//! ([`signer`]), so the caller owns nonce management and can re-send the
//! exact same bytes after a crash.
//!
//! Conventions:
//! - Addresses are returned EIP-55 checksummed; hashes (`0x` + 64 hex) in
//!   lowercase. Addresses given may be any case, but mixed case must be a
//!   valid EIP-55 checksum.
//! - An argument that is not an address or a hash is refused before anything
//!   is sent, as the node would refuse it: [`EvmError::Rpc`] with code
//!   [`INVALID_PARAMS`].
//! - "Not found" (a block past the tip, an unknown transaction, a receipt of
//!   a transaction not mined) is `Ok(None)`, never an error.
//! - Requests time out after [`RPC_TIMEOUT`]; answers over
//!   [`MAX_BODY_BYTES`] are refused.

mod rlp;
pub mod signer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ethnum::U256;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use signer::{LegacyTx, LocalSigner, SignedTx, SignerError};

/// How long one JSON-RPC request may take, connecting included.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a mainnet block with its transactions is a few MB).
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// JSON-RPC's "invalid params": also what a malformed argument is refused with.
pub const INVALID_PARAMS: i64 = -32602;
/// `keccak256("Transfer(address,address,uint256)")`, topic 0 of ERC-20 transfers.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// `transfer(address,uint256)`.
pub const ERC20_TRANSFER_SELECTOR: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];
/// `balanceOf(address)`.
pub const ERC20_BALANCE_OF_SELECTOR: [u8; 4] = [0x70, 0xa0, 0x82, 0x31];

/// A failed JSON-RPC call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// No answer: connection refused, timeout, TLS, HTTP status without a
    /// JSON-RPC body, an answer too large.
    #[error("EVM node transport error: {0}")]
    Transport(String),
    /// The node answered with a JSON-RPC error (or an argument was refused
    /// before sending, with [`INVALID_PARAMS`]).
    #[error("EVM node error {code}: {message}")]
    Rpc { code: i64, message: String },
    /// The node answered something this adapter does not understand.
    #[error("unexpected answer from the EVM node: {0}")]
    Decode(String),
}

/// Why `eth_sendRawTransaction` did not return a txid.
///
/// What anvil 1.7.1 answers when the same signed bytes are sent again
/// (measured; geth and bsc-geth use the messages in parentheses):
/// - while the first copy is still pending (automine off):
///   `{"code":-32003,"message":"transaction already imported"}`
///   (geth: `already known`) → [`SendError::AlreadyKnown`];
/// - once it is mined: `{"code":-32003,"message":"nonce too low"}` (geth:
///   `nonce too low: next nonce N, tx nonce M`) → [`SendError::NonceTooLow`].
///
/// Neither creates a second transaction. `NonceTooLow` alone does not say
/// that *this* transaction was mined (another one with the same nonce may
/// have been): look up the txid ([`EvmClient::receipt`]) to know.
/// Other refusals seen on anvil, all [`SendError::Rejected`]:
/// `replacement transaction underpriced`, `max fee per gas less than block
/// base fee`, `Insufficient funds for gas * price + value`.
///
/// A legacy transaction signed for another chain id is refused by geth
/// (`invalid sender` / `invalid chain id for signer`: `Rejected`), but anvil
/// 1.7.1 answers it with its txid and then drops it (never in the pool,
/// never mined, the nonce stays free). So an `Ok(txid)` is not proof the
/// transaction will be mined: follow it with [`EvmClient::receipt`] /
/// [`EvmClient::transaction_known`], and check [`EvmClient::chain_id`]
/// against the chain id signed for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The node already has this transaction (pending or mined).
    #[error("transaction already known to the node")]
    AlreadyKnown,
    /// The nonce is used: by this transaction, already mined, or another one.
    #[error("nonce too low")]
    NonceTooLow,
    /// The node refused the transaction; the message is the node's.
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// Unknown whether the node took it (no answer, or one not understood):
    /// re-send the same bytes.
    #[error("transaction send transport error: {0}")]
    Transport(String),
}

/// A block with its transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub number: u64,
    pub hash: String,
    pub parent_hash: String,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    pub transactions: Vec<Tx>,
}

/// A transaction as listed in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub hash: String,
    pub from: String,
    /// `None` for a contract creation.
    pub to: Option<String>,
    /// Wei.
    pub value: U256,
    /// `0x`-prefixed hex call data.
    pub input: String,
}

/// One ERC-20 `Transfer(address indexed from, address indexed to, uint256 value)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLog {
    /// The token contract that emitted the event.
    pub token: String,
    pub from: String,
    pub to: String,
    /// Token base units.
    pub amount: U256,
    pub tx_hash: String,
    /// The log's index in its block.
    pub log_index: u64,
    pub block_number: u64,
    pub block_hash: String,
}

/// The outcome of a mined transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// `true` for success, `false` for a reverted transaction (which still
    /// used its nonce and paid for its gas).
    pub status: bool,
    pub block_number: u64,
    pub block_hash: String,
    pub gas_used: u128,
    /// Wei per gas actually paid, when the node says (all post-London nodes).
    pub effective_gas_price: Option<U256>,
}

/// A JSON-RPC client of one EVM node.
pub struct EvmClient {
    url: String,
    http: reqwest::Client,
    next_id: AtomicU64,
}

impl std::fmt::Debug for EvmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry an API key in its path or query: show the host only.
        let host = reqwest::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        f.debug_struct("EvmClient").field("host", &host).finish()
    }
}

impl EvmClient {
    /// A client of the node at `url` with the [`RPC_TIMEOUT`].
    pub fn new(url: &str) -> EvmClient {
        Self::with_timeout(url, RPC_TIMEOUT)
    }

    /// Like [`Self::new`] with another timeout.
    pub fn with_timeout(url: &str, timeout: Duration) -> EvmClient {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hashgrid-workers/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "EVM client: default HTTP client used");
                reqwest::Client::new()
            });
        EvmClient {
            url: url.to_owned(),
            http,
            next_id: AtomicU64::new(1),
        }
    }

    /// Calls `method` with `params` and decodes its result (`null` included,
    /// for `T = Option<…>`).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, EvmError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut res = self
            .http
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| EvmError::Transport(format!("{method}: {}", error_chain(e))))?;
        let status = res.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| EvmError::Transport(format!("{method}: {}", error_chain(e))))?
        {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(EvmError::Transport(format!(
                    "{method}: answer larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let answer: WireAnswer = match serde_json::from_slice(&bytes) {
            Ok(answer) => answer,
            Err(_) if !status.is_success() => {
                return Err(EvmError::Transport(format!("{method}: HTTP {status}")));
            }
            Err(e) => return Err(EvmError::Decode(format!("{method}: not JSON-RPC: {e}"))),
        };
        if let Some(error) = answer.error {
            return Err(EvmError::Rpc {
                code: error.code,
                message: error.message,
            });
        }
        if !status.is_success() {
            return Err(EvmError::Transport(format!("{method}: HTTP {status}")));
        }
        let result = answer.result.unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| EvmError::Decode(format!("{method}: {e}")))
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> Result<u64, EvmError> {
        let id: String = self.call("eth_chainId", json!([])).await?;
        quantity_u64(&id)
    }

    /// `eth_blockNumber`: the latest block's number.
    pub async fn block_number(&self) -> Result<u64, EvmError> {
        let n: String = self.call("eth_blockNumber", json!([])).await?;
        quantity_u64(&n)
    }

    /// Block `n` with its transactions; `None` past the tip.
    pub async fn block(&self, n: u64) -> Result<Option<Block>, EvmError> {
        let wire: Option<WireBlock<WireTx>> = self
            .call("eth_getBlockByNumber", json!([format!("{n:#x}"), true]))
            .await?;
        let Some(wire) = wire else {
            return Ok(None);
        };
        let number = quantity_u64(&wire.number)?;
        if number != n {
            return Err(EvmError::Decode(format!("asked block {n}, got {number}")));
        }
        let transactions = wire
            .transactions
            .into_iter()
            .map(|t| {
                Ok(Tx {
                    hash: hash32(&t.hash)?,
                    from: answered_address(&t.from)?,
                    to: t.to.as_deref().map(answered_address).transpose()?,
                    value: quantity_u256(&t.value)?,
                    input: data_hex(&t.input)?,
                })
            })
            .collect::<Result<Vec<_>, EvmError>>()?;
        Ok(Some(Block {
            number,
            hash: hash32(&wire.hash)?,
            parent_hash: hash32(&wire.parent_hash)?,
            timestamp: quantity_u64(&wire.timestamp)?,
            transactions,
        }))
    }

    /// The hash of block `n`; `None` past the tip.
    pub async fn block_hash(&self, n: u64) -> Result<Option<String>, EvmError> {
        let wire: Option<WireBlock<Value>> = self
            .call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))
            .await?;
        wire.map(|b| hash32(&b.hash)).transpose()
    }

    /// The ERC-20 `Transfer` events of `tokens` in blocks `from_block..=to_block`,
    /// in chain order. No tokens, no query (an empty address filter would
    /// match every contract). Logs with the `Transfer` topic that are not an
    /// ERC-20 transfer (ERC-721's has the value indexed: 4 topics) are skipped.
    pub async fn transfer_logs(
        &self,
        from_block: u64,
        to_block: u64,
        tokens: &[String],
    ) -> Result<Vec<TransferLog>, EvmError> {
        if tokens.is_empty() || from_block > to_block {
            return Ok(Vec::new());
        }
        let addresses = tokens
            .iter()
            .map(|t| given_address(t).map(|a| format!("0x{}", hex::encode(a))))
            .collect::<Result<Vec<_>, _>>()?;
        let filter = json!({
            "fromBlock": format!("{from_block:#x}"),
            "toBlock": format!("{to_block:#x}"),
            "address": addresses,
            "topics": [TRANSFER_TOPIC],
        });
        let logs: Vec<WireLog> = self.call("eth_getLogs", json!([filter])).await?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            if log.removed {
                continue;
            }
            let token = answered_address(&log.address)?;
            if log.topics.len() != 3 || !log.topics[0].eq_ignore_ascii_case(TRANSFER_TOPIC) {
                tracing::debug!(%token, topics = log.topics.len(), "Transfer log that is not ERC-20's skipped");
                continue;
            }
            let data = data_bytes(&log.data)?;
            let (Some(from), Some(to), Ok(amount)) = (
                topic_address(&log.topics[1])?,
                topic_address(&log.topics[2])?,
                <[u8; 32]>::try_from(data.as_slice()),
            ) else {
                tracing::warn!(%token, tx = %log.transaction_hash.as_deref().unwrap_or(""), "malformed Transfer log skipped");
                continue;
            };
            let pending = || EvmError::Decode("eth_getLogs: a log without its block".to_owned());
            out.push(TransferLog {
                token,
                from,
                to,
                amount: U256::from_be_bytes(amount),
                tx_hash: hash32(log.transaction_hash.as_deref().ok_or_else(pending)?)?,
                log_index: quantity_u64(log.log_index.as_deref().ok_or_else(pending)?)?,
                block_number: quantity_u64(log.block_number.as_deref().ok_or_else(pending)?)?,
                block_hash: hash32(log.block_hash.as_deref().ok_or_else(pending)?)?,
            });
        }
        Ok(out)
    }

    /// The receipt of `tx_hash`; `None` while it is not mined (or unknown,
    /// or dropped by a reorg). Even an automining anvil answers
    /// `eth_sendRawTransaction` a moment before the receipt is visible: poll.
    pub async fn receipt(&self, tx_hash: &str) -> Result<Option<Receipt>, EvmError> {
        let hash = given_hash(tx_hash)?;
        let wire: Option<WireReceipt> = self
            .call("eth_getTransactionReceipt", json!([hash]))
            .await?;
        let Some(wire) = wire else {
            return Ok(None);
        };
        // A receipt of a pending transaction (some nodes) has no block yet.
        let (Some(number), Some(block_hash)) = (wire.block_number, wire.block_hash) else {
            return Ok(None);
        };
        let status = match wire.status.as_deref().map(quantity_u64).transpose()? {
            Some(1) => true,
            Some(0) => false,
            other => {
                return Err(EvmError::Decode(format!(
                    "receipt of {hash}: status {other:?}"
                )));
            }
        };
        Ok(Some(Receipt {
            status,
            block_number: quantity_u64(&number)?,
            block_hash: hash32(&block_hash)?,
            gas_used: quantity_u128(&wire.gas_used)?,
            effective_gas_price: wire
                .effective_gas_price
                .as_deref()
                .map(quantity_u256)
                .transpose()?,
        }))
    }

    /// Whether the node knows `tx_hash`, pending or mined
    /// (`eth_getTransactionByHash` is not null).
    pub async fn transaction_known(&self, tx_hash: &str) -> Result<bool, EvmError> {
        let hash = given_hash(tx_hash)?;
        let tx: Value = self.call("eth_getTransactionByHash", json!([hash])).await?;
        Ok(!tx.is_null())
    }

    /// `eth_getTransactionCount` of `addr` at `latest` (mined transactions
    /// only), or at `pending` (the pool's pending ones counted too): the next
    /// nonce to use.
    pub async fn nonce(&self, addr: &str, pending: bool) -> Result<u64, EvmError> {
        let addr = given_address_hex(addr)?;
        let tag = if pending { "pending" } else { "latest" };
        let n: String = self
            .call("eth_getTransactionCount", json!([addr, tag]))
            .await?;
        quantity_u64(&n)
    }

    /// The native balance of `addr` (wei) at the latest block.
    pub async fn balance(&self, addr: &str) -> Result<U256, EvmError> {
        let addr = given_address_hex(addr)?;
        let b: String = self.call("eth_getBalance", json!([addr, "latest"])).await?;
        quantity_u256(&b)
    }

    /// `token.balanceOf(addr)` at the latest block (`eth_call`); an address
    /// without code answers no data, which is a [`EvmError::Decode`].
    pub async fn token_balance(&self, token: &str, addr: &str) -> Result<U256, EvmError> {
        let token = given_address_hex(token)?;
        let mut data = ERC20_BALANCE_OF_SELECTOR.to_vec();
        data.extend_from_slice(&address_word(&given_address(addr)?));
        let out = self.eth_call(&token, &data).await?;
        let word = out.get(..32).ok_or_else(|| {
            EvmError::Decode(format!(
                "balanceOf on {token} answered {} bytes (not a token?)",
                out.len()
            ))
        })?;
        let mut be = [0u8; 32];
        be.copy_from_slice(word);
        Ok(U256::from_be_bytes(be))
    }

    /// `eth_call` of `data` on `to` at the latest block: the returned bytes.
    /// A revert is an [`EvmError::Rpc`].
    pub async fn eth_call(&self, to: &str, data: &[u8]) -> Result<Vec<u8>, EvmError> {
        let to = given_address_hex(to)?;
        let out: String = self
            .call(
                "eth_call",
                json!([{"to": to, "data": format!("0x{}", hex::encode(data))}, "latest"]),
            )
            .await?;
        data_bytes(&out)
    }

    /// `eth_gasPrice`: wei per gas the node suggests for a legacy transaction.
    pub async fn gas_price(&self) -> Result<U256, EvmError> {
        let p: String = self.call("eth_gasPrice", json!([])).await?;
        quantity_u256(&p)
    }

    /// `eth_estimateGas` of a call from `from` to `to` with `value` and
    /// `data`; a call that would revert is an [`EvmError::Rpc`].
    pub async fn estimate_gas(
        &self,
        from: &str,
        to: &str,
        value: U256,
        data: &[u8],
    ) -> Result<u64, EvmError> {
        let call = json!({
            "from": given_address_hex(from)?,
            "to": given_address_hex(to)?,
            "value": format!("{value:#x}"),
            "data": format!("0x{}", hex::encode(data)),
        });
        let g: String = self.call("eth_estimateGas", json!([call])).await?;
        quantity_u64(&g)
    }

    /// `eth_sendRawTransaction` of signed bytes: the txid the node gives.
    /// Re-sending bytes the node has seen is [`SendError::AlreadyKnown`] or
    /// [`SendError::NonceTooLow`] (see [`SendError`]); it never makes a
    /// second transaction. `Ok` means accepted, not mined (nor even, on
    /// anvil, kept: see [`SendError`]).
    pub async fn send_raw(&self, raw: &[u8]) -> Result<String, SendError> {
        let param = format!("0x{}", hex::encode(raw));
        match self
            .call::<String>("eth_sendRawTransaction", json!([param]))
            .await
        {
            Ok(txid) => hash32(&txid).map_err(|e| SendError::Transport(e.to_string())),
            Err(EvmError::Rpc { message, .. }) => Err(classify_send_error(&message)),
            Err(EvmError::Transport(e)) => Err(SendError::Transport(e)),
            Err(EvmError::Decode(e)) => Err(SendError::Transport(e)),
        }
    }
}

/// The [`SendError`] of a node's refusal message (geth, bsc-geth, anvil,
/// Erigon, Nethermind, OpenEthereum wordings).
pub fn classify_send_error(message: &str) -> SendError {
    let m = message.to_ascii_lowercase();
    if m.contains("already known")
        || m.contains("already imported")
        || m.contains("known transaction")
        || m.contains("alreadyknown")
        || m.contains("already in the mempool")
    {
        SendError::AlreadyKnown
    } else if m.contains("nonce too low")
        || m.contains("oldnonce")
        || m.contains("nonce is too low")
        || m.contains("nonce has already been used")
    {
        SendError::NonceTooLow
    } else {
        SendError::Rejected(message.to_owned())
    }
}

/// The call data of ERC-20 `transfer(to, amount)`.
pub fn erc20_transfer_data(to: &str, amount: U256) -> Result<Vec<u8>, SignerError> {
    let to = parse_address(to).map_err(SignerError::InvalidAddress)?;
    let mut data = Vec::with_capacity(4 + 64);
    data.extend_from_slice(&ERC20_TRANSFER_SELECTOR);
    data.extend_from_slice(&address_word(&to));
    data.extend_from_slice(&amount.to_be_bytes());
    Ok(data)
}

/// keccak256 of `data`.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    use tiny_keccak::{Hasher, Keccak};
    let mut hasher = Keccak::v256();
    hasher.update(data);
    let mut out = [0u8; 32];
    hasher.finalize(&mut out);
    out
}

/// The 20 bytes of `0x` + 40 hex digits. All-lowercase and all-uppercase
/// are accepted as they are; mixed case must be the EIP-55 checksum.
pub fn parse_address(s: &str) -> Result<[u8; 20], String> {
    let digits = s
        .strip_prefix("0x")
        .filter(|d| d.len() == 40)
        .ok_or_else(|| format!("{s:?} is not an address (0x and 40 hex digits)"))?;
    let mut out = [0u8; 20];
    hex::decode_to_slice(digits, &mut out)
        .map_err(|_| format!("{s:?} is not an address (0x and 40 hex digits)"))?;
    let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper && domain::custody::address::evm_checksum_address(&out) != s {
        return Err(format!("{s:?} has a wrong EIP-55 checksum"));
    }
    Ok(out)
}

/// The EIP-55 form of an address (any case accepted, as [`parse_address`]).
pub fn checksum_address(s: &str) -> Result<String, String> {
    parse_address(s).map(|a| domain::custody::address::evm_checksum_address(&a))
}

// ---------------------------------------------------------------- wire

#[derive(Deserialize)]
struct WireAnswer {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock<T> {
    number: String,
    hash: String,
    parent_hash: String,
    timestamp: String,
    #[serde(default = "Vec::new")]
    transactions: Vec<T>,
}

#[derive(Deserialize)]
struct WireTx {
    hash: String,
    from: String,
    to: Option<String>,
    value: String,
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireLog {
    address: String,
    topics: Vec<String>,
    data: String,
    block_number: Option<String>,
    block_hash: Option<String>,
    transaction_hash: Option<String>,
    log_index: Option<String>,
    #[serde(default)]
    removed: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReceipt {
    status: Option<String>,
    block_number: Option<String>,
    block_hash: Option<String>,
    gas_used: String,
    effective_gas_price: Option<String>,
}

// ---------------------------------------------------------------- parsing

fn invalid_param(message: String) -> EvmError {
    EvmError::Rpc {
        code: INVALID_PARAMS,
        message,
    }
}

/// An address argument, refused as invalid params when malformed.
fn given_address(s: &str) -> Result<[u8; 20], EvmError> {
    parse_address(s).map_err(invalid_param)
}

fn given_address_hex(s: &str) -> Result<String, EvmError> {
    given_address(s).map(|a| format!("0x{}", hex::encode(a)))
}

/// A 32-byte hash argument, lowercased.
fn given_hash(s: &str) -> Result<String, EvmError> {
    hash32(s).map_err(|_| invalid_param(format!("{s:?} is not a 32-byte hash")))
}

/// An address the node answered, checksummed.
fn answered_address(s: &str) -> Result<String, EvmError> {
    checksum_address(s).map_err(EvmError::Decode)
}

/// A 32-byte topic holding an address: `None` when its 12 high bytes are not zero.
fn topic_address(topic: &str) -> Result<Option<String>, EvmError> {
    let bytes = data_bytes(topic)?;
    if bytes.len() != 32 {
        return Err(EvmError::Decode(format!("topic {topic:?} is not 32 bytes")));
    }
    if bytes[..12].iter().any(|b| *b != 0) {
        return Ok(None);
    }
    let mut account = [0u8; 20];
    account.copy_from_slice(&bytes[12..]);
    Ok(Some(domain::custody::address::evm_checksum_address(
        &account,
    )))
}

/// A 32-byte word holding `address`, left-padded with zeros.
fn address_word(address: &[u8; 20]) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(address);
    word
}

/// `0x` + 64 hex, lowercased.
fn hash32(s: &str) -> Result<String, EvmError> {
    match s.strip_prefix("0x") {
        Some(d) if d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.to_ascii_lowercase())
        }
        _ => Err(EvmError::Decode(format!("{s:?} is not a 32-byte hash"))),
    }
}

/// `0x`-prefixed data of any even length (`0x` is empty).
fn data_bytes(s: &str) -> Result<Vec<u8>, EvmError> {
    s.strip_prefix("0x")
        .and_then(|d| hex::decode(d).ok())
        .ok_or_else(|| EvmError::Decode(format!("{s:?} is not 0x-prefixed hex data")))
}

/// Checked data, lowercased.
fn data_hex(s: &str) -> Result<String, EvmError> {
    data_bytes(s)?;
    Ok(s.to_ascii_lowercase())
}

/// A JSON-RPC quantity: `0x` and 1 to 64 hex digits.
fn quantity_u256(s: &str) -> Result<U256, EvmError> {
    let bad = || EvmError::Decode(format!("{s:?} is not a quantity"));
    let digits = s.strip_prefix("0x").ok_or_else(bad)?;
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    U256::from_str_radix(digits, 16).map_err(|_| bad())
}

fn quantity_u128(s: &str) -> Result<u128, EvmError> {
    u128::try_from(quantity_u256(s)?)
        .map_err(|_| EvmError::Decode(format!("{s:?} does not fit 128 bits")))
}

fn quantity_u64(s: &str) -> Result<u64, EvmError> {
    u64::try_from(quantity_u256(s)?)
        .map_err(|_| EvmError::Decode(format!("{s:?} does not fit 64 bits")))
}

/// An error and its sources, without the URL (it may carry an API key).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_topic_is_the_event_hash() {
        assert_eq!(
            format!(
                "0x{}",
                hex::encode(keccak256(b"Transfer(address,address,uint256)"))
            ),
            TRANSFER_TOPIC
        );
        assert_eq!(
            keccak256(b"transfer(address,uint256)")[..4],
            ERC20_TRANSFER_SELECTOR
        );
        assert_eq!(
            keccak256(b"balanceOf(address)")[..4],
            ERC20_BALANCE_OF_SELECTOR
        );
    }

    #[test]
    fn erc20_transfer_data_is_abi_encoded() {
        let data = erc20_transfer_data(
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            U256::new(1_000_000),
        )
        .unwrap();
        assert_eq!(
            hex::encode(&data),
            "a9059cbb00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8\
             00000000000000000000000000000000000000000000000000000000000f4240"
        );
        assert_eq!(
            erc20_transfer_data("0x70997970c51812dc3a010c7d01b50e0d17dc79c8", U256::MAX).unwrap()
                [36..],
            [0xff; 32]
        );
        assert!(erc20_transfer_data("0x7099", U256::ONE).is_err());
        assert!(
            erc20_transfer_data("0x70997970C51812dc3A010C7d01b50e0d17dc79c8", U256::ONE).is_err(),
            "bad checksum"
        );
    }

    #[test]
    fn addresses_parse_and_checksum() {
        let lower = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
        let sum = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
        assert_eq!(checksum_address(lower).unwrap(), sum);
        assert_eq!(checksum_address(sum).unwrap(), sum);
        assert_eq!(
            checksum_address(&lower.to_ascii_uppercase().replace("0X", "0x")).unwrap(),
            sum
        );
        for bad in [
            "",
            "0x",
            "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226",
            "0xg39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            " 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            given_address("0x12"),
            Err(EvmError::Rpc {
                code: INVALID_PARAMS,
                ..
            })
        ));
    }

    #[test]
    fn topics_decode_to_addresses() {
        let topic = "0x00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8";
        assert_eq!(
            topic_address(topic).unwrap().as_deref(),
            Some("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
        );
        let dirty = "0x01000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8";
        assert_eq!(topic_address(dirty).unwrap(), None);
        assert!(topic_address("0x1234").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_u64("0x0").unwrap(), 0);
        assert_eq!(quantity_u64("0x7a69").unwrap(), 31337);
        assert_eq!(quantity_u64("0xffffffffffffffff").unwrap(), u64::MAX);
        assert!(quantity_u64("0x10000000000000000").is_err());
        assert_eq!(
            quantity_u256(&format!("0x{}", "f".repeat(64))).unwrap(),
            U256::MAX
        );
        for bad in [
            "",
            "0x",
            "7a69",
            "0x+1",
            "0x-1",
            "0xg",
            &format!("0x1{}", "0".repeat(64)),
        ] {
            assert!(quantity_u256(bad).is_err(), "{bad:?}");
        }
        assert_eq!(data_bytes("0x").unwrap(), Vec::<u8>::new());
        assert!(data_bytes("0x1").is_err());
        assert!(hash32("0x12").is_err());
        assert_eq!(
            hash32(&format!("0x{}", "AB".repeat(32))).unwrap(),
            format!("0x{}", "ab".repeat(32))
        );
    }

    #[test]
    fn send_errors_are_classified() {
        for m in [
            "transaction already imported",
            "already known",
            "Known transaction: 1234",
            "AlreadyKnown",
        ] {
            assert_eq!(classify_send_error(m), SendError::AlreadyKnown, "{m}");
        }
        for m in [
            "nonce too low",
            "nonce too low: next nonce 5, tx nonce 4",
            "OldNonce",
            "Transaction nonce is too low. Try incrementing the nonce.",
        ] {
            assert_eq!(classify_send_error(m), SendError::NonceTooLow, "{m}");
        }
        for m in [
            "replacement transaction underpriced",
            "Insufficient funds for gas * price + value",
            "invalid chain id for signer",
            "nonce too high",
        ] {
            assert_eq!(
                classify_send_error(m),
                SendError::Rejected(m.to_owned()),
                "{m}"
            );
        }
    }

    #[test]
    fn client_debug_hides_the_url_path() {
        let c = EvmClient::new("https://mainnet.example.com/v3/secret-api-key");
        let shown = format!("{c:?}");
        assert!(shown.contains("mainnet.example.com"));
        assert!(!shown.contains("secret"), "{shown}");
    }
}
