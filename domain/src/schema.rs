// @generated-style: kept in the shape `diesel print-schema` writes (see diesel.toml);
// the test `schema_matches_database` in domain/tests/schema.rs fails when it drifts.

diesel::table! {
    accounts (id) {
        id -> Int8,
        owner -> Text,
        asset -> Text,
        kind -> Text,
        debits_pending -> Numeric,
        debits_posted -> Numeric,
        credits_pending -> Numeric,
        credits_posted -> Numeric,
        debits_must_not_exceed_credits -> Bool,
        credits_must_not_exceed_debits -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    asset_networks (asset, network) {
        asset -> Text,
        network -> Text,
        decimals -> Int4,
    }
}

diesel::table! {
    assets (code) {
        code -> Text,
        name -> Text,
        ledger_decimals -> Int4,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        kind -> Text,
        payload -> Jsonb,
        unique_key -> Nullable<Text>,
        state -> Text,
        attempts -> Int4,
        max_attempts -> Int4,
        run_at -> Timestamptz,
        locked_by -> Nullable<Uuid>,
        lease_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    networks (code) {
        code -> Text,
        name -> Text,
        native_symbol -> Text,
        confirmations -> Int4,
    }
}

diesel::table! {
    transfers (id) {
        id -> Uuid,
        reference -> Text,
        kind -> Text,
        phase -> Text,
        asset -> Text,
        debit_account_id -> Int8,
        credit_account_id -> Int8,
        amount -> Numeric,
        pending_id -> Nullable<Uuid>,
        corrects_id -> Nullable<Uuid>,
        metadata -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(asset_networks -> assets (asset));
diesel::joinable!(asset_networks -> networks (network));
diesel::joinable!(accounts -> assets (asset));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    asset_networks,
    assets,
    jobs,
    networks,
    transfers,
);
