//! Pool earnings in the back office (`/admin/v1/pool-earnings`): import what
//! a pool paid for a day (one JSON import, or many CSV rows all or nothing),
//! check one without storing it (`?dry_run=true`), and list the imports.
//! Imports need `settlements_run`, reads `reports_read` (see
//! `auth::ADMIN_ROUTES`); every import is appended to the audit log
//! (`admin.pool_earning.import`) in the same transaction. The rules live in
//! `domain::settlement::earnings`.
//!
//! Handlers take [`StaffAnd`]: the caller is authorised before the query or
//! body is read, so a caller without the permission gets 403, never 422.

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::NaiveDate;
use diesel_async::AsyncConnection;
use domain::identity::audit::{self, AuditEntry};
use domain::settlement::earnings::{self, EarningError, NewEarning, NewEarningInput, PoolEarning};
use domain::settlement::engine::{self, EarningInput};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Staff, client_ip};
use crate::error::{ApiError, FieldError};
use crate::extract::parse_json;
use crate::routes::List;
use crate::routes::catalog_admin::StaffAnd;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

/// The one mapping of earning errors to problems; `row` names the CSV row.
pub fn earning_error(e: EarningError, row: Option<usize>) -> ApiError {
    let e = match row {
        Some(r) => e.in_row(r),
        None => e,
    };
    let at = row.map(|r| format!("rows[{r}]: ")).unwrap_or_default();
    match &e {
        EarningError::Invalid {
            field,
            code,
            message,
        } => ApiError::validation(vec![FieldError::new(field.clone(), *code, message.clone())]),
        EarningError::Duplicate { .. } | EarningError::AlreadyCorrected { .. } => {
            ApiError::new(StatusCode::CONFLICT, e.code(), format!("{at}{e}"))
        }
        EarningError::Database(_) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Check a JSON import and show what it would do, without storing it.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a dry run found: the validated import and the allocation the
/// settlement engine would make of it (null while the engine has no dry run).
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    pub earning: NewEarning,
    #[schema(value_type = Option<Object>)]
    pub allocation: Option<serde_json::Value>,
}

#[derive(Debug)]
enum Body {
    Json,
    Csv,
}

fn body_kind(req: &HttpRequest) -> Result<Body, ApiError> {
    let mime = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(Body::Json)
    } else if mime == "text/csv" {
        Ok(Body::Csv)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json (one import) or text/csv (many)",
        ))
    }
}

/// The imports of a request body, with the CSV row of each (`None` for JSON).
fn imports(req: &HttpRequest, body: &[u8], source: &str) -> Result<Vec<NewEarning>, ApiError> {
    match body_kind(req)? {
        Body::Json => {
            let input: NewEarningInput = parse_json(body)?;
            Ok(vec![input.into_new(source)])
        }
        Body::Csv => {
            let text = std::str::from_utf8(body).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the CSV is not UTF-8",
                )
            })?;
            let rows = earnings::parse_csv(text).map_err(|e| earning_error(e, None))?;
            Ok(rows.into_iter().map(|r| r.into_new(source)).collect())
        }
    }
}

/// Import what a pool paid for a day: a JSON object (`application/json`) or
/// many rows (`text/csv`, header
/// `pool_id,day,coin,amount,delivered_hashrate,difficulty,pool_tx_ids`, ids
/// separated by `;`, an optional `corrects` column; all rows or none are
/// stored). A pool-day-coin is imported once; a change is a correction
/// naming the latest import in `corrects`. With `?dry_run=true` (JSON only)
/// nothing is stored. Permission `settlements_run`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(ImportQuery),
    request_body(description = "One import as JSON, or many as CSV",
        content((NewEarningInput = "application/json"), (String = "text/csv"))),
    responses(
        (status = 200, description = "Dry run: the import is valid; what it would do", body = DryRun),
        (status = 201, description = "Stored, in the order sent", body = List<PoolEarning>),
        (status = 401, description = "Not authenticated", body = crate::error::Problem),
        (status = 403, description = "`forbidden`", body = crate::error::Problem),
        (status = 409, description = "`earning_exists`: the pool, day and coin are imported (send a correction); `already_corrected`: `corrects` is not the latest import", body = crate::error::Problem),
        (status = 415, description = "`unsupported_media_type`: neither JSON nor CSV", body = crate::error::Problem),
        (status = 422, description = "`validation_failed`: the invalid field is named in `errors` (`rows[i].<column>` for CSV)", body = crate::error::Problem),
))]
#[post("/admin/v1/pool-earnings")]
pub async fn import_pool_earnings(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: StaffAnd<(web::Query<ImportQuery>, web::Bytes)>,
) -> Reply {
    let StaffAnd(staff, (query, body)) = auth;
    let source = format!("admin:{}", staff.actor());
    let batch = imports(&req, &body, &source)?;
    let csv = matches!(body_kind(&req)?, Body::Csv);
    let row = |i: usize| csv.then_some(i);
    if query.dry_run {
        return dry_run(&state, batch, csv).await;
    }
    let ip = client_ip(&req);
    let mut conn = state.conn().await?;
    let stored = conn
        .transaction(async |c| {
            let mut stored = Vec::with_capacity(batch.len());
            for (i, new) in batch.iter().enumerate() {
                let e = earnings::import(c, new)
                    .await
                    .map_err(|e| earning_error(e, row(i)))?;
                audit_import(c, &staff, &ip, &e).await?;
                stored.push(e);
            }
            Ok::<_, ApiError>(stored)
        })
        .await?;
    Ok(HttpResponse::Created().json(List {
        items: stored,
        next_cursor: None,
    }))
}

async fn audit_import(
    c: &mut diesel_async::AsyncPgConnection,
    staff: &Staff,
    ip: &str,
    e: &PoolEarning,
) -> Result<(), ApiError> {
    audit::append(
        c,
        &AuditEntry::new(
            staff.actor(),
            "admin.pool_earning.import",
            format!("pool_earning:{}", e.id),
        )
        .ip(ip)
        .after(serde_json::to_value(e).map_err(ApiError::internal)?),
    )
    .await?;
    Ok(())
}

async fn dry_run(state: &AppState, batch: Vec<NewEarning>, csv: bool) -> Reply {
    if csv {
        return Err(
            ApiError::field("dry_run", "json_only", "a dry run takes one JSON import").into(),
        );
    }
    let Some(earning) = batch.into_iter().next() else {
        return Err(ApiError::field("body", "required", "one import").into());
    };
    let mut conn = state.conn().await?;
    earnings::check(&mut conn, &earning)
        .await
        .map_err(|e| earning_error(e, None))?;
    let plan = engine::dry_run(
        &mut conn,
        &EarningInput {
            id: None,
            pool_id: earning.pool_id,
            day: earning.day,
            coin: earning.coin.clone(),
            amount: earning.amount,
            delivered_hashrate: earning.delivered_hashrate,
            difficulty: earning.difficulty,
            pool_tx_ids: earning.pool_tx_ids.clone(),
        },
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(DryRun {
        earning,
        allocation: Some(serde_json::to_value(plan).map_err(ApiError::internal)?),
    }))
}

/// The engine's refusal of a dry run: a missing fixing is a state to fix
/// first (409), an unknown coin the input's fault (422).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EarningsQuery {
    /// Only this pool's imports.
    pub pool_id: Option<Uuid>,
    /// Only this day's imports, `YYYY-MM-DD`.
    #[param(value_type = Option<String>, example = "2026-11-24")]
    pub day: Option<NaiveDate>,
    /// At most this many (1 to 1000, default 200).
    pub limit: Option<i64>,
}

/// Imports and corrections, newest day first (a correction's `corrects_id`
/// names the import it replaces). Permission `reports_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(EarningsQuery), responses(
    (status = 200, description = "The imports", body = List<PoolEarning>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "An invalid `pool_id`, `day` or `limit`", body = crate::error::Problem),
))]
#[get("/admin/v1/pool-earnings")]
pub async fn list_pool_earnings(
    state: web::Data<AppState>,
    auth: StaffAnd<web::Query<EarningsQuery>>,
) -> Reply {
    let q = auth.1;
    let limit = q.limit.unwrap_or(200);
    if !(1..=earnings::MAX_LIST).contains(&limit) {
        return Err(ApiError::field("limit", "out_of_range", "1 to 1000").into());
    }
    let mut conn = state.conn().await?;
    let items = earnings::list(&mut conn, q.pool_id, q.day, limit)
        .await
        .map_err(|e| earning_error(e, None))?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}
