//! The partner API (`/partner/v1`): HMAC-signed requests from partners'
//! servers. [`PartnerCall`] checks, in order: the headers' form, the
//! timestamp window (±30 s), that the key exists, the signature over
//! method, path, sorted query, timestamp, nonce and body hash (constant
//! time), then that the key is live and the address allowed (revealed only
//! to a holder of the secret), the nonce (once, in Redis: fail closed), and
//! a per-key rate limit. Handlers then ask for the scope they need.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::identity::audit::{self, AuditEntry};
use domain::identity::email::Email;
use domain::identity::jurisdictions::Country;
use domain::identity::partner_sig::{self, Scope, SigError};
use domain::identity::{partners, store};
use domain::ledger::{self, Owner};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::parse_json;
use crate::ratelimit::{FailMode, Limit};
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

const PER_KEY: Limit = Limit {
    name: "partner_key",
    max: 600,
    window: Duration::from_secs(60),
};
const NONCE_TTL_SECS: u64 = 120;

fn sig_error(e: SigError) -> ApiError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
    ApiError::new(status, e.code(), e.to_string())
}

/// A verified partner request: who sent it and its body.
pub struct PartnerCall {
    pub partner_id: Uuid,
    pub key_id: String,
    pub scopes: Vec<String>,
    pub body: web::Bytes,
}

impl PartnerCall {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s == scope.as_str()) {
            Ok(())
        } else {
            Err(sig_error(SigError::ScopeMissing { required: scope }))
        }
    }

    pub fn actor(&self) -> String {
        format!("partner_key:{}", self.key_id)
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn first_use_of_nonce(state: &AppState, key_id: &str, nonce: &str) -> Result<bool, ApiError> {
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nonce_store_unavailable",
            "signed requests cannot be checked for replay right now; retry later",
        )
    };
    let fut = async {
        let mut conn = state
            .limiter
            .connection()
            .await
            .map_err(|e| e.to_string())?;
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("pn:{key_id}:{nonce}"))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(NONCE_TTL_SECS)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(set.is_some())
    };
    match tokio::time::timeout(Duration::from_secs(1), fut).await {
        Ok(Ok(first)) => Ok(first),
        Ok(Err(e)) => {
            tracing::warn!(error = e, "nonce store unavailable");
            Err(unavailable())
        }
        Err(_) => Err(unavailable()),
    }
}

async fn verify(req: HttpRequest, body: web::Bytes) -> Result<PartnerCall, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let signed = partner_sig::parse_headers(
        header(&req, partner_sig::HEADER_KEY),
        header(&req, partner_sig::HEADER_TIMESTAMP),
        header(&req, partner_sig::HEADER_NONCE),
        header(&req, partner_sig::HEADER_SIGNATURE),
    )
    .map_err(sig_error)?;
    partner_sig::check_timestamp(
        signed.timestamp,
        Utc::now().timestamp(),
        partner_sig::DEFAULT_WINDOW_SECS,
    )
    .map_err(sig_error)?;
    let mut conn = state.conn().await?;
    let key = partners::key(&mut conn, &signed.key_id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| sig_error(SigError::UnknownKey))?;
    let secret = key
        .secret(&state.identity.secrets)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("partner key secret: {e}")))?;
    let canonical = partner_sig::canonical_request(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query().unwrap_or(""),
        signed.timestamp,
        &signed.nonce,
        &body,
    );
    if !partner_sig::verify(&secret, &canonical, &signed.signature) {
        return Err(sig_error(SigError::BadSignature).into());
    }
    // Key state and address are revealed only to a caller who holds the secret.
    if !key.is_usable(Utc::now()) {
        return Err(sig_error(SigError::KeyRevokedOrExpired).into());
    }
    let ip = crate::auth::client_ip(&req);
    let ip_ok = key.ip_allowlist.is_empty()
        || ip
            .parse()
            .is_ok_and(|ip| partner_sig::ip_allowed(&key.ip_allowlist, ip));
    if !ip_ok {
        return Err(sig_error(SigError::IpNotAllowed).into());
    }
    // Only a correctly signed request spends its nonce.
    if !first_use_of_nonce(&state, &key.id, &signed.nonce).await? {
        return Err(sig_error(SigError::NonceReplayed).into());
    }
    state
        .limiter
        .enforce(&PER_KEY, &key.id, FailMode::Closed)
        .await?;
    partners::touch_key(&mut conn, &key.id)
        .await
        .map_err(ApiError::from)?;
    Ok(PartnerCall {
        partner_id: key.partner_id,
        key_id: key.id,
        scopes: key.scopes,
        body,
    })
}

impl FromRequest for PartnerCall {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large or unreadable",
                )
            })?;
            verify(req, body).await
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerCustomer {
    pub id: Uuid,
    pub email: String,
    pub country: String,
    pub created_at: DateTime<Utc>,
}

/// The partner's own sub-customers, newest first. Scope `read`.
#[utoipa::path(tag = "partner", security(("partner" = [])), responses(
    (status = 200, description = "The partner's customers", body = List<PartnerCustomer>),
    (status = 401, description = "Bad, expired, replayed or unknown signature", body = crate::error::Problem),
    (status = 403, description = "`scope_missing` or `ip_not_allowed`", body = crate::error::Problem),
))]
#[get("/partner/v1/customers")]
pub async fn list_customers(state: web::Data<AppState>, call: PartnerCall) -> Reply {
    call.require(Scope::Read)?;
    let mut conn = state.conn().await?;
    let items = store::list_users(
        &mut conn,
        None,
        Some(false),
        Some(call.partner_id),
        None,
        200,
    )
    .await
    .map_err(ApiError::from)?
    .into_iter()
    .map(|u| PartnerCustomer {
        id: u.id,
        email: u.email,
        country: u.country,
        created_at: u.created_at,
    })
    .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerCustomer {
    pub email: String,
    /// ISO 3166-1 alpha-2 country of residence.
    pub country: String,
}

/// Create a sub-customer of the partner. Scope `trade`.
#[utoipa::path(tag = "partner", security(("partner" = [])), request_body = NewPartnerCustomer, responses(
    (status = 201, description = "Created", body = PartnerCustomer),
    (status = 409, description = "`email_taken`", body = crate::error::Problem),
    (status = 422, description = "Invalid e-mail or country", body = crate::error::Problem),
    (status = 451, description = "`jurisdiction_restricted`", body = crate::error::Problem),
))]
#[post("/partner/v1/customers")]
pub async fn create_customer(
    state: web::Data<AppState>,
    req: HttpRequest,
    call: PartnerCall,
) -> Reply {
    call.require(Scope::Trade)?;
    let body: NewPartnerCustomer = parse_json(&call.body)?;
    let email = Email::parse(&body.email)
        .map_err(|e| ApiError::field("email", "invalid", e.to_string()))?;
    let country = Country::parse(&body.country).ok_or_else(|| {
        ApiError::field(
            "country",
            "invalid",
            "an ISO 3166-1 alpha-2 code such as DE",
        )
    })?;
    if state.identity.config.restrictions.is_restricted(country) {
        return Err(ApiError::from(
            domain::identity::service::IdentityError::JurisdictionRestricted(
                country.as_str().to_owned(),
            ),
        )
        .into());
    }
    // Sub-customers never sign in with a password: an unusable hash.
    let unusable = format!(
        "!partner-managed:{}",
        domain::identity::crypto::random_token(16)
    );
    let ip = crate::auth::client_ip(&req);
    let mut conn = state.conn().await?;
    let user = conn
        .transaction(async |c| {
            let user = store::insert_user(
                c,
                &store::NewUser {
                    id: Uuid::now_v7(),
                    email: email.as_str(),
                    password_hash: &unusable,
                    country: country.as_str(),
                    role: None,
                    partner_id: Some(call.partner_id),
                    email_verified_at: Some(Utc::now()),
                    must_change_password: false,
                },
            )
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => ApiError::new(
                    StatusCode::CONFLICT,
                    "email_taken",
                    "an account with this e-mail exists",
                ),
                e => e.into(),
            })?;
            audit::append(
                c,
                &AuditEntry::new(
                    call.actor(),
                    "partner.customer.create",
                    format!("user:{}", user.id),
                )
                .ip(ip),
            )
            .await?;
            Ok::<_, ApiError>(user)
        })
        .await?;
    Ok(HttpResponse::Created().json(PartnerCustomer {
        id: user.id,
        email: user.email,
        country: user.country,
        created_at: user.created_at,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    pub asset: domain::money::Asset,
    /// Decimal string.
    #[schema(value_type = String)]
    pub available: rust_decimal::Decimal,
    #[schema(value_type = String)]
    pub held: rust_decimal::Decimal,
}

/// The partner's prepaid balances. Scope `read`.
#[utoipa::path(tag = "partner", security(("partner" = [])), responses(
    (status = 200, description = "One entry per asset with an account", body = List<Balance>),
    (status = 401, description = "Bad signature", body = crate::error::Problem),
))]
#[get("/partner/v1/balances")]
pub async fn balances(state: web::Data<AppState>, call: PartnerCall) -> Reply {
    call.require(Scope::Read)?;
    let mut conn = state.conn().await?;
    let items = ledger::balances_of_owner(&mut conn, &Owner::Partner(call.partner_id))
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .filter(|a| a.kind == ledger::AccountKind::Partner)
        .map(|a| Balance {
            asset: a.asset,
            available: a.available(),
            held: a.held(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerQuoteRequest {
    /// One of the partner's own customers.
    pub customer_id: Uuid,
    pub product_id: Uuid,
    #[schema(value_type = String, example = "100")]
    pub hashrate: domain::money::DecimalString,
    pub pay_asset: domain::money::Asset,
}

async fn own_customer(state: &AppState, partner: Uuid, customer: Uuid) -> Result<(), ApiError> {
    let mut conn = state.conn().await?;
    store::user_by_id(&mut conn, customer)
        .await
        .map_err(ApiError::from)?
        .filter(|u| u.partner_id == Some(partner))
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("customer"))
}

/// Quote hashrate for one of the partner's customers (paid from the partner's balance). Scope `trade`.
#[utoipa::path(tag = "partner", security(("partner" = [])), request_body = PartnerQuoteRequest, responses(
    (status = 201, description = "The quote", body = crate::routes::buying::QuoteView),
    (status = 404, description = "Not the partner's customer, or no such product", body = crate::error::Problem),
    (status = 409, description = "`sold_out` or `product_unavailable`", body = crate::error::Problem),
))]
#[post("/partner/v1/quotes")]
pub async fn create_quote(state: web::Data<AppState>, call: PartnerCall) -> Reply {
    call.require(Scope::Trade)?;
    let body: PartnerQuoteRequest = parse_json(&call.body)?;
    own_customer(&state, call.partner_id, body.customer_id).await?;
    let request = crate::routes::buying::QuoteRequest {
        product_id: body.product_id,
        hashrate: body.hashrate,
        pay_asset: body.pay_asset,
    };
    let buyer = domain::contracts::orders::Buyer {
        user: body.customer_id,
        partner: Some(call.partner_id),
    };
    let view = crate::routes::buying::quote_for(&state, buyer, &request).await?;
    Ok(HttpResponse::Created().json(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerOrderRequest {
    pub quote_id: Uuid,
}

/// Buy for a customer with a partner quote, paid from the partner's balance.
/// Scope `trade`; `Idempotency-Key` as for customers.
#[utoipa::path(tag = "partner", security(("partner" = [])), request_body = PartnerOrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: one effect per key")),
    responses(
    (status = 201, description = "The order", body = crate::routes::buying::OrderView),
    (status = 404, description = "No such quote of this partner", body = crate::error::Problem),
    (status = 409, description = "`quote_expired`, `quote_used`, `sold_out`", body = crate::error::Problem),
    (status = 422, description = "`insufficient_funds` (the partner's balance) or `idempotency_key_reused`", body = crate::error::Problem),
))]
#[post("/partner/v1/orders")]
pub async fn create_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    call: PartnerCall,
) -> Reply {
    call.require(Scope::Trade)?;
    let body: PartnerOrderRequest = parse_json(&call.body)?;
    let user = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use domain::schema::quotes;
        let mut conn = state.conn().await?;
        quotes::table
            .find(body.quote_id)
            .filter(quotes::partner_id.eq(call.partner_id))
            .select(quotes::user_id)
            .first::<Uuid>(&mut conn)
            .await
            .optional()
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("quote"))?
    };
    let buyer = domain::contracts::orders::Buyer {
        user,
        partner: Some(call.partner_id),
    };
    let owner = format!("partner:{}", call.partner_id);
    crate::routes::buying::order_for(&state, &req, buyer, &owner, &call.body, body.quote_id).await
}

/// Contracts of the partner's customers, newest first. Scope `read`.
#[utoipa::path(tag = "partner", security(("partner" = [])), responses(
    (status = 200, description = "A page of contracts", body = List<crate::routes::buying::ContractView>),
))]
#[get("/partner/v1/contracts")]
pub async fn list_contracts(
    state: web::Data<AppState>,
    call: PartnerCall,
    req: HttpRequest,
) -> Reply {
    call.require(Scope::Read)?;
    let page = web::Query::<crate::routes::buying::Page>::from_query(req.query_string())
        .map_err(|e| ApiError::field("query", "invalid", e.to_string()))?;
    let n = page.limit.unwrap_or(50).clamp(1, 200);
    let mut conn = state.conn().await?;
    let rows =
        domain::contracts::store::contracts_of_partner(&mut conn, call.partner_id, page.cursor, n)
            .await
            .map_err(ApiError::from)?;
    let next_cursor = (i64::try_from(rows.len()).unwrap_or(0) == n)
        .then(|| rows.last().map(|c| c.id.to_string()))
        .flatten();
    let mut items = Vec::with_capacity(rows.len());
    for c in rows {
        items.push(crate::routes::buying::contract_view(&mut conn, c).await?);
    }
    Ok(HttpResponse::Ok().json(List { items, next_cursor }))
}
