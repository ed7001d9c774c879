//! The audit log: every security event and admin action, appended to a
//! hash-chained table the database refuses to change (see the identity
//! migration). `broken_links` recomputes the chain.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;

use crate::schema::audit_log;

/// An entry to append.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    /// `user:<id>`, `partner_key:<id>`, `system`, `cli`
    pub actor: String,
    /// e.g. `auth.login`, `admin.partner_key.create`
    pub action: String,
    /// What was acted on, e.g. `user:<id>`
    pub target: String,
    pub ip: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
    ) -> Self {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = ip.into();
        self
    }

    pub fn before(mut self, v: serde_json::Value) -> Self {
        self.before = Some(v);
        self
    }

    pub fn after(mut self, v: serde_json::Value) -> Self {
        self.after = Some(v);
        self
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = audit_log, check_for_backend(diesel::pg::Pg))]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    #[serde(with = "hex_bytes")]
    #[schema(value_type = String)]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    #[schema(value_type = String)]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
}

/// Appends on `conn` (inside the caller's transaction when there is one).
pub async fn append(
    conn: &mut AsyncPgConnection,
    e: &AuditEntry,
) -> Result<i64, diesel::result::Error> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor.eq(&e.actor),
            audit_log::action.eq(&e.action),
            audit_log::target.eq(&e.target),
            audit_log::ip.eq(&e.ip),
            audit_log::before.eq(&e.before),
            audit_log::after.eq(&e.after),
            // Filled in by the chaining trigger.
            audit_log::prev_hash.eq(Vec::<u8>::new()),
            audit_log::hash.eq(Vec::<u8>::new()),
        ))
        .returning(audit_log::id)
        .get_result(conn)
        .await
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Entries with an id below this (the cursor).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    f: &AuditFilter,
) -> Result<Vec<AuditRecord>, diesel::result::Error> {
    let mut q = audit_log::table
        .select(AuditRecord::as_select())
        .order(audit_log::id.desc())
        .limit(f.limit)
        .into_boxed();
    if let Some(a) = &f.actor {
        q = q.filter(audit_log::actor.eq(a.clone()));
    }
    if let Some(a) = &f.action {
        // a trailing '*' filters by prefix: `admin.*` matches every admin action
        q = if let Some(prefix) = a.strip_suffix('*') {
            q.filter(audit_log::action.like(format!(
                "{}%",
                prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
            )))
        } else {
            q.filter(audit_log::action.eq(a.clone()))
        };
    }
    if let Some(t) = &f.target {
        q = q.filter(audit_log::target.eq(t.clone()));
    }
    if let Some(from) = f.from {
        q = q.filter(audit_log::at.ge(from));
    }
    if let Some(to) = f.to {
        q = q.filter(audit_log::at.lt(to));
    }
    if let Some(id) = f.before_id {
        q = q.filter(audit_log::id.lt(id));
    }
    q.load(conn).await
}

#[derive(QueryableByName)]
struct BrokenId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Ids of rows whose hash or link to the previous row does not match.
pub async fn broken_links(conn: &mut AsyncPgConnection) -> Result<Vec<i64>, diesel::result::Error> {
    let rows: Vec<BrokenId> = diesel::sql_query("SELECT id FROM audit_log_broken_links()")
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}
