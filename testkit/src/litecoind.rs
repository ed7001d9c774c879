//! A real `litecoind -regtest` for one test (no Docker, no mocks).
//!
//! [`Litecoind::start`] runs the daemon on a fresh datadir under
//! [`std::env::temp_dir`] with free ports on `127.0.0.1`, waits for its RPC,
//! and prepares two legacy (BDB) wallets:
//!
//! - [`HOT`]: the platform's hot wallet; 101 blocks are mined to it, then one
//!   more, so it can spend two outputs (about 40 and 50 LTC);
//! - [`PAYER`]: a customer's outside wallet, funded with [`PAYER_FUNDS`] LTC
//!   from `hot` (confirmed), which [`Litecoind::pay`] pays from.
//!
//! The chain is then at height 102. Stay below 431, where MWEB activates
//! (`scripts/chain-nodes.md`). Dropping the value sends `stop`, kills the
//! daemon if it is still running 1 s later (an idle keep-alive RPC
//! connection holds litecoind's shutdown for `-rpcservertimeout`, 30 s),
//! reaps it and removes the datadir. Startup takes about 0.5–1 s
//! ([`Litecoind::started_in`]).
//!
//! The binary is `$LITECOIND_BIN`, else `/usr/lib/litecoin/litecoind` (what
//! the Debian wrapper `/usr/bin/litecoind` execs, without it creating
//! `~/.litecoin`), else `litecoind` on the `PATH`. Install it with
//! `bash scripts/chain-nodes.sh install`.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

/// The hot wallet's name.
pub const HOT: &str = "hot";
/// The outside (customer) wallet's name.
pub const PAYER: &str = "payer";
/// What `payer` holds after [`Litecoind::start`], in LTC.
pub const PAYER_FUNDS: &str = "20";

const RPC_USER: &str = "hashgrid";
/// How long the RPC may take to answer after the daemon started.
const RPC_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one RPC call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon may take to exit after `stop` before it is killed.
/// It exits in about 0.15 s, unless an idle keep-alive RPC connection is
/// still open (a client of the test's runtime, which cannot run while drop
/// blocks it): litecoind 0.21 then waits `-rpcservertimeout` (30 s) for it.
/// Nothing of the datadir is kept, so a kill loses nothing.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// Starts tried (fresh ports each time) before giving up.
const START_ATTEMPTS: usize = 3;

/// A running `litecoind -regtest`; stopped and its datadir removed on drop.
#[derive(Debug)]
pub struct Litecoind {
    child: Option<Child>,
    datadir: PathBuf,
    rpc_port: u16,
    p2p_port: u16,
    password: String,
    http: reqwest::Client,
    started_in: Duration,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("LITECOIND_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let native = Path::new("/usr/lib/litecoin/litecoind");
    if native.is_file() {
        return native.to_path_buf();
    }
    PathBuf::from("litecoind")
}

/// The last `lines` lines of a text file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Litecoind {
    /// Starts a fresh node with the `hot` and `payer` wallets (see the
    /// module documentation).
    pub async fn start() -> anyhow::Result<Litecoind> {
        let begin = Instant::now();
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            let mut node = match Self::spawn() {
                Ok(node) => node,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            match node.wait_ready().await {
                Ok(()) => {
                    node.prepare_wallets().await?;
                    node.started_in = begin.elapsed();
                    tracing::debug!(
                        rpc_port = node.rpc_port,
                        started_in = ?node.started_in,
                        "litecoind ready"
                    );
                    return Ok(node);
                }
                Err(e) => {
                    tracing::warn!(attempt, error = format!("{e:#}"), "litecoind did not start");
                    last_error = Some(e);
                    // dropping `node` stops it and removes its datadir
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "starting litecoind ({START_ATTEMPTS} attempts; install it with `bash scripts/chain-nodes.sh install`)"
            )))
    }

    fn spawn() -> anyhow::Result<Litecoind> {
        let datadir = std::env::temp_dir().join(format!(
            "hashgrid-litecoind-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&datadir)
            .with_context(|| format!("creating {}", datadir.display()))?;
        let rpc_port = free_port()?;
        let mut p2p_port = free_port()?;
        while p2p_port == rpc_port {
            p2p_port = free_port()?;
        }
        let password = uuid::Uuid::new_v4().simple().to_string();
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // no idle connections: they delay the daemon's shutdown
            .pool_max_idle_per_host(0)
            .build()
            .context("building the litecoind RPC client")?;
        // The node exists from here on, so that an error below drops (and
        // cleans up) it.
        let mut node = Litecoind {
            child: None,
            datadir,
            rpc_port,
            p2p_port,
            password,
            http,
            started_in: Duration::ZERO,
        };
        let out = File::create(node.datadir.join("console.log"))
            .context("creating litecoind's console log")?;
        let err = out.try_clone()?;
        let bin = binary();
        let child = Command::new(&bin)
            .arg("-regtest")
            .arg(format!("-datadir={}", node.datadir.display()))
            .args([
                "-server=1",
                // No P2P at all: nothing listens, nothing is dialled.
                "-listen=0",
                "-dnsseed=0",
                "-discover=0",
                "-upnp=0",
                "-listenonion=0",
                "-connect=0",
                "-rpcbind=127.0.0.1",
                "-rpcallowip=127.0.0.1",
                "-rpcthreads=8",
                "-rpcworkqueue=64",
                "-fallbackfee=0.0002",
                "-txindex=1",
                "-printtoconsole=0",
                "-persistmempool=0",
                // A small keypool makes createwallet fast (legacy wallets
                // pre-generate this many keys; it refills on demand).
                "-keypool=20",
                "-dbcache=16",
                "-par=1",
                "-shrinkdebugfile=1",
            ])
            .arg(format!("-rpcport={}", node.rpc_port))
            .arg(format!("-port={}", node.p2p_port))
            .arg(format!("-rpcuser={RPC_USER}"))
            .arg(format!("-rpcpassword={}", node.password))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        node.child = Some(child);
        Ok(node)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + RPC_READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "litecoind exited ({status}) before answering: {} {}",
                    tail(&self.datadir.join("console.log"), 5),
                    tail(&self.datadir.join("regtest/debug.log"), 5)
                );
            }
            match self.rpc(None, "getblockcount", json!([])).await {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!(
                        "litecoind RPC on port {} not ready after {RPC_READY_TIMEOUT:?}: {}",
                        self.rpc_port,
                        tail(&self.datadir.join("regtest/debug.log"), 5)
                    )));
                }
                // refused while starting, -28 while warming up
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    async fn prepare_wallets(&self) -> anyhow::Result<()> {
        self.create_wallet(HOT).await?;
        self.create_wallet(PAYER).await?;
        self.mine(101).await?;
        let payer = self.new_address(PAYER).await?;
        self.rpc(Some(HOT), "sendtoaddress", json!([payer, PAYER_FUNDS]))
            .await
            .context("funding the payer wallet")?;
        self.mine(1).await?;
        Ok(())
    }

    /// Creates (and loads) a legacy wallet with private keys.
    pub async fn create_wallet(&self, name: &str) -> anyhow::Result<()> {
        // name, disable_private_keys, blank, passphrase, avoid_reuse, descriptors
        self.rpc(
            None,
            "createwallet",
            json!([name, false, false, "", false, false]),
        )
        .await
        .with_context(|| format!("creating wallet {name}"))?;
        Ok(())
    }

    /// A new bech32 (`rltc1…`) receiving address of `wallet`.
    pub async fn new_address(&self, wallet: &str) -> anyhow::Result<String> {
        self.address_of_type(wallet, "bech32").await
    }

    /// A new legacy (P2PKH, version 0x6f: `m…`/`n…`) address of `wallet`,
    /// which is also a valid bitcoin regtest address — what the platform
    /// validates when litecoind stands for the `bitcoin` network.
    pub async fn new_legacy_address(&self, wallet: &str) -> anyhow::Result<String> {
        self.address_of_type(wallet, "legacy").await
    }

    async fn address_of_type(&self, wallet: &str, kind: &str) -> anyhow::Result<String> {
        let v = self
            .rpc(Some(wallet), "getnewaddress", json!(["", kind]))
            .await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("getnewaddress answered {v}"))
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no credentials).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.rpc_port)
    }

    /// `http://127.0.0.1:PORT/wallet/NAME`.
    pub fn wallet_url(&self, name: &str) -> String {
        format!("{}/wallet/{name}", self.url())
    }

    pub fn rpc_user(&self) -> &str {
        RPC_USER
    }

    pub fn rpc_password(&self) -> &str {
        &self.password
    }

    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// How long [`Litecoind::start`] took, wallets and blocks included.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// One JSON-RPC call, on `/wallet/<wallet>` when given. Amounts in the
    /// answer are JSON floats (use the production client for exact ones).
    pub async fn rpc(
        &self,
        wallet: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        let url = match wallet {
            Some(w) => self.wallet_url(w),
            None => self.url(),
        };
        let res = self
            .http
            .post(&url)
            .basic_auth(RPC_USER, Some(&self.password))
            .json(&json!({"jsonrpc": "1.0", "id": "testkit", "method": method, "params": params}))
            .send()
            .await
            .with_context(|| format!("litecoind {method}: no answer"))?;
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&body)
            .map_err(|_| anyhow!("litecoind {method}: HTTP {status}: {body:.200}"))?;
        match v.get("error") {
            Some(e) if !e.is_null() => bail!("litecoind {method} {params}: {e}"),
            _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Mines `n` blocks to a new `hot` address; their hashes, oldest first.
    /// A new address each time keeps a block from repeating one that was
    /// invalidated.
    pub async fn mine(&self, n: u32) -> anyhow::Result<Vec<String>> {
        let to = self.new_address(HOT).await?;
        let v = self.rpc(None, "generatetoaddress", json!([n, to])).await?;
        serde_json::from_value(v).context("generatetoaddress")
    }

    /// Mines one block holding exactly `raw_txs` (hex, not necessarily in
    /// the mempool) after the coinbase; its hash.
    pub async fn mine_with(&self, raw_txs: &[String]) -> anyhow::Result<String> {
        let to = self.new_address(HOT).await?;
        let v = self
            .rpc(None, "generateblock", json!([to, raw_txs]))
            .await?;
        v.get("hash")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("generateblock answered {v}"))
    }

    /// The tip's height.
    pub async fn height(&self) -> anyhow::Result<u64> {
        let v = self.rpc(None, "getblockcount", json!([])).await?;
        v.as_u64()
            .ok_or_else(|| anyhow!("getblockcount answered {v}"))
    }

    /// The tip's hash.
    pub async fn tip(&self) -> anyhow::Result<String> {
        let v = self.rpc(None, "getbestblockhash", json!([])).await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("getbestblockhash answered {v}"))
    }

    /// Marks `hash` (and its descendants) invalid: the chain reorganises
    /// to its parent, the transactions go back to the mempool.
    pub async fn invalidate_block(&self, hash: &str) -> anyhow::Result<()> {
        self.rpc(None, "invalidateblock", json!([hash])).await?;
        Ok(())
    }

    /// Undoes [`Litecoind::invalidate_block`]; the node switches back when
    /// that chain has the most work.
    pub async fn reconsider_block(&self, hash: &str) -> anyhow::Result<()> {
        self.rpc(None, "reconsiderblock", json!([hash])).await?;
        Ok(())
    }

    /// Pays `amount_ltc` (a decimal string, e.g. `"0.12345678"`) from
    /// `payer` to `to_address`; the txid (in the mempool, unconfirmed).
    pub async fn pay(&self, to_address: &str, amount_ltc: &str) -> anyhow::Result<String> {
        let v = self
            .rpc(
                Some(PAYER),
                "sendtoaddress",
                json!([to_address, amount_ltc]),
            )
            .await?;
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("sendtoaddress answered {v}"))
    }

    /// Double-spends the unconfirmed `payer` transaction `txid`: a
    /// transaction spending the same inputs back to `payer` is mined
    /// directly with `generateblock` (litecoind refuses replacements in its
    /// mempool, BIP125 or not). `txid` must not be in the active chain (for
    /// a confirmed one, invalidate its block first); it leaves the mempool.
    /// Returns (the conflicting txid, the new block's hash).
    pub async fn double_spend(&self, txid: &str) -> anyhow::Result<(String, String)> {
        let tx = self
            .rpc(None, "getrawtransaction", json!([txid, true]))
            .await?;
        let vin = tx
            .get("vin")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("{txid} has no inputs"))?;
        let mut inputs = Vec::new();
        let mut total_sats: i64 = 0;
        for input in vin {
            let prev = input
                .get("txid")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("an input of {txid} has no txid"))?;
            let n = input
                .get("vout")
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("an input of {txid} has no vout"))?;
            let parent = self
                .rpc(None, "getrawtransaction", json!([prev, true]))
                .await?;
            let value = parent
                .get("vout")
                .and_then(|outs| outs.get(usize::try_from(n).unwrap_or(usize::MAX)))
                .and_then(|out| out.get("value"))
                .and_then(Value::as_f64)
                .ok_or_else(|| anyhow!("no value for {prev}:{n}"))?;
            total_sats += (value * 1e8).round() as i64;
            inputs.push(json!({"txid": prev, "vout": n}));
        }
        let back = self.new_address(PAYER).await?;
        let keep = total_sats - 100_000; // 0.001 LTC fee
        let amount = format!("{}.{:08}", keep / 100_000_000, keep % 100_000_000);
        let raw = self
            .rpc(
                None,
                "createrawtransaction",
                json!([inputs, [{ back: amount }]]),
            )
            .await?;
        let signed = self
            .rpc(Some(PAYER), "signrawtransactionwithwallet", json!([raw]))
            .await?;
        if signed.get("complete") != Some(&Value::Bool(true)) {
            bail!("payer could not sign the double spend: {signed}");
        }
        let hex = signed
            .get("hex")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("signrawtransactionwithwallet answered {signed}"))?
            .to_owned();
        let decoded = self.rpc(None, "decoderawtransaction", json!([hex])).await?;
        let conflict = decoded
            .get("txid")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("decoderawtransaction answered {decoded}"))?
            .to_owned();
        let block = self.mine_with(&[hex]).await?;
        Ok((conflict, block))
    }

    /// Asks the daemon to stop (`stop` RPC, on a thread of its own: drop
    /// may run inside a runtime).
    fn request_stop(&self) {
        let url = self.url();
        let password = self.password.clone();
        let stopper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                // A client of this runtime: the node's own client has
                // connections bound to the test's runtime.
                let Ok(http) = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .pool_max_idle_per_host(0)
                    .build()
                else {
                    return;
                };
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    http.post(&url)
                        .basic_auth(RPC_USER, Some(&password))
                        .json(&json!({"jsonrpc": "1.0", "id": "stop", "method": "stop", "params": []}))
                        .send(),
                )
                .await;
            });
        });
        let _ = stopper.join();
    }
}

impl Drop for Litecoind {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                self.request_stop();
                let deadline = Instant::now() + STOP_GRACE;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            // reaps it: no zombie
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.datadir);
    }
}
