//! The customer's carbon statement and a contract's carbon days.

use actix_web::{HttpResponse, get, web};
use chrono::NaiveDate;
use domain::carbon::statement::{self as carbon, CarbonDay, Statement};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Customer;
use crate::error::ApiError;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CarbonQuery {
    /// First day, inclusive (YYYY-MM-DD).
    pub from: NaiveDate,
    /// Last day, inclusive; at most 366 days after `from`.
    pub to: NaiveDate,
    /// `json` (default) or `csv` (one line per contract-day).
    pub format: Option<String>,
}

fn check(q: &CarbonQuery) -> Result<bool, ApiError> {
    crate::routes::check_day_range(q.from, q.to)?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(false),
        "csv" => Ok(true),
        _ => Err(ApiError::field("format", "invalid", "csv or json")),
    }
}

fn csv(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{name}.csv\""),
        ))
        .body(body)
}

/// Your contracts' energy and emissions between `from` and `to`: energy
/// (metered or estimated, and the metered share), location- and
/// market-based kgCO2e, the certificates applied to your share of each
/// facility's consumption, the carbon credits retired for you with their
/// serials, and the claim these numbers support. `format=csv` gives the
/// contract-days with the factors used.
#[utoipa::path(tag = "carbon", security(("customer" = [])), params(CarbonQuery), responses(
    (status = 200, description = "The statement (JSON, or CSV with format=csv)", body = Statement),
    (status = 422, description = "Invalid range or format", body = crate::error::Problem),
))]
#[get("/v1/carbon/statement")]
pub async fn statement(
    state: web::Data<AppState>,
    who: Customer,
    q: web::Query<CarbonQuery>,
) -> Reply {
    let as_csv = check(&q)?;
    let mut conn = state.conn().await?;
    let user = who.0.user.id;
    if as_csv {
        let rows = carbon::days(&mut conn, user, None, q.from, q.to)
            .await
            .map_err(ApiError::from)?;
        return Ok(csv(
            carbon::days_csv(&rows),
            &format!("carbon-{}-{}", q.from, q.to),
        ));
    }
    let s = carbon::customer_statement(&mut conn, user, q.from, q.to)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(s))
}

/// One contract's carbon: totals and every computed day.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractCarbonView {
    pub contract_id: Uuid,
    #[schema(value_type = String)]
    pub energy_kwh: Decimal,
    #[schema(value_type = String)]
    pub metered_kwh: Decimal,
    #[schema(value_type = String)]
    pub location_based_kgco2e: Decimal,
    #[schema(value_type = String)]
    pub market_based_kgco2e: Decimal,
    #[schema(value_type = String)]
    pub certificates_kwh: Decimal,
    pub days: Vec<CarbonDay>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContractCarbonQuery {
    /// Default: 366 days before `to`.
    pub from: Option<NaiveDate>,
    /// Default: today.
    pub to: Option<NaiveDate>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A contract's energy and emissions per day (yours only; another
/// customer's contract is 404).
#[utoipa::path(tag = "carbon", security(("customer" = [])), params(("id" = Uuid, Path, description = "Contract id"), ContractCarbonQuery), responses(
    (status = 200, description = "Totals and days (JSON, or CSV with format=csv)", body = ContractCarbonView),
    (status = 404, description = "No such contract of yours", body = crate::error::Problem),
    (status = 422, description = "Invalid range or format", body = crate::error::Problem),
))]
#[get("/v1/contracts/{id}/carbon")]
pub async fn contract_carbon(
    state: web::Data<AppState>,
    who: Customer,
    id: web::Path<Uuid>,
    q: web::Query<ContractCarbonQuery>,
) -> Reply {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use domain::schema::contracts;
    let to = q.to.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let range = CarbonQuery {
        from: q.from.unwrap_or(to - chrono::TimeDelta::days(366)),
        to,
        format: q.format.clone(),
    };
    let as_csv = check(&range)?;
    let mut conn = state.conn().await?;
    let user = who.0.user.id;
    let mine: i64 = contracts::table
        .filter(contracts::id.eq(*id))
        .filter(contracts::user_id.eq(user))
        .count()
        .get_result(&mut conn)
        .await
        .map_err(ApiError::from)?;
    if mine == 0 {
        return Err(ApiError::not_found("contract").into());
    }
    let days = carbon::days(&mut conn, user, Some(*id), range.from, range.to)
        .await
        .map_err(ApiError::from)?;
    if as_csv {
        return Ok(csv(carbon::days_csv(&days), &format!("carbon-{id}")));
    }
    let sum = |f: fn(&CarbonDay) -> Decimal| days.iter().map(f).sum::<Decimal>().normalize();
    Ok(HttpResponse::Ok().json(ContractCarbonView {
        contract_id: *id,
        energy_kwh: sum(|d| d.energy_kwh),
        metered_kwh: sum(|d| {
            if d.metered {
                d.energy_kwh
            } else {
                Decimal::ZERO
            }
        }),
        location_based_kgco2e: sum(|d| d.location_based_kgco2e),
        market_based_kgco2e: sum(|d| d.market_based_kgco2e),
        certificates_kwh: sum(|d| d.covered_kwh),
        days,
    }))
}
