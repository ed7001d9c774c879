//! Carbon in the back office: emission factor versions, facilities' carbon
//! profiles and meter readings, running a day, retiring a month's credits,
//! and the report (totals per facility and month, renewable share, coverage,
//! net-zero progress, unallocated credits, conservation check).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, put, web};
use chrono::NaiveDate;
use domain::carbon::daily::{self, CarbonError};
use domain::carbon::factors::{self, Factor, FactorError, NewFactor};
use domain::carbon::meter::{self, FacilityEnergy, MeterError, Reading, SetProfile};
use domain::carbon::report::{self, Report};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Staff;
use crate::error::ApiError;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn factor_error(e: FactorError) -> ApiError {
    match &e {
        FactorError::Invalid { field, .. } => ApiError::field(field, e.code(), e.to_string()),
        FactorError::Exists { .. } => ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string()),
        FactorError::Database(_) => ApiError::internal(e),
    }
}

fn meter_error(e: MeterError) -> ApiError {
    match &e {
        MeterError::UnknownFacility => ApiError::not_found("facility"),
        MeterError::Invalid { field, .. } => ApiError::field(field, e.code(), e.to_string()),
        MeterError::DayComputed { .. } | MeterError::Exists { .. } => {
            ApiError::new(StatusCode::CONFLICT, e.code(), e.to_string())
        }
        MeterError::Database(_) => ApiError::internal(e),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FactorQuery {
    /// Only this region.
    pub region: Option<String>,
}

/// Every emission factor version (never overwritten).
#[utoipa::path(tag = "admin", security(("admin" = [])), params(FactorQuery), responses(
    (status = 200, description = "Versions by region, basis and validity", body = List<Factor>),
))]
#[get("/admin/v1/carbon/factors")]
pub async fn list_factors(
    _staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<FactorQuery>,
) -> Reply {
    let mut conn = state.conn().await?;
    let items = factors::list(&mut conn, q.region.as_deref())
        .await
        .map_err(factor_error)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Add a factor version: it applies from `valid_from` until a later version
/// of the same region and basis; days before keep the version they had.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewFactor, responses(
    (status = 201, description = "Added", body = Factor),
    (status = 409, description = "`factor_version_exists`", body = crate::error::Problem),
    (status = 422, description = "A problem naming the field", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/factors")]
pub async fn add_factor(staff: Staff, state: web::Data<AppState>, body: web::Bytes) -> Reply {
    let new: NewFactor = crate::extract::parse_json(&body)?;
    let mut conn = state.conn().await?;
    let f = factors::add(&mut conn, &staff.actor(), &new)
        .await
        .map_err(factor_error)?;
    Ok(HttpResponse::Created().json(f))
}

/// Set a facility's grid region (for its factors) and contracted renewable
/// share (covered with certificates).
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Facility id")), request_body = SetProfile, responses(
    (status = 200, description = "The profile", body = FacilityEnergy),
    (status = 404, description = "No such facility", body = crate::error::Problem),
    (status = 422, description = "A problem naming the field", body = crate::error::Problem),
))]
#[put("/admin/v1/carbon/facilities/{id}")]
pub async fn set_profile(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Reply {
    let p: SetProfile = crate::extract::parse_json(&body)?;
    let mut conn = state.conn().await?;
    let row = meter::set_profile(&mut conn, *id, &staff.actor(), &p)
        .await
        .map_err(meter_error)?;
    Ok(HttpResponse::Ok().json(row))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterImport {
    /// Where the numbers come from (utility bill, SCADA export …).
    pub source: String,
    pub readings: Vec<Reading>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub imported: usize,
}

/// Import metered energy per day or per hour (all or nothing; a computed
/// day is closed; a reading is never overwritten).
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Facility id")), request_body = MeterImport, responses(
    (status = 201, description = "Stored", body = Imported),
    (status = 404, description = "No such facility", body = crate::error::Problem),
    (status = 409, description = "`day_already_computed` or `reading_exists`", body = crate::error::Problem),
    (status = 422, description = "A problem naming the reading", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/facilities/{id}/meter-readings")]
pub async fn import_readings(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Bytes,
) -> Reply {
    let m: MeterImport = crate::extract::parse_json(&body)?;
    let mut conn = state.conn().await?;
    let n = meter::import(&mut conn, *id, &staff.actor(), &m.source, &m.readings)
        .await
        .map_err(meter_error)?;
    Ok(HttpResponse::Created().json(Imported { imported: n }))
}

/// The path's day, parsed after authorisation (a bad one is a 422 naming `day`).
fn parse_day(s: &str) -> Result<NaiveDate, ApiError> {
    s.parse()
        .map_err(|_| ApiError::field("day", "invalid", "a date YYYY-MM-DD"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DayRun {
    pub day: NaiveDate,
    pub facilities: usize,
    pub metered_facilities: usize,
    pub already_computed: usize,
    pub contract_days: usize,
    pub errors: Vec<String>,
}

/// Compute a day now (what the daily job does); facilities computed already
/// are left as they are.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("day" = String, Path, description = "YYYY-MM-DD")), responses(
    (status = 200, description = "What was computed", body = DayRun),
    (status = 422, description = "Not a date, or a day not over yet", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/days/{day}/run")]
pub async fn run_day(_staff: Staff, state: web::Data<AppState>, day: web::Path<String>) -> Reply {
    let day = parse_day(&day)?;
    if day >= chrono::Utc::now().date_naive() {
        return Err(ApiError::field("day", "not_over", "only days that are over").into());
    }
    let mut conn = state.conn().await?;
    let r = daily::compute_day(&mut conn, day)
        .await
        .map_err(|e: CarbonError| ApiError::internal(e))?;
    Ok(HttpResponse::Ok().json(DayRun {
        day,
        facilities: r.facilities,
        metered_facilities: r.metered_facilities,
        already_computed: r.already_computed,
        contract_days: r.contract_days,
        errors: r.errors,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthRetired {
    /// Tonnes retired by this call.
    pub retired: i64,
    /// Tonnes that could not be covered (not enough credits).
    pub shortfall: i64,
}

/// Retire credits against every customer's market-based emissions of the
/// month holding `day` (rounded up to whole tonnes; topping up, never twice).
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("day" = String, Path, description = "Any day of the month, YYYY-MM-DD")), responses(
    (status = 200, description = "Retired", body = MonthRetired),
    (status = 422, description = "Not a date", body = crate::error::Problem),
))]
#[post("/admin/v1/carbon/months/{day}/retire")]
pub async fn retire_month(
    _staff: Staff,
    state: web::Data<AppState>,
    day: web::Path<String>,
) -> Reply {
    let day = parse_day(&day)?;
    let mut conn = state.conn().await?;
    let (retired, shortfall) = report::retire_month(&mut conn, day)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))?;
    Ok(HttpResponse::Ok().json(MonthRetired { retired, shortfall }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Default: this year.
    pub year: Option<i32>,
}

/// Totals per facility and month, renewable share, coverage by certificates
/// and credits, progress against the net-zero-2030 target, credits not yet
/// allocated, and the conservation check (empty when nothing is counted twice).
#[utoipa::path(tag = "admin", security(("admin" = [])), params(ReportQuery), responses(
    (status = 200, description = "The report", body = Report),
    (status = 422, description = "`year` out of range", body = crate::error::Problem),
))]
#[get("/admin/v1/carbon/report")]
pub async fn carbon_report(
    _staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<ReportQuery>,
) -> Reply {
    use chrono::Datelike;
    let year = q.year.unwrap_or_else(|| chrono::Utc::now().year());
    if !(2000..=2100).contains(&year) {
        return Err(ApiError::field("year", "invalid", "2000-2100").into());
    }
    let mut conn = state.conn().await?;
    let r = report::report(&mut conn, year)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e.to_string())))?;
    Ok(HttpResponse::Ok().json(r))
}
