//! The customer's withdrawal allow-list: `/v1/withdrawal-addresses`.

use actix_web::{HttpResponse, delete, get, post, web};
use domain::custody::allowlist::{self, AllowlistError, NewAddress, WithdrawalAddress};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Customer;
use crate::error::ApiError;
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn allowlist_error(e: AllowlistError) -> ApiError {
    use actix_web::http::StatusCode;
    match &e {
        AllowlistError::UnknownNetwork(_) => ApiError::field("network", e.code(), e.to_string()),
        AllowlistError::Address(a) => ApiError::field("address", a.code(), a.to_string()),
        AllowlistError::BadLabel => ApiError::field("label", e.code(), e.to_string()),
        AllowlistError::Exists | AllowlistError::TooMany => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        AllowlistError::BadToken => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_or_expired_token",
            e.to_string(),
        ),
        AllowlistError::NotFound => ApiError::not_found("withdrawal address"),
        AllowlistError::Email(_) | AllowlistError::Database(_) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAddress {
    /// `bitcoin`, `dogecoin`, `ethereum`, `bsc` or `tron`.
    pub network: String,
    pub address: String,
    #[serde(default)]
    pub label: String,
    /// Optional: the asset you mean to withdraw there; checked to be
    /// withdrawable on `network` (an address serves every asset of its network).
    #[serde(default)]
    pub asset: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmAddress {
    /// The token from the e-mailed link.
    pub token: String,
}

/// Your withdrawal addresses (pending and confirmed), newest first.
#[utoipa::path(tag = "money", security(("customer" = [])), responses(
    (status = 200, description = "Addresses", body = List<WithdrawalAddress>),
))]
#[get("/v1/withdrawal-addresses")]
pub async fn list(state: web::Data<AppState>, who: Customer) -> Reply {
    let mut conn = state.conn().await?;
    let items = allowlist::list(&mut conn, who.0.user.id)
        .await
        .map_err(allowlist_error)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Add an address to your allow-list. It is validated for the network
/// (checksum, network kind) and stored normalised; a confirmation link is
/// e-mailed to you, and the address is usable 24 hours after confirmation.
#[utoipa::path(tag = "money", security(("customer" = [])), request_body = AddAddress, responses(
    (status = 201, description = "Pending its e-mail confirmation", body = WithdrawalAddress),
    (status = 409, description = "`address_exists` or `too_many_addresses`", body = crate::error::Problem),
    (status = 422, description = "The problem names `address` (e.g. `bad_checksum`, `wrong_network`), `network` or `label`", body = crate::error::Problem),
))]
#[post("/v1/withdrawal-addresses")]
pub async fn add(state: web::Data<AppState>, who: Customer, body: Json<AddAddress>) -> Reply {
    if let Some(asset) = &body.asset {
        let asset: domain::money::Asset =
            asset.parse().map_err(|e: domain::money::UnknownAsset| {
                ApiError::field("asset", "unknown_asset", e.to_string())
            })?;
        if let Ok(network) = body.network.parse::<domain::money::Network>()
            && domain::money::decimals_on(asset, network).is_none()
        {
            return Err(ApiError::field(
                "asset",
                "unsupported_network",
                format!("{asset} is not withdrawable on {network}"),
            )
            .into());
        }
    }
    let mut conn = state.conn().await?;
    let row = allowlist::add(
        &mut conn,
        who.0.user.id,
        state.config.chain_network,
        &state.config.app_url,
        &NewAddress {
            network: &body.network,
            address: &body.address,
            label: &body.label,
        },
    )
    .await
    .map_err(allowlist_error)?;
    domain::identity::audit::append(
        &mut conn,
        &domain::identity::audit::AuditEntry::new(
            who.0.actor(),
            "withdrawal_address.add",
            format!("withdrawal_address:{}", row.id),
        ),
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Created().json(row))
}

/// Confirm an address with the token from the e-mailed link (single use,
/// valid one hour). No login needed: the token is the proof.
#[utoipa::path(tag = "money", request_body = ConfirmAddress, responses(
    (status = 200, description = "Confirmed; `usable_from` is 24 hours later", body = WithdrawalAddress),
    (status = 400, description = "`invalid_or_expired_token`", body = crate::error::Problem),
))]
#[post("/v1/withdrawal-addresses/confirm")]
pub async fn confirm(state: web::Data<AppState>, body: Json<ConfirmAddress>) -> Reply {
    let mut conn = state.conn().await?;
    let row = allowlist::confirm(&mut conn, &body.token)
        .await
        .map_err(allowlist_error)?;
    Ok(HttpResponse::Ok().json(row))
}

/// Remove one of your addresses (another customer's id is 404).
#[utoipa::path(tag = "money", security(("customer" = [])), params(("id" = Uuid, Path, description = "Address id")), responses(
    (status = 204, description = "Removed"),
    (status = 404, description = "No such address of yours", body = crate::error::Problem),
))]
#[delete("/v1/withdrawal-addresses/{id}")]
pub async fn remove(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    allowlist::remove(&mut conn, who.0.user.id, *id)
        .await
        .map_err(allowlist_error)?;
    Ok(HttpResponse::NoContent().finish())
}
