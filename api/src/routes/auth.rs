//! Sign-up, sign-in and tokens, for customers (`/v1/auth`) and staff
//! (`/admin/v1/auth`). Rate-limited in Redis; login and 2FA fail closed.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, post, web};
use domain::identity::service::{LoginOutcome, TokenPair};
use domain::identity::tokens::Audience;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Customer, StaffSelf, client_info, client_ip};
use crate::error::ApiError;
use crate::extract::Json;
use crate::ratelimit::{FailMode, Limit};
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

const REGISTER_PER_IP: Limit = Limit {
    name: "register_ip",
    max: 10,
    window: Duration::from_secs(3600),
};
const LOGIN_PER_IP: Limit = Limit {
    name: "login_ip",
    max: 30,
    window: Duration::from_secs(300),
};
const LOGIN_PER_ACCOUNT: Limit = Limit {
    name: "login_account",
    max: 10,
    window: Duration::from_secs(900),
};
const MFA_PER_IP: Limit = Limit {
    name: "mfa_ip",
    max: 30,
    window: Duration::from_secs(300),
};
const RESET_PER_IP: Limit = Limit {
    name: "reset_ip",
    max: 5,
    window: Duration::from_secs(3600),
};
const RESET_PER_ACCOUNT: Limit = Limit {
    name: "reset_account",
    max: 3,
    window: Duration::from_secs(3600),
};
const REFRESH_PER_IP: Limit = Limit {
    name: "refresh_ip",
    max: 120,
    window: Duration::from_secs(60),
};

/// A rate-limit key for an e-mail address: hashed, so Redis holds no addresses.
fn account_key(email: &str) -> String {
    let digest = domain::identity::crypto::sha256(email.trim().to_ascii_lowercase().as_bytes());
    hex::encode(&digest[..16])
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// At least 12 characters, not a common password.
    pub password: String,
    /// ISO 3166-1 alpha-2 country of residence.
    #[schema(example = "DE")]
    pub country: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub id: uuid::Uuid,
    pub email: String,
    /// False until the link in the verification e-mail is used.
    pub email_verified: bool,
}

/// Create a customer account; a verification e-mail is sent.
#[utoipa::path(tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Account created; verification e-mail queued", body = Registered),
    (status = 409, description = "`email_taken`", body = crate::error::Problem),
    (status = 422, description = "Invalid e-mail, password or country", body = crate::error::Problem),
    (status = 429, description = "`rate_limited`", body = crate::error::Problem),
    (status = 451, description = "`jurisdiction_restricted`", body = crate::error::Problem),
))]
#[post("/v1/auth/register")]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RegisterRequest>,
) -> Reply {
    state
        .limiter
        .enforce(&REGISTER_PER_IP, &client_ip(&req), FailMode::Closed)
        .await?;
    let mut conn = state.conn().await?;
    let user = state
        .identity
        .register(
            &mut conn,
            &body.email,
            &body.password,
            &body.country,
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Created().json(Registered {
        id: user.id,
        email: user.email,
        email_verified: false,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the e-mail link.
    pub token: String,
}

/// Verify the e-mail address with the token from the link (single use).
#[utoipa::path(tag = "auth", request_body = TokenRequest, responses(
    (status = 204, description = "Verified"),
    (status = 400, description = "`invalid_or_expired_token`", body = crate::error::Problem),
))]
#[post("/v1/auth/verify-email")]
pub async fn verify_email(state: web::Data<AppState>, body: Json<TokenRequest>) -> Reply {
    let mut conn = state.conn().await?;
    state
        .identity
        .verify_email(&mut conn, &body.token)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The current 2FA code (or a recovery code), to log in in one step.
    pub totp_code: Option<String>,
}

/// 2FA is on and no code came with the password: send it to `…/login/2fa`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaRequired {
    /// Always true.
    pub mfa_required: bool,
    pub mfa_token: String,
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenPair),
    Mfa(MfaRequired),
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginRequest>,
    audience: Audience,
) -> Reply {
    let ip = client_ip(&req);
    state
        .limiter
        .enforce(&LOGIN_PER_IP, &ip, FailMode::Closed)
        .await?;
    state
        .limiter
        .enforce(
            &LOGIN_PER_ACCOUNT,
            &account_key(&body.email),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    let outcome = state
        .identity
        .login(
            &mut conn,
            audience,
            &body.email,
            &body.password,
            body.totp_code.as_deref(),
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(match outcome {
        LoginOutcome::Tokens(pair) => LoginResponse::Tokens(pair),
        LoginOutcome::MfaRequired {
            mfa_token,
            expires_in,
        } => LoginResponse::Mfa(MfaRequired {
            mfa_required: true,
            mfa_token,
            expires_in,
        }),
    }))
}

/// Log in with e-mail and password (and `totp_code` when 2FA is on).
#[utoipa::path(tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Tokens, or `mfa_required` with an `mfa_token`", body = LoginResponse),
    (status = 401, description = "`invalid_credentials` (same answer for an unknown e-mail)", body = crate::error::Problem),
    (status = 403, description = "`email_not_verified` or `account_disabled`", body = crate::error::Problem),
    (status = 429, description = "`rate_limited`, with Retry-After", body = crate::error::Problem),
    (status = 503, description = "`rate_limiter_unavailable`: login fails closed", body = crate::error::Problem),
))]
#[post("/v1/auth/login")]
pub async fn customer_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> Reply {
    login(state, req, body, Audience::Customer).await
}

/// Staff log-in to the back office.
#[utoipa::path(tag = "admin-auth", request_body = LoginRequest, responses(
    (status = 200, description = "Tokens, or `mfa_required` with an `mfa_token`", body = LoginResponse),
    (status = 401, description = "`invalid_credentials`", body = crate::error::Problem),
    (status = 429, description = "`rate_limited`", body = crate::error::Problem),
))]
#[post("/admin/v1/auth/login")]
pub async fn admin_login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> Reply {
    login(state, req, body, Audience::Admin).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    pub mfa_token: String,
    /// A 6-digit TOTP code or a recovery code.
    pub code: String,
}

async fn second_factor(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SecondFactorRequest>,
    audience: Audience,
) -> Reply {
    state
        .limiter
        .enforce(&MFA_PER_IP, &client_ip(&req), FailMode::Closed)
        .await?;
    // Per account too: the subject of the mfa token (checked again inside).
    if let Ok(claims) = state.identity.keys.verify(
        &body.mfa_token,
        audience,
        domain::identity::tokens::Purpose::Mfa,
    ) {
        state
            .limiter
            .enforce(
                &crate::routes::me::MFA_PER_ACCOUNT,
                &claims.sub,
                FailMode::Closed,
            )
            .await?;
    }
    let mut conn = state.conn().await?;
    let pair = state
        .identity
        .login_second_factor(
            &mut conn,
            audience,
            &body.mfa_token,
            &body.code,
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(pair))
}

/// The second step of a login with 2FA.
#[utoipa::path(tag = "auth", request_body = SecondFactorRequest, responses(
    (status = 200, description = "Tokens", body = TokenPair),
    (status = 401, description = "`invalid_second_factor` or an invalid `mfa_token`", body = crate::error::Problem),
    (status = 429, description = "`rate_limited`", body = crate::error::Problem),
))]
#[post("/v1/auth/login/2fa")]
pub async fn customer_login_2fa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SecondFactorRequest>,
) -> Reply {
    second_factor(state, req, body, Audience::Customer).await
}

/// The second step of a staff login.
#[utoipa::path(tag = "admin-auth", request_body = SecondFactorRequest, responses(
    (status = 200, description = "Tokens (carrying a fresh step-up)", body = TokenPair),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
))]
#[post("/admin/v1/auth/login/2fa")]
pub async fn admin_login_2fa(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SecondFactorRequest>,
) -> Reply {
    second_factor(state, req, body, Audience::Admin).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RefreshRequest>,
    audience: Audience,
) -> Reply {
    state
        .limiter
        .enforce(&REFRESH_PER_IP, &client_ip(&req), FailMode::Open)
        .await?;
    let mut conn = state.conn().await?;
    let pair = state
        .identity
        .refresh(&mut conn, audience, &body.refresh_token, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(pair))
}

/// Exchange a refresh token for a new pair. Each refresh token works once;
/// presenting a used one revokes its whole session.
#[utoipa::path(tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, description = "A new token pair", body = TokenPair),
    (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused` or `session_ended`", body = crate::error::Problem),
))]
#[post("/v1/auth/refresh")]
pub async fn customer_refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RefreshRequest>,
) -> Reply {
    refresh(state, req, body, Audience::Customer).await
}

/// Exchange a staff refresh token for a new pair.
#[utoipa::path(tag = "admin-auth", request_body = RefreshRequest, responses(
    (status = 200, description = "A new token pair", body = TokenPair),
    (status = 401, description = "`invalid_refresh_token`, `refresh_token_reused` or `session_ended`", body = crate::error::Problem),
))]
#[post("/admin/v1/auth/refresh")]
pub async fn admin_refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RefreshRequest>,
) -> Reply {
    refresh(state, req, body, Audience::Admin).await
}

/// End this session (its refresh token stops working at once).
#[utoipa::path(tag = "auth", security(("customer" = [])), responses(
    (status = 204, description = "Logged out"),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
))]
#[post("/v1/auth/logout")]
pub async fn customer_logout(state: web::Data<AppState>, req: HttpRequest, who: Customer) -> Reply {
    let mut conn = state.conn().await?;
    state
        .identity
        .logout(&mut conn, &who.0, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// End every session of this account.
#[utoipa::path(tag = "auth", security(("customer" = [])), responses(
    (status = 204, description = "Every session revoked"),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
))]
#[post("/v1/auth/logout-all")]
pub async fn customer_logout_all(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
) -> Reply {
    let mut conn = state.conn().await?;
    state
        .identity
        .logout_everywhere(&mut conn, &who.0, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// End this staff session.
#[utoipa::path(tag = "admin-auth", security(("admin" = [])), responses(
    (status = 204, description = "Logged out"),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
))]
#[post("/admin/v1/auth/logout")]
pub async fn admin_logout(state: web::Data<AppState>, req: HttpRequest, who: StaffSelf) -> Reply {
    let mut conn = state.conn().await?;
    state
        .identity
        .logout(&mut conn, &who.0, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

/// Ask for a password-reset link. Answers 202 whether or not the address has an account.
#[utoipa::path(tag = "auth", request_body = ResetRequest, responses(
    (status = 202, description = "If the address has an account, a link valid for 30 minutes was sent"),
    (status = 429, description = "`rate_limited`", body = crate::error::Problem),
))]
#[post("/v1/auth/password-reset")]
pub async fn password_reset(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<ResetRequest>,
) -> Reply {
    state
        .limiter
        .enforce(&RESET_PER_IP, &client_ip(&req), FailMode::Closed)
        .await?;
    state
        .limiter
        .enforce(
            &RESET_PER_ACCOUNT,
            &account_key(&body.email),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    state
        .identity
        .request_password_reset(&mut conn, &body.email, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmRequest {
    pub token: String,
    pub new_password: String,
}

/// Set a new password with the token from the reset link. Every session is
/// revoked and withdrawals are locked for 24 hours.
#[utoipa::path(tag = "auth", request_body = ResetConfirmRequest, responses(
    (status = 204, description = "Password changed"),
    (status = 400, description = "`invalid_or_expired_token`", body = crate::error::Problem),
    (status = 422, description = "The new password breaks the policy", body = crate::error::Problem),
))]
#[post("/v1/auth/password-reset/confirm")]
pub async fn password_reset_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<ResetConfirmRequest>,
) -> Reply {
    state
        .limiter
        .enforce(&RESET_PER_IP, &client_ip(&req), FailMode::Closed)
        .await?;
    let mut conn = state.conn().await?;
    state
        .identity
        .confirm_password_reset(
            &mut conn,
            &body.token,
            &body.new_password,
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Confirm an e-mail change with the token from the link sent to the new
/// address. Withdrawals lock for 24 hours; the old address is told.
#[utoipa::path(tag = "auth", request_body = TokenRequest, responses(
    (status = 204, description = "The account now uses the new address"),
    (status = 400, description = "`invalid_or_expired_token`", body = crate::error::Problem),
    (status = 409, description = "`email_taken`", body = crate::error::Problem),
))]
#[post("/v1/auth/confirm-email-change")]
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<TokenRequest>,
) -> Reply {
    let mut conn = state.conn().await?;
    state
        .identity
        .confirm_email_change(&mut conn, &body.token, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}
