//! The identity flows: register, verify, log in (with 2FA), refresh, log
//! out, reset and change passwords, enrol 2FA, authenticate a request.
//! Handlers stay thin: they rate-limit, call these, and map the errors.

use std::sync::Arc;

use chrono::{Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{self, AuditEntry};
use super::crypto::{self, SecretBox};
use super::email::Email;
use super::jurisdictions::{Country, Restrictions};
use super::password::{self, PasswordHasher, Verified};
use super::roles::Role;
use super::store::{self, EmailTokenPurpose, RefreshUse, Session, User};
use super::tokens::{
    ACCESS_TTL_SECS, Audience, Claims, KeyRing, MFA_TTL_SECS, Purpose, TokenError,
};
use super::totp;
use crate::outbox::email::{self as mail, EmailTemplate};

pub const VERIFY_EMAIL_TTL_HOURS: i64 = 48;
pub const RESET_TTL_MINUTES: i64 = 30;
pub const STEP_UP_VALID_SECS: i64 = 15 * 60;

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Base URL of the customer app, for links in e-mails.
    pub app_url: String,
    pub restrictions: Restrictions,
    /// Dev only: the demo admin may act without step-up 2FA.
    pub demo_admin_skips_step_up: bool,
}

/// Everything the flows need, built once at start.
pub struct Identity {
    pub hasher: PasswordHasher,
    pub keys: Arc<KeyRing>,
    pub secrets: SecretBox,
    pub config: IdentityConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{field}: {message}")]
    Validation {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("registration from {0} is not allowed")]
    JurisdictionRestricted(String),
    #[error("an account with this e-mail exists")]
    EmailTaken,
    #[error("e-mail or password is wrong")]
    InvalidCredentials,
    #[error("the e-mail address is not verified yet")]
    EmailNotVerified,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the link is invalid, used or expired")]
    InvalidEmailToken,
    #[error("{0}")]
    Token(TokenError),
    #[error("the session has ended; log in again")]
    SessionEnded,
    #[error("the refresh token is invalid or expired")]
    InvalidRefreshToken,
    #[error("the refresh token was already used; every session of its family is revoked")]
    RefreshTokenReused,
    #[error("the two-factor code is wrong or was already used")]
    InvalidSecondFactor,
    #[error("two-factor authentication is not enabled")]
    TotpNotEnabled,
    #[error("two-factor authentication is already enabled")]
    TotpAlreadyEnabled,
    #[error("start the enrolment first")]
    TotpNotEnrolled,
    #[error("this action needs a fresh two-factor confirmation (step-up)")]
    StepUpRequired,
    #[error("not found")]
    NotFound,
    #[error("internal: {0}")]
    Internal(String),
}

impl IdentityError {
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::Validation { .. } => "validation_failed",
            IdentityError::JurisdictionRestricted(_) => "jurisdiction_restricted",
            IdentityError::EmailTaken => "email_taken",
            IdentityError::InvalidCredentials => "invalid_credentials",
            IdentityError::EmailNotVerified => "email_not_verified",
            IdentityError::AccountDisabled => "account_disabled",
            IdentityError::InvalidEmailToken => "invalid_or_expired_token",
            IdentityError::Token(e) => e.code(),
            IdentityError::SessionEnded => "session_ended",
            IdentityError::InvalidRefreshToken => "invalid_refresh_token",
            IdentityError::RefreshTokenReused => "refresh_token_reused",
            IdentityError::InvalidSecondFactor => "invalid_second_factor",
            IdentityError::TotpNotEnabled => "totp_not_enabled",
            IdentityError::TotpAlreadyEnabled => "totp_already_enabled",
            IdentityError::TotpNotEnrolled => "totp_not_enrolled",
            IdentityError::StepUpRequired => "step_up_required",
            IdentityError::NotFound => "not_found",
            IdentityError::Internal(_) => "internal_error",
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        IdentityError::Internal(e.to_string())
    }
}

impl From<diesel::result::Error> for IdentityError {
    fn from(e: diesel::result::Error) -> Self {
        IdentityError::internal(e)
    }
}

impl From<TokenError> for IdentityError {
    fn from(e: TokenError) -> Self {
        IdentityError::Token(e)
    }
}

fn validation(
    field: &'static str,
    code: &'static str,
    message: impl Into<String>,
) -> IdentityError {
    IdentityError::Validation {
        field,
        code,
        message: message.into(),
    }
}

/// What a successful login or refresh answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Tokens(TokenPair),
    /// The password was right and 2FA is on: exchange `mfa_token` and a code.
    MfaRequired {
        mfa_token: String,
        expires_in: i64,
    },
}

/// Where a request comes from, for sessions and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub device: String,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub session: Session,
    pub claims: Claims,
}

impl Authenticated {
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.id)
    }

    /// Whether the second factor was proven recently enough for a sensitive action.
    pub fn has_fresh_step_up(&self) -> bool {
        self.claims
            .mfa_at
            .is_some_and(|t| Utc::now().timestamp() - t <= STEP_UP_VALID_SECS)
    }
}

fn session_ttl(audience: Audience) -> Duration {
    match audience {
        Audience::Customer => Duration::days(30),
        Audience::Admin => Duration::hours(12),
    }
}

fn audience_of(user: &User) -> Audience {
    if user.role.is_some() {
        Audience::Admin
    } else {
        Audience::Customer
    }
}

impl Identity {
    fn link(&self, path: &str, token: &str) -> String {
        format!(
            "{}/{path}?token={token}",
            self.config.app_url.trim_end_matches('/')
        )
    }

    /// `POST /v1/auth/register`: a new unverified customer and the verification e-mail.
    pub async fn register(
        &self,
        conn: &mut AsyncPgConnection,
        email: &str,
        pw: &str,
        country: &str,
        client: &ClientInfo,
    ) -> Result<User, IdentityError> {
        let email =
            Email::parse(email).map_err(|e| validation("email", "invalid", e.to_string()))?;
        let country = Country::parse(country).ok_or_else(|| {
            validation(
                "country",
                "invalid",
                "an ISO 3166-1 alpha-2 code such as DE",
            )
        })?;
        password::check_password(pw, email.as_str())
            .map_err(|e| validation("password", e.code(), e.to_string()))?;
        if self.config.restrictions.is_restricted(country) {
            return Err(IdentityError::JurisdictionRestricted(
                country.as_str().to_owned(),
            ));
        }
        if store::user_by_email(conn, email.as_str()).await?.is_some() {
            return Err(IdentityError::EmailTaken);
        }
        let hash = self
            .hasher
            .hash(pw)
            .await
            .map_err(IdentityError::internal)?;
        let token = crypto::random_token(32);
        let link = self.link("verify-email", &token);
        let outgoing = mail::render(
            EmailTemplate::VerifyEmail,
            email.as_str(),
            &[("link", link.as_str()), ("expires_in", "48 hours")],
        )
        .map_err(IdentityError::internal)?;
        conn.transaction(async |c| {
            let user = store::insert_user(
                c,
                &store::NewUser {
                    id: Uuid::now_v7(),
                    email: email.as_str(),
                    password_hash: &hash,
                    country: country.as_str(),
                    role: None,
                    partner_id: None,
                    email_verified_at: None,
                    must_change_password: false,
                },
            )
            .await
            .map_err(|e| match e {
                // Two registrations of one address at once: the unique index decides.
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => IdentityError::EmailTaken,
                e => e.into(),
            })?;
            store::insert_email_token(
                c,
                &crypto::token_hash(&token),
                user.id,
                EmailTokenPurpose::VerifyEmail,
                Duration::hours(VERIFY_EMAIL_TTL_HOURS),
            )
            .await?;
            mail::queue(c, &outgoing)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(
                    format!("user:{}", user.id),
                    "auth.register",
                    format!("user:{}", user.id),
                )
                .ip(client.ip.clone()),
            )
            .await?;
            Ok(user)
        })
        .await
    }

    /// `POST /v1/auth/verify-email`: spends the single-use token.
    pub async fn verify_email(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
    ) -> Result<Uuid, IdentityError> {
        conn.transaction(async |c| {
            let user = store::consume_email_token(
                c,
                &crypto::token_hash(token),
                EmailTokenPurpose::VerifyEmail,
            )
            .await?
            .ok_or(IdentityError::InvalidEmailToken)?;
            store::mark_email_verified(c, user).await?;
            audit::append(
                c,
                &AuditEntry::new(
                    format!("user:{user}"),
                    "auth.verify_email",
                    format!("user:{user}"),
                ),
            )
            .await?;
            Ok(user)
        })
        .await
    }

    /// The password step of a login. Unknown e-mail, wrong password, wrong
    /// audience and disabled accounts cost the same hash and answer alike.
    pub async fn login(
        &self,
        conn: &mut AsyncPgConnection,
        audience: Audience,
        email: &str,
        pw: &str,
        totp_code: Option<&str>,
        client: &ClientInfo,
    ) -> Result<LoginOutcome, IdentityError> {
        let user = match Email::parse(email) {
            Ok(e) => store::user_by_email(conn, e.as_str()).await?,
            Err(_) => None,
        };
        let verdict = self
            .hasher
            .verify(pw, user.as_ref().map(|u| u.password_hash.as_str()))
            .await
            .map_err(IdentityError::internal)?;
        let (user, needs_rehash) = match (user, verdict) {
            (Some(u), Verified::Ok { needs_rehash }) if audience_of(&u) == audience => {
                (u, needs_rehash)
            }
            (u, _) => {
                // Recorded for unknown addresses too (hashed), so both
                // answers cost the same write.
                let (actor, target) = match &u {
                    Some(u) => (format!("user:{}", u.id), format!("user:{}", u.id)),
                    None => {
                        let digest = crypto::sha256(email.trim().to_ascii_lowercase().as_bytes());
                        (
                            "anonymous".to_owned(),
                            format!("email_sha256:{}", hex::encode(&digest[..16])),
                        )
                    }
                };
                audit::append(
                    conn,
                    &AuditEntry::new(actor, "auth.login_failed", target).ip(client.ip.clone()),
                )
                .await?;
                return Err(IdentityError::InvalidCredentials);
            }
        };
        if !user.is_active() {
            return Err(IdentityError::AccountDisabled);
        }
        if audience == Audience::Customer && user.email_verified_at.is_none() {
            return Err(IdentityError::EmailNotVerified);
        }
        if needs_rehash {
            let hash = self
                .hasher
                .hash(pw)
                .await
                .map_err(IdentityError::internal)?;
            store::set_password(conn, user.id, &hash, false).await?;
        }
        if user.totp_enabled() {
            match totp_code {
                Some(code) => {
                    self.check_second_factor(conn, &user, code).await?;
                    let pair = self
                        .start_session(conn, &user, audience, client, true)
                        .await?;
                    return Ok(LoginOutcome::Tokens(pair));
                }
                None => {
                    let claims = Claims::new(audience, Purpose::Mfa, user.id, None, MFA_TTL_SECS);
                    return Ok(LoginOutcome::MfaRequired {
                        mfa_token: self.keys.sign(&claims)?,
                        expires_in: MFA_TTL_SECS,
                    });
                }
            }
        }
        Ok(LoginOutcome::Tokens(
            self.start_session(conn, &user, audience, client, false)
                .await?,
        ))
    }

    /// The 2FA step of a login: the `mfa_token` from the password step and a
    /// TOTP or recovery code.
    pub async fn login_second_factor(
        &self,
        conn: &mut AsyncPgConnection,
        audience: Audience,
        mfa_token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, IdentityError> {
        let claims = self.keys.verify(mfa_token, audience, Purpose::Mfa)?;
        let user = store::user_by_id(conn, claims.user_id()?)
            .await?
            .ok_or(IdentityError::InvalidCredentials)?;
        if !user.is_active() {
            return Err(IdentityError::AccountDisabled);
        }
        self.check_second_factor(conn, &user, code).await?;
        self.start_session(conn, &user, audience, client, true)
            .await
    }

    /// A TOTP code (each step once, also concurrently) or an unused recovery code.
    pub async fn check_second_factor(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        code: &str,
    ) -> Result<(), IdentityError> {
        let secret = self
            .totp_secret(user)?
            .ok_or(IdentityError::TotpNotEnabled)?;
        let digits = code.trim();
        if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
            let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
            let step = totp::verify_code(&secret, digits, now, user.totp_last_step)
                .map_err(|_| IdentityError::InvalidSecondFactor)?;
            if !store::consume_totp_step(conn, user.id, step).await? {
                return Err(IdentityError::InvalidSecondFactor);
            }
            return Ok(());
        }
        let hash = crypto::token_hash(&totp::normalize_recovery_code(code));
        if store::use_recovery_code(conn, user.id, &hash).await? {
            audit::append(
                conn,
                &AuditEntry::new(
                    format!("user:{}", user.id),
                    "auth.recovery_code_used",
                    format!("user:{}", user.id),
                ),
            )
            .await?;
            return Ok(());
        }
        Err(IdentityError::InvalidSecondFactor)
    }

    fn totp_secret(&self, user: &User) -> Result<Option<Vec<u8>>, IdentityError> {
        match (&user.totp_secret_enc, user.totp_enabled()) {
            (Some(sealed), true) => Ok(Some(
                self.secrets
                    .open(sealed, totp_aad(user.id).as_bytes())
                    .map_err(IdentityError::internal)?,
            )),
            _ => Ok(None),
        }
    }

    async fn start_session(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        audience: Audience,
        client: &ClientInfo,
        mfa: bool,
    ) -> Result<TokenPair, IdentityError> {
        conn.transaction(async |c| {
            let session = store::insert_session(c, user.id, audience.as_str(), &client.device, &client.ip, session_ttl(audience)).await?;
            let pair = self.issue(c, user, &session, audience, mfa.then(|| Utc::now().timestamp())).await?;
            audit::append(
                c,
                &AuditEntry::new(format!("user:{}", user.id), "auth.login", format!("session:{}", session.id))
                    .ip(client.ip.clone())
                    .after(serde_json::json!({ "audience": audience.as_str(), "mfa": mfa, "device": client.device })),
            )
            .await?;
            Ok(pair)
        })
        .await
    }

    async fn issue(
        &self,
        conn: &mut AsyncPgConnection,
        user: &User,
        session: &Session,
        audience: Audience,
        mfa_at: Option<i64>,
    ) -> Result<TokenPair, IdentityError> {
        let refresh = crypto::random_token(32);
        store::insert_refresh_token(
            conn,
            &crypto::token_hash(&refresh),
            session.id,
            session.expires_at,
        )
        .await?;
        let mut claims = Claims::new(
            audience,
            Purpose::Access,
            user.id,
            Some(session.id),
            ACCESS_TTL_SECS,
        );
        claims.mfa_at = mfa_at;
        Ok(TokenPair {
            access_token: self.keys.sign(&claims)?,
            refresh_token: refresh,
            token_type: "Bearer".to_owned(),
            expires_in: ACCESS_TTL_SECS,
        })
    }

    /// `POST …/auth/refresh`: spends the refresh token and issues a new pair.
    /// A token presented twice revokes its whole family (the session).
    pub async fn refresh(
        &self,
        conn: &mut AsyncPgConnection,
        audience: Audience,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, IdentityError> {
        let hash = crypto::token_hash(refresh_token);
        let outcome = conn
            .transaction(async |c| {
                let session_id = match store::use_refresh_token(c, &hash).await? {
                    RefreshUse::Fresh(s) => s,
                    RefreshUse::Reused(s) => return Ok(Err(s)),
                    RefreshUse::Unknown | RefreshUse::Expired => {
                        return Err(IdentityError::InvalidRefreshToken);
                    }
                };
                let session = store::session(c, session_id)
                    .await?
                    .ok_or(IdentityError::InvalidRefreshToken)?;
                if !session.is_live() || session.audience != audience.as_str() {
                    return Err(IdentityError::SessionEnded);
                }
                let user = store::user_by_id(c, session.user_id)
                    .await?
                    .ok_or(IdentityError::SessionEnded)?;
                if !user.is_active() {
                    return Err(IdentityError::AccountDisabled);
                }
                store::touch_session(c, session.id, &client.ip).await?;
                // Step-up does not survive a refresh: it must be proven again.
                Ok(Ok(self.issue(c, &user, &session, audience, None).await?))
            })
            .await?;
        match outcome {
            Ok(pair) => Ok(pair),
            Err(session_id) => {
                // Committed on its own, so the revocation stands although the request fails.
                if let Some(s) = store::session(conn, session_id).await? {
                    store::revoke_session(conn, s.user_id, s.id, "refresh_token_reused").await?;
                    audit::append(
                        conn,
                        &AuditEntry::new(
                            "system",
                            "auth.refresh_token_reused",
                            format!("session:{}", s.id),
                        )
                        .ip(client.ip.clone()),
                    )
                    .await?;
                }
                Err(IdentityError::RefreshTokenReused)
            }
        }
    }

    /// Checks an access token and that its session is still live.
    pub async fn authenticate(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
        audience: Audience,
    ) -> Result<Authenticated, IdentityError> {
        let claims = self.keys.verify(token, audience, Purpose::Access)?;
        let session_id = claims
            .sid
            .ok_or(IdentityError::Token(TokenError::Invalid))?;
        let session = store::session(conn, session_id)
            .await?
            .ok_or(IdentityError::SessionEnded)?;
        if !session.is_live() || session.user_id != claims.user_id()? {
            return Err(IdentityError::SessionEnded);
        }
        let user = store::user_by_id(conn, session.user_id)
            .await?
            .ok_or(IdentityError::SessionEnded)?;
        if !user.is_active() {
            return Err(IdentityError::AccountDisabled);
        }
        Ok(Authenticated {
            user,
            session,
            claims,
        })
    }

    pub async fn logout(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        store::revoke_session(conn, who.user.id, who.session.id, "logout").await?;
        audit::append(
            conn,
            &AuditEntry::new(
                who.actor(),
                "auth.logout",
                format!("session:{}", who.session.id),
            )
            .ip(client.ip.clone()),
        )
        .await?;
        Ok(())
    }

    pub async fn logout_everywhere(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        client: &ClientInfo,
    ) -> Result<usize, IdentityError> {
        let n = store::revoke_all_sessions(conn, who.user.id, "logout_everywhere").await?;
        audit::append(
            conn,
            &AuditEntry::new(who.actor(), "auth.logout_everywhere", who.actor())
                .ip(client.ip.clone()),
        )
        .await?;
        Ok(n)
    }

    /// `POST /v1/auth/password-reset`: answers the same whether or not the
    /// address has an account; sends a 30-minute single-use link when it does.
    pub async fn request_password_reset(
        &self,
        conn: &mut AsyncPgConnection,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let Some(user) = store::user_by_email(conn, email.as_str()).await? else {
            return Ok(());
        };
        // Partner-managed accounts never sign in with a password.
        if !user.is_active() || user.partner_id.is_some() {
            return Ok(());
        }
        let token = crypto::random_token(32);
        let link = self.link("reset-password", &token);
        let minutes = format!("{RESET_TTL_MINUTES} minutes");
        let outgoing = mail::render(
            EmailTemplate::PasswordReset,
            &user.email,
            &[("link", link.as_str()), ("expires_in", minutes.as_str())],
        )
        .map_err(IdentityError::internal)?;
        conn.transaction(async |c| {
            store::void_email_tokens(c, user.id, EmailTokenPurpose::ResetPassword).await?;
            store::insert_email_token(
                c,
                &crypto::token_hash(&token),
                user.id,
                EmailTokenPurpose::ResetPassword,
                Duration::minutes(RESET_TTL_MINUTES),
            )
            .await?;
            mail::queue(c, &outgoing)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(
                    format!("user:{}", user.id),
                    "auth.password_reset_requested",
                    format!("user:{}", user.id),
                )
                .ip(client.ip.clone()),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// `POST /v1/auth/password-reset/confirm`: new password, every session
    /// revoked, a security event that locks withdrawals for 24 h.
    pub async fn confirm_password_reset(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let hash_of_token = crypto::token_hash(token);
        // Check the token before the expensive hash, without spending it.
        let user_id =
            store::valid_email_token_user(conn, &hash_of_token, EmailTokenPurpose::ResetPassword)
                .await?
                .ok_or(IdentityError::InvalidEmailToken)?;
        let user = store::user_by_id(conn, user_id)
            .await?
            .filter(|u| u.partner_id.is_none())
            .ok_or(IdentityError::InvalidEmailToken)?;
        let (new_hash, notice) = self
            .new_password_and_notice(&user, new_password, client)
            .await?;
        conn.transaction(async |c| {
            store::consume_email_token(c, &hash_of_token, EmailTokenPurpose::ResetPassword)
                .await?
                .ok_or(IdentityError::InvalidEmailToken)?;
            record_password_change(c, &user, &new_hash, &notice, "password_reset", client).await
        })
        .await
    }

    /// The new hash and the notice of a password change, prepared outside
    /// the transaction (hashing is slow).
    async fn new_password_and_notice(
        &self,
        user: &User,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(String, mail::OutgoingEmail), IdentityError> {
        password::check_password(new_password, &user.email)
            .map_err(|e| validation("new_password", e.code(), e.to_string()))?;
        let hash = self
            .hasher
            .hash(new_password)
            .await
            .map_err(IdentityError::internal)?;
        let notice = mail::render(
            EmailTemplate::PasswordChanged,
            &user.email,
            &refs(&notice_vars(&client.ip)),
        )
        .map_err(IdentityError::internal)?;
        Ok((hash, notice))
    }

    /// `POST /v1/me/password`: needs the current password; revokes every session.
    pub async fn change_password(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        current: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        match self
            .hasher
            .verify(current, Some(&who.user.password_hash))
            .await
            .map_err(IdentityError::internal)?
        {
            Verified::Ok { .. } => {}
            Verified::Mismatch => {
                return Err(validation(
                    "current_password",
                    "wrong_password",
                    "the current password is wrong",
                ));
            }
        }
        let (hash, notice) = self
            .new_password_and_notice(&who.user, new_password, client)
            .await?;
        conn.transaction(async |c| {
            record_password_change(c, &who.user, &hash, &notice, "password_changed", client).await
        })
        .await
    }

    /// `POST /v1/me/email`: asks to move the account to `new_email`; the
    /// new address must confirm with a single-use link (1 hour), and the
    /// current one is told.
    pub async fn request_email_change(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        new_email: &str,
        pw: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let new_email = Email::parse(new_email)
            .map_err(|e| validation("new_email", "invalid", e.to_string()))?;
        match self
            .hasher
            .verify(pw, Some(&who.user.password_hash))
            .await
            .map_err(IdentityError::internal)?
        {
            Verified::Ok { .. } => {}
            Verified::Mismatch => {
                return Err(validation(
                    "password",
                    "wrong_password",
                    "the password is wrong",
                ));
            }
        }
        if new_email.as_str() == who.user.email {
            return Err(validation(
                "new_email",
                "unchanged",
                "this is already the account's address",
            ));
        }
        if store::user_by_email(conn, new_email.as_str())
            .await?
            .is_some()
        {
            return Err(IdentityError::EmailTaken);
        }
        let token = crypto::random_token(32);
        let link = self.link("confirm-email-change", &token);
        let confirm = mail::render(
            EmailTemplate::EmailChangeConfirm,
            new_email.as_str(),
            &[
                ("link", link.as_str()),
                ("new_email", new_email.as_str()),
                ("expires_in", "1 hour"),
            ],
        )
        .map_err(IdentityError::internal)?;
        let event = format!("A change of your e-mail address to {new_email} was requested");
        let alert = mail::render(
            EmailTemplate::SecurityAlert,
            &who.user.email,
            &refs(&alert_vars(&event, &client.ip)),
        )
        .map_err(IdentityError::internal)?;
        conn.transaction(async |c| {
            store::void_email_tokens(c, who.user.id, EmailTokenPurpose::ChangeEmail).await?;
            store::insert_email_token_with_data(
                c,
                &crypto::token_hash(&token),
                who.user.id,
                EmailTokenPurpose::ChangeEmail,
                Duration::hours(1),
                &serde_json::json!({ "new_email": new_email.as_str() }),
            )
            .await?;
            mail::queue(c, &confirm)
                .await
                .map_err(IdentityError::internal)?;
            mail::queue(c, &alert)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(who.actor(), "auth.email_change_requested", who.actor())
                    .ip(client.ip.clone())
                    .after(serde_json::json!({ "new_email": new_email.as_str() })),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// `POST /v1/auth/confirm-email-change`: moves the account to the new
    /// address; a security event locks withdrawals for 24 h and the old
    /// address is told.
    pub async fn confirm_email_change(
        &self,
        conn: &mut AsyncPgConnection,
        token: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        conn.transaction(async |c| {
            let (user_id, data) = store::consume_email_token_data(
                c,
                &crypto::token_hash(token),
                EmailTokenPurpose::ChangeEmail,
            )
            .await?
            .ok_or(IdentityError::InvalidEmailToken)?;
            let new_email = data
                .get("new_email")
                .and_then(|v| v.as_str())
                .ok_or(IdentityError::InvalidEmailToken)?
                .to_owned();
            let user = store::user_by_id(c, user_id)
                .await?
                .ok_or(IdentityError::InvalidEmailToken)?;
            store::set_email(c, user.id, &new_email)
                .await
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(
                        diesel::result::DatabaseErrorKind::UniqueViolation,
                        _,
                    ) => IdentityError::EmailTaken,
                    e => e.into(),
                })?;
            store::record_security_event(c, user.id, "email_changed", &client.ip, true).await?;
            let event = format!("The e-mail address of your account was changed to {new_email}");
            let alert = mail::render(
                EmailTemplate::SecurityAlert,
                &user.email,
                &refs(&alert_vars(&event, &client.ip)),
            )
            .map_err(IdentityError::internal)?;
            mail::queue(c, &alert)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(
                    format!("user:{}", user.id),
                    "auth.email_changed",
                    format!("user:{}", user.id),
                )
                .ip(client.ip.clone())
                .before(serde_json::json!({ "email": user.email }))
                .after(serde_json::json!({ "email": new_email })),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Starts 2FA enrolment: a new secret (encrypted at rest), not yet active.
    pub async fn totp_enrol(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
    ) -> Result<TotpEnrolment, IdentityError> {
        if who.user.totp_enabled() {
            return Err(IdentityError::TotpAlreadyEnabled);
        }
        let secret = totp::new_secret();
        let uri = totp::otpauth_uri(&secret, &who.user.email, "Hashgrid")
            .map_err(IdentityError::internal)?;
        let sealed = self.secrets.seal(&secret, totp_aad(who.user.id).as_bytes());
        store::set_totp_secret(conn, who.user.id, Some(sealed)).await?;
        Ok(TotpEnrolment {
            otpauth_uri: uri,
            secret: totp::secret_base32(&secret),
        })
    }

    /// Confirms enrolment with a first code; returns ten recovery codes, shown once.
    pub async fn totp_confirm(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, IdentityError> {
        let user = store::user_by_id(conn, who.user.id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        if user.totp_enabled() {
            return Err(IdentityError::TotpAlreadyEnabled);
        }
        let sealed = user
            .totp_secret_enc
            .as_ref()
            .ok_or(IdentityError::TotpNotEnrolled)?;
        let secret = self
            .secrets
            .open(sealed, totp_aad(user.id).as_bytes())
            .map_err(IdentityError::internal)?;
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let step = totp::verify_code(&secret, code.trim(), now, user.totp_last_step)
            .map_err(|_| IdentityError::InvalidSecondFactor)?;
        let codes = totp::new_recovery_codes();
        let hashes: Vec<Vec<u8>> = codes
            .iter()
            .map(|c| crypto::token_hash(&totp::normalize_recovery_code(c)))
            .collect();
        let alert = mail::render(
            EmailTemplate::SecurityAlert,
            &user.email,
            &refs(&alert_vars(
                "Two-factor authentication was turned on",
                &client.ip,
            )),
        )
        .map_err(IdentityError::internal)?;
        conn.transaction(async |c| {
            if !store::consume_totp_step(c, user.id, step).await? {
                return Err(IdentityError::InvalidSecondFactor);
            }
            store::enable_totp(c, user.id).await?;
            store::replace_recovery_codes(c, user.id, &hashes).await?;
            store::record_security_event(c, user.id, "totp_enabled", &client.ip, true).await?;
            mail::queue(c, &alert)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(who.actor(), "auth.totp_enabled", who.actor())
                    .ip(client.ip.clone()),
            )
            .await?;
            Ok(())
        })
        .await?;
        Ok(codes)
    }

    /// Turns 2FA off; needs a valid code.
    pub async fn totp_disable(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(), IdentityError> {
        let user = store::user_by_id(conn, who.user.id)
            .await?
            .ok_or(IdentityError::NotFound)?;
        if !user.totp_enabled() {
            return Err(IdentityError::TotpNotEnabled);
        }
        let alert = mail::render(
            EmailTemplate::SecurityAlert,
            &user.email,
            &refs(&alert_vars(
                "Two-factor authentication was turned off",
                &client.ip,
            )),
        )
        .map_err(IdentityError::internal)?;
        conn.transaction(async |c| {
            self.check_second_factor(c, &user, code).await?;
            store::set_totp_secret(c, user.id, None).await?;
            store::delete_recovery_codes(c, user.id).await?;
            store::record_security_event(c, user.id, "totp_disabled", &client.ip, true).await?;
            mail::queue(c, &alert)
                .await
                .map_err(IdentityError::internal)?;
            audit::append(
                c,
                &AuditEntry::new(who.actor(), "auth.totp_disabled", who.actor())
                    .ip(client.ip.clone()),
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Admin step-up: a fresh second factor gives an access token that may
    /// perform sensitive actions for 15 minutes.
    pub async fn step_up(
        &self,
        conn: &mut AsyncPgConnection,
        who: &Authenticated,
        code: &str,
        client: &ClientInfo,
    ) -> Result<String, IdentityError> {
        self.check_second_factor(conn, &who.user, code).await?;
        let mut claims = Claims::new(
            Audience::Admin,
            Purpose::Access,
            who.user.id,
            Some(who.session.id),
            ACCESS_TTL_SECS,
        );
        claims.mfa_at = Some(Utc::now().timestamp());
        audit::append(
            conn,
            &AuditEntry::new(
                who.actor(),
                "auth.step_up",
                format!("session:{}", who.session.id),
            )
            .ip(client.ip.clone()),
        )
        .await?;
        Ok(self.keys.sign(&claims)?)
    }

    /// Whether a staff member may do a sensitive action now.
    pub fn step_up_satisfied(&self, who: &Authenticated) -> bool {
        who.has_fresh_step_up()
            || (self.config.demo_admin_skips_step_up
                && who.user.email == crate::seed::DEMO_ADMIN_EMAIL)
    }

    /// Creates a staff account with a one-time password it must change.
    pub async fn create_staff(
        &self,
        conn: &mut AsyncPgConnection,
        email: &str,
        role: Role,
        actor: &str,
        ip: &str,
    ) -> Result<(User, String), IdentityError> {
        let email =
            Email::parse(email).map_err(|e| validation("email", "invalid", e.to_string()))?;
        if store::user_by_email(conn, email.as_str()).await?.is_some() {
            return Err(IdentityError::EmailTaken);
        }
        let one_time = crypto::random_token(18);
        let hash = self
            .hasher
            .hash(&one_time)
            .await
            .map_err(IdentityError::internal)?;
        let user = conn
            .transaction(async |c| {
                let user = store::insert_user(
                    c,
                    &store::NewUser {
                        id: Uuid::now_v7(),
                        email: email.as_str(),
                        password_hash: &hash,
                        country: "ZZ",
                        role: Some(role.as_str()),
                        partner_id: None,
                        email_verified_at: Some(Utc::now()),
                        must_change_password: true,
                    },
                )
                .await?;
                audit::append(
                    c,
                    &AuditEntry::new(actor, "admin.staff.create", format!("user:{}", user.id))
                        .ip(ip)
                        .after(serde_json::json!({ "email": user.email, "role": role.as_str() })),
                )
                .await?;
                Ok::<_, IdentityError>(user)
            })
            .await?;
        Ok((user, one_time))
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Scan as a QR code in an authenticator app.
    pub otpauth_uri: String,
    /// The same secret in base32, to type in by hand.
    pub secret: String,
}

/// Stores a new password and its consequences: every session revoked, a
/// security event that locks withdrawals, the notice, the audit entry.
async fn record_password_change(
    c: &mut AsyncPgConnection,
    user: &User,
    hash: &str,
    notice: &mail::OutgoingEmail,
    kind: &str,
    client: &ClientInfo,
) -> Result<(), IdentityError> {
    store::set_password(c, user.id, hash, true).await?;
    store::revoke_all_sessions(c, user.id, kind).await?;
    store::record_security_event(c, user.id, kind, &client.ip, true).await?;
    mail::queue(c, notice)
        .await
        .map_err(IdentityError::internal)?;
    let actor = format!("user:{}", user.id);
    audit::append(
        c,
        &AuditEntry::new(actor.clone(), format!("auth.{kind}"), actor).ip(client.ip.clone()),
    )
    .await?;
    Ok(())
}

fn refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Variables of the "password changed" notice.
fn notice_vars(ip: &str) -> [(&'static str, String); 2] {
    [
        ("changed_at", now_text()),
        (
            "ip",
            if ip.is_empty() {
                "unknown".to_owned()
            } else {
                ip.to_owned()
            },
        ),
    ]
}

/// Variables of a security alert.
fn alert_vars(event: &str, ip: &str) -> [(&'static str, String); 3] {
    [
        ("event", event.to_owned()),
        ("occurred_at", now_text()),
        (
            "ip",
            if ip.is_empty() {
                "unknown".to_owned()
            } else {
                ip.to_owned()
            },
        ),
    ]
}

fn totp_aad(user: Uuid) -> String {
    format!("totp:{user}")
}
