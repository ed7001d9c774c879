//! Contract rows, their events, and the queries the API and jobs share.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::model::Terms;
use crate::schema::{contract_events, contracts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractState {
    /// Bought; starts at its `starts_at` (00:00 UTC the next day).
    Pending,
    Active,
    /// Paused by the product's stop rule or an admin.
    Suspended,
    Expired,
    /// Ended early by an admin, with a pro-rata refund.
    Terminated,
}

impl ContractState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContractState::Pending => "pending",
            ContractState::Active => "active",
            ContractState::Suspended => "suspended",
            ContractState::Expired => "expired",
            ContractState::Terminated => "terminated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use ContractState as S;
        [
            S::Pending,
            S::Active,
            S::Suspended,
            S::Expired,
            S::Terminated,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    pub fn is_live(self) -> bool {
        matches!(
            self,
            ContractState::Pending | ContractState::Active | ContractState::Suspended
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = contracts, check_for_backend(diesel::pg::Pg))]
pub struct Contract {
    pub id: Uuid,
    pub user_id: Uuid,
    pub partner_id: Option<Uuid>,
    pub product_id: Uuid,
    pub terms: serde_json::Value,
    pub hashrate: Decimal,
    pub pay_asset: String,
    pub paid_amount: Decimal,
    pub payout_asset: String,
    pub state: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub extended_hours: i32,
    pub zero_net_days: i32,
    pub suspended_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Contract {
    pub fn state(&self) -> ContractState {
        ContractState::parse(&self.state).unwrap_or(ContractState::Pending)
    }

    /// The terms it was sold with.
    pub fn terms(&self) -> Result<Terms, serde_json::Error> {
        serde_json::from_value(self.terms.clone())
    }

    /// Whole days left until `ends_at` (0 once ended).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        if !self.state().is_live() {
            return 0;
        }
        let from = now.max(self.starts_at);
        let secs = (self.ends_at - from).num_seconds().max(0);
        (secs + 86_399) / 86_400
    }
}

pub async fn contract(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Contract>> {
    contracts::table
        .find(id)
        .select(Contract::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user's contract, or None (also for another user's id).
pub async fn contract_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> QueryResult<Option<Contract>> {
    contracts::table
        .find(id)
        .filter(contracts::user_id.eq(user))
        .select(Contract::as_select())
        .first(conn)
        .await
        .optional()
}

/// A user's contracts, newest first; `before` is the cursor (a contract id, v7 so time-ordered).
pub async fn contracts_of(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Contract>> {
    let mut q = contracts::table
        .filter(contracts::user_id.eq(user))
        .order(contracts::id.desc())
        .limit(limit)
        .select(Contract::as_select())
        .into_boxed();
    if let Some(c) = before {
        q = q.filter(contracts::id.lt(c));
    }
    q.load(conn).await
}

/// Contracts of a partner's customers.
pub async fn contracts_of_partner(
    conn: &mut AsyncPgConnection,
    partner: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Contract>> {
    let mut q = contracts::table
        .filter(contracts::partner_id.eq(partner))
        .order(contracts::id.desc())
        .limit(limit)
        .select(Contract::as_select())
        .into_boxed();
    if let Some(c) = before {
        q = q.filter(contracts::id.lt(c));
    }
    q.load(conn).await
}

pub async fn set_payout_asset(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    asset: &str,
) -> QueryResult<()> {
    diesel::update(contracts::table.find(id))
        .set(contracts::payout_asset.eq(asset))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = contract_events, check_for_backend(diesel::pg::Pg))]
pub struct ContractEvent {
    pub id: i64,
    pub contract_id: Uuid,
    /// e.g. `created`, `activated`, `outage_extension`, `suspended`, `resumed`, `payout_asset_changed`, `expired`, `terminated`
    pub kind: String,
    #[serde(skip)]
    pub dedupe_key: Option<String>,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

/// Records an event; with a `dedupe_key` at most once per contract (returns false for a repeat).
pub async fn add_event(
    conn: &mut AsyncPgConnection,
    contract: Uuid,
    kind: &str,
    dedupe_key: Option<&str>,
    detail: serde_json::Value,
) -> QueryResult<bool> {
    let n = diesel::insert_into(contract_events::table)
        .values((
            contract_events::contract_id.eq(contract),
            contract_events::kind.eq(kind),
            contract_events::dedupe_key.eq(dedupe_key),
            contract_events::detail.eq(detail),
        ))
        .on_conflict((contract_events::contract_id, contract_events::dedupe_key))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

pub async fn events(
    conn: &mut AsyncPgConnection,
    contract: Uuid,
) -> QueryResult<Vec<ContractEvent>> {
    contract_events::table
        .filter(contract_events::contract_id.eq(contract))
        .order(contract_events::id)
        .select(ContractEvent::as_select())
        .load(conn)
        .await
}
