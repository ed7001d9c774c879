//! Partner organisations and their API keys. A key's secret is shown once at
//! creation; it is kept AES-GCM encrypted (bound to the key id), because
//! HMAC verification needs the secret itself — a one-way hash could not
//! check a signature.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::crypto::{self, SecretBox};
use super::partner_sig::Scope;
use crate::schema::{partner_keys, partners};

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = partners, check_for_backend(diesel::pg::Pg))]
pub struct Partner {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = partner_keys, check_for_backend(diesel::pg::Pg))]
pub struct PartnerKeyRow {
    pub id: String,
    pub partner_id: Uuid,
    pub secret_enc: Vec<u8>,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key as the back office sees it: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerKeyView {
    pub id: String,
    pub partner_id: Uuid,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<PartnerKeyRow> for PartnerKeyView {
    fn from(r: PartnerKeyRow) -> Self {
        PartnerKeyView {
            id: r.id,
            partner_id: r.partner_id,
            scopes: r.scopes,
            ip_allowlist: r.ip_allowlist,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

impl PartnerKeyRow {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }

    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }

    pub fn secret(&self, secrets: &SecretBox) -> Result<Vec<u8>, crypto::CryptoError> {
        secrets.open(&self.secret_enc, key_aad(&self.id).as_bytes())
    }
}

fn key_aad(id: &str) -> String {
    format!("partner_key:{id}")
}

pub async fn create_partner(conn: &mut AsyncPgConnection, name: &str) -> QueryResult<Partner> {
    diesel::insert_into(partners::table)
        .values((
            partners::id.eq(Uuid::now_v7()),
            partners::name.eq(name.trim()),
        ))
        .returning(Partner::as_returning())
        .get_result(conn)
        .await
}

pub async fn partner(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Partner>> {
    partners::table
        .find(id)
        .select(Partner::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn list_partners(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Partner>> {
    partners::table
        .order(partners::created_at)
        .select(Partner::as_select())
        .load(conn)
        .await
}

/// A new key: its id and the secret, which is never shown again.
pub struct CreatedKey {
    pub key: PartnerKeyView,
    pub secret: String,
}

pub async fn create_key(
    conn: &mut AsyncPgConnection,
    secrets: &SecretBox,
    partner_id: Uuid,
    scopes: &[Scope],
    ip_allowlist: &[String],
    expires_at: Option<DateTime<Utc>>,
    created_by: Option<Uuid>,
) -> QueryResult<CreatedKey> {
    let alnum: String = crypto::random_token(24)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    let id = format!(
        "hgk_{}",
        if alnum.len() >= 16 {
            alnum
        } else {
            Uuid::new_v4().simple().to_string()
        }
    );
    let secret = crypto::random_token(32);
    let sealed = secrets.seal(secret.as_bytes(), key_aad(&id).as_bytes());
    let mut scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    scope_names.sort();
    scope_names.dedup();
    let row: PartnerKeyRow = diesel::insert_into(partner_keys::table)
        .values((
            partner_keys::id.eq(&id),
            partner_keys::partner_id.eq(partner_id),
            partner_keys::secret_enc.eq(sealed),
            partner_keys::scopes.eq(scope_names),
            partner_keys::ip_allowlist.eq(ip_allowlist),
            partner_keys::expires_at.eq(expires_at),
            partner_keys::created_by.eq(created_by),
        ))
        .returning(PartnerKeyRow::as_returning())
        .get_result(conn)
        .await?;
    Ok(CreatedKey {
        key: row.into(),
        secret,
    })
}

pub async fn key(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<Option<PartnerKeyRow>> {
    partner_keys::table
        .find(id)
        .select(PartnerKeyRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn keys_of(
    conn: &mut AsyncPgConnection,
    partner_id: Uuid,
) -> QueryResult<Vec<PartnerKeyView>> {
    Ok(partner_keys::table
        .filter(partner_keys::partner_id.eq(partner_id))
        .order(partner_keys::created_at)
        .select(PartnerKeyRow::as_select())
        .load(conn)
        .await?
        .into_iter()
        .map(PartnerKeyView::from)
        .collect())
}

/// Revokes a key of a partner; false when there was no such live key.
pub async fn revoke_key(
    conn: &mut AsyncPgConnection,
    partner_id: Uuid,
    id: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        partner_keys::table
            .find(id)
            .filter(partner_keys::partner_id.eq(partner_id))
            .filter(partner_keys::revoked_at.is_null()),
    )
    .set(partner_keys::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

pub async fn touch_key(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    diesel::update(partner_keys::table.find(id))
        .set(partner_keys::last_used_at.eq(Utc::now()))
        .execute(conn)
        .await?;
    Ok(())
}
