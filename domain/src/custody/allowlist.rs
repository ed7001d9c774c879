//! The withdrawal allow-list: a customer withdraws only to an address they
//! added, confirmed by the link e-mailed to them, and only from 24 hours
//! after confirming it. Addresses are validated for the network (and the
//! platform's network kind) and stored normalised.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::address::{self, AddressError, Chain, NetworkKind};
use crate::identity::crypto;
use crate::money::Network;
use crate::outbox::email::{self, EmailError, EmailTemplate};
use crate::schema::{users, withdrawal_addresses as wa};

/// How long the confirmation link is valid.
pub const CONFIRM_TTL_HOURS: i64 = 1;
/// How long after confirmation an address becomes usable.
pub const COOL_DOWN_HOURS: i64 = 24;
/// Live (pending or confirmed) addresses per customer.
pub const MAX_LIVE: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error("unknown network {0:?}")]
    UnknownNetwork(String),
    #[error("address {0}")]
    Address(#[from] AddressError),
    #[error("the label is at most 64 characters, without control characters")]
    BadLabel,
    #[error("this address is already on your list")]
    Exists,
    #[error("at most {MAX_LIVE} withdrawal addresses")]
    TooMany,
    #[error("the confirmation link is unknown, used or expired")]
    BadToken,
    #[error("no such withdrawal address")]
    NotFound,
    #[error("e-mail: {0}")]
    Email(#[from] EmailError),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl AllowlistError {
    pub fn code(&self) -> &'static str {
        match self {
            AllowlistError::UnknownNetwork(_) => "unknown_network",
            AllowlistError::Address(e) => e.code(),
            AllowlistError::BadLabel => "invalid",
            AllowlistError::Exists => "address_exists",
            AllowlistError::TooMany => "too_many_addresses",
            AllowlistError::BadToken => "invalid_token",
            AllowlistError::NotFound => "not_found",
            AllowlistError::Email(_) | AllowlistError::Database(_) => "internal_error",
        }
    }
}

/// The validator's chain for one of our networks.
pub fn chain_of(network: Network) -> Chain {
    match network {
        Network::Bitcoin => Chain::Bitcoin,
        Network::Dogecoin => Chain::Dogecoin,
        Network::Ethereum => Chain::Ethereum,
        Network::Bsc => Chain::Bsc,
        Network::Tron => Chain::Tron,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, ToSchema)]
#[diesel(table_name = wa, check_for_backend(diesel::pg::Pg))]
pub struct WithdrawalAddress {
    pub id: Uuid,
    #[serde(skip)]
    pub user_id: Uuid,
    pub network: String,
    pub address: String,
    pub label: String,
    /// `pending` (waiting for the e-mailed link), `confirmed` or `removed`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Withdrawals to it are allowed from this time on.
    pub usable_from: Option<DateTime<Utc>>,
}

impl WithdrawalAddress {
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.state == "confirmed" && self.usable_from.is_some_and(|t| t <= now)
    }
}

/// What the customer asks to add.
#[derive(Debug, Clone)]
pub struct NewAddress<'a> {
    pub network: &'a str,
    pub address: &'a str,
    pub label: &'a str,
}

/// Validates and stores a pending address and e-mails its confirmation link
/// (`<app_url>/confirm-withdrawal-address?token=…`), in one transaction.
pub async fn add(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    kind: NetworkKind,
    app_url: &str,
    new: &NewAddress<'_>,
) -> Result<WithdrawalAddress, AllowlistError> {
    let network: Network = new
        .network
        .parse()
        .map_err(|_| AllowlistError::UnknownNetwork(new.network.to_owned()))?;
    let valid = address::validate(chain_of(network), kind, new.address)?;
    if new.label.chars().count() > 64 || new.label.chars().any(char::is_control) {
        return Err(AllowlistError::BadLabel);
    }
    let token = crypto::random_token(32);
    let link = format!(
        "{}/confirm-withdrawal-address?token={token}",
        app_url.trim_end_matches('/')
    );
    let to: String = users::table
        .find(user)
        .select(users::email)
        .first(conn)
        .await?;
    let outgoing = email::render(
        EmailTemplate::WithdrawalAddressConfirm,
        &to,
        &[
            ("network", network.name()),
            ("address", valid.normalized.as_str()),
            ("label", if new.label.is_empty() { "-" } else { new.label }),
            ("link", link.as_str()),
            ("expires_in", "1 hour"),
        ],
    )?;
    conn.transaction(async |c| {
        let live: i64 = wa::table
            .filter(wa::user_id.eq(user))
            .filter(wa::state.ne("removed"))
            .count()
            .get_result(c)
            .await?;
        if live >= MAX_LIVE {
            return Err(AllowlistError::TooMany);
        }
        let row = diesel::insert_into(wa::table)
            .values((
                wa::id.eq(Uuid::now_v7()),
                wa::user_id.eq(user),
                wa::network.eq(network.code()),
                wa::address.eq(&valid.normalized),
                wa::label.eq(new.label),
                wa::state.eq("pending"),
                wa::confirm_token_hash.eq(Some(crypto::token_hash(&token))),
                wa::confirm_expires_at.eq(Utc::now() + Duration::hours(CONFIRM_TTL_HOURS)),
            ))
            .returning(WithdrawalAddress::as_returning())
            .get_result(c)
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ) => AllowlistError::Exists,
                other => other.into(),
            })?;
        email::queue(c, &outgoing).await?;
        Ok(row)
    })
    .await
}

/// Confirms the address of an e-mailed token, once, before it expires; the
/// address is usable [`COOL_DOWN_HOURS`] later.
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    token: &str,
) -> Result<WithdrawalAddress, AllowlistError> {
    let now = Utc::now();
    diesel::update(
        wa::table
            .filter(wa::confirm_token_hash.eq(crypto::token_hash(token)))
            .filter(wa::state.eq("pending"))
            .filter(wa::confirm_expires_at.gt(now)),
    )
    .set((
        wa::state.eq("confirmed"),
        wa::confirm_token_hash.eq(None::<Vec<u8>>),
        wa::confirmed_at.eq(Some(now)),
        wa::usable_from.eq(Some(now + Duration::hours(COOL_DOWN_HOURS))),
    ))
    .returning(WithdrawalAddress::as_returning())
    .get_result(conn)
    .await
    .optional()?
    .ok_or(AllowlistError::BadToken)
}

/// A customer's live addresses, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> Result<Vec<WithdrawalAddress>, AllowlistError> {
    Ok(wa::table
        .filter(wa::user_id.eq(user))
        .filter(wa::state.ne("removed"))
        .order(wa::created_at.desc())
        .select(WithdrawalAddress::as_select())
        .load(conn)
        .await?)
}

/// Removes one of the customer's addresses (another's id is `NotFound`).
pub async fn remove(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> Result<(), AllowlistError> {
    let n = diesel::update(
        wa::table
            .filter(wa::id.eq(id))
            .filter(wa::user_id.eq(user))
            .filter(wa::state.ne("removed")),
    )
    .set((
        wa::state.eq("removed"),
        wa::confirm_token_hash.eq(None::<Vec<u8>>),
        wa::removed_at.eq(Some(Utc::now())),
    ))
    .execute(conn)
    .await?;
    if n == 0 {
        return Err(AllowlistError::NotFound);
    }
    Ok(())
}

/// The confirmed, cooled-down entry for `address` on `network`, if the
/// customer may withdraw to it now (the normalised form is compared).
pub async fn usable(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    kind: NetworkKind,
    network: Network,
    address: &str,
) -> Result<Option<WithdrawalAddress>, AllowlistError> {
    let valid = address::validate(chain_of(network), kind, address)?;
    let now = Utc::now();
    Ok(wa::table
        .filter(wa::user_id.eq(user))
        .filter(wa::network.eq(network.code()))
        .filter(wa::address.eq(&valid.normalized))
        .filter(wa::state.eq("confirmed"))
        .select(WithdrawalAddress::as_select())
        .first(conn)
        .await
        .optional()?
        .filter(|a| a.usable_at(now)))
}
