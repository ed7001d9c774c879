//! Catalog reads shared by the customer API, quotes and orders.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::model::{Pool, Product};
use crate::schema::{pools, products};

pub async fn product(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}

/// Products on sale with hashrate left, oldest first.
pub async fn products_on_sale(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::state.eq("on_sale"))
        .filter(products::sold.lt(products::inventory))
        .order((products::created_at, products::id))
        .select(Product::as_select())
        .load(conn)
        .await
}

pub async fn pool(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<Pool>> {
    pools::table
        .find(id)
        .select(Pool::as_select())
        .first(conn)
        .await
        .optional()
}
