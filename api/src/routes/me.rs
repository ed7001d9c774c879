//! The caller's own account: profile, password, 2FA and sessions.
//! Customers under `/v1/me`, staff under `/admin/v1/me`.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use domain::identity::service::{Authenticated, TotpEnrolment};
use domain::identity::store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Customer, StaffSelf, client_info};
use crate::error::ApiError;
use crate::extract::Json;
use crate::ratelimit::{FailMode, Limit};
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

pub const MFA_PER_ACCOUNT: Limit = Limit {
    name: "mfa_account",
    max: 5,
    window: Duration::from_secs(300),
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub country: String,
    pub kyc_level: i32,
    pub totp_enabled: bool,
    /// Set while a recent password, e-mail or 2FA change locks withdrawals.
    pub withdrawals_locked_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// The signed-in customer.
#[utoipa::path(tag = "account", security(("customer" = [])), responses(
    (status = 200, description = "The account", body = Me),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
))]
#[get("/v1/me")]
pub async fn me(state: web::Data<AppState>, who: Customer) -> Reply {
    let mut conn = state.conn().await?;
    let u = &who.0.user;
    let locked = store::withdrawals_locked_until(&mut conn, u.id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(Me {
        id: u.id,
        email: u.email.clone(),
        email_verified: u.email_verified_at.is_some(),
        country: u.country.clone(),
        kyc_level: u.kyc_level,
        totp_enabled: u.totp_enabled(),
        withdrawals_locked_until: locked,
        created_at: u.created_at,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    pub new_password: String,
}

async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: &Authenticated,
    body: &ChangePasswordRequest,
) -> Reply {
    state
        .limiter
        .enforce(
            &MFA_PER_ACCOUNT,
            &format!("pw:{}", who.user.id),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    state
        .identity
        .change_password(
            &mut conn,
            who,
            &body.current_password,
            &body.new_password,
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Change the password. Every session ends (log in again); withdrawals lock for 24 h.
#[utoipa::path(tag = "account", security(("customer" = [])), request_body = ChangePasswordRequest, responses(
    (status = 204, description = "Changed; all sessions revoked"),
    (status = 422, description = "Wrong current password or a weak new one", body = crate::error::Problem),
))]
#[post("/v1/me/password")]
pub async fn customer_change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: Json<ChangePasswordRequest>,
) -> Reply {
    change_password(state, req, &who.0, &body).await
}

/// Change a staff password (also how the one-time password is replaced).
#[utoipa::path(tag = "admin-auth", security(("admin" = [])), request_body = ChangePasswordRequest, responses(
    (status = 204, description = "Changed; all sessions revoked"),
    (status = 422, description = "Wrong current password or a weak new one", body = crate::error::Problem),
))]
#[post("/admin/v1/me/password")]
pub async fn staff_change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: StaffSelf,
    body: Json<ChangePasswordRequest>,
) -> Reply {
    change_password(state, req, &who.0, &body).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    /// An enrolment was started and awaits its first code.
    pub pending: bool,
}

/// Whether 2FA is on.
#[utoipa::path(tag = "account", security(("customer" = [])), responses(
    (status = 200, description = "2FA status", body = TwoFactorStatus),
))]
#[get("/v1/me/2fa")]
pub async fn two_factor_status(who: Customer) -> HttpResponse {
    let u = &who.0.user;
    HttpResponse::Ok().json(TwoFactorStatus {
        enabled: u.totp_enabled(),
        pending: !u.totp_enabled() && u.totp_secret_enc.is_some(),
    })
}

async fn enrol(state: web::Data<AppState>, who: &Authenticated) -> Reply {
    let mut conn = state.conn().await?;
    let e: TotpEnrolment = state
        .identity
        .totp_enrol(&mut conn, who)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Created().json(e))
}

/// Start 2FA enrolment: an `otpauth://` URI for an authenticator app.
#[utoipa::path(tag = "account", security(("customer" = [])), responses(
    (status = 201, description = "Scan the URI, then confirm with a code", body = TotpEnrolment),
    (status = 409, description = "`totp_already_enabled`", body = crate::error::Problem),
))]
#[post("/v1/me/2fa")]
pub async fn customer_enrol(state: web::Data<AppState>, who: Customer) -> Reply {
    enrol(state, &who.0).await
}

/// Start 2FA enrolment for a staff account (needed for step-up).
#[utoipa::path(tag = "admin-auth", security(("admin" = [])), responses(
    (status = 201, description = "Scan the URI, then confirm with a code", body = TotpEnrolment),
    (status = 409, description = "`totp_already_enabled`", body = crate::error::Problem),
))]
#[post("/admin/v1/me/2fa")]
pub async fn staff_enrol(state: web::Data<AppState>, who: StaffSelf) -> Reply {
    enrol(state, &who.0).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A 6-digit code from the authenticator app (or, to disable, a recovery code).
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown only now.
    pub recovery_codes: Vec<String>,
}

async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: &Authenticated,
    code: &str,
) -> Reply {
    state
        .limiter
        .enforce(&MFA_PER_ACCOUNT, &who.user.id.to_string(), FailMode::Closed)
        .await?;
    let mut conn = state.conn().await?;
    let codes = state
        .identity
        .totp_confirm(&mut conn, who, code, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

/// Turn 2FA on with the first code; answers the recovery codes.
#[utoipa::path(tag = "account", security(("customer" = [])), request_body = CodeRequest, responses(
    (status = 200, description = "2FA is on", body = RecoveryCodes),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
    (status = 409, description = "`totp_not_enrolled` or `totp_already_enabled`", body = crate::error::Problem),
))]
#[post("/v1/me/2fa/confirm")]
pub async fn customer_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: Json<CodeRequest>,
) -> Reply {
    confirm(state, req, &who.0, &body.code).await
}

/// Turn staff 2FA on with the first code.
#[utoipa::path(tag = "admin-auth", security(("admin" = [])), request_body = CodeRequest, responses(
    (status = 200, description = "2FA is on", body = RecoveryCodes),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
))]
#[post("/admin/v1/me/2fa/confirm")]
pub async fn staff_confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: StaffSelf,
    body: Json<CodeRequest>,
) -> Reply {
    confirm(state, req, &who.0, &body.code).await
}

/// Turn 2FA off; needs a valid code.
#[utoipa::path(tag = "account", security(("customer" = [])), request_body = CodeRequest, responses(
    (status = 204, description = "2FA is off; withdrawals lock for 24 h"),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
    (status = 409, description = "`totp_not_enabled`", body = crate::error::Problem),
))]
#[delete("/v1/me/2fa")]
pub async fn customer_disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: Json<CodeRequest>,
) -> Reply {
    state
        .limiter
        .enforce(
            &MFA_PER_ACCOUNT,
            &who.0.user.id.to_string(),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    state
        .identity
        .totp_disable(&mut conn, &who.0, &body.code, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepUp {
    /// An access token that may perform sensitive actions for 15 minutes.
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
}

/// Prove the second factor again before a sensitive back-office action.
#[utoipa::path(tag = "admin-auth", security(("admin" = [])), request_body = CodeRequest, responses(
    (status = 200, description = "A step-up access token", body = StepUp),
    (status = 401, description = "`invalid_second_factor`", body = crate::error::Problem),
    (status = 409, description = "`totp_not_enabled`: enrol first", body = crate::error::Problem),
))]
#[post("/admin/v1/auth/step-up")]
pub async fn staff_step_up(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: StaffSelf,
    body: Json<CodeRequest>,
) -> Reply {
    state
        .limiter
        .enforce(
            &MFA_PER_ACCOUNT,
            &who.0.user.id.to_string(),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    let token = state
        .identity
        .step_up(&mut conn, &who.0, &body.code, &client_info(&req))
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(StepUp {
        access_token: token,
        token_type: "Bearer".to_owned(),
        expires_in: domain::identity::tokens::ACCESS_TTL_SECS,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    /// The User-Agent it was created with.
    pub device: String,
    /// The last IP it was used from.
    pub ip: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// The session of this request.
    pub current: bool,
}

/// The account's live sessions (devices), most recently used first.
#[utoipa::path(tag = "account", security(("customer" = [])), responses(
    (status = 200, description = "Live sessions", body = List<SessionView>),
))]
#[get("/v1/me/sessions")]
pub async fn sessions(state: web::Data<AppState>, who: Customer) -> Reply {
    let mut conn = state.conn().await?;
    let items = store::live_sessions(&mut conn, who.0.user.id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == who.0.session.id,
            id: s.id,
            device: s.device,
            ip: s.ip,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// End one session (e.g. a lost phone). Another account's session is 404.
#[utoipa::path(tag = "account", security(("customer" = [])), params(("id" = Uuid, Path, description = "Session id")), responses(
    (status = 204, description = "Revoked"),
    (status = 404, description = "No such live session of yours", body = crate::error::Problem),
))]
#[delete("/v1/me/sessions/{id}")]
pub async fn revoke_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    id: web::Path<Uuid>,
) -> Reply {
    let mut conn = state.conn().await?;
    let revoked = store::revoke_session(&mut conn, who.0.user.id, *id, "revoked_by_user")
        .await
        .map_err(ApiError::from)?;
    if !revoked {
        return Err(ApiError::not_found("session").into());
    }
    domain::identity::audit::append(
        &mut conn,
        &domain::identity::audit::AuditEntry::new(
            who.0.actor(),
            "auth.session_revoked",
            format!("session:{id}"),
        )
        .ip(client_info(&req).ip),
    )
    .await
    .map_err(ApiError::from)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The public keys that verify access tokens (JWKS, RFC 7517).
#[utoipa::path(tag = "ops", responses((status = 200, description = "The JSON Web Key Set", body = Object)))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "public, max-age=300"))
        .json(state.identity.keys.jwks())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChangeRequest {
    pub new_email: String,
    /// The current password.
    pub password: String,
}

/// Ask to change the account's e-mail address: the new address gets a
/// confirmation link (1 hour), the current one a notice.
#[utoipa::path(tag = "account", security(("customer" = [])), request_body = EmailChangeRequest, responses(
    (status = 202, description = "Confirmation sent to the new address"),
    (status = 409, description = "`email_taken`", body = crate::error::Problem),
    (status = 422, description = "Wrong password or invalid address", body = crate::error::Problem),
))]
#[post("/v1/me/email")]
pub async fn request_email_change(
    state: web::Data<AppState>,
    req: HttpRequest,
    who: Customer,
    body: Json<EmailChangeRequest>,
) -> Reply {
    state
        .limiter
        .enforce(
            &MFA_PER_ACCOUNT,
            &format!("email:{}", who.0.user.id),
            FailMode::Closed,
        )
        .await?;
    let mut conn = state.conn().await?;
    state
        .identity
        .request_email_change(
            &mut conn,
            &who.0,
            &body.new_email,
            &body.password,
            &client_info(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Accepted().finish())
}
