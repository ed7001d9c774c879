//! Idempotency keys for writes that move money: the first response under a
//! key is stored in the same transaction as the effect and replayed for the
//! same request; another request under the key is refused. A concurrent
//! request with the same key waits on the key's row until the first
//! commits (then replays) or rolls back (then runs). A request that failed
//! leaves no key behind: it rolled back with everything else.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::idempotency_keys;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First time: run the request, then [`finish`].
    Fresh,
    /// Seen before with the same request: answer this again.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// Seen before with another request.
    Mismatch,
}

/// Checks a key (length 1-255, printable ASCII).
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Claims `key` for `owner` inside the caller's transaction.
pub async fn begin(
    conn: &mut AsyncPgConnection,
    owner: &str,
    key: &str,
    request_hash: &[u8],
) -> QueryResult<Begin> {
    let inserted = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::owner.eq(owner),
            idempotency_keys::key.eq(key),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::response_status.eq(0),
            idempotency_keys::response_body.eq(serde_json::Value::Null),
        ))
        .on_conflict((idempotency_keys::owner, idempotency_keys::key))
        .do_nothing()
        .execute(conn)
        .await?;
    if inserted == 1 {
        return Ok(Begin::Fresh);
    }
    let (hash, status, body): (Vec<u8>, i32, serde_json::Value) = idempotency_keys::table
        .find((owner, key))
        .select((
            idempotency_keys::request_hash,
            idempotency_keys::response_status,
            idempotency_keys::response_body,
        ))
        .first(conn)
        .await?;
    if hash != request_hash {
        return Ok(Begin::Mismatch);
    }
    Ok(Begin::Replay {
        status: u16::try_from(status).unwrap_or(200),
        body,
    })
}

/// Stores the response of a fresh request (same transaction as its effect).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    owner: &str,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> QueryResult<()> {
    diesel::update(idempotency_keys::table.find((owner, key)))
        .set((
            idempotency_keys::response_status.eq(i32::from(status)),
            idempotency_keys::response_body.eq(body),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
