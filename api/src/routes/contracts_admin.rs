//! Contracts in the back office (`/admin/v1`): facility outages (the lost
//! hours are added to the contracts that ran), early termination with a
//! pro-rata refund, and one contract with its history. Permissions come
//! from `auth::ADMIN_ROUTES`; every change is appended to the audit log in
//! the same transaction. The rules live in `domain::contracts::lifecycle`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::contracts::lifecycle::{self, LifecycleError, Outage, OutageExtension};
use domain::contracts::store::{self, Contract, ContractEvent};
use domain::identity::audit::{self, AuditEntry};
use domain::money::Asset;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Staff, client_ip};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

/// The one mapping of lifecycle errors to problems.
pub fn lifecycle_error(e: LifecycleError) -> ApiError {
    use LifecycleError as L;
    match e {
        L::ContractNotFound(_) => ApiError::not_found("contract"),
        L::FacilityNotFound(_) => ApiError::not_found("facility"),
        L::NotLive { .. } | L::OutageOverlaps(_) => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        L::InvalidReason => ApiError::field("reason", "invalid", e.to_string()),
        L::InvalidOutageWindow => ApiError::field("ends_at", "before_start", e.to_string()),
        L::OutageNotOver => ApiError::field("ends_at", "in_the_future", e.to_string()),
        L::Ledger(e) => e.into(),
        L::Corrupt(_) | L::Database(_) => ApiError::internal(e),
    }
}

/// A reason as the domain accepts it, checked here too so that every
/// invalid field of a request is reported at once.
fn check_reason(reason: &str, errors: &mut Vec<FieldError>) {
    let trimmed = reason.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new("reason", "required", "say why"));
    } else if trimmed.chars().count() > lifecycle::MAX_REASON_CHARS
        || trimmed.chars().any(char::is_control)
    {
        errors.push(FieldError::new(
            "reason",
            "invalid",
            format!(
                "1 to {} characters, no line breaks",
                lifecycle::MAX_REASON_CHARS
            ),
        ));
    }
}

// ---------------------------------------------------------------------------
// One contract
// ---------------------------------------------------------------------------

/// A contract as the back office sees it, with its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminContract {
    pub id: Uuid,
    pub user_id: Uuid,
    /// Set when a partner bought it (and paid) for its customer.
    pub partner_id: Option<Uuid>,
    pub product_id: Uuid,
    /// `pending`, `active`, `suspended`, `expired` or `terminated`
    pub state: String,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    pub pay_asset: String,
    #[schema(value_type = String)]
    pub paid_amount: Decimal,
    pub payout_asset: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Hours added for facility outages and pauses.
    pub extended_hours: i32,
    /// Consecutive settled days with zero net (the stop rule reads it).
    pub zero_net_days: i32,
    pub suspended_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The terms it was sold with.
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// What happened to it, oldest first.
    pub events: Vec<ContractEvent>,
}

impl AdminContract {
    fn new(c: Contract, events: Vec<ContractEvent>) -> Self {
        AdminContract {
            id: c.id,
            user_id: c.user_id,
            partner_id: c.partner_id,
            product_id: c.product_id,
            state: c.state,
            hashrate: c.hashrate.normalize(),
            pay_asset: c.pay_asset,
            paid_amount: c.paid_amount.normalize(),
            payout_asset: c.payout_asset,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            extended_hours: c.extended_hours,
            zero_net_days: c.zero_net_days,
            suspended_at: c.suspended_at,
            ended_at: c.ended_at,
            terms: c.terms,
            created_at: c.created_at,
            events,
        }
    }
}

/// Any contract, with its events. Permission `users_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Contract id")), responses(
    (status = 200, description = "The contract and its history", body = AdminContract),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[get("/admin/v1/contracts/{id}")]
pub async fn admin_get_contract(
    state: web::Data<AppState>,
    _staff: Staff,
    id: web::Path<Uuid>,
) -> Reply {
    let mut conn = state.conn().await?;
    let c = store::contract(&mut conn, *id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("contract"))?;
    let events = store::events(&mut conn, c.id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(AdminContract::new(c, events)))
}

// ---------------------------------------------------------------------------
// Termination
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    /// Why it ends early (shown in its history and the audit log).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TerminationView {
    /// The contract, now `terminated`.
    pub contract: AdminContract,
    /// The pro-rata refund in `asset`: paid × time left / term, rounded
    /// down to the asset's precision; `0` when no time was left.
    #[schema(value_type = String)]
    pub refund: Decimal,
    pub asset: Asset,
    /// The refund's ledger transfer (reference `refund:<contract id>`);
    /// null when nothing was refunded.
    pub transfer_id: Option<Uuid>,
}

/// End a live contract now, refunding the unused part of what was paid to
/// the account that paid (the customer's, or the partner's). Permission
/// `users_write`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Contract id")), request_body = TerminateRequest, responses(
    (status = 200, description = "Terminated, with the refund", body = TerminationView),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden` or `step_up_required`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
    (status = 409, description = "`contract_not_live`: it has expired or was terminated already", body = crate::error::Problem),
    (status = 422, description = "`validation_failed`: a missing or invalid reason", body = crate::error::Problem),
))]
#[post("/admin/v1/contracts/{id}/terminate")]
pub async fn admin_terminate_contract(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: web::Path<Uuid>,
    // A `Result` so that the caller is authorised before the body is judged.
    body: Result<Json<TerminateRequest>, ApiError>,
) -> Reply {
    let body = body?;
    let mut errors = Vec::new();
    check_reason(&body.reason, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors).into());
    }
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let actor = staff.actor();
    let id = *id;
    let (done, events) = conn
        .transaction(async |c| {
            let done = lifecycle::terminate(c, id, &actor, &body.reason, Utc::now())
                .await
                .map_err(lifecycle_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    actor.as_str(),
                    "admin.contract.terminate",
                    format!("contract:{id}"),
                )
                .ip(ip)
                .before(serde_json::json!({ "state": done.was.as_str() }))
                .after(serde_json::json!({
                    "state": done.contract.state,
                    "reason": body.reason.trim(),
                    "refund": done.refund.value().normalize().to_string(),
                    "asset": done.refund.asset(),
                    "transfer_id": done.transfer_id,
                })),
            )
            .await?;
            let events = store::events(c, id).await?;
            Ok::<_, ApiError>((done, events))
        })
        .await?;
    Ok(HttpResponse::Ok().json(TerminationView {
        refund: done.refund.value().normalize(),
        asset: done.refund.asset(),
        transfer_id: done.transfer_id,
        contract: AdminContract::new(done.contract, events),
    }))
}

// ---------------------------------------------------------------------------
// Facility outages
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOutage {
    /// When the facility stopped mining.
    pub starts_at: DateTime<Utc>,
    /// When it mined again; the outage must be over.
    pub ends_at: DateTime<Utc>,
    /// What happened (shown in the contracts' history).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutageRecorded {
    pub outage: Outage,
    /// How many contracts got hours added.
    pub contracts_extended: usize,
    /// Each extended contract, the hours it got and its new end.
    pub extensions: Vec<OutageExtension>,
}

/// Record an outage of a facility that is over: every live contract of its
/// products gets the hours it ran during the outage (rounded up) added to
/// its end, once. Permission `catalog_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Facility id")), request_body = NewOutage, responses(
    (status = 201, description = "Recorded, with the contracts it extended", body = OutageRecorded),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 404, description = "`not_found`: no such facility", body = crate::error::Problem),
    (status = 409, description = "`outage_overlaps`: it overlaps an outage already recorded for the facility", body = crate::error::Problem),
    (status = 422, description = "`validation_failed`: a missing field, an end before the start or in the future, or an invalid reason", body = crate::error::Problem),
))]
#[post("/admin/v1/facilities/{id}/outages")]
pub async fn record_facility_outage(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: web::Path<Uuid>,
    // A `Result` so that the caller is authorised before the body is judged.
    body: Result<Json<NewOutage>, ApiError>,
) -> Reply {
    let body = body?;
    let mut errors = Vec::new();
    if body.ends_at <= body.starts_at {
        errors.push(FieldError::new(
            "ends_at",
            "before_start",
            "must be after starts_at",
        ));
    }
    check_reason(&body.reason, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors).into());
    }
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let actor = staff.actor();
    let facility = *id;
    let recorded = conn
        .transaction(async |c| {
            let recorded = lifecycle::record_outage(
                c,
                facility,
                body.starts_at,
                body.ends_at,
                &body.reason,
                &actor,
            )
            .await
            .map_err(lifecycle_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    actor.as_str(),
                    "admin.facility.outage.record",
                    format!("facility:{facility}"),
                )
                .ip(ip)
                .after(serde_json::json!({
                    "outage_id": recorded.outage.id,
                    "starts_at": recorded.outage.starts_at,
                    "ends_at": recorded.outage.ends_at,
                    "reason": recorded.outage.reason,
                    "contracts_extended": recorded.extensions.len(),
                })),
            )
            .await?;
            Ok::<_, ApiError>(recorded)
        })
        .await?;
    Ok(HttpResponse::Created().json(OutageRecorded {
        contracts_extended: recorded.extensions.len(),
        outage: recorded.outage,
        extensions: recorded.extensions,
    }))
}
