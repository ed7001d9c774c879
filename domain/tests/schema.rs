//! `domain/src/schema.rs` must describe the database the migrations build:
//! every table, column, type and nullability. Regenerate it with
//! `diesel print-schema` (see diesel.toml) when this fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use testkit::TestDb;

/// (table, column) -> (sql type, nullable), as written in schema.rs.
fn declared() -> BTreeMap<(String, String), (String, bool)> {
    let src = include_str!("../src/schema.rs");
    let mut out = BTreeMap::new();
    let mut table = None;
    for line in src.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix(") {") {
            // "accounts (id) {" → table name before the space
            table = rest.split_whitespace().next().map(str::to_owned);
            continue;
        }
        if line == "}" {
            table = None;
            continue;
        }
        let (Some(t), Some((col, ty))) = (&table, line.split_once(" -> ")) else {
            continue;
        };
        let ty = ty.trim_end_matches(',');
        let (ty, nullable) = match ty
            .strip_prefix("Nullable<")
            .and_then(|r| r.strip_suffix('>'))
        {
            Some(inner) => (inner, true),
            None => (ty, false),
        };
        out.insert((t.clone(), col.to_owned()), (ty.to_owned(), nullable));
    }
    out
}

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

fn diesel_type(udt: &str) -> String {
    match udt {
        "int8" => "Int8",
        "int4" => "Int4",
        "int2" => "Int2",
        "text" => "Text",
        "numeric" => "Numeric",
        "bool" => "Bool",
        "timestamptz" => "Timestamptz",
        "uuid" => "Uuid",
        "jsonb" => "Jsonb",
        "bytea" => "Bytea",
        "_text" => "Array<Text>",
        "_uuid" => "Array<Uuid>",
        "date" => "Date",
        other => other,
    }
    .to_owned()
}

#[tokio::test]
async fn schema_matches_database() {
    let db = TestDb::new().await.unwrap();
    let mut conn = db.conn().await.unwrap();
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let actual: BTreeMap<(String, String), (String, bool)> = columns
        .into_iter()
        .map(|c| {
            (
                (c.table_name, c.column_name),
                (diesel_type(&c.udt_name), c.is_nullable == "YES"),
            )
        })
        .collect();
    let declared = declared();
    assert!(!declared.is_empty(), "could not read schema.rs");
    for (key, want) in &actual {
        assert_eq!(
            declared.get(key),
            Some(want),
            "schema.rs is out of date for {key:?}"
        );
    }
    for key in declared.keys() {
        assert!(
            actual.contains_key(key),
            "schema.rs declares {key:?}, which the migrations do not create"
        );
    }
}
