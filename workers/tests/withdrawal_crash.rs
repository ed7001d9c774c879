//! The withdrawal sender killed with SIGKILL at every step boundary: after
//! the claim (hold placed, nothing signed), after signing and storing the
//! bytes, after sending them, and after marking the withdrawal broadcast.
//! Over 20 withdrawals on a real anvil node, restarted again and again
//! (`workers run-once send_withdrawals`, the production job), each
//! withdrawal ends with exactly one transaction on chain, one signing, one
//! debit of the customer, and a ledger that reconciles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::ledger::{self, AccountKind, Owner};
use domain::money::Asset;
use domain::schema::{transfers, withdrawal_events as we, withdrawals as w};
use rust_decimal::Decimal;
use testkit::TestDb;
use testkit::anvil::{Anvil, DEV_ADDRESSES, DEV_PRIVATE_KEYS};
use testkit::custody::*;
use workers::chain::evm::EvmClient;

const WORKERS: &str = env!("CARGO_BIN_EXE_workers");
const POINTS: [&str; 4] = ["claimed", "signed", "sent", "marked"];
const WITHDRAWALS: usize = 20;
const KILLS_PER_POINT: usize = 6;

fn run_sender(
    db: &TestDb,
    node_env: &[(&str, String)],
    fault: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(WORKERS);
    cmd.args(["run-once", "send_withdrawals"])
        .env("DATABASE_URL", db.url())
        .env("HASHGRID_CHAIN_NETWORK", "regtest")
        .env("HASHGRID_WITHDRAWAL_LEASE_SECS", "1")
        .env("RUST_LOG", "warn");
    for (k, v) in node_env {
        cmd.env(k, v);
    }
    if let Some(point) = fault {
        cmd.env("HASHGRID_FAULT_KILL_AT", point);
    }
    cmd.output().unwrap()
}

/// Runs the sender again and again, killing it at each boundary in turn
/// until every boundary saw `KILLS_PER_POINT` kills, then without faults
/// until every withdrawal completed; `mine` adds a block after each run.
/// Answers the kills per boundary, the runs, and the runs without fault.
async fn kill_until_done<F, Fut>(
    db: &TestDb,
    node_env: &[(&str, String)],
    mine: F,
) -> (BTreeMap<&'static str, usize>, usize, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut conn = db.conn().await.unwrap();
    let mut kills: BTreeMap<&str, usize> = POINTS.iter().map(|p| (*p, 0)).collect();
    let mut runs = 0;
    let mut clean_runs = 0;
    for round in 0..400 {
        let open: i64 = w::table
            .filter(w::state.ne("completed"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        let killing = kills.values().any(|k| *k < KILLS_PER_POINT) && round < 300;
        if open == 0 && !killing {
            break;
        }
        let fault = killing.then(|| POINTS[round % POINTS.len()]);
        let out = run_sender(db, node_env, fault);
        runs += 1;
        match out.status.signal() {
            Some(9) => {
                *kills.get_mut(fault.unwrap()).unwrap() += 1;
                // Let the killed run's claim lapse (lease 1 s).
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
            _ => {
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                if fault.is_none() {
                    clean_runs += 1;
                }
            }
        }
        mine().await;
    }
    for point in POINTS {
        assert!(
            kills[point] >= KILLS_PER_POINT,
            "killed at {point} only {} times",
            kills[point]
        );
    }
    (kills, runs, clean_runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_boundary_sends_each_withdrawal_exactly_once() {
    let started = Instant::now();
    let db = TestDb::new().await.unwrap();
    let anvil = Anvil::start(31337).await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "ethereum", 2).await.unwrap();
    policy(&mut conn, "ETH", "ethereum", "0.001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::ETH, "ethereum", "10")
        .await
        .unwrap();

    let mut expected: BTreeMap<uuid::Uuid, (String, u128)> = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for i in 0..WITHDRAWALS {
        let to = random_evm_address();
        allow(&mut conn, user, "ethereum", &to).await.unwrap();
        let amount = format!("0.0{}", 10 + i); // 0.010 … 0.029 ETH
        let id = approved_withdrawal(&mut conn, user, &email, "ETH", "ethereum", &to, &amount)
            .await
            .unwrap();
        let wei = amount.parse::<Decimal>().unwrap() * Decimal::from(1_000_000_000_000_000_000u64);
        expected.insert(
            id,
            (
                to,
                u128::try_from(wei.mantissa()).unwrap() / 10u128.pow(wei.scale()),
            ),
        );
        total += amount.parse::<Decimal>().unwrap() + "0.001".parse::<Decimal>().unwrap();
    }

    // Kill at each boundary in turn, then run without faults until done.
    let env = [
        ("HASHGRID_EVM_RPC", format!("ethereum={}", anvil.url())),
        (
            "HASHGRID_EVM_HOT_KEYS",
            format!("ethereum={}", DEV_PRIVATE_KEYS[0]),
        ),
    ];
    let (kills, runs, clean_runs) =
        kill_until_done(&db, &env, || async { anvil.mine(1).await.unwrap() }).await;
    println!(
        "withdrawal crash test (EVM, anvil): {WITHDRAWALS} withdrawals, {runs} runs of the sender, SIGKILLs per step boundary {kills:?}, {clean_runs} runs without fault, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Every withdrawal completed, signed once, its txid stored.
    let rows: Vec<(uuid::Uuid, String, Option<String>)> = w::table
        .select((w::id, w::state, w::txid))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), WITHDRAWALS);
    let mut txids = HashSet::new();
    for (id, state, txid) in &rows {
        assert_eq!(state, "completed", "withdrawal {id}");
        txids.insert(txid.clone().unwrap().to_lowercase());
        let signs: i64 = we::table
            .filter(we::withdrawal_id.eq(id))
            .filter(we::event.eq("sign"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(signs, 1, "withdrawal {id} signed once");
    }

    // On chain: exactly one transaction per withdrawal, each the stored one,
    // each destination holding exactly its amount.
    let client = EvmClient::new(anvil.url());
    let hot = DEV_ADDRESSES[0];
    assert_eq!(client.nonce(hot, false).await.unwrap(), WITHDRAWALS as u64);
    let head = client.block_number().await.unwrap();
    let mut from_hot = Vec::new();
    for n in 0..=head {
        for tx in client.block(n).await.unwrap().unwrap().transactions {
            if tx.from.eq_ignore_ascii_case(hot) {
                from_hot.push(tx.hash.to_lowercase());
            }
        }
    }
    assert_eq!(
        from_hot.len(),
        WITHDRAWALS,
        "transactions from the hot wallet"
    );
    assert_eq!(from_hot.iter().cloned().collect::<HashSet<_>>(), txids);
    for (id, (to, wei)) in &expected {
        let have = client.balance(to).await.unwrap();
        assert_eq!(have, ethnum::U256::from(*wei), "destination of {id}");
    }

    // Ledger: one debit (settled hold) per withdrawal and fee, nothing left held.
    let settles: i64 = transfers::table
        .filter(transfers::reference.like("withdrawal:%:settle"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(settles, WITHDRAWALS as i64);
    let account = ledger::account_by_key(
        &mut conn,
        &Owner::User(user),
        Asset::ETH,
        AccountKind::Customer,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(account.debits_pending, Decimal::ZERO);
    assert_eq!(
        (account.credits_posted - account.debits_posted).normalize(),
        (Decimal::from(10) - total).normalize()
    );
    reconciles(&mut conn).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_boundary_pays_each_bitcoin_like_withdrawal_exactly_once() {
    use testkit::litecoind::{Litecoind, PAYER};
    let started = Instant::now();
    let db = TestDb::new().await.unwrap();
    let node = Litecoind::start().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    confirmations(&mut conn, "bitcoin", 2).await.unwrap();
    policy(&mut conn, "BTC", "bitcoin", "0.0001", "0.001")
        .await
        .unwrap();
    let (user, email) = customer(&mut conn).await.unwrap();
    fund(&mut conn, user, Asset::BTC, "bitcoin", "100")
        .await
        .unwrap();
    let mut expected: BTreeMap<uuid::Uuid, (String, String)> = BTreeMap::new();
    for i in 0..WITHDRAWALS {
        // Legacy addresses of the payer's wallet: valid bitcoin regtest P2PKH.
        let to = node.new_legacy_address(PAYER).await.unwrap();
        allow(&mut conn, user, "bitcoin", &to).await.unwrap();
        let amount = format!("0.{}", 10 + i); // 0.10 … 0.29
        let id = approved_withdrawal(&mut conn, user, &email, "BTC", "bitcoin", &to, &amount)
            .await
            .unwrap();
        expected.insert(id, (to, amount));
    }
    let env = [(
        "HASHGRID_BITCOIN_RPC",
        format!(
            "bitcoin=http://{}:{}@127.0.0.1:{}/wallet/hot",
            node.rpc_user(),
            node.rpc_password(),
            node.rpc_port()
        ),
    )];
    let (kills, runs, clean_runs) = kill_until_done(&db, &env, || async {
        node.mine(1).await.unwrap();
    })
    .await;
    println!(
        "withdrawal crash test (bitcoin-like, litecoind): {WITHDRAWALS} withdrawals, {runs} runs of the sender, SIGKILLs per step boundary {kills:?}, {clean_runs} runs without fault, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Completed, signed once; on chain exactly one payment per withdrawal:
    // each address received exactly its amount, from exactly the stored txid.
    let sends = node
        .rpc(
            Some("hot"),
            "listtransactions",
            serde_json::json!(["*", 10_000]),
        )
        .await
        .unwrap();
    for (id, (to, amount)) in &expected {
        let (state, txid): (String, Option<String>) = w::table
            .find(id)
            .select((w::state, w::txid))
            .first(&mut conn)
            .await
            .unwrap();
        assert_eq!(state, "completed", "withdrawal {id}");
        let signs: i64 = we::table
            .filter(we::withdrawal_id.eq(id))
            .filter(we::event.eq("sign"))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(signs, 1, "withdrawal {id} signed once");
        let received = node
            .rpc(
                Some(PAYER),
                "getreceivedbyaddress",
                serde_json::json!([to, 1]),
            )
            .await
            .unwrap();
        assert_eq!(
            received.to_string().parse::<Decimal>().unwrap(),
            amount.parse::<Decimal>().unwrap(),
            "{to}"
        );
        let paid: Vec<&str> = sends
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["category"] == "send" && t["address"] == to.as_str())
            .map(|t| t["txid"].as_str().unwrap())
            .collect();
        assert_eq!(paid, vec![txid.unwrap().as_str()], "one payment to {to}");
    }
    let settles: i64 = transfers::table
        .filter(transfers::reference.like("withdrawal:%:settle"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(settles, WITHDRAWALS as i64);
    reconciles(&mut conn).await.unwrap();
}
