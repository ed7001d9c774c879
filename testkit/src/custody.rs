//! Custody fixtures: customers with balances, allow-listed addresses,
//! withdrawal policies, and withdrawals requested and confirmed through the
//! domain (the same code the api runs).

use anyhow::Context;
use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::custody::address::NetworkKind;
use domain::custody::{allowlist, withdrawals};
use domain::identity::store;
use domain::ledger::{self, AccountKind, NewTransfer, Owner, TransferKind};
use domain::money::{Amount, Asset, Sign};
use domain::schema::{asset_networks, emails, networks, withdrawal_addresses as wa};
use rust_decimal::Decimal;
use uuid::Uuid;

/// The custody tests run on regtest addresses.
pub const KIND: NetworkKind = NetworkKind::Regtest;

/// A verified customer (no password to log in with): id and e-mail.
pub async fn customer(conn: &mut AsyncPgConnection) -> anyhow::Result<(Uuid, String)> {
    let id = Uuid::now_v7();
    let email = format!("c-{}@example.com", id.simple());
    store::insert_user(
        conn,
        &store::NewUser {
            id,
            email: &email,
            password_hash: "not-used",
            country: "DE",
            role: None,
            partner_id: None,
            email_verified_at: Some(Utc::now()),
            must_change_password: false,
        },
    )
    .await?;
    Ok((id, email))
}

/// Credits `amount` of `asset` to the customer as a deposit on `network`.
pub async fn fund(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    asset: Asset,
    network: &str,
    amount: &str,
) -> anyhow::Result<()> {
    let custody = ledger::open_account(
        conn,
        &Owner::Network(network.into()),
        asset,
        AccountKind::Custody,
    )
    .await?;
    let account =
        ledger::open_account(conn, &Owner::User(user), asset, AccountKind::Customer).await?;
    let t = NewTransfer::new(
        format!("test:deposit:{}", Uuid::now_v7()),
        TransferKind::Deposit,
        custody.id,
        account.id,
        Amount::parse(amount, asset, Sign::Positive)?,
    );
    ledger::post_batch(conn, &[t.into()]).await?;
    Ok(())
}

/// Adds, confirms and cools down an allow-list entry.
pub async fn allow(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    network: &str,
    address: &str,
) -> anyhow::Result<()> {
    let row = allowlist::add(
        conn,
        user,
        KIND,
        "https://app.test",
        &allowlist::NewAddress {
            network,
            address,
            label: "",
        },
    )
    .await?;
    diesel::update(wa::table.find(row.id))
        .set((
            wa::state.eq("confirmed"),
            wa::confirm_token_hash.eq(None::<Vec<u8>>),
            wa::confirmed_at.eq(Some(Utc::now() - Duration::hours(25))),
            wa::usable_from.eq(Some(Utc::now() - Duration::hours(1))),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Fee and minimum of an asset-network; auto-approval and the daily limit
/// high enough not to interfere.
pub async fn policy(
    conn: &mut AsyncPgConnection,
    asset: &str,
    network: &str,
    fee: &str,
    min: &str,
) -> anyhow::Result<()> {
    diesel::update(
        asset_networks::table
            .filter(asset_networks::asset.eq(asset))
            .filter(asset_networks::network.eq(network)),
    )
    .set((
        asset_networks::withdrawal_fee.eq(fee.parse::<Decimal>()?),
        asset_networks::withdrawal_min.eq(min.parse::<Decimal>()?),
        asset_networks::auto_approve_max.eq(Decimal::from(1_000_000)),
        asset_networks::daily_limit.eq(Decimal::from(100_000_000)),
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The confirmations a network requires.
pub async fn confirmations(
    conn: &mut AsyncPgConnection,
    network: &str,
    n: i32,
) -> anyhow::Result<()> {
    diesel::update(networks::table.find(network))
        .set(networks::confirmations.eq(n))
        .execute(conn)
        .await?;
    Ok(())
}

/// The token of the newest withdrawal confirmation e-mailed to `email`.
pub async fn mailed_withdrawal_token(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> anyhow::Result<String> {
    let bodies: Vec<String> = emails::table
        .filter(emails::to_address.eq(email))
        .filter(emails::template.eq("withdrawal_confirm"))
        .order(emails::created_at.desc())
        .select(emails::text_body)
        .load(conn)
        .await?;
    let body = bodies
        .as_slice()
        .first()
        .context("no confirmation e-mail")?;
    let at = body.find("token=").context("no link with a token")? + "token=".len();
    Ok(body[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect())
}

/// Requests a withdrawal (state `requested`) and answers it with the
/// e-mailed confirmation token.
pub async fn requested_withdrawal(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    email: &str,
    asset: &str,
    network: &str,
    address: &str,
    amount: &str,
) -> anyhow::Result<(Uuid, String)> {
    let w = withdrawals::request(
        conn,
        KIND,
        "https://app.test",
        &withdrawals::NewWithdrawal {
            user,
            asset,
            network,
            address,
            amount,
        },
    )
    .await?;
    Ok((w.id, mailed_withdrawal_token(conn, email).await?))
}

/// Requests a withdrawal and confirms it by the e-mailed link: `approved`
/// (the policy's threshold permitting).
pub async fn approved_withdrawal(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    email: &str,
    asset: &str,
    network: &str,
    address: &str,
    amount: &str,
) -> anyhow::Result<Uuid> {
    let (id, token) =
        requested_withdrawal(conn, user, email, asset, network, address, amount).await?;
    let confirmed = withdrawals::confirm_by_token(conn, &token).await?;
    anyhow::ensure!(
        confirmed.state == "approved",
        "withdrawal {id} is {}",
        confirmed.state
    );
    Ok(id)
}

/// Fails when the ledger's reconciliation finds anything.
pub async fn reconciles(conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
    let problems = ledger::reconcile(conn).await?;
    anyhow::ensure!(problems.is_empty(), "ledger problems: {problems:?}");
    Ok(())
}

/// A fresh random EVM address (EIP-55).
pub fn random_evm_address() -> String {
    let mut bytes = [0u8; 20];
    bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(&Uuid::new_v4().as_bytes()[..4]);
    domain::custody::address::evm_checksum_address(&bytes)
}
