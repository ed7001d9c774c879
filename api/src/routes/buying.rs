//! What customers come for: products, quotes, orders and contracts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::catalog::model::{Product, Terms};
use domain::catalog::pricing::{self, CoinInputs, YieldEstimate};
use domain::catalog::{prices, store as catalog};
use domain::contracts::orders::{self, Buyer, Order, Quote};
use domain::contracts::store::{self as contracts, Contract, ContractEvent};
use domain::idempotency::{self, Begin};
use domain::money::{Asset, DecimalString, Sign};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Customer;
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

#[derive(Debug, Serialize, ToSchema)]
pub struct FacilityBrief {
    pub id: Uuid,
    pub name: String,
    pub country: String,
    pub region: String,
    pub miner_model: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductView {
    pub id: Uuid,
    pub name: String,
    pub algorithm: String,
    /// The coins the hashrate mines (merged mining pays several).
    pub mined_coins: Vec<String>,
    pub facility: Option<FacilityBrief>,
    pub hashrate_unit: String,
    #[schema(value_type = String)]
    pub hashrate_min: Decimal,
    #[schema(value_type = String)]
    pub hashrate_max: Decimal,
    #[schema(value_type = String)]
    pub hashrate_step: Decimal,
    /// Hashrate still for sale.
    #[schema(value_type = String)]
    pub hashrate_available: Decimal,
    #[schema(value_type = String)]
    pub price_usd_per_unit: Decimal,
    pub duration_days: i32,
    /// The maintenance (electricity) fee, USD per unit per day, taken from the output.
    #[schema(value_type = String)]
    pub fee_usd_per_unit_day: Decimal,
    pub pay_assets: Vec<String>,
    pub payout_assets: Vec<String>,
    /// The published spread on conversions, basis points.
    pub spread_bps: i32,
    pub stop_rule: String,
    pub stop_after_days: i32,
    /// An estimate from today's network inputs, not a promise; null when inputs are missing.
    pub estimated_yield: Option<YieldEstimate>,
}

async fn estimate(conn: &mut AsyncPgConnection, p: &Product) -> Option<YieldEstimate> {
    let mut inputs = Vec::new();
    for coin in &p.mined_coins {
        let stats = prices::network_stats(conn, coin).await.ok().flatten()?;
        let price = prices::latest(conn, coin).await.ok().flatten()?;
        let hp = pricing::hashprice(
            &p.hashrate_unit,
            stats.difficulty,
            stats.block_reward,
            stats.fees_per_block,
        )?;
        inputs.push(CoinInputs {
            coin: coin.clone(),
            difficulty: stats.difficulty.normalize(),
            block_reward: stats.block_reward.normalize(),
            fees_per_block: stats.fees_per_block.normalize(),
            price_usd: price.usd.normalize(),
            hashprice: hp.round_dp(12).normalize(),
        });
    }
    Some(pricing::yield_estimate(inputs, p.fee_usd_per_unit_day))
}

async fn view(conn: &mut AsyncPgConnection, p: Product) -> Result<ProductView, ApiError> {
    use domain::schema::facilities;
    let facility = facilities::table
        .find(p.facility_id)
        .select((
            facilities::id,
            facilities::name,
            facilities::country,
            facilities::region,
            facilities::miner_model,
        ))
        .first::<(Uuid, String, String, String, String)>(conn)
        .await
        .optional()?
        .map(|(id, name, country, region, miner_model)| FacilityBrief {
            id,
            name,
            country,
            region,
            miner_model,
        });
    let estimated_yield = estimate(conn, &p).await;
    Ok(ProductView {
        hashrate_available: p.remaining().normalize(),
        id: p.id,
        name: p.name,
        algorithm: p.algorithm,
        mined_coins: p.mined_coins,
        facility,
        hashrate_unit: p.hashrate_unit,
        hashrate_min: p.hashrate_min.normalize(),
        hashrate_max: p.hashrate_max.normalize(),
        hashrate_step: p.hashrate_step.normalize(),
        price_usd_per_unit: p.price_usd_per_unit.normalize(),
        duration_days: p.duration_days,
        fee_usd_per_unit_day: p.fee_usd_per_unit_day.normalize(),
        pay_assets: p.pay_assets,
        payout_assets: p.payout_assets,
        spread_bps: p.spread_bps,
        stop_rule: p.stop_rule,
        stop_after_days: p.stop_after_days,
        estimated_yield,
    })
}

/// Products on sale with hashrate left, with terms, fees and a yield estimate.
#[utoipa::path(tag = "catalog", responses((status = 200, description = "Products on sale", body = List<ProductView>)))]
#[get("/v1/products")]
pub async fn list_products(state: web::Data<AppState>) -> Reply {
    let mut conn = state.conn().await?;
    let mut items = Vec::new();
    for p in catalog::products_on_sale(&mut conn)
        .await
        .map_err(ApiError::from)?
    {
        items.push(view(&mut conn, p).await?);
    }
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// One product on sale.
#[utoipa::path(tag = "catalog", params(("id" = Uuid, Path, description = "Product id")), responses(
    (status = 200, description = "The product", body = ProductView),
    (status = 404, description = "Not found or not on sale", body = crate::error::Problem),
))]
#[get("/v1/products/{id}")]
pub async fn get_product(state: web::Data<AppState>, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let p = catalog::product(&mut conn, *id)
        .await
        .map_err(ApiError::from)?
        .filter(|p| p.state == "on_sale")
        .ok_or_else(|| ApiError::not_found("product"))?;
    Ok(HttpResponse::Ok().json(view(&mut conn, p).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub product_id: Uuid,
    /// In the product's unit, as a decimal string.
    #[schema(value_type = String, example = "100")]
    pub hashrate: DecimalString,
    pub pay_asset: Asset,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuoteView {
    pub id: Uuid,
    pub product_id: Uuid,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    pub pay_asset: String,
    /// What the order will debit, in `pay_asset`.
    #[schema(value_type = String)]
    pub price: Decimal,
    #[schema(value_type = String)]
    pub price_usd: Decimal,
    /// USD per unit of the pay asset, and where it came from.
    #[schema(value_type = String)]
    pub usd_rate: Decimal,
    pub rate_source: String,
    pub spread_bps: i32,
    /// The maintenance fee this hashrate pays per day, in USD, taken from the output.
    #[schema(value_type = String)]
    pub maintenance_fee_usd_per_day: Decimal,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The price holds until then.
    pub expires_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
}

impl From<Quote> for QuoteView {
    fn from(q: Quote) -> Self {
        let fee = serde_json::from_value::<Terms>(q.terms.clone())
            .map(|t| t.fee_usd_per_unit_day * q.hashrate)
            .unwrap_or_default();
        QuoteView {
            id: q.id,
            product_id: q.product_id,
            hashrate: q.hashrate.normalize(),
            pay_asset: q.pay_asset,
            price: q.amount.normalize(),
            price_usd: q.price_usd.normalize(),
            usd_rate: q.usd_rate.normalize(),
            rate_source: q.rate_source,
            spread_bps: q.spread_bps,
            maintenance_fee_usd_per_day: fee.normalize(),
            starts_at: q.starts_at,
            ends_at: q.ends_at,
            expires_at: q.expires_at,
            terms: q.terms,
        }
    }
}

pub fn parse_hashrate(s: &DecimalString) -> Result<Decimal, ApiError> {
    // Hashrate is not money, but it is parsed as strictly: 6 decimals at most.
    let d = s
        .parse(Asset::USDT, Sign::Positive)
        .map_err(|e| ApiError::validation(vec![FieldError::amount("hashrate", &e)]))?;
    Ok(d.value())
}

/// Caches a quote in Redis for its lifetime; the database stays the truth.
async fn cache_quote(state: &AppState, view: &QuoteView) {
    if let (Ok(mut conn), Ok(body)) = (
        state.limiter.connection().await,
        serde_json::to_string(view),
    ) {
        let _: Result<(), _> = redis::cmd("SET")
            .arg(format!("quote:{}", view.id))
            .arg(body)
            .arg("EX")
            .arg(orders::QUOTE_TTL_SECS)
            .query_async(&mut conn)
            .await;
    }
}

pub async fn quote_for(
    state: &AppState,
    buyer: Buyer,
    body: &QuoteRequest,
) -> Result<QuoteView, ApiError> {
    let hashrate = parse_hashrate(&body.hashrate)?;
    let mut conn = state.conn().await?;
    let quote = orders::create_quote(
        &mut conn,
        buyer,
        body.product_id,
        hashrate,
        body.pay_asset,
        chrono::Duration::seconds(state.config.price_max_age_secs),
        Utc::now(),
    )
    .await?;
    let view = QuoteView::from(quote);
    cache_quote(state, &view).await;
    Ok(view)
}

/// Price hashrate in a pay asset; the price holds for 60 seconds.
#[utoipa::path(tag = "buying", security(("customer" = [])), request_body = QuoteRequest, responses(
    (status = 201, description = "The quote", body = QuoteView),
    (status = 404, description = "No such product", body = crate::error::Problem),
    (status = 409, description = "`product_unavailable` or `sold_out`", body = crate::error::Problem),
    (status = 422, description = "Invalid hashrate or pay asset", body = crate::error::Problem),
    (status = 503, description = "`price_stale` or `price_missing`: no fresh reference price", body = crate::error::Problem),
))]
#[post("/v1/quotes")]
pub async fn create_quote(
    state: web::Data<AppState>,
    who: Customer,
    body: Json<QuoteRequest>,
) -> Reply {
    let view = quote_for(
        &state,
        Buyer {
            user: who.0.user.id,
            partner: None,
        },
        &body,
    )
    .await?;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub quote_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub contract_id: Uuid,
    pub quote_id: Uuid,
    pub pay_asset: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub transfer_id: Uuid,
    pub created_at: DateTime<Utc>,
}

impl From<Order> for OrderView {
    fn from(o: Order) -> Self {
        OrderView {
            id: o.id,
            contract_id: o.contract_id,
            quote_id: o.quote_id,
            pay_asset: o.pay_asset,
            amount: o.amount.normalize(),
            transfer_id: o.transfer_id,
            created_at: o.created_at,
        }
    }
}

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The `Idempotency-Key` header, if sent (1-255 printable ASCII characters).
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|k| idempotency::valid_key(k))
            .map(|k| Some(k.to_owned()))
            .ok_or_else(|| {
                ApiError::validation(vec![FieldError::new(
                    IDEMPOTENCY_KEY,
                    "invalid",
                    "1 to 255 printable ASCII characters",
                )])
            }),
    }
}

/// What an idempotent request is compared by: method, path and body.
pub fn request_hash(req: &HttpRequest, raw_body: &[u8]) -> Vec<u8> {
    let mut h = req.method().as_str().as_bytes().to_vec();
    h.extend_from_slice(req.path().as_bytes());
    h.push(0);
    h.extend_from_slice(raw_body);
    domain::identity::crypto::sha256(&h)
}

/// The 422 for a key reused with another request.
pub fn idempotency_key_reused() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used with another request",
    )
}

/// Places an order in one transaction with its idempotency key.
pub async fn order_for(
    state: &AppState,
    req: &HttpRequest,
    buyer: Buyer,
    owner: &str,
    raw_body: &[u8],
    quote_id: Uuid,
) -> Reply {
    let key = idempotency_key(req)?;
    let hash = request_hash(req, raw_body);
    let restrictions = state.identity.config.restrictions.clone();
    let mut conn = state.conn().await?;
    let outcome: Result<(u16, serde_json::Value, bool), ApiError> = conn
        .transaction(async |c| {
            if let Some(k) = &key {
                match idempotency::begin(c, owner, k, &hash).await? {
                    Begin::Fresh => {}
                    Begin::Replay { status, body } => return Ok((status, body, true)),
                    Begin::Mismatch => return Err(idempotency_key_reused()),
                }
            }
            let (order, _contract) =
                orders::place_order(c, buyer, quote_id, &restrictions, Utc::now()).await?;
            let body = serde_json::to_value(OrderView::from(order)).map_err(ApiError::internal)?;
            if let Some(k) = &key {
                idempotency::finish(c, owner, k, 201, &body).await?;
            }
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

/// Buy: spend a quote. Debits the pay asset, reserves the hashrate and
/// creates the contract (pending; it starts at 00:00 UTC tomorrow).
/// Send an `Idempotency-Key` header: a retry with the same key and body
/// answers the first response; another body under the key is a 422.
#[utoipa::path(tag = "buying", security(("customer" = [])), request_body = OrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: one effect per key")),
    responses(
    (status = 201, description = "The order (a replay carries `Idempotent-Replayed: true`)", body = OrderView),
    (status = 404, description = "No such quote", body = crate::error::Problem),
    (status = 409, description = "`quote_expired`, `quote_used`, `sold_out` or `product_unavailable`", body = crate::error::Problem),
    (status = 422, description = "`insufficient_funds` or `idempotency_key_reused`", body = crate::error::Problem),
    (status = 451, description = "`jurisdiction_restricted`", body = crate::error::Problem),
))]
#[post("/v1/orders")]
pub async fn create_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: web::Bytes,
) -> Reply {
    let parsed: OrderRequest = crate::extract::parse_json(&body)?;
    let owner = format!("user:{}", who.0.user.id);
    order_for(
        &state,
        &req,
        Buyer {
            user: who.0.user.id,
            partner: None,
        },
        &owner,
        &body,
        parsed.quote_id,
    )
    .await
}

/// One of your orders.
#[utoipa::path(tag = "buying", security(("customer" = [])), params(("id" = Uuid, Path, description = "Order id")), responses(
    (status = 200, description = "The order", body = OrderView),
    (status = 404, description = "Not found (also for another customer's id)", body = crate::error::Problem),
))]
#[get("/v1/orders/{id}")]
pub async fn get_order(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let o = orders::order_of(&mut conn, who.0.user.id, *id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(HttpResponse::Ok().json(OrderView::from(o)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Earned {
    pub asset: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContractView {
    pub id: Uuid,
    pub product_id: Uuid,
    /// `pending`, `active`, `suspended`, `expired` or `terminated`
    pub state: String,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    pub hashrate_unit: String,
    pub pay_asset: String,
    #[schema(value_type = String)]
    pub paid_amount: Decimal,
    /// Payouts go to this asset (from the next settlement after a change).
    pub payout_asset: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Hours added for facility outages and pauses.
    pub extended_hours: i32,
    pub days_left: i64,
    /// Payouts credited so far, per asset.
    pub earnings: Vec<Earned>,
    /// The terms it was sold with; later product edits never change them.
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

async fn earnings(conn: &mut AsyncPgConnection, contract: Uuid) -> Result<Vec<Earned>, ApiError> {
    use domain::schema::{settlement_lines as l, settlements as s};
    let later = diesel::alias!(domain::schema::settlements as later);
    // Per settled day, the latest settlement (a correction replaces the original).
    let rows: Vec<(String, Decimal)> = l::table
        .inner_join(s::table)
        .filter(l::contract_id.eq(contract))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            later.filter(later.field(s::corrects_id).eq(s::id.nullable())),
        )))
        .group_by(l::payout_asset)
        .select((
            l::payout_asset,
            diesel::dsl::sum(l::payout_amount).assume_not_null(),
        ))
        .order(l::payout_asset)
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(asset, amount)| Earned {
            asset,
            amount: amount.normalize(),
        })
        .collect())
}

pub async fn contract_view(
    conn: &mut AsyncPgConnection,
    c: Contract,
) -> Result<ContractView, ApiError> {
    let earnings = earnings(conn, c.id).await?;
    let unit = c.terms().map(|t| t.hashrate_unit).unwrap_or_default();
    Ok(ContractView {
        days_left: c.days_left(Utc::now()),
        id: c.id,
        product_id: c.product_id,
        state: c.state,
        hashrate: c.hashrate.normalize(),
        hashrate_unit: unit,
        pay_asset: c.pay_asset,
        paid_amount: c.paid_amount.normalize(),
        payout_asset: c.payout_asset,
        starts_at: c.starts_at,
        ends_at: c.ends_at,
        extended_hours: c.extended_hours,
        earnings,
        terms: c.terms,
        created_at: c.created_at,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// Your contracts, newest first.
#[utoipa::path(tag = "contracts", security(("customer" = [])), params(Page), responses(
    (status = 200, description = "A page of contracts", body = List<ContractView>),
))]
#[get("/v1/contracts")]
pub async fn list_contracts(
    state: web::Data<AppState>,
    who: Customer,
    page: web::Query<Page>,
) -> Reply {
    let mut conn = state.conn().await?;
    let n = page.limit.unwrap_or(50).clamp(1, 200);
    let rows = contracts::contracts_of(&mut conn, who.0.user.id, page.cursor, n)
        .await
        .map_err(ApiError::from)?;
    let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == n)
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    for c in rows {
        items.push(contract_view(&mut conn, c).await?);
    }
    Ok(HttpResponse::Ok().json(List { items, next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContractDetail {
    #[serde(flatten)]
    pub contract: ContractView,
    /// What happened to it: activation, outage extensions, suspensions, changes.
    pub events: Vec<ContractEvent>,
}

/// One of your contracts, with its history.
#[utoipa::path(tag = "contracts", security(("customer" = [])), params(("id" = Uuid, Path, description = "Contract id")), responses(
    (status = 200, description = "The contract", body = ContractDetail),
    (status = 404, description = "Not found (also for another customer's id)", body = crate::error::Problem),
))]
#[get("/v1/contracts/{id}")]
pub async fn get_contract(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let c = contracts::contract_of(&mut conn, who.0.user.id, *id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("contract"))?;
    let events = contracts::events(&mut conn, c.id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(ContractDetail {
        contract: contract_view(&mut conn, c).await?,
        events,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractPatch {
    /// One of the contract's `terms.payout_assets`; applies from the next settlement.
    pub payout_asset: Asset,
}

/// Choose the payout asset (from the product's list); applies from the next settlement.
#[utoipa::path(tag = "contracts", security(("customer" = [])), params(("id" = Uuid, Path, description = "Contract id")), request_body = ContractPatch, responses(
    (status = 200, description = "The updated contract", body = ContractView),
    (status = 404, description = "Not found", body = crate::error::Problem),
    (status = 409, description = "`contract_ended`", body = crate::error::Problem),
    (status = 422, description = "The asset is not among the contract's payout assets", body = crate::error::Problem),
))]
#[patch("/v1/contracts/{id}")]
pub async fn patch_contract(
    state: web::Data<AppState>,
    who: Customer,
    id: web::Path<Uuid>,
    body: Json<ContractPatch>,
) -> Reply {
    let mut conn = state.conn().await?;
    let user = who.0.user.id;
    let contract_id = *id;
    let asset = body.payout_asset;
    let updated = conn
        .transaction(async |c| {
            let contract = contracts::contract_of(c, user, contract_id)
                .await?
                .ok_or_else(|| ApiError::not_found("contract"))?;
            if !contract.state().is_live() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "contract_ended",
                    "the contract has ended",
                ));
            }
            let terms = contract.terms().map_err(ApiError::internal)?;
            if !terms.payout_assets.iter().any(|a| a == asset.code()) {
                return Err(ApiError::field(
                    "payout_asset",
                    "not_offered",
                    format!(
                        "this contract pays out in {}",
                        terms.payout_assets.join(", ")
                    ),
                ));
            }
            if contract.payout_asset != asset.code() {
                contracts::set_payout_asset(c, contract.id, asset.code()).await?;
                contracts::add_event(
                    c,
                    contract.id,
                    "payout_asset_changed",
                    None,
                    serde_json::json!({ "from": contract.payout_asset, "to": asset.code() }),
                )
                .await?;
            }
            contracts::contract(c, contract_id)
                .await?
                .ok_or_else(|| ApiError::not_found("contract"))
        })
        .await?;
    Ok(HttpResponse::Ok().json(contract_view(&mut conn, updated).await?))
}

/// One of your quotes while it holds (read from Redis, then the database).
#[utoipa::path(tag = "buying", security(("customer" = [])), params(("id" = Uuid, Path, description = "Quote id")), responses(
    (status = 200, description = "The quote", body = QuoteView),
    (status = 404, description = "No such quote of yours", body = crate::error::Problem),
))]
#[get("/v1/quotes/{id}")]
pub async fn get_quote(state: web::Data<AppState>, who: Customer, id: web::Path<Uuid>) -> Reply {
    use domain::schema::quotes;
    // The database decides ownership; Redis only spares it the terms' JSON.
    let mut conn = state.conn().await?;
    let owned: Option<Uuid> = quotes::table
        .find(*id)
        .filter(quotes::user_id.eq(who.0.user.id))
        .select(quotes::id)
        .first(&mut conn)
        .await
        .optional()
        .map_err(ApiError::from)?;
    owned.ok_or_else(|| ApiError::not_found("quote"))?;
    if let Ok(mut redis) = state.limiter.connection().await {
        let cached: Result<Option<String>, _> = redis::cmd("GET")
            .arg(format!("quote:{id}"))
            .query_async(&mut redis)
            .await;
        if let Ok(Some(json)) = cached {
            return Ok(HttpResponse::Ok()
                .content_type("application/json")
                .body(json));
        }
    }
    let quote: Quote = quotes::table
        .find(*id)
        .select(Quote::as_select())
        .first(&mut conn)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(QuoteView::from(quote)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub asset: Asset,
    /// Spendable now.
    #[schema(value_type = String)]
    pub available: Decimal,
    /// Reserved by pending withdrawals.
    #[schema(value_type = String)]
    pub held: Decimal,
}

/// Your balance in every asset (zero where you hold none).
#[utoipa::path(tag = "money", security(("customer" = [])), responses(
    (status = 200, description = "One entry per asset", body = List<BalanceView>),
))]
#[get("/v1/balances")]
pub async fn balances(state: web::Data<AppState>, who: Customer) -> Reply {
    use domain::ledger::{self, AccountKind, Owner};
    let mut conn = state.conn().await?;
    let accounts = ledger::balances_of_owner(&mut conn, &Owner::User(who.0.user.id))
        .await
        .map_err(ApiError::from)?;
    let items = Asset::ALL
        .into_iter()
        .map(|asset| {
            let acc = accounts
                .iter()
                .find(|a| a.asset == asset && a.kind == AccountKind::Customer);
            BalanceView {
                asset,
                available: acc.map_or(Decimal::ZERO, |a| a.available()),
                held: acc.map_or(Decimal::ZERO, |a| a.held()),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: Uuid,
    pub asset: String,
    /// Why: `purchase`, `payout`, `deposit`, `withdrawal_hold`, `refund`, …
    pub kind: String,
    /// `single`, `pending` (a hold), `post` or `void`
    pub phase: String,
    /// `credit` (in) or `debit` (out) for you.
    pub direction: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub reference: String,
    pub created_at: DateTime<Utc>,
}

/// id, asset, kind, phase, debit account, amount, reference, time
type LedgerRow = (
    Uuid,
    String,
    String,
    String,
    i64,
    Decimal,
    String,
    DateTime<Utc>,
);

/// Every ledger transfer that touched your balances, newest first.
#[utoipa::path(tag = "money", security(("customer" = [])), params(Page), responses(
    (status = 200, description = "A page of entries", body = List<LedgerEntry>),
))]
#[get("/v1/ledger")]
pub async fn ledger_entries(
    state: web::Data<AppState>,
    who: Customer,
    page: web::Query<Page>,
) -> Reply {
    use domain::ledger::{self, AccountKind, Owner};
    use domain::schema::transfers as t;
    let mut conn = state.conn().await?;
    let accounts: Vec<i64> = ledger::balances_of_owner(&mut conn, &Owner::User(who.0.user.id))
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|a| a.kind == AccountKind::Customer)
        .map(|a| a.id)
        .collect();
    let n = page.limit.unwrap_or(50).clamp(1, 200);
    let mut q = t::table
        .filter(
            t::debit_account_id
                .eq_any(&accounts)
                .or(t::credit_account_id.eq_any(&accounts)),
        )
        .order(t::id.desc())
        .limit(n)
        .select((
            t::id,
            t::asset,
            t::kind,
            t::phase,
            t::debit_account_id,
            t::amount,
            t::reference,
            t::created_at,
        ))
        .into_boxed();
    if let Some(c) = page.cursor {
        q = q.filter(t::id.lt(c));
    }
    let rows: Vec<LedgerRow> = q.load(&mut conn).await.map_err(ApiError::from)?;
    let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == n)
        .then(|| rows.last().map(|r| r.0.to_string()))
        .flatten();
    let items = rows
        .into_iter()
        .map(
            |(id, asset, kind, phase, debit, amount, reference, created_at)| LedgerEntry {
                direction: if accounts.contains(&debit) {
                    "debit"
                } else {
                    "credit"
                }
                .to_owned(),
                id,
                asset,
                kind,
                phase,
                amount: amount.normalize(),
                reference,
                created_at,
            },
        )
        .collect();
    Ok(HttpResponse::Ok().json(List { items, next_cursor }))
}
