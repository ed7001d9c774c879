//! Reference data that every environment needs, and the demo seed.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::ledger::{self, AccountKind, LedgerError, Owner};
use crate::money::{Asset, Network, decimals_on};
use crate::schema::{asset_networks, assets, networks};

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

/// The demo seed (`HASHGRID_DEMO=1`): the platform's own accounts in every
/// asset. Later issues add the demo users, catalog and balances.
pub async fn demo(conn: &mut AsyncPgConnection) -> Result<(), LedgerError> {
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
