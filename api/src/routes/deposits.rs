//! The customer's deposits as the scanners saw them: `/v1/deposits`.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use domain::custody::deposits::{self, Deposit};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Customer;
use crate::error::ApiError;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

/// Where a deposit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositState {
    /// Seen (in the mempool or a block); credited once it has the network's
    /// confirmations.
    Pending,
    /// On your balance.
    Credited,
    /// Its block left the chain (or it was double spent) before it was
    /// credited: never credited, unless it is mined again.
    Orphaned,
    /// Its block left the chain after it was credited: the credit was taken
    /// back (credited again if it is mined again).
    Reversed,
}

impl DepositState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(DepositState::Pending),
            "credited" => Some(DepositState::Credited),
            "orphaned" => Some(DepositState::Orphaned),
            "reversed" => Some(DepositState::Reversed),
            _ => None,
        }
    }
}

/// A deposit as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositView {
    pub id: Uuid,
    /// `bitcoin`, `dogecoin`, `ethereum`, `bsc` or `tron`.
    pub network: String,
    /// `BTC`, `ETH`, `DOGE`, `BNB`, `USDT` or `USDC`.
    pub asset: String,
    /// Your deposit address it was paid to.
    pub address: String,
    pub txid: String,
    /// `output` (a bitcoin-like output, `index` = vout), `native` (an EVM
    /// transaction's value) or `token` (a token transfer, `index` = log index).
    pub kind: String,
    pub index: i64,
    /// What is credited, as a decimal string (on-chain digits below the
    /// asset's precision are not credited).
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub state: DepositState,
    /// Of the block it is in; 0 while it is not in a block.
    pub confirmations: i32,
    /// The network's confirmations before a deposit is credited.
    pub required_confirmations: i32,
    pub block_height: Option<i64>,
    pub first_seen_at: DateTime<Utc>,
    pub credited_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl DepositView {
    fn of(d: Deposit, required: i32) -> Result<Self, ApiError> {
        let state = DepositState::parse(&d.state)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("deposit state {:?}", d.state)))?;
        Ok(DepositView {
            id: d.id,
            network: d.network,
            asset: d.asset,
            address: d.address,
            txid: d.txid,
            kind: d.kind,
            index: d.output_index,
            amount: d.amount.normalize(),
            state,
            confirmations: d.confirmations,
            required_confirmations: required,
            block_height: d.block_height,
            first_seen_at: d.first_seen_at,
            credited_at: d.credited_at,
            updated_at: d.updated_at,
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (1-200, default 50), newest first.
    pub limit: Option<i64>,
}

/// Your deposits, newest first: pending until the network's confirmations,
/// then credited to your balance.
#[utoipa::path(tag = "money", security(("customer" = [])), params(ListQuery), responses(
    (status = 200, description = "Deposits", body = List<DepositView>),
    (status = 401, description = "Not signed in", body = crate::error::Problem),
))]
#[get("/v1/deposits")]
pub async fn list(state: web::Data<AppState>, who: Customer, q: web::Query<ListQuery>) -> Reply {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut conn = state.conn().await?;
    let items = deposits::list_for_user(&mut conn, who.0.user.id, limit)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(d, required)| DepositView::of(d, required))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}
