//! The back office (`/admin/v1`): users, staff, the audit log, partners and
//! their keys, and reports. Each handler takes [`Staff`], whose permission
//! comes from `auth::ADMIN_ROUTES`; every change is written to the audit log
//! in the same transaction.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::identity::audit::{self, AuditEntry, AuditFilter, AuditRecord};
use domain::identity::partner_sig::Scope;
use domain::identity::partners::{self, Partner, PartnerKeyView};
use domain::identity::roles::Role;
use domain::identity::store::{self, User};
use domain::ledger::{self, ReconciliationProblem};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Staff, client_ip};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::List;
use crate::state::AppState;

type Reply = Result<HttpResponse, actix_web::Error>;

fn limit(l: Option<i64>) -> i64 {
    l.unwrap_or(50).clamp(1, 200)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub email_verified: bool,
    pub country: String,
    /// Back-office role; null for customers.
    pub role: Option<String>,
    pub partner_id: Option<Uuid>,
    /// `active` or `disabled`
    pub status: String,
    pub kyc_level: i32,
    pub totp_enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            totp_enabled: u.totp_enabled(),
            email_verified: u.email_verified_at.is_some(),
            id: u.id,
            email: u.email,
            country: u.country,
            role: u.role,
            partner_id: u.partner_id,
            status: u.status,
            kyc_level: u.kyc_level,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Part of the e-mail address.
    pub q: Option<String>,
    /// true: staff only; false: customers only.
    pub staff: Option<bool>,
    pub partner_id: Option<Uuid>,
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// Users, newest first. Permission `users_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(UserQuery), responses(
    (status = 200, description = "A page of users", body = List<UserView>),
    (status = 401, description = "Not authenticated", body = crate::error::Problem),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    _staff: Staff,
    q: web::Query<UserQuery>,
) -> Reply {
    let mut conn = state.conn().await?;
    let n = limit(q.limit);
    let users = store::list_users(
        &mut conn,
        q.q.as_deref(),
        q.staff,
        q.partner_id,
        q.cursor,
        n,
    )
    .await
    .map_err(ApiError::from)?;
    let next_cursor = (users.len() as i64 == n)
        .then(|| users.last().map(|u| u.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(List {
        items: users.into_iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// One user. Permission `users_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "User id")), responses(
    (status = 200, description = "The user", body = UserView),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[get("/admin/v1/users/{id}")]
pub async fn get_user(state: web::Data<AppState>, _staff: Staff, id: web::Path<Uuid>) -> Reply {
    let mut conn = state.conn().await?;
    let user = store::user_by_id(&mut conn, *id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

async fn set_status(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: Uuid,
    status: &'static str,
) -> Reply {
    if id == staff.who.user.id {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "you cannot change your own status",
        )
        .into());
    }
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let user = conn
        .transaction(async |c| {
            let target = store::user_by_id(c, id)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            // Only those who manage staff may lock staff out.
            if target.role.is_some()
                && !staff
                    .role
                    .can(domain::identity::roles::Permission::StaffManage)
            {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "forbidden",
                    "only staff managers change a staff account's status",
                ));
            }
            let before = store::set_status(c, id, status)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            if status == "disabled" {
                store::revoke_all_sessions(c, id, "disabled_by_staff").await?;
            }
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    format!(
                        "admin.user.{}",
                        if status == "disabled" {
                            "disable"
                        } else {
                            "enable"
                        }
                    ),
                    format!("user:{id}"),
                )
                .ip(ip)
                .before(serde_json::json!({ "status": before.status }))
                .after(serde_json::json!({ "status": status })),
            )
            .await?;
            store::user_by_id(c, id)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))
        })
        .await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

/// Disable an account (its sessions end at once). Permission `users_write`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "User id")), responses(
    (status = 200, description = "Disabled", body = UserView),
    (status = 403, description = "`forbidden` or `step_up_required`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[post("/admin/v1/users/{id}/disable")]
pub async fn disable_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: web::Path<Uuid>,
) -> Reply {
    set_status(state, req, staff, *id, "disabled").await
}

/// Enable an account again. Permission `users_write`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "User id")), responses(
    (status = 200, description = "Enabled", body = UserView),
    (status = 403, description = "`forbidden` or `step_up_required`", body = crate::error::Problem),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
))]
#[post("/admin/v1/users/{id}/enable")]
pub async fn enable_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: web::Path<Uuid>,
) -> Reply {
    set_status(state, req, staff, *id, "active").await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedStaff {
    pub user: UserView,
    /// Shown once; it must be changed at first login.
    pub one_time_password: String,
}

/// Create a staff account. Permission `staff_manage`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewStaff, responses(
    (status = 201, description = "Created, with a one-time password", body = CreatedStaff),
    (status = 403, description = "`forbidden` or `step_up_required`", body = crate::error::Problem),
    (status = 409, description = "`email_taken`", body = crate::error::Problem),
))]
#[post("/admin/v1/staff")]
pub async fn create_staff(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    body: Json<NewStaff>,
) -> Reply {
    let mut conn = state.conn().await?;
    let (user, password) = state
        .identity
        .create_staff(
            &mut conn,
            &body.email,
            body.role,
            &staff.actor(),
            &client_ip(&req),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Created().json(CreatedStaff {
        user: user.into(),
        one_time_password: password,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// e.g. `user:<id>`
    pub actor: Option<String>,
    /// An action, or a prefix ending in `*` such as `admin.*`
    pub action: Option<String>,
    pub target: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<i64>,
}

/// The audit log, newest first, with filters. Permission `audit_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(AuditQuery), responses(
    (status = 200, description = "A page of entries", body = List<AuditRecord>),
    (status = 403, description = "`forbidden`", body = crate::error::Problem),
))]
#[get("/admin/v1/audit-log")]
pub async fn audit_log(
    state: web::Data<AppState>,
    _staff: Staff,
    q: web::Query<AuditQuery>,
) -> Reply {
    let mut conn = state.conn().await?;
    let n = limit(q.limit);
    let filter = AuditFilter {
        actor: q.actor.clone(),
        action: q.action.clone(),
        target: q.target.clone(),
        from: q.from,
        to: q.to,
        before_id: q.cursor,
        limit: n,
    };
    let items = audit::list(&mut conn, &filter)
        .await
        .map_err(ApiError::from)?;
    let next_cursor = (items.len() as i64 == n)
        .then(|| items.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(HttpResponse::Ok().json(List { items, next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerification {
    /// True when every row's hash and link check out.
    pub intact: bool,
    /// Rows whose hash or link to the previous row does not match.
    pub broken_ids: Vec<i64>,
}

/// Recompute the audit log's hash chain. Permission `audit_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "The result of the check", body = AuditVerification),
))]
#[get("/admin/v1/audit-log/verify")]
pub async fn audit_verify(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let broken = audit::broken_links(&mut conn)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(AuditVerification {
        intact: broken.is_empty(),
        broken_ids: broken,
    }))
}

/// Partner organisations. Permission `partners_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "Every partner", body = List<Partner>),
))]
#[get("/admin/v1/partners")]
pub async fn list_partners(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let items = partners::list_partners(&mut conn)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartner {
    pub name: String,
}

/// Create a partner organisation. Permission `partners_manage`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), request_body = NewPartner, responses(
    (status = 201, description = "Created", body = Partner),
    (status = 409, description = "`partner_exists`", body = crate::error::Problem),
))]
#[post("/admin/v1/partners")]
pub async fn create_partner(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    body: Json<NewPartner>,
) -> Reply {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::field("name", "invalid", "1 to 200 characters").into());
    }
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let partner = conn
        .transaction(async |c| {
            let p = partners::create_partner(c, name)
                .await
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => ApiError::new(
                        actix_web::http::StatusCode::CONFLICT,
                        "partner_exists",
                        "a partner with this name exists",
                    ),
                    e => e.into(),
                })?;
            audit::append(
                c,
                &AuditEntry::new(
                    staff.actor(),
                    "admin.partner.create",
                    format!("partner:{}", p.id),
                )
                .ip(ip)
                .after(serde_json::json!({ "name": p.name })),
            )
            .await?;
            Ok::<_, ApiError>(p)
        })
        .await?;
    Ok(HttpResponse::Created().json(partner))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerKey {
    /// Any of `read`, `trade`, `withdraw`.
    pub scopes: Vec<String>,
    /// IPs or CIDR ranges allowed to use the key; empty for any.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPartnerKey {
    pub key: PartnerKeyView,
    /// The signing secret, shown only now.
    pub secret: String,
}

/// Create an API key for a partner; the secret is shown once. Permission `partners_manage`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Partner id")), request_body = NewPartnerKey, responses(
    (status = 201, description = "Created; keep the secret", body = CreatedPartnerKey),
    (status = 404, description = "`not_found`", body = crate::error::Problem),
    (status = 422, description = "Invalid scopes, allow-list or expiry", body = crate::error::Problem),
))]
#[post("/admin/v1/partners/{id}/keys")]
pub async fn create_partner_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    id: web::Path<Uuid>,
    body: Json<NewPartnerKey>,
) -> Reply {
    let mut errors = Vec::new();
    let scopes: Vec<Scope> = body.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
    if scopes.is_empty() || scopes.len() != body.scopes.len() {
        errors.push(FieldError::new(
            "scopes",
            "invalid",
            "one or more of read, trade, withdraw",
        ));
    }
    for (i, entry) in body.ip_allowlist.iter().enumerate() {
        if entry.parse::<ipnet::IpNet>().is_err() && entry.parse::<std::net::IpAddr>().is_err() {
            errors.push(FieldError::new(
                format!("ip_allowlist[{i}]"),
                "invalid",
                "an IP address or CIDR range",
            ));
        }
    }
    if body.expires_at.is_some_and(|t| t <= Utc::now()) {
        errors.push(FieldError::new(
            "expires_at",
            "in_the_past",
            "must be in the future",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors).into());
    }
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    let created = conn
        .transaction(async |c| {
            partners::partner(c, *id).await?.ok_or_else(|| ApiError::not_found("partner"))?;
            let k = partners::create_key(c, &state.identity.secrets, *id, &scopes, &body.ip_allowlist, body.expires_at, Some(staff.who.user.id)).await?;
            audit::append(
                c,
                &AuditEntry::new(staff.actor(), "admin.partner_key.create", format!("partner_key:{}", k.key.id))
                    .ip(ip)
                    .after(serde_json::json!({ "partner_id": id.to_string(), "scopes": k.key.scopes, "ip_allowlist": k.key.ip_allowlist, "expires_at": k.key.expires_at })),
            )
            .await?;
            Ok::<_, ApiError>(k)
        })
        .await?;
    Ok(HttpResponse::Created().json(CreatedPartnerKey {
        key: created.key,
        secret: created.secret,
    }))
}

/// A partner's keys (never their secrets). Permission `partners_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Partner id")), responses(
    (status = 200, description = "The keys", body = List<PartnerKeyView>),
))]
#[get("/admin/v1/partners/{id}/keys")]
pub async fn list_partner_keys(
    state: web::Data<AppState>,
    _staff: Staff,
    id: web::Path<Uuid>,
) -> Reply {
    let mut conn = state.conn().await?;
    let items = partners::keys_of(&mut conn, *id)
        .await
        .map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(List {
        items,
        next_cursor: None,
    }))
}

/// Revoke a partner key at once. Permission `partners_manage`, step-up.
#[utoipa::path(tag = "admin", security(("admin" = [])), params(("id" = Uuid, Path, description = "Partner id"), ("key_id" = String, Path, description = "Key id")), responses(
    (status = 204, description = "Revoked"),
    (status = 404, description = "No such live key", body = crate::error::Problem),
))]
#[delete("/admin/v1/partners/{id}/keys/{key_id}")]
pub async fn revoke_partner_key(
    state: web::Data<AppState>,
    req: HttpRequest,
    staff: Staff,
    path: web::Path<(Uuid, String)>,
) -> Reply {
    let (partner_id, key_id) = path.into_inner();
    let mut conn = state.conn().await?;
    let ip = client_ip(&req);
    conn.transaction(async |c| {
        if !partners::revoke_key(c, partner_id, &key_id).await? {
            return Err(ApiError::not_found("partner key"));
        }
        audit::append(
            c,
            &AuditEntry::new(
                staff.actor(),
                "admin.partner_key.revoke",
                format!("partner_key:{key_id}"),
            )
            .ip(ip),
        )
        .await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reconciliation {
    /// True when the ledger reconciles (invariants 1-3).
    pub reconciled: bool,
    pub problems: Vec<ReconciliationProblem>,
    pub checked_at: DateTime<Utc>,
}

/// Ledger reconciliation: per asset debits = credits, cached balances =
/// sums of transfers, no negative customer balance. Permission `reports_read`.
#[utoipa::path(tag = "admin", security(("admin" = [])), responses(
    (status = 200, description = "The reconciliation", body = Reconciliation),
))]
#[get("/admin/v1/reports/reconciliation")]
pub async fn reconciliation(state: web::Data<AppState>, _staff: Staff) -> Reply {
    let mut conn = state.conn().await?;
    let problems = ledger::reconcile(&mut conn).await.map_err(ApiError::from)?;
    Ok(HttpResponse::Ok().json(Reconciliation {
        reconciled: problems.is_empty(),
        problems,
        checked_at: Utc::now(),
    }))
}
