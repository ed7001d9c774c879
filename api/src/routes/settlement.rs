//! Settlement in the back office (`/admin/v1/settlements`) and the
//! customer's view of it: per-day earnings of a contract and a tax-ready
//! statement.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use domain::identity::audit::{self, AuditEntry};
use domain::settlement::engine::{self, Settlement};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Customer, Staff, client_ip};
use crate::error::ApiError;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SettlementQuery {
    pub day: Option<NaiveDate>,
    pub limit: Option<i64>,
}

/// Settlement runs with their totals, newest day first. Permission `reports_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(SettlementQuery), responses(
    (status = 200, description = "Settlements", body = List<Settlement>),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/settlements")]
pub async fn list(
    state: web::Data<AppState>,
    _staff: Staff,
    q: web::Query<SettlementQuery>,
) -> Reply {
    let mut conn = state.conn().await?;
    let items = engine::list(&mut conn, q.day, q.limit.unwrap_or(50).clamp(1, 200))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunResult {
    pub day: NaiveDate,
    /// Settlements of the day, new or already posted (a re-run changes nothing).
    pub settlements: Vec<Settlement>,
}

/// Settle (or re-run) every unsettled import of a day. Re-running a settled
/// day changes nothing. Permission `settlements_run`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("day" = NaiveDate, Path, description = "YYYY-MM-DD")), responses(
    (status = 200, description = "The day's settlements", body = RunResult),
    (status = 409, description = "`fixing_missing`", body = crate::error::Problem),
))]
#[post("/admin/v1/settlements/{day}/run")]
pub async fn run_day(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    day: web::Path<String>,
) -> Reply {
    // Parsed after the permission check, so a caller without it gets 403 whatever the path.
    let day: NaiveDate = day
        .parse()
        .map_err(|_| ApiError::field("day", "invalid", "a date as YYYY-MM-DD"))?;
    if day >= Utc::now().date_naive() {
        return Err(
            ApiError::field("day", "not_ended", "a day is settled once it has ended").into(),
        );
    }
    let mut conn = state.conn().await?;
    for id in engine::unsettled_imports(&mut conn, day)
        .await
        .map_err(ApiError::from)?
    {
        engine::settle(&mut conn, id)
            .await
            .map_err(ApiError::from)?;
    }
    let settlements = engine::list(&mut conn, Some(day), 1000)
        .await
        .map_err(ApiError::from)?;
    audit::append(
        &mut conn,
        &AuditEntry::new(staff.actor(), "admin.settlement.run", format!("day:{day}"))
            .ip(client_ip(&req)),
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(RunResult { day, settlements }))
}

#[derive(Debug, Serialize, ToSchema, Queryable)]
pub struct EarningDay {
    pub day: NaiveDate,
    pub coin: String,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    /// Seconds of the day the contract ran.
    pub active_seconds: i32,
    #[schema(value_type = String)]
    pub gross: Decimal,
    #[schema(value_type = String)]
    pub fee: Decimal,
    #[schema(value_type = String)]
    pub net: Decimal,
    pub payout_asset: String,
    #[schema(value_type = String)]
    pub payout_amount: Decimal,
    /// Delivered / sold hashrate of the pool that day: proof of delivery.
    #[schema(value_type = Option<String>)]
    pub delivered_ratio: Option<Decimal>,
}

/// Per-day earnings of one of your contracts: gross, fee, net, the payout and
/// the pool's delivered ratio that day.
#[utoipa::path(tag = "contracts", security(("customer" = [])), params(("id" = Uuid, Path, description = "Contract id")), responses(
    (status = 200, description = "Days, newest first", body = List<EarningDay>),
    (status = 404, description = "Not found (also for another customer's id)", body = crate::error::Problem),
))]
#[get("/v1/contracts/{id}/earnings")]
pub async fn contract_earnings(
    state: web::Data<AppState>,
    who: Customer,
    id: web::Path<Uuid>,
) -> Reply {
    use domain::schema::{settlement_lines as l, settlements as s};
    let mut conn = state.conn().await?;
    domain::contracts::store::contract_of(&mut conn, who.0.user.id, *id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("contract"))?;
    let later = diesel::alias!(domain::schema::settlements as later);
    let rows: Vec<EarningDay> = l::table
        .inner_join(s::table)
        .filter(l::contract_id.eq(*id))
        // A corrected settlement gives way to its correction.
        .filter(diesel::dsl::not(diesel::dsl::exists(
            later.filter(later.field(s::corrects_id).eq(s::id.nullable())),
        )))
        .order((l::day.desc(), l::coin))
        .select((
            l::day,
            l::coin,
            l::hashrate,
            l::active_seconds,
            l::gross,
            l::fee,
            l::net,
            l::payout_asset,
            l::payout_amount,
            s::delivered_ratio,
        ))
        .load(&mut conn)
        .await
        .map_err(ApiError::from)?;
    let items = rows
        .into_iter()
        .map(|mut r| {
            r.hashrate = r.hashrate.normalize();
            r.gross = r.gross.normalize();
            r.fee = r.fee.normalize();
            r.net = r.net.normalize();
            r.payout_amount = r.payout_amount.normalize();
            r.delivered_ratio = r.delivered_ratio.map(|d| d.normalize());
            r
        })
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `csv` or `json` (default)
    pub format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema, Queryable)]
pub struct StatementRow {
    pub date: NaiveDate,
    pub contract_id: Uuid,
    /// The asset received.
    pub asset: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    /// USD value at receipt (the day's fixing of the mined coin).
    #[schema(value_type = String)]
    pub usd_value: Decimal,
    pub usd_source: String,
    pub mined_coin: String,
    /// The maintenance fee withheld, in the mined coin.
    #[schema(value_type = String)]
    pub fee: Decimal,
    /// Payout asset per mined coin when converted (1 when not).
    #[schema(value_type = String)]
    pub conversion_rate: Decimal,
}

/// A tax-ready statement of payouts received between `from` and `to`
/// (inclusive): date, asset, amount, USD value at receipt and its source,
/// fee and conversion. `format=csv` answers text/csv.
#[utoipa::path(tag = "money", security(("customer" = [])), params(StatementQuery), responses(
    (status = 200, description = "The statement (JSON, or CSV with format=csv)", body = List<StatementRow>),
    (status = 422, description = "Invalid range or format", body = crate::error::Problem),
))]
#[get("/v1/statements")]
pub async fn statement(
    state: web::Data<AppState>,
    who: Customer,
    q: web::Query<StatementQuery>,
) -> Reply {
    use domain::schema::{contracts as c, settlement_lines as l, settlements as s};
    crate::routes::check_day_range(q.from, q.to)?;
    let format = q.format.as_deref().unwrap_or("json");
    if format != "json" && format != "csv" {
        return Err(ApiError::field("format", "invalid", "csv or json").into());
    }
    let mut conn = state.conn().await?;
    let later = diesel::alias!(domain::schema::settlements as later);
    let rows: Vec<StatementRow> = l::table
        .inner_join(c::table)
        .inner_join(s::table)
        .filter(c::user_id.eq(who.0.user.id))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            later.filter(later.field(s::corrects_id).eq(s::id.nullable())),
        )))
        .filter(l::day.ge(q.from))
        .filter(l::day.le(q.to))
        .order((l::day, l::contract_id, l::coin))
        .select((
            l::day,
            l::contract_id,
            l::payout_asset,
            l::payout_amount,
            l::usd_value,
            l::rate_source,
            l::coin,
            l::fee,
            l::rate,
        ))
        .load(&mut conn)
        .await
        .map_err(ApiError::from)?;
    if format == "csv" {
        let mut out = String::from(
            "date,contract_id,asset,amount,usd_value,usd_source,mined_coin,fee,conversion_rate\n",
        );
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},\"{}\",{},{},{}\n",
                r.date,
                r.contract_id,
                r.asset,
                r.amount.normalize(),
                r.usd_value.normalize(),
                r.usd_source.replace('"', "'"),
                r.mined_coin,
                r.fee.normalize(),
                r.conversion_rate.normalize()
            ));
        }
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "content-disposition",
                format!("attachment; filename=\"hashgrid-{}-{}.csv\"", q.from, q.to),
            ))
            .body(out));
    }
    Ok(HttpResponse::Ok().json(List {
        items: rows,
        next_cursor: None,
    }))
}
