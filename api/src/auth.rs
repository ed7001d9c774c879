//! Who is calling: extractors for the three kinds of credentials.
//!
//! - [`Customer`]: a customer access token (`Authorization: Bearer`, audience customer).
//! - [`Staff`]: a back-office access token (audience admin); the permission
//!   comes from [`ADMIN_ROUTES`] by the matched route, so an admin route
//!   without a declared permission is refused (fail closed).
//! - Partner requests are HMAC-signed; see `routes::partner`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, web};
use domain::identity::roles::{Permission, Role};
use domain::identity::service::{Authenticated, ClientInfo, IdentityError};
use domain::identity::tokens::{Audience, Purpose, TokenError};

use crate::error::ApiError;
use crate::state::AppState;

/// Every `/admin/v1` route and the permission it needs. The route table test
/// walks this list with every role and with customer and partner credentials.
pub const ADMIN_ROUTES: &[(&str, &str, Permission)] = &[
    ("GET", "/admin/v1/users", Permission::UsersRead),
    ("GET", "/admin/v1/users/{id}", Permission::UsersRead),
    (
        "POST",
        "/admin/v1/users/{id}/disable",
        Permission::UsersWrite,
    ),
    (
        "POST",
        "/admin/v1/users/{id}/enable",
        Permission::UsersWrite,
    ),
    ("POST", "/admin/v1/staff", Permission::StaffManage),
    ("GET", "/admin/v1/audit-log", Permission::AuditRead),
    ("GET", "/admin/v1/audit-log/verify", Permission::AuditRead),
    ("GET", "/admin/v1/partners", Permission::PartnersRead),
    ("POST", "/admin/v1/partners", Permission::PartnersManage),
    (
        "POST",
        "/admin/v1/partners/{id}/keys",
        Permission::PartnersManage,
    ),
    (
        "GET",
        "/admin/v1/partners/{id}/keys",
        Permission::PartnersRead,
    ),
    (
        "DELETE",
        "/admin/v1/partners/{id}/keys/{key_id}",
        Permission::PartnersManage,
    ),
    (
        "GET",
        "/admin/v1/reports/reconciliation",
        Permission::ReportsRead,
    ),
    ("GET", "/admin/v1/settlements", Permission::ReportsRead),
    ("GET", "/admin/v1/withdrawals", Permission::ReportsRead),
    (
        "GET",
        "/admin/v1/withdrawals/waiting",
        Permission::ReportsRead,
    ),
    ("GET", "/admin/v1/withdrawals/{id}", Permission::ReportsRead),
    (
        "POST",
        "/admin/v1/withdrawals/{id}/approve",
        Permission::WithdrawalsApprove,
    ),
    (
        "POST",
        "/admin/v1/withdrawals/{id}/reject",
        Permission::WithdrawalsApprove,
    ),
    (
        "POST",
        "/admin/v1/settlements/{day}/run",
        Permission::SettlementsRun,
    ),
    ("GET", "/admin/v1/contracts/{id}", Permission::UsersRead),
    (
        "POST",
        "/admin/v1/contracts/{id}/terminate",
        Permission::UsersWrite,
    ),
    (
        "POST",
        "/admin/v1/facilities/{id}/outages",
        Permission::CatalogWrite,
    ),
    ("POST", "/admin/v1/prices", Permission::PricesWrite),
    ("GET", "/admin/v1/prices", Permission::CatalogRead),
    ("GET", "/admin/v1/prices/fixings", Permission::CatalogRead),
    ("GET", "/admin/v1/algorithms", Permission::CatalogRead),
    ("POST", "/admin/v1/algorithms", Permission::CatalogWrite),
    ("GET", "/admin/v1/facilities", Permission::CatalogRead),
    ("POST", "/admin/v1/facilities", Permission::CatalogWrite),
    ("GET", "/admin/v1/facilities/{id}", Permission::CatalogRead),
    (
        "PATCH",
        "/admin/v1/facilities/{id}",
        Permission::CatalogWrite,
    ),
    ("GET", "/admin/v1/pools", Permission::CatalogRead),
    ("POST", "/admin/v1/pools", Permission::CatalogWrite),
    ("GET", "/admin/v1/products", Permission::CatalogRead),
    ("POST", "/admin/v1/products", Permission::CatalogWrite),
    ("GET", "/admin/v1/products/{id}", Permission::CatalogRead),
    ("PATCH", "/admin/v1/products/{id}", Permission::CatalogWrite),
    (
        "POST",
        "/admin/v1/products/{id}/state",
        Permission::CatalogWrite,
    ),
    (
        "POST",
        "/admin/v1/pool-earnings",
        Permission::SettlementsRun,
    ),
    ("GET", "/admin/v1/pool-earnings", Permission::ReportsRead),
    ("GET", "/admin/v1/carbon/factors", Permission::CarbonRead),
    ("POST", "/admin/v1/carbon/factors", Permission::CarbonWrite),
    (
        "PUT",
        "/admin/v1/carbon/facilities/{id}",
        Permission::CarbonWrite,
    ),
    (
        "POST",
        "/admin/v1/carbon/facilities/{id}/meter-readings",
        Permission::CarbonWrite,
    ),
    (
        "POST",
        "/admin/v1/carbon/days/{day}/run",
        Permission::CarbonWrite,
    ),
    (
        "POST",
        "/admin/v1/carbon/months/{day}/retire",
        Permission::CarbonWrite,
    ),
    ("GET", "/admin/v1/carbon/report", Permission::CarbonRead),
    ("POST", "/admin/v1/carbon/credits", Permission::CarbonWrite),
    ("GET", "/admin/v1/carbon/credits", Permission::CarbonRead),
    (
        "POST",
        "/admin/v1/carbon/retirements",
        Permission::CarbonWrite,
    ),
    (
        "GET",
        "/admin/v1/carbon/retirements",
        Permission::CarbonRead,
    ),
    (
        "POST",
        "/admin/v1/carbon/certificates",
        Permission::CarbonWrite,
    ),
    (
        "GET",
        "/admin/v1/carbon/certificates",
        Permission::CarbonRead,
    ),
];

pub fn admin_permission(method: &Method, pattern: &str) -> Option<Permission> {
    ADMIN_ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == pattern)
        .map(|(_, _, perm)| *perm)
}

/// The client's address and device, for sessions and the audit log.
pub fn client_info(req: &HttpRequest) -> ClientInfo {
    let trust_proxy = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.config.trust_proxy);
    let peer = || req.peer_addr().map(|a| a.ip().to_string());
    // Behind our proxy the client is the entry the proxy appended: the
    // rightmost. Entries to its left are whatever the client sent.
    let forwarded = || {
        req.headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .last()
            .and_then(bare_ip)
    };
    let ip = if trust_proxy {
        forwarded().or_else(peer)
    } else {
        peer()
    }
    .unwrap_or_default();
    let device = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    ClientInfo { ip, device }
}

/// A forwarded address without a port or brackets (`192.0.2.7:4444`,
/// `[2001:db8::1]:80`); `None` when it is not an IP address at all.
fn bare_ip(forwarded: &str) -> Option<String> {
    if let Ok(sock) = forwarded.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_string());
    }
    let s = forwarded.trim_start_matches('[').trim_end_matches(']');
    s.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

/// The IP alone, as a rate-limit key.
pub fn client_ip(req: &HttpRequest) -> String {
    client_info(req).ip
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn unauthorized(code: &'static str, detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, detail)
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))
}

async fn authenticate(req: HttpRequest, audience: Audience) -> Result<Authenticated, ApiError> {
    let state = state(&req)?;
    let Some(token) = bearer(&req) else {
        return Err(unauthorized(
            "unauthorized",
            "send an access token: Authorization: Bearer <token>",
        ));
    };
    let mut conn = state.conn().await?;
    match state
        .identity
        .authenticate(&mut conn, &token, audience)
        .await
    {
        Ok(who) => Ok(who),
        Err(IdentityError::Internal(e)) => Err(ApiError::internal(anyhow::anyhow!(e))),
        Err(e) => Err(unauthorized(e.code(), &e.to_string())),
    }
}

/// An authenticated customer.
pub struct Customer(pub Authenticated);

impl FromRequest for Customer {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(req, Audience::Customer).await.map(Customer) })
    }
}

/// An authenticated staff member allowed to call the matched admin route.
pub struct Staff {
    pub who: Authenticated,
    pub role: Role,
    pub permission: Permission,
}

impl Staff {
    pub fn actor(&self) -> String {
        self.who.actor()
    }
}

impl FromRequest for Staff {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            // Another audience's valid credentials are forbidden here, not unknown.
            if bearer(&req).is_none()
                && req
                    .headers()
                    .contains_key(domain::identity::partner_sig::HEADER_KEY)
            {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "partner keys cannot call the back office",
                ));
            }
            let who = match authenticate(req.clone(), Audience::Admin).await {
                Ok(who) => who,
                Err(e) if e.code() == TokenError::WrongAudience.code() => {
                    let token = bearer(&req).unwrap_or_default();
                    if state
                        .identity
                        .keys
                        .verify(&token, Audience::Customer, Purpose::Access)
                        .is_ok()
                    {
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            "customer tokens cannot call the back office",
                        ));
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let role = who.user.role().ok_or_else(|| {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", "not a staff account")
            })?;
            let pattern = req.match_pattern().unwrap_or_default();
            let Some(permission) = admin_permission(req.method(), &pattern) else {
                tracing::error!(%pattern, method = %req.method(), "admin route without a declared permission");
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this route declares no permission",
                ));
            };
            if !role.can(permission) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("role {} may not {permission:?}", role.as_str()),
                ));
            }
            if who.user.must_change_password {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "password_change_required",
                    "change the one-time password first (POST /admin/v1/me/password)",
                ));
            }
            if permission.needs_step_up() && !state.identity.step_up_satisfied(&who) {
                return Err(IdentityError::StepUpRequired.into());
            }
            Ok(Staff {
                who,
                role,
                permission,
            })
        })
    }
}

/// An authenticated staff member on a route that needs no permission (their own account).
pub struct StaffSelf(pub Authenticated);

impl FromRequest for StaffSelf {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(req, Audience::Admin).await.map(StaffSelf) })
    }
}
