//! HTTP handlers by audience. Each stays thin: parse, authorize, call the
//! domain, map the result.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod buying;
pub mod carbon;
pub mod carbon_admin;
pub mod carbon_certificates;
pub mod carbon_credits;
pub mod catalog_admin;
pub mod contracts_admin;
pub mod deposit_addresses;
pub mod deposits;
pub mod earnings_admin;
pub mod me;
pub mod ops;
pub mod partner;
pub mod prices;
pub mod settlement;
pub mod withdrawal_addresses;
pub mod withdrawals;

use serde::Serialize;
use utoipa::ToSchema;

/// A page of a list: `next_cursor` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A statement's days, `from` to `to` inclusive: in order, at most 366 days
/// apart; otherwise a 422 naming `to`.
pub fn check_day_range(
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> Result<(), crate::error::ApiError> {
    if to < from || (to - from).num_days() > 366 {
        return Err(crate::error::ApiError::field(
            "to",
            "invalid_range",
            "to must be on or after from, at most 366 days later",
        ));
    }
    Ok(())
}
