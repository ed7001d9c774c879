//! Deposit scanners: one pass per configured network finds payments to the
//! customers' deposit addresses, records them with
//! [`deposits::observe`] (pending, with their confirmations), notices
//! reorganisations ([`deposits::orphan`]: pending → orphaned, credited →
//! reversed) and credits what is deep enough ([`deposits::credit_ready`],
//! exactly once per output). Required confirmations come from
//! `networks.confirmations`.
//!
//! # EVM (ethereum, bsc)
//!
//! Walks blocks from the stored cursor to the head, at most
//! [`EVM_BATCH_BLOCKS`] per pass (the first pass starts
//! [`INITIAL_LOOKBACK`] blocks below the head): transactions whose `to` is a
//! deposit address and whose value is not zero (`native`, index 0; only
//! top-level value: ether sent by a contract's internal call is not seen),
//! and the `Transfer` logs of the configured token contracts to a deposit
//! address (`token`, index = log index). Confirmations = head − height + 1,
//! followed for the deposits of the last `max(2 × required, 64)` blocks.
//!
//! Reorganisations: the hash of every scanned block is kept
//! ([`KEPT_BLOCK_HASHES`] below the cursor). Each pass first compares the
//! cursor's hash with the node's block at that height; when they differ it
//! walks back through the kept hashes to the highest block both agree on
//! (the fork), orphans the deposits above it whose block is no longer the
//! node's, and scans again from the fork (a transaction mined again in the
//! new branch is found again and revived). Each pass also re-checks the
//! block hash of every pending deposit and of credited ones still within
//! twice the confirmations. Blocks are chained by parent hash within a pass,
//! and logs must carry the hash of the block scanned at their height: a
//! reorganisation during a pass ends the pass there.
//!
//! # Bitcoin-like (Bitcoin Core wallet RPC; litecoind in tests)
//!
//! Every deposit address of the network is imported watch-only into the
//! node's wallet once (`importaddress … rescan=false`, remembered per node
//! and wallet in `deposit_address_imports`); when new addresses were
//! imported, the blocks since the cursor are rescanned
//! (`rescanblockchain <cursor height>`), so that a payment mined between the
//! address's creation and its import is not missed. Then
//! `listsinceblock <cursor> <required confirmations> true true`:
//!
//! - `transactions` holds every wallet transaction in a block above the
//!   cursor block, plus the mempool (0 confirmations). `lastblock` is the
//!   block `required − 1` below the tip, so passing it back as the next
//!   cursor lists a transaction again until a pass sees it with at least the
//!   required confirmations (a transaction is listed in every pass whose
//!   cursor is below its block; the cursor of a pass is at most
//!   `required − 1` below the tip of the previous one).
//! - `receive` entries to a deposit address are observed (`output`, index =
//!   vout); other categories (`send`, coinbase `generate`/`immature`) are not
//!   deposits. Negative confirmations (double spent in a block) → orphan.
//! - `removed` lists the wallet transactions of blocks that left the chain
//!   between the cursor block and the fork, when the cursor block itself was
//!   on the abandoned branch. An entry that `transactions` also lists in a
//!   block (re-mined) or in the mempool is handled by its observation (a
//!   credited deposit back in the mempool is reversed); the others → orphan.
//! - A pending deposit that the listing does not mention (double spent above
//!   the cursor, where `removed` cannot tell) is looked up by txid
//!   (`gettransaction`): unknown or negative confirmations → orphan.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, anyhow};
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::custody::deposits::{
    self, Cursor, DepositsError, Observation, Observed, OutputKind, OutputRef,
};
use domain::db::PgPool;
use domain::money::{Asset, Network};
use serde_json::{Value, json};

use super::config::{BitcoinNode, ChainConfig, EvmNode};
use crate::chain::bitcoin::{BitcoinClient, BitcoinError, WalletTx};
use crate::chain::evm::EvmClient;
use crate::runner::JobContext;

/// The job kind: one pass over every configured network.
pub const SCAN_DEPOSITS_JOB: &str = "scan_deposits";

/// Blocks an EVM pass scans at most.
pub const EVM_BATCH_BLOCKS: u64 = 500;
/// Where the first pass of a network starts: this many blocks below the head.
pub const INITIAL_LOOKBACK: u64 = 1000;
/// Hashes of scanned EVM blocks kept below the cursor to find a fork.
pub const KEPT_BLOCK_HASHES: u64 = 1024;
/// How long `rescanblockchain` after an import may take.
pub const RESCAN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);
/// The label of imported deposit addresses in the node's wallet.
pub const IMPORT_LABEL: &str = "hashgrid-deposit";

/// What one pass over one network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub network: Option<Network>,
    /// The node's tip height.
    pub head: u64,
    /// EVM: the heights scanned in this pass (inclusive).
    pub scanned: Option<(u64, u64)>,
    /// Where a reorganisation was found: the highest block still shared.
    pub fork: Option<u64>,
    /// Outputs to deposit addresses seen in this pass (any state).
    pub seen: usize,
    pub new: usize,
    pub revived: usize,
    pub orphaned: usize,
    pub reversed: usize,
    pub credited: usize,
    /// Observations refused because a known deposit looked different.
    pub conflicts: usize,
    /// Bitcoin-like: addresses imported into the node's wallet now.
    pub imported: usize,
    /// Another scanner of the network was running: nothing done.
    pub skipped: bool,
}

impl ScanReport {
    fn new(network: Network) -> Self {
        ScanReport {
            network: Some(network),
            ..ScanReport::default()
        }
    }

    fn count(&mut self, outcome: Result<Observation, DepositsError>) -> anyhow::Result<()> {
        match outcome {
            Ok(o) => {
                match o {
                    Observation::NotOurs | Observation::DustOnly => return Ok(()),
                    Observation::New(_) => self.new += 1,
                    Observation::Revived(_) => self.revived += 1,
                    Observation::Reversed(_) => self.reversed += 1,
                    Observation::Updated(_) | Observation::Unchanged(_) => {}
                }
                self.seen += 1;
                Ok(())
            }
            // Logged by observe; the rest of the pass goes on.
            Err(DepositsError::Conflict { .. }) => {
                self.conflicts += 1;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn orphaned(&mut self, row: Option<deposits::Deposit>) {
        match row.as_ref().map(|d| d.state.as_str()) {
            Some("orphaned") => self.orphaned += 1,
            Some("reversed") => self.reversed += 1,
            _ => {}
        }
    }
}

/// Runs `pass` holding the network's scan lock (a session advisory lock on
/// `conn`); when another scanner holds it, returns a skipped report.
async fn exclusively<F>(
    conn: &mut AsyncPgConnection,
    network: Network,
    pass: F,
) -> anyhow::Result<ScanReport>
where
    F: AsyncFnOnce(&mut AsyncPgConnection) -> anyhow::Result<ScanReport>,
{
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    let key = format!("deposit-scan:{}", network.code());
    let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock(hashtext($1)) AS locked")
        .bind::<Text, _>(&key)
        .get_result(conn)
        .await?;
    if !got.locked {
        tracing::info!(%network, "another deposit scanner is running: skipped");
        let mut report = ScanReport::new(network);
        report.skipped = true;
        return Ok(report);
    }
    let result = pass(conn).await;
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock(hashtext($1)) AS locked")
        .bind::<Text, _>(&key)
        .get_result::<Locked>(conn)
        .await;
    if let Err(e) = unlocked {
        tracing::error!(%network, error = %e, "releasing the deposit scan lock");
    }
    result
}

// ---------------------------------------------------------------- EVM

/// One pass over an EVM network (see the module documentation).
pub async fn scan_evm(pool: &PgPool, node: &EvmNode) -> anyhow::Result<ScanReport> {
    let mut conn = pool.get().await?;
    exclusively(&mut conn, node.network, async |c| {
        scan_evm_locked(c, node)
            .await
            .with_context(|| format!("{}: deposit scan", node.network))
    })
    .await
}

/// The node's block hashes, asked once per height within a pass.
struct Hashes<'a> {
    client: &'a EvmClient,
    known: HashMap<u64, Option<String>>,
}

impl Hashes<'_> {
    async fn at(&mut self, height: u64) -> anyhow::Result<Option<String>> {
        if let Some(h) = self.known.get(&height) {
            return Ok(h.clone());
        }
        let h = self.client.block_hash(height).await?;
        self.known.insert(height, h.clone());
        Ok(h)
    }
}

async fn scan_evm_locked(
    conn: &mut AsyncPgConnection,
    node: &EvmNode,
) -> anyhow::Result<ScanReport> {
    let network = node.network;
    let native = network
        .native_asset()
        .ok_or_else(|| anyhow!("{network} has no native asset"))?;
    let client = EvmClient::new(&node.url);
    let mut report = ScanReport::new(network);
    let required = deposits::required_confirmations(conn, network).await?;
    let head = client.block_number().await?;
    report.head = head;
    let mut hashes = Hashes {
        client: &client,
        known: HashMap::new(),
    };

    // 1. Is the cursor still on the chain? If not, find the fork.
    let cursor = deposits::cursor(conn, network).await?;
    let mut last: Option<(u64, String)> = match &cursor {
        Some(Cursor {
            height: Some(h),
            block_hash,
        }) => Some((*h, block_hash.clone())),
        _ => None,
    };
    if let Some((height, hash)) = last.clone() {
        let now = if height <= head {
            hashes.at(height).await?
        } else {
            None
        };
        if now.as_deref() != Some(hash.as_str()) {
            let fork = find_fork(conn, network, &mut hashes, height.min(head)).await?;
            tracing::warn!(%network, cursor = height, ?fork, head, "reorganisation: scanning again from the fork");
            last = fork;
            let floor = last.as_ref().map(|(h, _)| *h);
            report.fork = Some(floor.unwrap_or(0));
            orphan_moved(conn, network, &mut hashes, head, floor, &mut report).await?;
            match floor {
                Some(f) => deposits::forget_blocks(conn, network, Some(f), None).await?,
                // Nothing kept is on the chain: forget it all.
                None => deposits::forget_blocks(conn, network, None, Some(u64::MAX >> 1)).await?,
            }
        }
    }

    // 2. Belt and braces: pending deposits, and credited ones still recent,
    //    must be in the node's block at their height.
    let recent = head.saturating_sub(u64::from(required).saturating_mul(2));
    let rechecked =
        orphan_moved_since(conn, network, &mut hashes, head, recent, &mut report).await?;
    if let Some(lowest) = rechecked
        && last.as_ref().is_some_and(|(h, _)| *h >= lowest)
    {
        // Scan again from below the moved deposit.
        let back = lowest.saturating_sub(1).min(head);
        last = hashes.at(back).await?.map(|hash| (back, hash));
        deposits::forget_blocks(conn, network, Some(back), None).await?;
    }

    // 3. Scan the next blocks.
    let from = match &last {
        Some((h, _)) => h + 1,
        None => head.saturating_sub(INITIAL_LOOKBACK),
    };
    if from <= head {
        let to = head.min(from.saturating_add(EVM_BATCH_BLOCKS - 1));
        let scanned = scan_evm_range(
            conn,
            node,
            &client,
            native,
            from,
            to,
            head,
            last.as_ref(),
            &mut report,
        )
        .await?;
        if let Some((top, hash)) = scanned {
            report.scanned = Some((from, top));
            deposits::set_cursor(
                conn,
                network,
                &Cursor {
                    height: Some(top),
                    block_hash: hash,
                },
            )
            .await?;
            deposits::forget_blocks(
                conn,
                network,
                Some(top),
                Some(top.saturating_sub(KEPT_BLOCK_HASHES)),
            )
            .await?;
        }
    } else if let Some((h, hash)) = &last
        && cursor.as_ref().and_then(|c| c.height) != Some(*h)
    {
        // Rewound to the fork with nothing new to scan yet.
        deposits::set_cursor(
            conn,
            network,
            &Cursor {
                height: Some(*h),
                block_hash: hash.clone(),
            },
        )
        .await?;
    }

    // 4. Confirmations, then credits.
    deposits::update_confirmations(
        conn,
        network,
        head,
        u64::from(required).saturating_mul(2).max(64),
    )
    .await?;
    report.credited = deposits::credit_ready(conn, network, required).await?.len();
    log_report(&report);
    Ok(report)
}

/// The highest kept block at or below `from` that the node still has: its
/// height and hash; `None` when no kept block agrees (the reorganisation is
/// deeper than [`KEPT_BLOCK_HASHES`], or nothing was kept).
async fn find_fork(
    conn: &mut AsyncPgConnection,
    network: Network,
    hashes: &mut Hashes<'_>,
    from: u64,
) -> anyhow::Result<Option<(u64, String)>> {
    let kept = deposits::scanned_blocks(
        conn,
        network,
        from,
        i64::try_from(KEPT_BLOCK_HASHES).unwrap_or(i64::MAX),
    )
    .await?;
    for (height, hash) in kept {
        if hashes.at(height).await?.as_deref() == Some(hash.as_str()) {
            return Ok(Some((height, hash)));
        }
    }
    tracing::error!(%network, from, "no kept block is on the chain any more: scanning again from the initial lookback");
    Ok(None)
}

/// Orphans the pending and credited deposits above `floor` whose block is
/// no longer the node's at their height.
async fn orphan_moved(
    conn: &mut AsyncPgConnection,
    network: Network,
    hashes: &mut Hashes<'_>,
    head: u64,
    floor: Option<u64>,
    report: &mut ScanReport,
) -> anyhow::Result<Option<u64>> {
    let rows = deposits::in_blocks_above(conn, network, floor).await?;
    let mut lowest = None;
    for row in rows {
        let (Some(height), Some(hash)) = (row.block_height, row.block_hash.as_deref()) else {
            continue;
        };
        let height = u64::try_from(height).unwrap_or(0);
        let now = if height <= head {
            hashes.at(height).await?
        } else {
            None
        };
        if now.as_deref() == Some(hash) {
            continue;
        }
        let key = row.output_ref()?;
        let orphaned = deposits::orphan(
            conn,
            &key,
            &format!("block {height} {hash} is no longer on the chain"),
        )
        .await?;
        report.orphaned(orphaned);
        lowest = Some(lowest.map_or(height, |l: u64| l.min(height)));
    }
    Ok(lowest)
}

/// [`orphan_moved`] for the pending deposits (any height) and the credited
/// ones above `recent`.
async fn orphan_moved_since(
    conn: &mut AsyncPgConnection,
    network: Network,
    hashes: &mut Hashes<'_>,
    head: u64,
    recent: u64,
    report: &mut ScanReport,
) -> anyhow::Result<Option<u64>> {
    let pending_floor = deposits::pending(conn, network)
        .await?
        .iter()
        .filter_map(|d| d.block_height)
        .filter_map(|h| u64::try_from(h).ok())
        .min();
    let floor = match pending_floor {
        Some(p) if p <= recent => p.checked_sub(1),
        _ => Some(recent),
    };
    let rows = deposits::in_blocks_above(conn, network, floor).await?;
    let mut lowest = None;
    for row in rows {
        let height = row
            .block_height
            .and_then(|h| u64::try_from(h).ok())
            .unwrap_or(0);
        if row.state == "credited" && height <= recent {
            continue;
        }
        let Some(hash) = row.block_hash.as_deref() else {
            continue;
        };
        let now = if height <= head {
            hashes.at(height).await?
        } else {
            None
        };
        if now.as_deref() == Some(hash) {
            continue;
        }
        let key = row.output_ref()?;
        let orphaned = deposits::orphan(
            conn,
            &key,
            &format!("block {height} {hash} is no longer on the chain"),
        )
        .await?;
        report.orphaned(orphaned);
        lowest = Some(lowest.map_or(height, |l: u64| l.min(height)));
    }
    Ok(lowest)
}

/// Scans blocks `from..=to`; returns the last block scanned consistently
/// (its height and hash), `None` when not even `from` was.
#[allow(clippy::too_many_arguments)]
async fn scan_evm_range(
    conn: &mut AsyncPgConnection,
    node: &EvmNode,
    client: &EvmClient,
    native: Asset,
    from: u64,
    to: u64,
    head: u64,
    parent: Option<&(u64, String)>,
    report: &mut ScanReport,
) -> anyhow::Result<Option<(u64, String)>> {
    let network = node.network;
    let ours: HashMap<String, String> = deposits::addresses_of(conn, network)
        .await?
        .into_iter()
        .map(|a| (a.to_ascii_lowercase(), a))
        .collect();
    let tokens: HashMap<String, Asset> = node
        .tokens
        .iter()
        .map(|(asset, contract)| (contract.to_ascii_lowercase(), *asset))
        .collect();
    let contracts: Vec<String> = node.tokens.values().cloned().collect();

    // Blocks, chained by parent hash.
    let mut blocks: Vec<(u64, String)> = Vec::new();
    let mut seen: Vec<Observed> = Vec::new();
    let mut expected_parent = parent
        .filter(|(h, _)| h + 1 == from)
        .map(|(_, h)| h.clone());
    for n in from..=to {
        let Some(block) = client.block(n).await? else {
            break; // the head moved back meanwhile
        };
        if let Some(p) = &expected_parent
            && *p != block.parent_hash
        {
            tracing::warn!(%network, height = n, "the chain changed during the scan: the pass ends here");
            break;
        }
        for tx in &block.transactions {
            let Some(to_addr) = tx.to.as_deref() else {
                continue;
            };
            let Some(stored) = ours.get(&to_addr.to_ascii_lowercase()) else {
                continue;
            };
            let Ok(units) = u128::try_from(tx.value) else {
                tracing::warn!(%network, tx = %tx.hash, "a native value beyond 128 bits ignored");
                continue;
            };
            if units == 0 {
                continue;
            }
            seen.push(Observed {
                network,
                asset: native,
                txid: tx.hash.clone(),
                kind: OutputKind::Native,
                index: 0,
                address: stored.clone(),
                amount_units: units,
                block_height: Some(n),
                block_hash: Some(block.hash.clone()),
                confirmations: confirmations(head, n),
            });
        }
        expected_parent = Some(block.hash.clone());
        blocks.push((n, block.hash));
    }
    let Some(&(top, _)) = blocks.last() else {
        return Ok(None);
    };
    let mut top = top;

    // Token transfers, only from the blocks scanned above.
    let by_height: HashMap<u64, String> = blocks.iter().cloned().collect();
    let logs = client.transfer_logs(from, top, &contracts).await?;
    if let Some(bad) = logs
        .iter()
        .filter(|l| by_height.get(&l.block_number) != Some(&l.block_hash))
        .map(|l| l.block_number)
        .min()
    {
        tracing::warn!(%network, height = bad, "logs of another block than scanned: the pass ends below it");
        top = bad.saturating_sub(1);
        if bad <= from {
            return Ok(None);
        }
    }
    for log in logs.into_iter().filter(|l| l.block_number <= top) {
        let Some(stored) = ours.get(&log.to.to_ascii_lowercase()) else {
            continue;
        };
        let Some(asset) = tokens.get(&log.token.to_ascii_lowercase()) else {
            continue;
        };
        let Ok(units) = u128::try_from(log.amount) else {
            tracing::warn!(%network, tx = %log.tx_hash, "a token amount beyond 128 bits ignored");
            continue;
        };
        if units == 0 {
            continue;
        }
        seen.push(Observed {
            network,
            asset: *asset,
            txid: log.tx_hash,
            kind: OutputKind::Token,
            index: log.log_index,
            address: stored.clone(),
            amount_units: units,
            block_height: Some(log.block_number),
            block_hash: Some(log.block_hash),
            confirmations: confirmations(head, log.block_number),
        });
    }

    for o in seen
        .iter()
        .filter(|o| o.block_height.is_some_and(|h| h <= top))
    {
        match deposits::observe(conn, o).await {
            Err(DepositsError::Unsupported { asset, network }) => {
                tracing::warn!(%asset, %network, tx = %o.txid, "a token configured for a network that does not carry it: ignored");
            }
            outcome => report.count(outcome)?,
        }
    }
    let kept: Vec<(u64, String)> = blocks.into_iter().filter(|(h, _)| *h <= top).collect();
    deposits::record_blocks(conn, network, &kept).await?;
    Ok(kept.last().cloned())
}

fn confirmations(head: u64, height: u64) -> u32 {
    u32::try_from(head.saturating_sub(height).saturating_add(1)).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------- bitcoin-like

/// One pass over a bitcoin-like network (see the module documentation).
pub async fn scan_bitcoin(pool: &PgPool, node: &BitcoinNode) -> anyhow::Result<ScanReport> {
    let mut conn = pool.get().await?;
    exclusively(&mut conn, node.network, async |c| {
        scan_bitcoin_locked(c, node)
            .await
            .with_context(|| format!("{}: deposit scan", node.network))
    })
    .await
}

/// Names the node and wallet addresses are imported into (no credentials).
pub fn watcher_of(node: &BitcoinNode) -> String {
    format!(
        "{}/wallet/{}",
        node.url.trim_end_matches('/'),
        node.wallet.as_deref().unwrap_or("")
    )
}

async fn scan_bitcoin_locked(
    conn: &mut AsyncPgConnection,
    node: &BitcoinNode,
) -> anyhow::Result<ScanReport> {
    let network = node.network;
    let asset = network
        .native_asset()
        .ok_or_else(|| anyhow!("{network} has no native asset"))?;
    let client = BitcoinClient::new(
        &node.url,
        &node.user,
        &node.password,
        node.wallet.as_deref(),
    );
    let mut report = ScanReport::new(network);
    let required = deposits::required_confirmations(conn, network).await?;
    report.head = client.block_count().await?;
    let cursor = deposits::cursor(conn, network).await?;

    // 1. Watch every deposit address.
    let watcher = watcher_of(node);
    let fresh = deposits::unimported_addresses(conn, network, &watcher).await?;
    if !fresh.is_empty() {
        for address in &fresh {
            client
                .import_address(address, IMPORT_LABEL, false)
                .await
                .with_context(|| format!("importaddress {address}"))?;
        }
        // Payments mined between an address's creation and its import. The
        // addresses count as imported only once this succeeded.
        let from = cursor
            .as_ref()
            .and_then(|c| c.height)
            .unwrap_or_else(|| report.head.saturating_sub(INITIAL_LOOKBACK));
        BitcoinClient::with_timeout(
            &node.url,
            &node.user,
            &node.password,
            node.wallet.as_deref(),
            RESCAN_TIMEOUT,
        )
        .call("rescanblockchain", json!([from]))
        .await
        .context("rescanblockchain after importing addresses")?;
        deposits::mark_imported(conn, network, &fresh, &watcher).await?;
        report.imported = fresh.len();
        tracing::info!(%network, imported = fresh.len(), from, "deposit addresses imported watch-only");
    }

    // 2. What happened since the cursor.
    let since = match client
        .list_since_block(cursor.as_ref().map(|c| c.block_hash.as_str()), required)
        .await
    {
        Err(BitcoinError::Rpc { code, message }) if cursor.is_some() && code == -5 => {
            // The node does not know the cursor block (another node or chain).
            tracing::error!(%network, %message, "the node does not know the cursor block: listing everything");
            client.list_since_block(None, required).await?
        }
        other => other?,
    };
    let ours: HashSet<String> = deposits::addresses_of(conn, network)
        .await?
        .into_iter()
        .collect();
    let is_ours = |t: &WalletTx| {
        t.category == "receive" && t.address.as_ref().is_some_and(|a| ours.contains(a))
    };
    let key_of = |t: &WalletTx| OutputRef {
        network,
        txid: t.txid.clone(),
        kind: OutputKind::Output,
        index: u64::from(t.vout),
    };

    let mut listed: HashMap<(String, u32), i64> = HashMap::new();
    for t in since.transactions.iter().filter(|t| is_ours(t)) {
        listed.insert((t.txid.clone(), t.vout), t.confirmations);
        if t.confirmations < 0 {
            let row = deposits::orphan(
                conn,
                &key_of(t),
                &format!(
                    "double spent by a transaction {} block(s) deep",
                    -t.confirmations
                ),
            )
            .await?;
            report.orphaned(row);
            continue;
        }
        observe_wallet_tx(conn, network, asset, t, &mut report).await?;
    }
    for t in since.removed.iter().filter(|t| is_ours(t)) {
        if listed.contains_key(&(t.txid.clone(), t.vout)) {
            continue; // re-mined or back in the mempool: observed above
        }
        let row = deposits::orphan(conn, &key_of(t), "its block left the chain").await?;
        report.orphaned(row);
    }

    // 3. Pending deposits the listing did not mention.
    for row in deposits::pending(conn, network).await? {
        let Ok(vout) = u32::try_from(row.output_index) else {
            continue;
        };
        if listed.contains_key(&(row.txid.clone(), vout)) {
            continue;
        }
        let key = row.output_ref()?;
        match wallet_tx(&client, &row.txid, vout).await? {
            Some(t) if t.confirmations >= 0 => {
                observe_wallet_tx(conn, network, asset, &t, &mut report).await?;
            }
            Some(t) => {
                let row = deposits::orphan(
                    conn,
                    &key,
                    &format!(
                        "double spent by a transaction {} block(s) deep",
                        -t.confirmations
                    ),
                )
                .await?;
                report.orphaned(row);
            }
            None => {
                let row =
                    deposits::orphan(conn, &key, "the node does not know the transaction").await?;
                report.orphaned(row);
            }
        }
    }

    // 4. Continue from lastblock next time.
    let height = client
        .call("getblockheader", json!([since.lastblock]))
        .await
        .ok()
        .and_then(|h| h.get("height").and_then(Value::as_u64));
    deposits::set_cursor(
        conn,
        network,
        &Cursor {
            height,
            block_hash: since.lastblock.clone(),
        },
    )
    .await?;

    report.credited = deposits::credit_ready(conn, network, required).await?.len();
    log_report(&report);
    Ok(report)
}

async fn observe_wallet_tx(
    conn: &mut AsyncPgConnection,
    network: Network,
    asset: Asset,
    t: &WalletTx,
    report: &mut ScanReport,
) -> anyhow::Result<()> {
    let head = report.head;
    let Ok(units) = u128::try_from(t.amount_sats) else {
        return Ok(());
    };
    if units == 0 {
        return Ok(());
    }
    let Some(address) = t.address.clone() else {
        return Ok(());
    };
    let in_block = t.confirmations >= 1;
    let block = match (in_block, &t.blockhash) {
        (false, _) => None,
        (true, Some(hash)) => {
            // Nodes before 0.20 do not say the height: the tip's less the depth.
            let height = t.blockheight.or_else(|| {
                u64::try_from(t.confirmations - 1)
                    .ok()
                    .and_then(|d| head.checked_sub(d))
            });
            match height {
                Some(h) => Some((h, hash.clone())),
                None => return Ok(()),
            }
        }
        (true, None) => {
            tracing::warn!(%network, txid = %t.txid, "a confirmed wallet entry without its block: skipped");
            return Ok(());
        }
    };
    let observed = Observed {
        network,
        asset,
        txid: t.txid.clone(),
        kind: OutputKind::Output,
        index: u64::from(t.vout),
        address,
        amount_units: units,
        block_height: block.as_ref().map(|(h, _)| *h),
        block_hash: block.map(|(_, hash)| hash),
        confirmations: if in_block {
            u32::try_from(t.confirmations).unwrap_or(u32::MAX)
        } else {
            0
        },
    };
    report.count(deposits::observe(conn, &observed).await)
}

/// The wallet's view of output `vout` of `txid` (`gettransaction txid
/// true`); `None` when the wallet does not know it.
async fn wallet_tx(
    client: &BitcoinClient,
    txid: &str,
    vout: u32,
) -> anyhow::Result<Option<WalletTx>> {
    let v = match client.call("gettransaction", json!([txid, true])).await {
        Ok(v) => v,
        Err(BitcoinError::Rpc { code: -5, .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let confirmations = v
        .get("confirmations")
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("gettransaction {txid}: no confirmations"))?;
    let detail = v
        .get("details")
        .and_then(Value::as_array)
        .and_then(|ds| {
            ds.iter().find(|d| {
                d.get("vout").and_then(Value::as_u64) == Some(u64::from(vout))
                    && d.get("category").and_then(Value::as_str) == Some("receive")
            })
        })
        .cloned();
    let Some(detail) = detail else {
        return Ok(None);
    };
    let amount_sats = crate::chain::bitcoin::sats_of(
        detail
            .get("amount")
            .ok_or_else(|| anyhow!("gettransaction {txid}: no amount"))?,
    )?;
    Ok(Some(WalletTx {
        txid: txid.to_owned(),
        vout,
        address: detail
            .get("address")
            .and_then(Value::as_str)
            .map(str::to_owned),
        category: "receive".to_owned(),
        amount_sats,
        confirmations,
        blockhash: v
            .get("blockhash")
            .and_then(Value::as_str)
            .map(str::to_owned),
        blockheight: v.get("blockheight").and_then(Value::as_u64),
    }))
}

fn log_report(r: &ScanReport) {
    if r.new + r.revived + r.orphaned + r.reversed + r.credited + r.conflicts + r.imported > 0
        || r.fork.is_some()
    {
        tracing::info!(network = ?r.network, head = r.head, scanned = ?r.scanned, fork = ?r.fork,
            new = r.new, revived = r.revived, orphaned = r.orphaned, reversed = r.reversed,
            credited = r.credited, conflicts = r.conflicts, imported = r.imported, "deposit scan");
    }
}

// ---------------------------------------------------------------- the job

/// Every configured network's scanner, one pass each.
pub async fn scan_all(pool: &PgPool, config: &ChainConfig) -> (Vec<ScanReport>, Vec<String>) {
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for node in &config.evm {
        match scan_evm(pool, node).await {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("{}: {e:#}", node.network)),
        }
    }
    for node in &config.bitcoin {
        match scan_bitcoin(pool, node).await {
            Ok(r) => reports.push(r),
            Err(e) => errors.push(format!("{}: {e:#}", node.network)),
        }
    }
    (reports, errors)
}

/// The job: one pass over every network of [`ChainConfig::from_env`]; a
/// network that fails does not stop the others (the job fails, naming it).
pub async fn scan_deposits_job(ctx: JobContext) -> anyhow::Result<()> {
    let config = ChainConfig::from_env()?;
    let (_, errors) = scan_all(&ctx.pool, &config).await;
    if !errors.is_empty() {
        anyhow::bail!("deposit scan: {}", errors.join("; "));
    }
    Ok(())
}
