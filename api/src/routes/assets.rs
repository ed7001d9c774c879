//! The assets and networks the platform supports.

use actix_web::{get, web};
use domain::money::{Asset, Network, decimals_on};
use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::List;

#[derive(Serialize, ToSchema)]
pub struct AssetNetwork {
    pub network: Network,
    /// Decimal places of the asset on this network.
    pub decimals: u32,
    /// Confirmations before a deposit is credited.
    pub confirmations: u32,
}

#[derive(Serialize, ToSchema)]
pub struct AssetView {
    pub asset: Asset,
    pub name: String,
    /// Decimal places the ledger keeps for this asset.
    pub decimals: u32,
    pub networks: Vec<AssetNetwork>,
}

/// Assets, their precision and the networks they move on.
#[utoipa::path(tag = "catalog", responses((status = 200, description = "Every supported asset", body = List<AssetView>)))]
#[get("/v1/assets")]
pub async fn list_assets() -> web::Json<List<AssetView>> {
    let items = Asset::ALL
        .into_iter()
        .map(|asset| AssetView {
            asset,
            name: asset.name().to_owned(),
            decimals: asset.ledger_decimals(),
            networks: Network::ALL
                .into_iter()
                .filter_map(|network| {
                    decimals_on(asset, network).map(|decimals| AssetNetwork {
                        network,
                        decimals,
                        confirmations: network.confirmations(),
                    })
                })
                .collect(),
        })
        .collect();
    web::Json(List {
        items,
        next_cursor: None,
    })
}
