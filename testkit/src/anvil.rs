//! A real anvil (EVM dev node) for one test: [`Anvil::start`] spawns it on a
//! free port of 127.0.0.1 with the chain id asked for and kills it when the
//! value is dropped.
//!
//! The binary is `ANVIL_BIN` from the environment, else from the file
//! `$HASHGRID_NODES_CACHE/env` (default `~/.cache/hashgrid-nodes/env`)
//! written by `bash scripts/chain-nodes.sh install`; when that file is
//! missing the install is run once (see `scripts/chain-nodes.md`).
//!
//! The node has anvil's ten funded dev accounts ([`DEV_ADDRESSES`], keys in
//! [`DEV_PRIVATE_KEYS`]), all unlocked for `eth_sendTransaction`, and mines a
//! block for every transaction (automine) until [`Anvil::set_automine`] says
//! otherwise. Amounts are `u128` (wei or token base units).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// anvil's dev accounts (mnemonic `test test … junk`), EIP-55 checksummed.
pub const DEV_ADDRESSES: [&str; 10] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
];

/// The private keys of [`DEV_ADDRESSES`], same order (public test keys:
/// never fund them anywhere real).
pub const DEV_PRIVATE_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// What each dev account holds at start: 10000 ETH.
pub const DEV_BALANCE_WEI: u128 = 10_000 * 1_000_000_000_000_000_000;

/// The fixture token's creation bytecode (hex, no `0x`); see
/// `testkit/fixtures/erc20/README.md`.
pub const ERC20_BYTECODE_HEX: &str = include_str!("../fixtures/erc20/TestToken.hex");

/// How long a started node may take to answer `eth_chainId`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports tried before giving up.
const START_ATTEMPTS: usize = 5;

/// A running anvil, killed on drop.
pub struct Anvil {
    child: Child,
    port: u16,
    url: String,
    chain_id: u64,
    http: reqwest::Client,
    next_id: AtomicU64,
    automine: AtomicBool,
}

impl std::fmt::Debug for Anvil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anvil")
            .field("pid", &self.child.id())
            .field("url", &self.url)
            .field("chain_id", &self.chain_id)
            .finish()
    }
}

impl Anvil {
    /// Starts anvil with `chain_id` on a free port and waits until it answers
    /// `eth_chainId` with that id.
    pub async fn start(chain_id: u64) -> anyhow::Result<Anvil> {
        let bin = anvil_bin().await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building anvil's HTTP client")?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match Self::start_on(&bin, port, chain_id, http.clone()).await {
                Ok(anvil) => return Ok(anvil),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no attempt made"))
            .context(format!(
                "starting anvil ({}) with chain id {chain_id}",
                bin.display()
            )))
    }

    async fn start_on(
        bin: &Path,
        port: u16,
        chain_id: u64,
        http: reqwest::Client,
    ) -> anyhow::Result<Anvil> {
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--chain-id")
            .arg(chain_id.to_string())
            .arg("--silent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        // From here on Drop kills the child, whatever happens.
        let mut anvil = Anvil {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            chain_id,
            http,
            next_id: AtomicU64::new(1),
            automine: AtomicBool::new(true),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = anvil.child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = anvil.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                anyhow::bail!(
                    "anvil on port {port} exited with {status}: {}",
                    stderr.trim()
                );
            }
            // Ours only if it is still alive and has our chain id (another
            // process may have taken the port in between).
            if let Ok(id) = anvil.rpc("eth_chainId", json!([])).await {
                let id = id.as_str().and_then(|s| parse_hex_u128(s).ok());
                if id == Some(u128::from(chain_id)) && anvil.child.try_wait()?.is_none() {
                    return Ok(anvil);
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "anvil on port {port} did not answer eth_chainId = {chain_id} within {START_TIMEOUT:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Calls `method`; a JSON-RPC error becomes an error naming its code and message.
    pub async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("anvil {}: {method}", self.url))?
            .json()
            .await
            .with_context(|| format!("anvil {}: {method}: not JSON", self.url))?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            anyhow::bail!("anvil {method} failed: {error}");
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    /// The ten dev accounts ([`DEV_ADDRESSES`]), EIP-55 checksummed.
    pub fn accounts(&self) -> Vec<String> {
        DEV_ADDRESSES.iter().map(|a| (*a).to_owned()).collect()
    }

    /// Mines `n` blocks (`anvil_mine`), with whatever is pending.
    pub async fn mine(&self, n: u64) -> anyhow::Result<()> {
        self.rpc("anvil_mine", json!([format!("{n:#x}")])).await?;
        Ok(())
    }

    /// The current block number.
    pub async fn block_number(&self) -> anyhow::Result<u64> {
        let n = self.rpc("eth_blockNumber", json!([])).await?;
        let n = parse_hex_u128(n.as_str().unwrap_or_default())?;
        Ok(u64::try_from(n)?)
    }

    /// `evm_snapshot`: the id to [`Self::revert`] to.
    pub async fn snapshot(&self) -> anyhow::Result<String> {
        let id = self.rpc("evm_snapshot", json!([])).await?;
        id.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("evm_snapshot answered {id}"))
    }

    /// `evm_revert` to snapshot `id`: the chain goes back to the block it was
    /// taken at (the blocks after it are gone, as in a reorg). A snapshot can
    /// be reverted to once.
    pub async fn revert(&self, id: &str) -> anyhow::Result<()> {
        let done = self.rpc("evm_revert", json!([id])).await?;
        if done != Value::Bool(true) {
            anyhow::bail!("evm_revert {id} answered {done}");
        }
        Ok(())
    }

    /// `evm_setAutomine`: off, transactions wait in the pool until [`Self::mine`].
    pub async fn set_automine(&self, on: bool) -> anyhow::Result<()> {
        self.rpc("evm_setAutomine", json!([on])).await?;
        self.automine.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// The receipt of `tx_hash` (JSON as the node gives it), waiting up to
    /// 10 s for it: with automine, anvil 1.7.1 answers a send before the block
    /// holding it is visible to `eth_getTransactionReceipt`.
    pub async fn wait_receipt(&self, tx_hash: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let receipt = self
                .rpc("eth_getTransactionReceipt", json!([tx_hash]))
                .await?;
            if !receipt.is_null() {
                return Ok(receipt);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("{tx_hash} not mined within 10 s (is automine off?)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `wei` from the unlocked dev account `from` (`eth_sendTransaction`);
    /// the transaction hash. With automine on, returns once it is mined.
    pub async fn send_eth(&self, from: &str, to: &str, wei: u128) -> anyhow::Result<String> {
        self.send_transaction(json!({"from": from, "to": to, "value": format!("{wei:#x}")}))
            .await
    }

    /// Deploys the fixture ERC-20 from dev account 0 with `supply` (base
    /// units) minted to `initial_holder`; its address (lowercase hex, as the
    /// node gives it). Needs automine (the default).
    pub async fn deploy_erc20(
        &self,
        name: &str,
        symbol: &str,
        decimals: u8,
        initial_holder: &str,
        supply: u128,
    ) -> anyhow::Result<String> {
        let mut code = ERC20_BYTECODE_HEX.trim().to_owned();
        code.push_str(&encode_constructor(
            name,
            symbol,
            decimals,
            initial_holder,
            supply,
        )?);
        let tx = self
            .send_transaction(json!({
                "from": DEV_ADDRESSES[0],
                "data": format!("0x{code}"),
                "gas": "0x2dc6c0", // 3 000 000
            }))
            .await?;
        let receipt = self.wait_receipt(&tx).await?;
        if receipt.get("status").and_then(Value::as_str) != Some("0x1") {
            anyhow::bail!("deployment {tx} failed: {receipt}");
        }
        receipt
            .get("contractAddress")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("deployment {tx}: no contractAddress in {receipt}"))
    }

    /// `token.transfer(to, amount)` from the unlocked dev account `from`; the
    /// transaction hash. A transfer the token refuses fails (gas is
    /// estimated). With automine on, returns once it is mined.
    pub async fn erc20_transfer(
        &self,
        token: &str,
        from: &str,
        to: &str,
        amount: u128,
    ) -> anyhow::Result<String> {
        let data = format!("0xa9059cbb{}{}", address_word(to)?, u128_word(amount));
        self.send_transaction(json!({"from": from, "to": token, "data": data}))
            .await
    }

    /// `token.balanceOf(addr)` at the latest block.
    pub async fn erc20_balance(&self, token: &str, addr: &str) -> anyhow::Result<u128> {
        let data = format!("0x70a08231{}", address_word(addr)?);
        let out = self
            .rpc("eth_call", json!([{"to": token, "data": data}, "latest"]))
            .await?;
        let out = out.as_str().unwrap_or_default();
        if out.len() != 66 {
            anyhow::bail!("balanceOf({addr}) on {token} answered {out:?}");
        }
        parse_hex_u128(out)
    }

    /// The native balance of `addr` (wei) at the latest block.
    pub async fn balance(&self, addr: &str) -> anyhow::Result<u128> {
        let b = self.rpc("eth_getBalance", json!([addr, "latest"])).await?;
        parse_hex_u128(b.as_str().unwrap_or_default())
    }

    /// `eth_sendTransaction`; with automine on, waits for the receipt.
    async fn send_transaction(&self, tx: Value) -> anyhow::Result<String> {
        let hash = self.rpc("eth_sendTransaction", json!([tx])).await?;
        let hash = hash
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("eth_sendTransaction answered {hash}"))?;
        if self.automine.load(Ordering::Relaxed) {
            self.wait_receipt(&hash).await?;
        }
        Ok(hash)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (it may be taken before anvil binds
/// it: [`Anvil::start`] then tries another).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

static INSTALL: Mutex<()> = Mutex::const_new(());

/// The anvil binary: `ANVIL_BIN`, else the nodes' env file (installing once
/// when it is missing).
async fn anvil_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ANVIL_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let env_file = nodes_cache()?.join("env");
    if !env_file.exists() {
        let _guard = INSTALL.lock().await;
        if !env_file.exists() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let out = tokio::process::Command::new("bash")
                .arg("scripts/chain-nodes.sh")
                .arg("install")
                .current_dir(&root)
                .stdin(Stdio::null())
                .output()
                .await
                .context("running scripts/chain-nodes.sh install")?;
            if !out.status.success() {
                anyhow::bail!(
                    "scripts/chain-nodes.sh install failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
    }
    let text = std::fs::read_to_string(&env_file)
        .with_context(|| format!("reading {}", env_file.display()))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("ANVIL_BIN="))
        .map(|v| PathBuf::from(v.trim().trim_matches('"')))
        .next()
        .ok_or_else(|| anyhow::anyhow!("no ANVIL_BIN= in {}", env_file.display()))
}

/// `$HASHGRID_NODES_CACHE`, else `$XDG_CACHE_HOME/hashgrid-nodes`, else
/// `~/.cache/hashgrid-nodes` (as `scripts/chain-nodes.sh` does).
fn nodes_cache() -> anyhow::Result<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("HASHGRID_NODES_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("hashgrid-nodes"));
    }
    let home = set("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".cache/hashgrid-nodes"))
}

/// `0x…` hex (at most 32 hex digits after leading zeros) as a `u128`.
fn parse_hex_u128(s: &str) -> anyhow::Result<u128> {
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not 0x-prefixed hex"))?;
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    u128::from_str_radix(digits, 16).with_context(|| format!("{s:?} is not a u128"))
}

/// A 32-byte ABI word (hex, no `0x`) holding `v`.
fn u128_word(v: u128) -> String {
    format!("{v:064x}")
}

/// A 32-byte ABI word holding the address `addr` (`0x` + 40 hex, any case).
fn address_word(addr: &str) -> anyhow::Result<String> {
    let hex = addr
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| anyhow::anyhow!("{addr:?} is not an address"))?;
    Ok(format!("{:0>64}", hex.to_ascii_lowercase()))
}

/// A string's ABI tail: its length word and its bytes padded to words.
fn string_tail(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = u128_word(bytes.len() as u128);
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().div_ceil(32) * 32, 0);
    for b in padded {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// ABI encoding of the fixture's constructor
/// `(string name, string symbol, uint8 decimals, address holder, uint256 supply)`.
fn encode_constructor(
    name: &str,
    symbol: &str,
    decimals: u8,
    holder: &str,
    supply: u128,
) -> anyhow::Result<String> {
    let name_tail = string_tail(name);
    let symbol_tail = string_tail(symbol);
    let head_bytes = 5 * 32;
    let name_offset = head_bytes as u128;
    let symbol_offset = name_offset + (name_tail.len() / 2) as u128;
    Ok([
        u128_word(name_offset),
        u128_word(symbol_offset),
        u128_word(u128::from(decimals)),
        address_word(holder)?,
        u128_word(supply),
        name_tail,
        symbol_tail,
    ]
    .concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructor_encoding_matches_the_abi() {
        // ("Tether USD", "USDT", 6, 0x…01, 1000)
        let enc = encode_constructor(
            "Tether USD",
            "USDT",
            6,
            "0x0000000000000000000000000000000000000001",
            1000,
        )
        .unwrap();
        let words: Vec<&str> = (0..enc.len() / 64)
            .map(|i| &enc[i * 64..(i + 1) * 64])
            .collect();
        assert_eq!(words.len(), 9);
        assert_eq!(words[0], format!("{:064x}", 0xa0));
        assert_eq!(words[1], format!("{:064x}", 0xe0));
        assert_eq!(words[2], format!("{:064x}", 6));
        assert_eq!(words[3], format!("{:064x}", 1));
        assert_eq!(words[4], format!("{:064x}", 1000));
        assert_eq!(words[5], format!("{:064x}", 10));
        assert_eq!(
            words[6],
            "5465746865722055534400000000000000000000000000000000000000000000"
        );
        assert_eq!(words[7], format!("{:064x}", 4));
        assert_eq!(
            words[8],
            "5553445400000000000000000000000000000000000000000000000000000000"
        );
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(parse_hex_u128("0x0").unwrap(), 0);
        assert_eq!(parse_hex_u128("0x7a69").unwrap(), 31337);
        assert_eq!(
            parse_hex_u128(&format!("0x{:064x}", 5u8)).unwrap(),
            5,
            "a 32-byte word with leading zeros"
        );
        assert!(parse_hex_u128("7a69").is_err());
        assert!(parse_hex_u128(&format!("0x1{:032x}", 0)).is_err());
        assert!(address_word("0x123").is_err());
        assert!(
            ERC20_BYTECODE_HEX
                .trim()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
    }
}
