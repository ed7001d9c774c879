//! Withdrawals: the customer's `/v1/withdrawals` (request with an
//! Idempotency-Key and, when 2FA is on, a TOTP code; confirm by the e-mailed
//! link; cancel; timeline) and the back office's `/admin/v1/withdrawals`
//! (queue, approve, reject, the report of withdrawals waiting for funds).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::custody::withdrawal::State;
use domain::custody::withdrawals::{
    self, NewWithdrawal, Policy, TimelineEntry, Withdrawal, WithdrawalError,
};
use domain::idempotency::{self, Begin};
use domain::money::{Asset, Network, SUPPORTED};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Customer, Staff};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::List;
use crate::routes::buying::{
    IDEMPOTENCY_KEY, idempotency_key, idempotency_key_reused, request_hash,
};
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn withdrawal_error(e: WithdrawalError) -> ApiError {
    use WithdrawalError as W;
    match &e {
        W::UnknownAsset(_) => ApiError::field("asset", e.code(), e.to_string()),
        W::UnknownNetwork(_) | W::Unsupported { .. } => {
            ApiError::field("network", e.code(), e.to_string())
        }
        W::Amount(a) => ApiError::validation(vec![FieldError::amount("amount", a)]),
        W::BelowMinimum { .. } | W::DailyLimit { .. } => {
            ApiError::field("amount", e.code(), e.to_string())
        }
        W::Address(a) => ApiError::field("address", a.code(), a.to_string()),
        W::AddressNotAllowed => ApiError::field("address", e.code(), e.to_string()),
        W::InsufficientFunds => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
        }
        W::Locked { .. } => ApiError::new(StatusCode::FORBIDDEN, e.code(), e.to_string()),
        W::Disabled { .. } | W::Transition(_) | W::NotClaimed => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        W::NotFound => ApiError::not_found("withdrawal"),
        W::BadToken => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_or_expired_token",
            e.to_string(),
        ),
        W::Email(_) | W::Ledger(_) | W::Database(_) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWithdrawal {
    /// `BTC`, `ETH`, `DOGE`, `BNB`, `USDT` or `USDC`.
    pub asset: String,
    /// `bitcoin`, `dogecoin`, `ethereum`, `bsc` or `tron`.
    pub network: String,
    /// An address on your confirmed allow-list (usable 24 h after confirmation).
    pub address: String,
    /// What arrives, as a decimal string; the fee is charged on top.
    pub amount: String,
    /// Required when two-factor authentication is on: a TOTP or recovery code.
    #[serde(default)]
    pub totp_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWithdrawal {
    /// The token from the e-mailed link.
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectWithdrawal {
    /// Shown to the customer.
    pub reason: String,
}

/// A withdrawal as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalView {
    pub id: Uuid,
    pub asset: String,
    pub network: String,
    pub address: String,
    /// What arrives at the address.
    #[schema(value_type = String)]
    pub amount: Decimal,
    /// Charged on top of the amount.
    #[schema(value_type = String)]
    pub fee: Decimal,
    /// Held on your balance until the withdrawal completes (or is released).
    #[schema(value_type = String)]
    pub total: Decimal,
    /// `requested` (confirm the e-mailed link), `confirmed` (waiting for two
    /// admins), `approved`, `signed`, `broadcast`, `completed`, or `failed`,
    /// `rejected`, `cancelled` (the hold is released).
    pub state: State,
    pub needs_two_approvals: bool,
    pub approvals: usize,
    pub required_confirmations: i32,
    pub confirmations: i32,
    pub txid: Option<String>,
    /// Why it failed, was rejected or cancelled.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every transition, oldest first (only on the single-withdrawal views).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<TimelineEntry>>,
}

impl WithdrawalView {
    fn of(w: Withdrawal, timeline: Option<Vec<TimelineEntry>>) -> Self {
        WithdrawalView {
            id: w.id,
            state: w.state(),
            asset: w.asset,
            network: w.network,
            address: w.address,
            total: (w.amount + w.fee).normalize(),
            amount: w.amount.normalize(),
            fee: w.fee.normalize(),
            needs_two_approvals: w.needs_two_approvals,
            approvals: w.approvals.len(),
            required_confirmations: w.required_confirmations,
            confirmations: w.confirmations,
            txid: w.txid,
            reason: w.reason,
            created_at: w.created_at,
            updated_at: w.updated_at,
            timeline,
        }
    }
}

/// A withdrawal in the back office.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminWithdrawalView {
    #[serde(flatten)]
    pub withdrawal: WithdrawalView,
    pub user_id: Uuid,
    /// Admins who approved so far.
    pub approved_by: Vec<Uuid>,
    /// Why an approved withdrawal is not being sent yet (e.g. the hot wallet is short).
    pub waiting_reason: Option<String>,
    pub hot_wallet: Option<String>,
    pub nonce: Option<i64>,
}

impl AdminWithdrawalView {
    fn of(w: Withdrawal, timeline: Option<Vec<TimelineEntry>>) -> Self {
        AdminWithdrawalView {
            user_id: w.user_id,
            approved_by: w.approvals.clone(),
            waiting_reason: w.waiting_reason.clone(),
            hot_wallet: w.hot_wallet.clone(),
            nonce: w.nonce,
            withdrawal: WithdrawalView::of(w, timeline),
        }
    }
}

/// The withdrawal policy of every asset-network: fee, minimum, the
/// auto-approval threshold and the daily limit.
#[utoipa::path(tag = "money", responses(
    (status = 200, description = "Policies", body = List<Policy>),
))]
#[get("/v1/withdrawals/policies")]
pub async fn policies(state: web::Data<AppState>) -> Reply {
    let mut conn = state.conn().await?;
    let mut items = Vec::new();
    for (asset, network) in SUPPORTED.iter().copied() {
        if let Some(p) = withdrawals::policy(&mut conn, asset, network)
            .await
            .map_err(ApiError::from)?
        {
            items.push(p);
        }
    }
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Withdraw to an address of your allow-list. Needs an `Idempotency-Key`
/// header (a retry with the same key and body answers the first response);
/// with 2FA on, `totp_code`. The amount plus the fee is held on your balance
/// at once; nothing is sent until you click the e-mailed link (30 minutes).
/// Above the asset's auto-approval threshold two admins approve as well.
/// No withdrawal within 24 hours of a password, 2FA or e-mail change.
#[utoipa::path(tag = "money", security(("customer" = [])), request_body = CreateWithdrawal,
    params(("Idempotency-Key" = String, Header, description = "Required: one withdrawal per key")),
    responses(
    (status = 201, description = "Requested; confirm it by the e-mailed link (a replay carries `Idempotent-Replayed: true`)", body = WithdrawalView),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
    (status = 403, description = "`second_factor_required` or `withdrawals_locked`", body = crate::error::Problem),
    (status = 409, description = "`withdrawals_paused`", body = crate::error::Problem),
    (status = 422, description = "A problem naming `asset`, `network`, `address` (e.g. `bad_checksum`, `address_not_allowed`), `amount` (`below_minimum`, `daily_limit_exceeded`, …) or `Idempotency-Key`; or `insufficient_funds`, `idempotency_key_reused`", body = crate::error::Problem),
))]
#[post("/v1/withdrawals")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: web::Bytes,
) -> Reply {
    let parsed: CreateWithdrawal = crate::extract::parse_json(&body)?;
    let key = idempotency_key(&req)?.ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            IDEMPOTENCY_KEY,
            "required",
            "withdrawals need an Idempotency-Key header so that a retry never withdraws twice",
        )])
    })?;
    let hash = request_hash(&req, &body);
    let user = who.0.user.clone();
    let owner = format!("user:{}", user.id);
    let kind = state.config.chain_network;
    let app_url = state.config.app_url.clone();
    let identity = state.identity.clone();
    let mut conn = state.conn().await?;
    let outcome: Result<(u16, serde_json::Value, bool), ApiError> = conn
        .transaction(async |c| {
            match idempotency::begin(c, &owner, &key, &hash).await? {
                Begin::Fresh => {}
                Begin::Replay { status, body } => return Ok((status, body, true)),
                Begin::Mismatch => return Err(idempotency_key_reused()),
            }
            let row = withdrawals::request(
                c,
                kind,
                &app_url,
                &NewWithdrawal {
                    user: user.id,
                    asset: &parsed.asset,
                    network: &parsed.network,
                    address: &parsed.address,
                    amount: &parsed.amount,
                },
            )
            .await
            .map_err(withdrawal_error)?;
            // Checked after the request's own checks, in the same transaction:
            // a wrong code rolls the hold back, and a refused request spends no code.
            if user.totp_enabled() {
                let code = parsed.totp_code.as_deref().ok_or_else(|| {
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "second_factor_required",
                        "two-factor authentication is on: send totp_code",
                    )
                })?;
                identity.check_second_factor(c, &user, code).await?;
            }
            let body =
                serde_json::to_value(WithdrawalView::of(row, None)).map_err(ApiError::internal)?;
            idempotency::finish(c, &owner, &key, 201, &body).await?;
            Ok((201, body, false))
        })
        .await;
    let (status, body, replayed) = outcome?;
    let mut res = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED));
    if replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(res.json(body))
}

/// Confirm a withdrawal with the token from the e-mailed link (single use,
/// 30 minutes). No login needed: the token is the proof.
#[utoipa::path(tag = "money", request_body = ConfirmWithdrawal, responses(
    (status = 200, description = "`approved`, or `confirmed` when two admins must approve", body = WithdrawalView),
    (status = 400, description = "`invalid_or_expired_token`", body = crate::error::Problem),
))]
#[post("/v1/withdrawals/confirm")]
pub async fn confirm(state: web::Data<AppState>, body: Json<ConfirmWithdrawal>) -> Reply {
    let mut conn = state.conn().await?;
    let row = withdrawals::confirm_by_token(&mut conn, &body.token)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(WithdrawalView::of(row, None)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many (1-200, default 50), newest first.
    pub limit: Option<i64>,
}

/// Your withdrawals, newest first.
#[utoipa::path(tag = "money", security(("customer" = [])), params(ListQuery), responses(
    (status = 200, description = "Withdrawals", body = List<WithdrawalView>),
))]
#[get("/v1/withdrawals")]
pub async fn list(state: web::Data<AppState>, who: Customer, q: web::Query<ListQuery>) -> Reply {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let mut conn = state.conn().await?;
    let items = withdrawals::list_for_user(&mut conn, who.0.user.id, limit)
        .await
        .map_err(withdrawal_error)?
        .into_iter()
        .map(|w| WithdrawalView::of(w, None))
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// One of your withdrawals with its timeline.
#[utoipa::path(tag = "money", security(("customer" = [])), params(("id" = Uuid, Path, description = "Withdrawal id")), responses(
    (status = 200, description = "The withdrawal", body = WithdrawalView),
    (status = 404, description = "Not found (also for another customer's id)", body = crate::error::Problem),
))]
#[get("/v1/withdrawals/{id}")]
pub async fn get_one(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let row = withdrawals::get_for_user(&mut conn, who.0.user.id, *id)
        .await
        .map_err(withdrawal_error)?;
    let timeline = withdrawals::timeline(&mut conn, row.id)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(WithdrawalView::of(row, Some(timeline))))
}

/// Cancel one of your withdrawals before it is signed; the hold is released.
#[utoipa::path(tag = "money", security(("customer" = [])), params(("id" = Uuid, Path, description = "Withdrawal id")), responses(
    (status = 200, description = "Cancelled", body = WithdrawalView),
    (status = 404, description = "No such withdrawal of yours", body = crate::error::Problem),
    (status = 409, description = "`invalid_state`: already signed or final", body = crate::error::Problem),
))]
#[post("/v1/withdrawals/{id}/cancel")]
pub async fn cancel(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let row = withdrawals::cancel(&mut conn, who.0.user.id, *id)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(WithdrawalView::of(row, None)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    /// One state; default: every open one (requested to broadcast).
    pub state: Option<String>,
    /// At most this many (1-500, default 100), oldest first.
    pub limit: Option<i64>,
}

/// The withdrawal queue, oldest first; `state=confirmed` lists those waiting
/// for approval.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(QueueQuery), responses(
    (status = 200, description = "Withdrawals", body = List<AdminWithdrawalView>),
    (status = 422, description = "Unknown `state`", body = crate::error::Problem),
))]
#[get("/admin/v1/withdrawals")]
pub async fn admin_queue(
    _staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<QueueQuery>,
) -> Reply {
    let filter = match q.state.as_deref() {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            ApiError::field("state", "invalid", "one of requested, confirmed, approved, signed, broadcast, completed, failed, rejected, cancelled")
        })?),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let mut conn = state.conn().await?;
    let items: Vec<AdminWithdrawalView> = withdrawals::list_queue(&mut conn, filter, limit)
        .await
        .map_err(withdrawal_error)?
        .into_iter()
        .map(|w| AdminWithdrawalView::of(w, None))
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// One withdrawal with its timeline.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Withdrawal id")), responses(
    (status = 200, description = "The withdrawal", body = AdminWithdrawalView),
    (status = 404, description = "Not found", body = crate::error::Problem),
))]
#[get("/admin/v1/withdrawals/{id}")]
pub async fn admin_get(_staff: Staff, state: web::Data<AppState>, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let row = withdrawals::get(&mut conn, *id)
        .await
        .map_err(withdrawal_error)?;
    let timeline = withdrawals::timeline(&mut conn, row.id)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(AdminWithdrawalView::of(row, Some(timeline))))
}

/// Approve a confirmed withdrawal above the threshold; it is sent once two
/// different admins approved.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Withdrawal id")), responses(
    (status = 200, description = "`confirmed` after the first approval, `approved` after the second", body = AdminWithdrawalView),
    (status = 404, description = "Not found", body = crate::error::Problem),
    (status = 409, description = "`same_approver` or `invalid_state`", body = crate::error::Problem),
))]
#[post("/admin/v1/withdrawals/{id}/approve")]
pub async fn admin_approve(staff: Staff, state: web::Data<AppState>, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let row = withdrawals::approve(&mut conn, staff.who.user.id, *id)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(AdminWithdrawalView::of(row, None)))
}

/// Reject a withdrawal before it is signed; the hold is released.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Withdrawal id")), request_body = RejectWithdrawal, responses(
    (status = 200, description = "Rejected", body = AdminWithdrawalView),
    (status = 404, description = "Not found", body = crate::error::Problem),
    (status = 409, description = "`invalid_state`", body = crate::error::Problem),
    (status = 422, description = "`reason` missing or longer than 500 characters", body = crate::error::Problem),
))]
#[post("/admin/v1/withdrawals/{id}/reject")]
pub async fn admin_reject(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Reply {
    let parsed: RejectWithdrawal = crate::extract::parse_json(&body)?;
    let reason = parsed.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::field("reason", "invalid", "1 to 500 characters").into());
    }
    let mut conn = state.conn().await?;
    let row = withdrawals::reject(&mut conn, staff.who.user.id, *id, reason)
        .await
        .map_err(withdrawal_error)?;
    Ok(HttpResponse::Ok().json(AdminWithdrawalView::of(row, None)))
}

/// Per asset-network: approved withdrawals waiting to be sent and why (e.g.
/// the hot wallet holds less than they need), and what is in flight.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingReport {
    pub waiting: Vec<AdminWithdrawalView>,
    pub totals: Vec<WaitingTotal>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingTotal {
    pub asset: Asset,
    pub network: Network,
    pub count: usize,
    #[schema(value_type = String)]
    pub amount: Decimal,
}

/// Withdrawals the sender could not move on (hot wallet short, node
/// unreachable, a transaction the node refuses), with why and totals per
/// asset-network: what to top up or look into.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "The report", body = WaitingReport),
))]
#[get("/admin/v1/withdrawals/waiting")]
pub async fn admin_waiting(_staff: Staff, state: web::Data<AppState>) -> Reply {
    let mut conn = state.conn().await?;
    // Every open withdrawal (approved, or signed/broadcast and stuck).
    let rows = withdrawals::list_queue(&mut conn, None, 500)
        .await
        .map_err(withdrawal_error)?;
    let waiting: Vec<Withdrawal> = rows
        .into_iter()
        .filter(|w| w.waiting_reason.is_some())
        .collect();
    let mut totals: Vec<WaitingTotal> = Vec::new();
    for w in &waiting {
        let (Some(asset), Some(network)) = (w.asset(), w.network()) else {
            continue;
        };
        match totals
            .iter_mut()
            .find(|t| t.asset == asset && t.network == network)
        {
            Some(t) => {
                t.count += 1;
                t.amount += w.amount;
            }
            None => totals.push(WaitingTotal {
                asset,
                network,
                count: 1,
                amount: w.amount,
            }),
        }
    }
    Ok(HttpResponse::Ok().json(WaitingReport {
        waiting: waiting
            .into_iter()
            .map(|w| AdminWithdrawalView::of(w, None))
            .collect(),
        totals,
    }))
}
