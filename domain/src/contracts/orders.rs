//! Quotes and orders. A quote locks a price in the pay asset for 60
//! seconds; an order spends a quote in one transaction: the inventory is
//! reserved by a conditional UPDATE (never oversold, also under
//! concurrency), the buyer is debited through the ledger (never below
//! zero), the contract is created with a copy of the terms.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::store::{self as contract_store, Contract};
use crate::catalog::model::{ProductState, Terms};
use crate::catalog::{prices, pricing, store as catalog};
use crate::identity::jurisdictions::{Country, Restrictions};
use crate::ledger::{self, AccountKind, LedgerError, NewTransfer, Owner, TransferKind};
use crate::money::{Amount, Asset};
use crate::schema::{contracts, orders, products, quotes, users};

/// How long a quote holds its price.
pub const QUOTE_TTL_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("no such product")]
    UnknownProduct,
    #[error("the product is not on sale")]
    ProductUnavailable,
    #[error("not enough hashrate left for sale")]
    SoldOut,
    #[error("no such quote")]
    UnknownQuote,
    #[error("the quote has expired; ask for a new one")]
    QuoteExpired,
    #[error("the quote was already used by another order")]
    QuoteUsed,
    #[error("residents of {0} cannot buy contracts")]
    JurisdictionRestricted(String),
    #[error("insufficient {0} balance")]
    InsufficientFunds(Asset),
    #[error("{0}")]
    Price(String, &'static str),
    #[error("internal: {0}")]
    Internal(String),
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            OrderError::Invalid { .. } => "validation_failed",
            OrderError::UnknownProduct | OrderError::UnknownQuote => "not_found",
            OrderError::ProductUnavailable => "product_unavailable",
            OrderError::SoldOut => "sold_out",
            OrderError::QuoteExpired => "quote_expired",
            OrderError::QuoteUsed => "quote_used",
            OrderError::JurisdictionRestricted(_) => "jurisdiction_restricted",
            OrderError::InsufficientFunds(_) => "insufficient_funds",
            OrderError::Price(_, code) => code,
            OrderError::Internal(_) => "internal_error",
        }
    }
}

impl From<diesel::result::Error> for OrderError {
    fn from(e: diesel::result::Error) -> Self {
        OrderError::Internal(e.to_string())
    }
}

fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> OrderError {
    OrderError::Invalid {
        field,
        code,
        message: message.into(),
    }
}

/// Who buys: a customer for themselves, or a partner for its sub-customer
/// (paid from the partner's balance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buyer {
    pub user: Uuid,
    pub partner: Option<Uuid>,
}

impl Buyer {
    fn payer(&self) -> (Owner, AccountKind) {
        match self.partner {
            Some(p) => (Owner::Partner(p), AccountKind::Partner),
            None => (Owner::User(self.user), AccountKind::Customer),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = quotes, check_for_backend(diesel::pg::Pg))]
pub struct Quote {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    #[serde(skip)]
    pub partner_id: Option<Uuid>,
    pub product_id: Uuid,
    #[schema(value_type = Object)]
    pub terms: serde_json::Value,
    #[schema(value_type = String)]
    pub hashrate: Decimal,
    pub pay_asset: String,
    /// The USD price of the hashrate.
    #[schema(value_type = String)]
    pub price_usd: Decimal,
    /// USD per unit of the pay asset used.
    #[schema(value_type = String)]
    pub usd_rate: Decimal,
    pub rate_source: String,
    pub spread_bps: i32,
    /// What the order will debit, in the pay asset.
    #[schema(value_type = String)]
    pub amount: Decimal,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(skip)]
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/quotes`: the price of `hashrate` of a product in `pay_asset`,
/// held for 60 seconds.
#[allow(clippy::too_many_arguments)]
pub async fn create_quote(
    conn: &mut AsyncPgConnection,
    buyer: Buyer,
    product_id: Uuid,
    hashrate: Decimal,
    pay_asset: Asset,
    max_price_age: Duration,
    now: DateTime<Utc>,
) -> Result<Quote, OrderError> {
    let product = catalog::product(conn, product_id)
        .await?
        .ok_or(OrderError::UnknownProduct)?;
    if product.state() != Some(ProductState::OnSale) {
        return Err(OrderError::ProductUnavailable);
    }
    if !product.pay_assets.iter().any(|a| a == pay_asset.code()) {
        return Err(invalid(
            "pay_asset",
            "not_accepted",
            format!("this product accepts {}", product.pay_assets.join(", ")),
        ));
    }
    pricing::check_hashrate(
        hashrate,
        product.hashrate_min,
        product.hashrate_max,
        product.hashrate_step,
    )
    .map_err(|e| invalid("hashrate", e.code(), e.to_string()))?;
    if hashrate > product.remaining() {
        return Err(OrderError::SoldOut);
    }
    let price = prices::current(conn, pay_asset.code(), max_price_age, now)
        .await
        .map_err(|e| OrderError::Price(e.to_string(), e.code()))?;
    let (price_usd, amount) = pricing::quote_amount(
        hashrate,
        product.price_usd_per_unit,
        pay_asset,
        price.usd,
        product.spread_bps,
    )
    .map_err(|e| invalid("hashrate", e.code(), e.to_string()))?;
    let (starts_at, ends_at) = pricing::contract_window(now, product.duration_days);
    let terms =
        serde_json::to_value(product.terms()).map_err(|e| OrderError::Internal(e.to_string()))?;
    Ok(diesel::insert_into(quotes::table)
        .values((
            quotes::id.eq(Uuid::now_v7()),
            quotes::user_id.eq(buyer.user),
            quotes::partner_id.eq(buyer.partner),
            quotes::product_id.eq(product.id),
            quotes::terms.eq(terms),
            quotes::hashrate.eq(hashrate),
            quotes::pay_asset.eq(pay_asset.code()),
            quotes::price_usd.eq(price_usd),
            quotes::usd_rate.eq(price.usd),
            quotes::rate_source.eq(&price.source),
            quotes::spread_bps.eq(product.spread_bps),
            quotes::amount.eq(amount.value()),
            quotes::starts_at.eq(starts_at),
            quotes::ends_at.eq(ends_at),
            quotes::expires_at.eq(now + Duration::seconds(QUOTE_TTL_SECS)),
        ))
        .returning(Quote::as_returning())
        .get_result(conn)
        .await?)
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    #[serde(skip)]
    pub partner_id: Option<Uuid>,
    pub quote_id: Uuid,
    pub contract_id: Uuid,
    pub pay_asset: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
    /// The ledger transfer that paid it.
    pub transfer_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Spends a quote: run inside the caller's transaction (with the
/// idempotency key). Every failure leaves nothing behind.
pub async fn place_order(
    conn: &mut AsyncPgConnection,
    buyer: Buyer,
    quote_id: Uuid,
    restrictions: &Restrictions,
    now: DateTime<Utc>,
) -> Result<(Order, Contract), OrderError> {
    let quote: Quote = quotes::table
        .find(quote_id)
        .filter(quotes::user_id.eq(buyer.user))
        .select(Quote::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(OrderError::UnknownQuote)?;
    if quote.partner_id != buyer.partner {
        return Err(OrderError::UnknownQuote);
    }
    if quote.used_at.is_some() {
        return Err(OrderError::QuoteUsed);
    }
    // A quote made before midnight cannot buy a contract whose start has passed.
    if quote.expires_at <= now || quote.starts_at <= now {
        return Err(OrderError::QuoteExpired);
    }
    let country: String = users::table
        .find(buyer.user)
        .select(users::country)
        .first(conn)
        .await?;
    if Country::parse(&country).is_some_and(|c| restrictions.is_restricted(c)) {
        return Err(OrderError::JurisdictionRestricted(country));
    }
    // Reserve the hashrate: one conditional UPDATE, backed by the CHECK.
    let reserved: Option<Uuid> = diesel::update(
        products::table
            .find(quote.product_id)
            .filter(products::state.eq("on_sale"))
            .filter((products::sold + quote.hashrate).le(products::inventory)),
    )
    .set((
        products::sold.eq(products::sold + quote.hashrate),
        products::updated_at.eq(now),
    ))
    .returning(products::id)
    .get_result(conn)
    .await
    .optional()?;
    if reserved.is_none() {
        let state: String = products::table
            .find(quote.product_id)
            .select(products::state)
            .first(conn)
            .await?;
        return Err(if state == "on_sale" {
            OrderError::SoldOut
        } else {
            OrderError::ProductUnavailable
        });
    }

    let pay_asset: Asset = quote
        .pay_asset
        .parse()
        .map_err(|_| OrderError::Internal("quote pay asset".into()))?;
    let amount = Amount::from_decimal(quote.amount.normalize(), pay_asset)
        .map_err(|e| OrderError::Internal(e.to_string()))?;
    let (owner, kind) = buyer.payer();
    let payer = ledger::open_account(conn, &owner, pay_asset, kind)
        .await
        .map_err(ledger_error)?;
    let revenue =
        ledger::open_account(conn, &Owner::Platform, pay_asset, AccountKind::SalesRevenue)
            .await
            .map_err(ledger_error)?;
    let order_id = Uuid::now_v7();
    let contract_id = Uuid::now_v7();
    let transfer = NewTransfer::new(format!("order:{order_id}"), TransferKind::Purchase, payer.id, revenue.id, amount)
        .with_metadata(serde_json::json!({ "order_id": order_id, "contract_id": contract_id, "quote_id": quote.id }));
    let posted = ledger::post_batch(conn, &[transfer.into()])
        .await
        .map_err(|e| match e {
            LedgerError::InsufficientFunds { asset, .. } => OrderError::InsufficientFunds(asset),
            e => ledger_error(e),
        })?;
    let transfer_id = posted
        .as_slice()
        .first()
        .map(|p| p.transfer().id)
        .ok_or_else(|| OrderError::Internal("no transfer".into()))?;

    let terms: Terms = serde_json::from_value(quote.terms.clone())
        .map_err(|e| OrderError::Internal(e.to_string()))?;
    // The default payout asset is the first the product allows.
    let payout_asset = terms
        .payout_assets
        .as_slice()
        .first()
        .cloned()
        .unwrap_or_else(|| pay_asset.code().to_owned());
    let contract: Contract = diesel::insert_into(contracts::table)
        .values((
            contracts::id.eq(contract_id),
            contracts::user_id.eq(buyer.user),
            contracts::partner_id.eq(buyer.partner),
            contracts::product_id.eq(quote.product_id),
            contracts::terms.eq(&quote.terms),
            contracts::hashrate.eq(quote.hashrate),
            contracts::pay_asset.eq(&quote.pay_asset),
            contracts::paid_amount.eq(quote.amount),
            contracts::payout_asset.eq(&payout_asset),
            contracts::starts_at.eq(quote.starts_at),
            contracts::ends_at.eq(quote.ends_at),
        ))
        .returning(Contract::as_returning())
        .get_result(conn)
        .await?;
    let order: Order = diesel::insert_into(orders::table)
        .values((
            orders::id.eq(order_id),
            orders::user_id.eq(buyer.user),
            orders::partner_id.eq(buyer.partner),
            orders::quote_id.eq(quote.id),
            orders::contract_id.eq(contract_id),
            orders::pay_asset.eq(&quote.pay_asset),
            orders::amount.eq(quote.amount),
            orders::transfer_id.eq(transfer_id),
        ))
        .returning(Order::as_returning())
        .get_result(conn)
        .await?;
    diesel::update(quotes::table.find(quote.id))
        .set(quotes::used_at.eq(now))
        .execute(conn)
        .await?;
    contract_store::add_event(
        conn,
        contract_id,
        "created",
        Some("created"),
        serde_json::json!({ "order_id": order_id, "paid": quote.amount.normalize().to_string(), "pay_asset": quote.pay_asset }),
    )
    .await?;
    Ok((order, contract))
}

fn ledger_error(e: LedgerError) -> OrderError {
    OrderError::Internal(e.to_string())
}

pub async fn order_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .filter(orders::user_id.eq(user))
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()
}
