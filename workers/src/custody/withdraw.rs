//! The withdrawal sender: claims approved withdrawals with `SKIP LOCKED`,
//! signs each once, stores the signed bytes and txid BEFORE broadcasting,
//! broadcasts, and completes after the network's confirmations.
//!
//! Crash safety, step by step (a crash may happen between any two lines):
//! - `approved`: nothing exists outside the database yet. Signing again
//!   after a crash is harmless because nothing was stored or sent (EVM: the
//!   nonce is only taken when it is stored; bitcoin-like: the node's input
//!   locks of an unsent transaction are released, or lost with the node's
//!   memory — the coins never moved).
//! - `signed`: the bytes are stored; from here on the worker only ever
//!   re-sends THOSE bytes (same txid), it never signs anew. Sending the same
//!   bytes twice is one transaction on chain.
//! - `broadcast`: the txid is looked up; unknown to the node → the same bytes
//!   are sent again; mined → confirmations are counted; an EVM receipt with
//!   status 0 fails the withdrawal (hold voided); enough confirmations
//!   complete it (hold posted), exactly once under the row lock.
//!
//! A withdrawal larger than the hot wallet holds waits (its `waiting_reason`
//! is shown in the admin report) and is retried on the next run.
//!
//! Fault injection for the crash test: `HASHGRID_FAULT_KILL_AT=<point>`
//! (`claimed`, `signed`, `sent`, `marked`) makes this process SIGKILL
//! itself the first time it reaches that point.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use chrono::Duration;
use domain::custody::withdrawal::State;
use domain::custody::withdrawals::{self, Signed, Withdrawal, WithdrawalError};
use domain::db::PgPool;
use domain::money::{Amount, Asset, Network};
use ethnum::U256;

use super::config::{BitcoinNode, ChainConfig, EvmNode};
use crate::chain::bitcoin::{self as btc, BitcoinClient};
use crate::chain::evm::signer::{LegacyTx, LocalSigner};
use crate::chain::evm::{self as evm, EvmClient};
use crate::runner::JobContext;

pub const SEND_WITHDRAWALS_JOB: &str = "send_withdrawals";

/// Gas for a plain value transfer, and the explicit limit for a token transfer.
const NATIVE_GAS: u64 = 21_000;
const TOKEN_GAS: u64 = 100_000;

/// Kills this process with SIGKILL at `point` when the crash test asks for it.
pub fn fault(point: &str) {
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var("HASHGRID_FAULT_KILL_AT").is_ok_and(|p| p == point)
        && !FIRED.swap(true, Ordering::SeqCst)
    {
        tracing::warn!(point, "fault injection: SIGKILL");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::abort();
    }
}

/// How long a claimed withdrawal stays with one worker (`HASHGRID_WITHDRAWAL_LEASE_SECS`, default 60).
fn lease() -> Duration {
    let secs = std::env::var("HASHGRID_WITHDRAWAL_LEASE_SECS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    Duration::seconds(secs)
}

enum Wallet {
    Evm {
        client: EvmClient,
        signer: LocalSigner,
        chain_id: u64,
        tokens: std::collections::BTreeMap<Asset, String>,
    },
    Bitcoin {
        client: BitcoinClient,
        label: String,
    },
}

/// Sends the withdrawals of one network.
pub struct Sender {
    network: Network,
    wallet: Wallet,
    worker: String,
    lease: Duration,
}

/// What happened to one withdrawal in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Moved to this state.
    Moved(State),
    /// Still broadcast, with this many confirmations.
    Confirming(u32),
    /// Waits; the reason is stored for the admin report.
    Waiting(String),
    /// Nothing could be done now (node unreachable …); retried later.
    Retry(String),
}

impl Sender {
    pub async fn evm(node: &EvmNode, worker: &str) -> anyhow::Result<Option<Sender>> {
        let Some(key) = &node.hot_key else {
            return Ok(None);
        };
        let signer = LocalSigner::from_hex(key)
            .map_err(|e| anyhow!("{}: the hot wallet key: {e}", node.network))?;
        let client = EvmClient::new(&node.url);
        let chain_id = client
            .chain_id()
            .await
            .with_context(|| format!("{}: eth_chainId", node.network))?;
        Ok(Some(Sender {
            network: node.network,
            wallet: Wallet::Evm {
                client,
                signer,
                chain_id,
                tokens: node.tokens.clone(),
            },
            worker: worker.to_owned(),
            lease: lease(),
        }))
    }

    pub fn bitcoin(node: &BitcoinNode, worker: &str) -> Sender {
        Sender {
            network: node.network,
            wallet: Wallet::Bitcoin {
                client: BitcoinClient::new(
                    &node.url,
                    &node.user,
                    &node.password,
                    node.wallet.as_deref(),
                ),
                label: format!("node-wallet:{}", node.wallet.as_deref().unwrap_or("")),
            },
            worker: worker.to_owned(),
            lease: lease(),
        }
    }

    /// Works through every claimable withdrawal of the network once.
    pub async fn run_once(&self, pool: &PgPool) -> anyhow::Result<Vec<(uuid::Uuid, Step)>> {
        let mut conn = pool.get().await?;
        let mut done = Vec::new();
        let mut seen: Vec<uuid::Uuid> = Vec::new();
        while let Some(w) =
            withdrawals::claim(&mut conn, self.network, &self.worker, self.lease, &seen).await?
        {
            seen.push(w.id);
            let id = w.id;
            let step = match self.step(&mut conn, w).await {
                Ok(step) => step,
                Err(e) => Step::Retry(format!("{e:#}")),
            };
            match &step {
                Step::Moved(s) if s.is_final() => {}
                Step::Retry(why) => {
                    tracing::warn!(withdrawal = %id, network = %self.network, why, "withdrawal retried later");
                    // Shown in the admin report until the next transition clears it.
                    withdrawals::set_waiting(&mut conn, id, &self.worker, why).await?;
                    withdrawals::release(&mut conn, id, &self.worker).await?;
                }
                _ => withdrawals::release(&mut conn, id, &self.worker).await?,
            }
            done.push((id, step));
        }
        Ok(done)
    }

    async fn step(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        w: Withdrawal,
    ) -> anyhow::Result<Step> {
        match w.state() {
            State::Approved => {
                fault("claimed");
                let signed = match self.sign(conn, &w).await? {
                    Ok(signed) => signed,
                    Err(waiting) => {
                        withdrawals::set_waiting(conn, w.id, &self.worker, &waiting).await?;
                        return Ok(Step::Waiting(waiting));
                    }
                };
                let row = match withdrawals::record_signed(conn, w.id, &self.worker, &signed).await
                {
                    Ok(row) => row,
                    Err(e) => {
                        // Cancelled meanwhile, or another worker: the bytes are dropped unsent.
                        if let Wallet::Bitcoin { client, .. } = &self.wallet {
                            let _ = client.unlock_inputs(&hex::encode(&signed.raw)).await;
                        }
                        return Err(e.into());
                    }
                };
                fault("signed");
                self.send(conn, &row).await
            }
            State::Signed => self.send(conn, &w).await,
            State::Broadcast => self.follow(conn, &w).await,
            other => Ok(Step::Moved(other)),
        }
    }

    /// Builds and signs the transaction, or says why it must wait.
    async fn sign(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        w: &Withdrawal,
    ) -> anyhow::Result<Result<Signed, String>> {
        let asset: Asset = w
            .asset
            .parse()
            .map_err(|_| anyhow!("unknown asset {}", w.asset))?;
        let amount = Amount::from_decimal(w.amount, asset)?;
        let units = amount
            .units_on(self.network)
            .with_context(|| format!("{} {asset} in {} units", w.amount, self.network))?;
        match &self.wallet {
            Wallet::Evm {
                client,
                signer,
                chain_id,
                tokens,
            } => {
                let hot = signer.address();
                let gas_price = client.gas_price().await?;
                let native = self.network.native_asset() == Some(asset);
                let (to, value, data, gas_limit) = if native {
                    (w.address.clone(), U256::from(units), Vec::new(), NATIVE_GAS)
                } else {
                    let Some(token) = tokens.get(&asset) else {
                        return Ok(Err(format!(
                            "no {asset} token contract configured on {}",
                            self.network
                        )));
                    };
                    let data = evm::erc20_transfer_data(&w.address, U256::from(units))
                        .map_err(|e| anyhow!("{e}"))?;
                    (token.clone(), U256::ZERO, data, TOKEN_GAS)
                };
                let gas_cost = gas_price.saturating_mul(U256::from(gas_limit));
                let have = client.balance(&hot).await?;
                if native && have < value.saturating_add(gas_cost) {
                    return Ok(Err(format!(
                        "hot wallet {hot} holds {have} wei, needs {} wei incl. gas",
                        value.saturating_add(gas_cost)
                    )));
                }
                if !native {
                    if have < gas_cost {
                        return Ok(Err(format!(
                            "hot wallet {hot} holds {have} wei, needs {gas_cost} wei for gas"
                        )));
                    }
                    let token_have = client.token_balance(&to, &hot).await?;
                    if token_have < U256::from(units) {
                        return Ok(Err(format!(
                            "hot wallet {hot} holds {token_have} {asset} units, needs {units}"
                        )));
                    }
                }
                let chain_count = client.nonce(&hot, true).await?;
                let nonce = withdrawals::next_nonce(conn, self.network, &hot, chain_count).await?;
                let tx = signer
                    .sign(&LegacyTx {
                        chain_id: *chain_id,
                        nonce,
                        gas_price,
                        gas_limit,
                        to,
                        value,
                        data,
                    })
                    .map_err(|e| anyhow!("signing: {e}"))?;
                Ok(Ok(Signed {
                    hot_wallet: hot,
                    nonce: Some(nonce),
                    raw: tx.raw,
                    txid: tx.txid,
                }))
            }
            Wallet::Bitcoin { client, label } => {
                let sats = u64::try_from(units).context("amount too large")?;
                let have = client.balance_sats().await?;
                if u64::try_from(have).unwrap_or(0) < sats {
                    return Ok(Err(format!(
                        "hot wallet holds {have} sat, needs {sats} sat plus the network fee"
                    )));
                }
                match client.create_signed(&w.address, sats).await {
                    Ok(tx) => Ok(Ok(Signed {
                        hot_wallet: label.clone(),
                        nonce: None,
                        raw: hex::decode(&tx.hex).context("the node's hex")?,
                        txid: tx.txid,
                    })),
                    Err(e) if e.is_insufficient_funds() => Ok(Err(format!(
                        "hot wallet cannot fund {sats} sat plus the network fee: {e}"
                    ))),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Sends the stored bytes (again, if need be) and marks the withdrawal broadcast.
    async fn send(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        w: &Withdrawal,
    ) -> anyhow::Result<Step> {
        let raw = w
            .signed_tx
            .clone()
            .context("a signed withdrawal without bytes")?;
        let txid = w.txid.clone().context("a signed withdrawal without txid")?;
        match &self.wallet {
            Wallet::Evm { client, .. } => match client.send_raw(&raw).await {
                Ok(_) | Err(evm::SendError::AlreadyKnown) => {}
                Err(evm::SendError::NonceTooLow) => {
                    // Ours was mined, or another transaction took the nonce.
                    if !client.transaction_known(&txid).await? {
                        return self
                            .fail(
                                conn,
                                w,
                                "the hot wallet nonce was used by another transaction",
                            )
                            .await;
                    }
                }
                Err(evm::SendError::Rejected(msg)) => {
                    if !client.transaction_known(&txid).await? {
                        // Not final: a later attempt re-sends the same bytes.
                        return Ok(Step::Retry(format!("node refused the transaction: {msg}")));
                    }
                }
                Err(evm::SendError::Transport(msg)) => return Ok(Step::Retry(msg)),
            },
            Wallet::Bitcoin { client, .. } => match client.send_raw(&hex::encode(&raw)).await {
                Ok(_) | Err(btc::SendError::AlreadyKnown) => {}
                Err(btc::SendError::Rejected(msg)) => match client.tx_confirmations(&txid).await? {
                    Some(c) if c >= 0 => {}
                    _ if msg.contains("conflict") || msg.contains("missingorspent") => {
                        return self
                            .fail(conn, w, &format!("inputs spent elsewhere: {msg}"))
                            .await;
                    }
                    _ => return Ok(Step::Retry(format!("node refused the transaction: {msg}"))),
                },
                Err(btc::SendError::Transport(msg)) => return Ok(Step::Retry(msg)),
            },
        }
        fault("sent");
        let row = withdrawals::mark_broadcast(conn, w.id, &self.worker).await?;
        fault("marked");
        Ok(Step::Moved(row.state()))
    }

    /// Counts confirmations; re-sends the same bytes if the node lost them.
    async fn follow(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        w: &Withdrawal,
    ) -> anyhow::Result<Step> {
        let txid = w
            .txid
            .clone()
            .context("a broadcast withdrawal without txid")?;
        let raw = w
            .signed_tx
            .clone()
            .context("a broadcast withdrawal without bytes")?;
        let required = u32::try_from(w.required_confirmations).unwrap_or(1);
        let confirmations: u32 = match &self.wallet {
            Wallet::Evm { client, .. } => {
                match client.receipt(&txid).await? {
                    None => {
                        if !client.transaction_known(&txid).await? {
                            match client.send_raw(&raw).await {
                                Ok(_) | Err(evm::SendError::AlreadyKnown) => {}
                                Err(evm::SendError::NonceTooLow) => {
                                    if !client.transaction_known(&txid).await? {
                                        return self
                                        .fail(conn, w, "the hot wallet nonce was used by another transaction")
                                        .await;
                                    }
                                }
                                Err(e) => return Ok(Step::Retry(format!("re-sending: {e}"))),
                            }
                        }
                        0
                    }
                    Some(r) if !r.status => {
                        return self
                            .fail(
                                conn,
                                w,
                                "the transaction reverted on chain (receipt status 0)",
                            )
                            .await;
                    }
                    Some(r) => {
                        let head = client.block_number().await?;
                        u32::try_from(head.saturating_sub(r.block_number) + 1).unwrap_or(u32::MAX)
                    }
                }
            }
            Wallet::Bitcoin { client, .. } => match client.tx_confirmations(&txid).await? {
                None => {
                    match client.send_raw(&hex::encode(&raw)).await {
                        Ok(_) | Err(btc::SendError::AlreadyKnown) => {}
                        Err(e) => return Ok(Step::Retry(format!("re-sending: {e}"))),
                    }
                    0
                }
                Some(c) if c < 0 => {
                    return self
                        .fail(conn, w, "the transaction was double-spent (conflicted)")
                        .await;
                }
                Some(c) => u32::try_from(c).unwrap_or(u32::MAX),
            },
        };
        if confirmations >= required {
            let row = withdrawals::complete(conn, w.id, &self.worker, confirmations).await?;
            return Ok(Step::Moved(row.state()));
        }
        withdrawals::note_confirmations(conn, w.id, &self.worker, confirmations).await?;
        Ok(Step::Confirming(confirmations))
    }

    async fn fail(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        w: &Withdrawal,
        reason: &str,
    ) -> anyhow::Result<Step> {
        let row = withdrawals::fail(conn, w.id, &self.worker, reason).await?;
        tracing::warn!(withdrawal = %w.id, network = %self.network, reason, "withdrawal failed");
        Ok(Step::Moved(row.state()))
    }
}

/// Every configured network's sender.
pub async fn senders(config: &ChainConfig, worker: &str) -> anyhow::Result<Vec<Sender>> {
    let mut out = Vec::new();
    for node in &config.evm {
        if let Some(s) = Sender::evm(node, worker).await? {
            out.push(s);
        }
    }
    for node in &config.bitcoin {
        out.push(Sender::bitcoin(node, worker));
    }
    Ok(out)
}

/// The job: one pass over every configured network.
pub async fn send_withdrawals_job(ctx: JobContext) -> anyhow::Result<()> {
    let config = ChainConfig::from_env()?;
    let worker = ctx.worker_id.to_string();
    let mut errors = Vec::new();
    for sender in senders(&config, &worker).await? {
        if let Err(e) = sender.run_once(&ctx.pool).await {
            errors.push(format!("{}: {e:#}", sender.network));
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Cancels withdrawals whose e-mail link expired unconfirmed (holds voided).
pub const EXPIRE_WITHDRAWALS_JOB: &str = "expire_withdrawals";

pub async fn expire_withdrawals_job(ctx: JobContext) -> anyhow::Result<()> {
    let mut conn = ctx.pool.get().await?;
    let n = withdrawals::expire_unconfirmed(&mut conn)
        .await
        .map_err(|e: WithdrawalError| anyhow!(e))?;
    if n > 0 {
        tracing::info!(cancelled = n, "unconfirmed withdrawals expired");
    }
    Ok(())
}
