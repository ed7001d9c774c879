//! Reference data that every environment needs, and the demo seed.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, TransferKind};
use crate::money::{Amount, Asset, Network, Sign, decimals_on};
use crate::schema::{asset_networks, assets, networks, users};

/// Makes the assets and networks tables match `domain::money`, the source of
/// truth. Idempotent; runs at every start.
pub async fn reference_data(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    conn.transaction(async |conn| {
        for asset in Asset::ALL {
            let decimals = i32::try_from(asset.ledger_decimals()).unwrap_or(18);
            diesel::insert_into(assets::table)
                .values((
                    assets::code.eq(asset.to_string()),
                    assets::name.eq(asset.name()),
                    assets::ledger_decimals.eq(decimals),
                ))
                .on_conflict(assets::code)
                .do_update()
                .set((
                    assets::name.eq(excluded(assets::name)),
                    assets::ledger_decimals.eq(excluded(assets::ledger_decimals)),
                ))
                .execute(conn)
                .await?;
        }
        for network in Network::ALL {
            let confirmations = i32::try_from(network.confirmations()).unwrap_or(i32::MAX);
            diesel::insert_into(networks::table)
                .values((
                    networks::code.eq(network.to_string()),
                    networks::name.eq(network.name()),
                    networks::native_symbol.eq(network.native_symbol()),
                    networks::confirmations.eq(confirmations),
                ))
                .on_conflict(networks::code)
                .do_update()
                .set((
                    networks::name.eq(excluded(networks::name)),
                    networks::native_symbol.eq(excluded(networks::native_symbol)),
                ))
                .execute(conn)
                .await?;
        }
        for asset in Asset::ALL {
            for network in Network::ALL {
                if let Some(decimals) = decimals_on(asset, network) {
                    let decimals = i32::try_from(decimals).unwrap_or(18);
                    diesel::insert_into(asset_networks::table)
                        .values((
                            asset_networks::asset.eq(asset.to_string()),
                            asset_networks::network.eq(network.to_string()),
                            asset_networks::decimals.eq(decimals),
                        ))
                        .on_conflict((asset_networks::asset, asset_networks::network))
                        .do_update()
                        .set(asset_networks::decimals.eq(excluded(asset_networks::decimals)))
                        .execute(conn)
                        .await?;
                }
            }
        }
        Ok(())
    })
    .await
}

pub const DEMO_ADMIN_EMAIL: &str = "admin@hashgrid.local";
pub const DEMO_CUSTOMER_EMAIL: &str = "demo@hashgrid.local";

/// What the demo customer starts with, per asset.
const DEMO_BALANCES: [(Asset, &str); 6] = [
    (Asset::BTC, "1.5"),
    (Asset::ETH, "20"),
    (Asset::DOGE, "100000"),
    (Asset::BNB, "40"),
    (Asset::USDT, "50000"),
    (Asset::USDC, "50000"),
];

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
    #[error("demo seed: {0}")]
    Other(String),
}

/// The demo seed (`HASHGRID_DEMO=1`): reference data, the platform's own
/// accounts, the superadmin `admin@hashgrid.local` and the verified customer
/// `demo@hashgrid.local` with a balance in every asset. `password_hash` is
/// the argon2 hash of `HASHGRID_DEMO_PASSWORD` (reset at every start).
/// Idempotent: balances are posted under fixed references.
pub async fn demo(conn: &mut AsyncPgConnection, password_hash: &str) -> Result<(), SeedError> {
    platform_accounts(conn).await?;
    let now = chrono::Utc::now();
    for (email, role) in [
        (DEMO_ADMIN_EMAIL, Some("superadmin")),
        (DEMO_CUSTOMER_EMAIL, None),
    ] {
        diesel::insert_into(users::table)
            .values((
                users::id.eq(uuid::Uuid::now_v7()),
                users::email.eq(email),
                users::password_hash.eq(password_hash),
                users::country.eq("DE"),
                users::role.eq(role),
                users::email_verified_at.eq(now),
            ))
            // The printed demo password must work after a restart too.
            .on_conflict(users::email)
            .do_update()
            .set(users::password_hash.eq(password_hash))
            .execute(conn)
            .await?;
    }
    let customer: uuid::Uuid = users::table
        .filter(users::email.eq(DEMO_CUSTOMER_EMAIL))
        .select(users::id)
        .first(conn)
        .await?;
    for (asset, amount) in DEMO_BALANCES {
        let amount = Amount::parse(amount, asset, Sign::Positive)
            .map_err(|e| SeedError::Other(e.to_string()))?;
        let equity =
            ledger::open_account(conn, &Owner::Platform, asset, AccountKind::Equity).await?;
        let account =
            ledger::open_account(conn, &Owner::User(customer), asset, AccountKind::Customer)
                .await?;
        let t = NewTransfer::new(
            format!("demo:balance:{asset}"),
            TransferKind::Adjustment,
            equity.id,
            account.id,
            amount,
        );
        ledger::post_batch(conn, &[t.into()]).await?;
    }
    Ok(())
}

/// The platform's own accounts in every asset.
pub async fn platform_accounts(conn: &mut AsyncPgConnection) -> Result<(), SeedError> {
    reference_data(conn).await?;
    for asset in Asset::ALL {
        for kind in [
            AccountKind::House,
            AccountKind::FeeRevenue,
            AccountKind::SalesRevenue,
            AccountKind::ConversionTreasury,
            AccountKind::Rounding,
            AccountKind::Equity,
        ] {
            ledger::open_account(conn, &Owner::Platform, asset, kind).await?;
        }
    }
    Ok(())
}
