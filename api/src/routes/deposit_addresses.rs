//! The customer's deposit addresses: `/v1/deposit-addresses`.

use actix_web::{HttpResponse, get, post, web};
use domain::custody::deposit::{self, DepositAddress, DepositError};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::auth::Customer;
use crate::error::ApiError;
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn deposit_error(e: DepositError) -> ApiError {
    use actix_web::http::StatusCode;
    match &e {
        DepositError::UnknownNetwork(_) => ApiError::field("network", e.code(), e.to_string()),
        DepositError::Unavailable(_) => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        DepositError::Exhausted(_) | DepositError::Derivation(_) | DepositError::Database(_) => {
            ApiError::internal(e)
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDepositAddress {
    /// `bitcoin`, `dogecoin`, `ethereum`, `bsc` or `tron`.
    pub network: String,
}

/// Your deposit addresses, one per network.
#[utoipa::path(tag = "money", security(("customer" = [])), responses(
    (status = 200, description = "Addresses", body = List<DepositAddress>),
))]
#[get("/v1/deposit-addresses")]
pub async fn list(state: web::Data<AppState>, who: Customer) -> Reply {
    let mut conn = state.conn().await?;
    let items = deposit::list(&mut conn, &state.deposit_keys, who.0.user.id)
        .await
        .map_err(deposit_error)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Your deposit address on a network: made the first time (201), the same
/// one afterwards (200).
#[utoipa::path(tag = "money", security(("customer" = [])), request_body = NewDepositAddress, responses(
    (status = 200, description = "Your existing address", body = DepositAddress),
    (status = 201, description = "A new address", body = DepositAddress),
    (status = 409, description = "`deposits_unavailable`: no deposit key is configured for the network", body = crate::error::Problem),
    (status = 422, description = "`unknown_network`", body = crate::error::Problem),
))]
#[post("/v1/deposit-addresses")]
pub async fn create(
    state: web::Data<AppState>,
    who: Customer,
    body: Json<NewDepositAddress>,
) -> Reply {
    let mut conn = state.conn().await?;
    let (row, made) =
        deposit::address_for(&mut conn, &state.deposit_keys, who.0.user.id, &body.network)
            .await
            .map_err(deposit_error)?;
    Ok(if made {
        HttpResponse::Created().json(row)
    } else {
        HttpResponse::Ok().json(row)
    })
}
