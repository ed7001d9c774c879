//! Carbon credits in the back office (`/admin/v1/carbon`): register a block
//! by its registry serial, list blocks with what is retired and available,
//! retire units for a customer and period, list retirements. Writes need
//! `carbon_write`, reads `reports_read` (see `auth::ADMIN_ROUTES`); the
//! rules (serial formats, overlap, allocation order, idempotency) live in
//! `domain::carbon::credits`, which also writes the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::NaiveDate;
use domain::carbon::credits::{
    self, Actor, CreditError, CreditStock, Demand, Expected, NewCredit, RetiredRange, Retirement,
    SerialError,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Staff, client_ip};
use crate::error::ApiError;
use crate::routes::List;
use crate::routes::catalog_admin::StaffAnd;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn credit_error(e: CreditError) -> ApiError {
    use CreditError as C;
    match &e {
        C::Serial(SerialError::UnknownRegistry(_)) => {
            ApiError::field("registry", e.code(), e.to_string())
        }
        C::Serial(_) => ApiError::field("serial", e.code(), e.to_string()),
        C::UnknownKind(_) => ApiError::field("kind", e.code(), e.to_string()),
        C::Disagrees { field, .. } | C::Invalid { field, .. } => {
            ApiError::field(field, e.code(), e.to_string())
        }
        C::UnknownUser(_) => ApiError::field("beneficiary_user_id", e.code(), e.to_string()),
        C::Overlap { .. } => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
        C::Database(_) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCredit {
    /// `verra` or `gold_standard`.
    pub registry: String,
    /// The registry's serial of the block, e.g.
    /// `19381-941412555-941441125-VCS-VCU-1310-VER-CN-13-3005-01012022-31102022-0`
    /// or `GS1-1-KE-GS11603-16-2025-30256-110-5463`.
    pub serial: String,
    /// `avoidance` or `removal` (what the project does; not in the serial).
    pub kind: String,
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Optional check: a year of the serial's vintage period.
    #[serde(default)]
    pub vintage: Option<i32>,
    /// Optional check: the serial's project (`3005`, `VCS3005`, `GS11603`).
    #[serde(default)]
    pub project: Option<String>,
    /// Optional check: the number of units (tonnes) in the block.
    #[serde(default)]
    pub units: Option<i64>,
}

/// Register a block of carbon credits by its serial. Permission `carbon_write`.
/// The block may share no unit with a registered one (Verra numbers are
/// registry-wide; Gold Standard numbers per project, vintage and batch).
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = CreateCredit, responses(
    (status = 201, description = "Registered, with the parsed block", body = CreditStock),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 409, description = "`credit_overlap`: the detail names the registered credit (id and serial)", body = crate::error::Problem),
    (status = 422, description = "A problem naming `serial` (`malformed`, `bad_range`, `bad_date`, `registry_mismatch`), `registry` (`unknown_registry`), `kind` (`unknown_kind`), or `vintage`/`project`/`units` (`serial_mismatch`)", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/credits")]
pub async fn create(
    staff: Staff,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Reply {
    let parsed: CreateCredit = crate::extract::parse_json(&body)?;
    let by = Actor::new(staff.actor(), client_ip(&req));
    let mut conn = state.conn().await?;
    let credit = credits::create(
        &mut conn,
        &by,
        &NewCredit {
            registry: &parsed.registry,
            serial: &parsed.serial,
            kind: &parsed.kind,
            project_name: parsed.project_name.as_deref(),
            description: parsed.description.as_deref(),
            expected: Expected {
                vintage: parsed.vintage,
                project: parsed.project.as_deref(),
                units: parsed.units,
            },
        },
    )
    .await
    .map_err(credit_error)?;
    Ok(HttpResponse::Created().json(CreditStock {
        retired: 0,
        available: credit.units,
        credit,
    }))
}

/// Every registered block, oldest vintage first (the order retirements take
/// them in), with units retired and available. Permission `reports_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "Blocks", body = List<CreditStock>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/carbon/credits")]
pub async fn list(_staff: Staff, state: web::Data<AppState>) -> Reply {
    let mut conn = state.conn().await?;
    let items = credits::list_credits(&mut conn)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireCredits {
    pub beneficiary_user_id: Uuid,
    /// As recorded on the retirement; default `Hashgrid customer <id>`.
    /// Kept from the first retirement of the beneficiary and period.
    #[serde(default)]
    pub beneficiary_name: Option<String>,
    /// Whole tonnes (units), 1 to 1 000 000 000.
    pub tonnes: i64,
    /// The emissions period covered (inclusive).
    pub period_from: NaiveDate,
    pub period_to: NaiveDate,
    pub reason: String,
}

/// Retire units for a customer's emissions in a period. Permission
/// `carbon_write`. Oldest vintage first, then lowest unit numbers, splitting
/// blocks; each unit once. Idempotent per (customer, period): a repeat
/// retires only what is missing to reach `tonnes` (nothing once met). When
/// stock is short, what there is is retired and `shortfall` says the rest.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = RetireCredits, responses(
    (status = 201, description = "Units retired by this call (`newly_retired` > 0)", body = Retirement),
    (status = 200, description = "Nothing new retired: already met, or no stock (`shortfall`)", body = Retirement),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "A problem naming `beneficiary_user_id` (`unknown_user`), `tonnes`, `period_to`, `reason` or `beneficiary_name`", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/retirements")]
pub async fn retire(
    staff: Staff,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Reply {
    let parsed: RetireCredits = crate::extract::parse_json(&body)?;
    if !(1..=1_000_000_000).contains(&parsed.tonnes) {
        return Err(ApiError::field("tonnes", "invalid", "1 to 1 000 000 000 whole tonnes").into());
    }
    let by = Actor::new(staff.actor(), client_ip(&req));
    let demand = Demand {
        beneficiary_user_id: parsed.beneficiary_user_id,
        beneficiary_name: parsed
            .beneficiary_name
            .clone()
            .unwrap_or_else(|| format!("Hashgrid customer {}", parsed.beneficiary_user_id)),
        period_from: parsed.period_from,
        period_to: parsed.period_to,
        tonnes: parsed.tonnes,
    };
    let mut conn = state.conn().await?;
    let mut got = credits::allocate_for(&mut conn, &[demand], &parsed.reason, &by)
        .await
        .map_err(credit_error)?;
    let retirement = got
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("allocate answered no retirement")))?;
    let status = if retirement.newly_retired > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(retirement))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RetirementsQuery {
    /// Retirements whose period ends on or after this day.
    pub from: Option<NaiveDate>,
    /// Retirements whose period starts on or before this day.
    pub to: Option<NaiveDate>,
    /// At most this many (1-1000, default 500), by period then oldest first.
    pub limit: Option<i64>,
}

/// Retired ranges whose emissions period overlaps `from..=to`, with their
/// block's serial and kind. Permission `reports_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(RetirementsQuery), responses(
    (status = 200, description = "Retired ranges", body = List<RetiredRange>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "A bad date, or `to` before `from`", body = crate::error::Problem),
))]
#[get("/admin/v1/carbon/retirements")]
pub async fn list_retirements(
    state: web::Data<AppState>,
    auth: StaffAnd<web::Query<RetirementsQuery>>,
) -> Reply {
    let StaffAnd(_staff, q) = auth;
    if let (Some(from), Some(to)) = (q.from, q.to)
        && to < from
    {
        return Err(ApiError::field("to", "invalid", "`to` is before `from`").into());
    }
    let limit = q.limit.unwrap_or(500).clamp(1, 1000);
    let mut conn = state.conn().await?;
    let items = credits::list_retirements(&mut conn, q.from, q.to, limit)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}
