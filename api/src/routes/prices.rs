//! Reference prices in the back office: post a price by hand (when the
//! feed is down or for a coin it does not carry), see the newest price of
//! every coin with its age, and read the daily fixings. Permissions come
//! from `auth::ADMIN_ROUTES`; a posted price is written to the audit log in
//! the same transaction.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::AsyncConnection;
use domain::catalog::prices::{self, Fixing, PriceError, PriceRow};
use domain::identity::audit::{self, AuditEntry};
use domain::money::DecimalString;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Staff, client_ip};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

/// A domain refusal as a 422 naming the field; anything else is internal.
fn price_error(e: PriceError) -> ApiError {
    match e {
        PriceError::Invalid { field, message } => {
            ApiError::validation(vec![FieldError::new(field, "invalid_price", message)])
        }
        other => ApiError::internal(other),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrice {
    /// The coin: 2 to 10 characters of A-Z and 0-9, e.g. `BTC` or `LTC`.
    #[schema(example = "BTC")]
    pub asset: String,
    /// USD per whole coin as a decimal string (not a JSON number), greater
    /// than zero, at most 12 decimal places.
    #[schema(example = "97000.12")]
    pub usd: DecimalString,
    /// When the price was observed; now when left out. At most 5 minutes
    /// in the future.
    pub observed_at: Option<DateTime<Utc>>,
}

/// Post a reference price; it becomes current when it is the newest
/// observation of its coin. Permission `prices_write`.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewPrice, responses(
    (status = 201, description = "Stored; the source is `admin:<actor>`", body = PriceRow),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "`validation_failed`: an invalid asset, usd or observed_at", body = crate::error::Problem),
))]
#[post("/admin/v1/prices")]
pub async fn post_price(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    // A `Result` so that the caller is authorised before the body is judged:
    // a caller without the permission learns nothing about the body.
    body: Result<Json<NewPrice>, ApiError>,
) -> Reply {
    let body = body?;
    let mut errors = Vec::new();
    if !prices::valid_coin(&body.asset) {
        errors.push(FieldError::new(
            "asset",
            "invalid_price",
            "a coin code: 2 to 10 characters of A-Z and 0-9",
        ));
    }
    let usd = match prices::parse_usd(body.usd.as_str()) {
        Ok(usd) => Some(usd),
        Err(PriceError::Invalid { message, .. }) => {
            errors.push(FieldError::new("usd", "invalid_price", message));
            None
        }
        Err(e) => return Err(ApiError::internal(e).into()),
    };
    let now = Utc::now();
    let observed_at = body.observed_at.unwrap_or(now);
    if observed_at > now + prices::MAX_CLOCK_SKEW {
        errors.push(FieldError::new(
            "observed_at",
            "invalid_price",
            format!(
                "at most {} minutes in the future",
                prices::MAX_CLOCK_SKEW.num_minutes()
            ),
        ));
    }
    let Some(usd) = usd.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors).into());
    };
    let source = format!("admin:{}", staff.actor());
    let ip = client_ip(&req);
    let mut conn = state.conn().await?;
    let row = conn
        .transaction(async |c| {
            let row = prices::post_price(c, &body.asset, usd, &source, observed_at)
                .await
                .map_err(price_error)?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.price.post",
                    format!("price:{}", row.asset),
                )
                .ip(ip)
                .after(serde_json::json!({
                    "asset": row.asset,
                    "usd": row.usd.to_string(),
                    "observed_at": row.observed_at,
                    "source": row.source,
                })),
            )
            .await?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    Ok(HttpResponse::Created().json(row))
}

/// The newest price of a coin and how old it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestPrice {
    pub asset: String,
    /// USD per whole coin, as a decimal string.
    #[schema(value_type = String, example = "97000.12")]
    pub usd: Decimal,
    pub source: String,
    pub observed_at: DateTime<Utc>,
    /// Seconds between the observation and now (negative when dated ahead).
    pub age_secs: i64,
}

impl LatestPrice {
    fn new(row: PriceRow, now: DateTime<Utc>) -> Self {
        LatestPrice {
            age_secs: row.age(now).num_seconds(),
            asset: row.asset,
            usd: row.usd,
            source: row.source,
            observed_at: row.observed_at,
        }
    }
}

/// The newest price of every coin that has one, by coin, with its age.
/// Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "One price per coin", body = List<LatestPrice>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/prices")]
pub async fn latest_prices(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let rows = prices::latest_all(&mut conn).await.map_err(price_error)?;
    let now = Utc::now();
    Ok(HttpResponse::Ok().json(List {
        items: rows
            .into_iter()
            .map(|row| LatestPrice::new(row, now))
            .collect(),
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FixingsQuery {
    /// The day, `YYYY-MM-DD` (UTC).
    #[param(required = true, example = "2026-11-24")]
    pub day: Option<String>,
}

/// The day's fixings: each coin's price at 00:00 UTC, kept forever.
/// Permission `catalog_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(FixingsQuery), responses(
    (status = 200, description = "The fixings of the day, by coin (empty before the day is fixed)", body = List<Fixing>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
    (status = 422, description = "`validation_failed`: `day` is missing or not YYYY-MM-DD", body = crate::error::Problem),
))]
#[get("/admin/v1/prices/fixings")]
pub async fn price_fixings(
    state: web::Data<AppState>,
    _staff: Staff,
    q: web::Query<FixingsQuery>,
) -> Reply {
    let Some(text) = q.day.as_deref() else {
        return Err(ApiError::field("day", "required", "a day, YYYY-MM-DD").into());
    };
    let day = (text.len() == 10)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| ApiError::field("day", "invalid", "a day, YYYY-MM-DD"))?;
    let mut conn = state.conn().await?;
    let items = prices::fixings(&mut conn, day).await.map_err(price_error)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}
