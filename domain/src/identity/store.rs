//! Storage of users, sessions, refresh tokens, e-mail tokens, recovery codes
//! and security events. Every single-use thing is consumed by one
//! conditional UPDATE, so it is used once also under concurrency.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use super::roles::Role;
use crate::schema::{
    email_tokens, recovery_codes, refresh_tokens, security_events, sessions, users,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub password_hash: String,
    pub country: String,
    pub role: Option<String>,
    pub partner_id: Option<Uuid>,
    pub status: String,
    pub kyc_level: i32,
    pub totp_secret_enc: Option<Vec<u8>>,
    pub totp_enabled_at: Option<DateTime<Utc>>,
    pub totp_last_step: i64,
    pub must_change_password: bool,
    pub password_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl User {
    pub fn role(&self) -> Option<Role> {
        self.role.as_deref().and_then(Role::parse)
    }

    pub fn is_active(&self) -> bool {
        self.status == "active"
    }

    pub fn totp_enabled(&self) -> bool {
        self.totp_enabled_at.is_some()
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub country: &'a str,
    pub role: Option<&'a str>,
    pub partner_id: Option<Uuid>,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub must_change_password: bool,
}

pub async fn insert_user(conn: &mut AsyncPgConnection, u: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(u)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn user_by_id(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn user_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn set_password(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    hash: &str,
    changed: bool,
) -> QueryResult<()> {
    let q = diesel::update(users::table.find(id));
    if changed {
        q.set((
            users::password_hash.eq(hash),
            users::password_changed_at.eq(Utc::now()),
            users::must_change_password.eq(false),
        ))
        .execute(conn)
        .await?;
    } else {
        // A rehash with stronger parameters is not a password change.
        q.set(users::password_hash.eq(hash)).execute(conn).await?;
    }
    Ok(())
}

pub async fn mark_email_verified(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::email_verified_at.is_null()),
    )
    .set(users::email_verified_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_totp_secret(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sealed: Option<Vec<u8>>,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::totp_secret_enc.eq(sealed),
            users::totp_enabled_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn enable_totp(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set(users::totp_enabled_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records that a TOTP step was used; false when it (or a later one) was
/// used already — the code is then refused, also across sessions.
pub async fn consume_totp_step(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    step: i64,
) -> QueryResult<bool> {
    let n = diesel::update(users::table.find(id).filter(users::totp_last_step.lt(step)))
        .set(users::totp_last_step.eq(step))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

// ---- e-mail tokens ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTokenPurpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl EmailTokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            EmailTokenPurpose::VerifyEmail => "verify_email",
            EmailTokenPurpose::ResetPassword => "reset_password",
            EmailTokenPurpose::ChangeEmail => "change_email",
        }
    }
}

pub async fn insert_email_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    user: Uuid,
    purpose: EmailTokenPurpose,
    ttl: Duration,
) -> QueryResult<()> {
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(token_hash),
            email_tokens::user_id.eq(user),
            email_tokens::purpose.eq(purpose.as_str()),
            email_tokens::expires_at.eq(Utc::now() + ttl),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Stores a token that carries data (the new address of an e-mail change).
pub async fn insert_email_token_with_data(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    user: Uuid,
    purpose: EmailTokenPurpose,
    ttl: Duration,
    data: &serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(email_tokens::table)
        .values((
            email_tokens::token_hash.eq(token_hash),
            email_tokens::user_id.eq(user),
            email_tokens::purpose.eq(purpose.as_str()),
            email_tokens::expires_at.eq(Utc::now() + ttl),
            email_tokens::data.eq(data),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Like [`consume_email_token`], also answering the token's data.
pub async fn consume_email_token_data(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    purpose: EmailTokenPurpose,
) -> QueryResult<Option<(Uuid, serde_json::Value)>> {
    diesel::update(
        email_tokens::table
            .find(token_hash)
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(Utc::now())),
    )
    .set(email_tokens::used_at.eq(Utc::now()))
    .returning((email_tokens::user_id, email_tokens::data))
    .get_result(conn)
    .await
    .optional()
}

pub async fn set_email(conn: &mut AsyncPgConnection, id: Uuid, email: &str) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(email),
            users::email_verified_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Uses a token once; returns its user when it was valid, unused and unexpired.
pub async fn consume_email_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    purpose: EmailTokenPurpose,
) -> QueryResult<Option<Uuid>> {
    diesel::update(
        email_tokens::table
            .find(token_hash)
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null())
            .filter(email_tokens::expires_at.gt(Utc::now())),
    )
    .set(email_tokens::used_at.eq(Utc::now()))
    .returning(email_tokens::user_id)
    .get_result(conn)
    .await
    .optional()
}

/// The user of a valid, unused, unexpired token, without spending it.
pub async fn valid_email_token_user(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    purpose: EmailTokenPurpose,
) -> QueryResult<Option<Uuid>> {
    email_tokens::table
        .find(token_hash)
        .filter(email_tokens::purpose.eq(purpose.as_str()))
        .filter(email_tokens::used_at.is_null())
        .filter(email_tokens::expires_at.gt(Utc::now()))
        .select(email_tokens::user_id)
        .first(conn)
        .await
        .optional()
}

/// Voids the user's other unused tokens of a purpose (a new reset link
/// replaces the old ones).
pub async fn void_email_tokens(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    purpose: EmailTokenPurpose,
) -> QueryResult<()> {
    diesel::update(
        email_tokens::table
            .filter(email_tokens::user_id.eq(user))
            .filter(email_tokens::purpose.eq(purpose.as_str()))
            .filter(email_tokens::used_at.is_null()),
    )
    .set(email_tokens::used_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(())
}

// ---- sessions and refresh tokens ----

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub audience: String,
    pub device: String,
    pub ip: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

impl Session {
    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none() && self.expires_at > Utc::now()
    }
}

pub async fn insert_session(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    audience: &str,
    device: &str,
    ip: &str,
    ttl: Duration,
) -> QueryResult<Session> {
    let device: String = device.chars().take(200).collect();
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(Uuid::now_v7()),
            sessions::user_id.eq(user),
            sessions::audience.eq(audience),
            sessions::device.eq(device),
            sessions::ip.eq(ip),
            sessions::expires_at.eq(Utc::now() + ttl),
        ))
        .returning(Session::as_returning())
        .get_result(conn)
        .await
}

pub async fn session(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Session>> {
    sessions::table
        .find(id)
        .select(Session::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn live_sessions(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(Utc::now()))
        .order(sessions::last_used_at.desc())
        .select(Session::as_select())
        .load(conn)
        .await
}

pub async fn touch_session(conn: &mut AsyncPgConnection, id: Uuid, ip: &str) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set((sessions::last_used_at.eq(Utc::now()), sessions::ip.eq(ip)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes one session; false when it was not a live session of `user`.
pub async fn revoke_session(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
    reason: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Revokes every live session of a user; returns how many.
pub async fn revoke_all_sessions(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(Utc::now()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)
    .await
}

pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    session: Uuid,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::session_id.eq(session),
            refresh_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: the token is now spent; rotate within the same transaction.
    Fresh(Uuid),
    /// The token was spent before: a replay; its family must be revoked.
    Reused(Uuid),
    Unknown,
    Expired,
}

/// Spends a refresh token with one conditional UPDATE: of two concurrent
/// uses, exactly one sees `Fresh`.
pub async fn use_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<RefreshUse> {
    let fresh: Option<Uuid> = diesel::update(
        refresh_tokens::table
            .find(token_hash)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::expires_at.gt(Utc::now())),
    )
    .set(refresh_tokens::used_at.eq(Utc::now()))
    .returning(refresh_tokens::session_id)
    .get_result(conn)
    .await
    .optional()?;
    if let Some(s) = fresh {
        return Ok(RefreshUse::Fresh(s));
    }
    let row: Option<(Uuid, Option<DateTime<Utc>>)> = refresh_tokens::table
        .find(token_hash)
        .select((refresh_tokens::session_id, refresh_tokens::used_at))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        None => RefreshUse::Unknown,
        Some((s, Some(_))) => RefreshUse::Reused(s),
        Some((_, None)) => RefreshUse::Expired,
    })
}

// ---- recovery codes ----

pub async fn replace_recovery_codes(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    hashes: &[Vec<u8>],
) -> QueryResult<()> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user)))
        .execute(conn)
        .await?;
    let rows: Vec<_> = hashes
        .iter()
        .map(|h| {
            (
                recovery_codes::user_id.eq(user),
                recovery_codes::code_hash.eq(h),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn use_recovery_code(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    hash: &[u8],
) -> QueryResult<bool> {
    let n = diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user))
            .filter(recovery_codes::code_hash.eq(hash))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

pub async fn delete_recovery_codes(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<()> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user)))
        .execute(conn)
        .await?;
    Ok(())
}

// ---- security events ----

/// How long a credential change locks withdrawals.
pub const WITHDRAWAL_LOCK_HOURS: i64 = 24;

pub async fn record_security_event(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    kind: &str,
    ip: &str,
    locks_withdrawals: bool,
) -> QueryResult<()> {
    let until = locks_withdrawals.then(|| Utc::now() + Duration::hours(WITHDRAWAL_LOCK_HOURS));
    diesel::insert_into(security_events::table)
        .values((
            security_events::user_id.eq(user),
            security_events::kind.eq(kind),
            security_events::ip.eq(ip),
            security_events::withdrawals_locked_until.eq(until),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Until when withdrawals are locked by a recent credential change (the custody issue reads this).
pub async fn withdrawals_locked_until(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<DateTime<Utc>>> {
    let until: Option<Option<DateTime<Utc>>> = security_events::table
        .filter(security_events::user_id.eq(user))
        .select(diesel::dsl::max(security_events::withdrawals_locked_until))
        .first(conn)
        .await
        .optional()?;
    Ok(until.flatten().filter(|t| *t > Utc::now()))
}

// ---- back office ----

/// Users newest first; `query` matches the e-mail by substring; `before` is the cursor.
pub async fn list_users(
    conn: &mut AsyncPgConnection,
    query: Option<&str>,
    staff: Option<bool>,
    partner: Option<Uuid>,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut q = users::table
        .select(User::as_select())
        .order(users::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(text) = query {
        let escaped = text
            .to_ascii_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.filter(users::email.like(format!("%{escaped}%")));
    }
    match staff {
        Some(true) => q = q.filter(users::role.is_not_null()),
        Some(false) => q = q.filter(users::role.is_null()),
        None => {}
    }
    if let Some(p) = partner {
        q = q.filter(users::partner_id.eq(p));
    }
    if let Some(id) = before {
        q = q.filter(users::id.lt(id));
    }
    q.load(conn).await
}

/// Enables or disables an account; returns the user before the change.
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
) -> QueryResult<Option<User>> {
    let before = user_by_id(conn, id).await?;
    if before.is_some() {
        diesel::update(users::table.find(id))
            .set(users::status.eq(status))
            .execute(conn)
            .await?;
    }
    Ok(before)
}
