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
        withdrawal_fee -> Numeric,
        withdrawal_min -> Numeric,
        auto_approve_max -> Numeric,
        daily_limit -> Numeric,
        withdrawals_enabled -> Bool,
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

diesel::table! {
    audit_log (id) {
        id -> Int8,
        at -> Timestamptz,
        actor -> Text,
        action -> Text,
        target -> Text,
        ip -> Text,
        before -> Nullable<Jsonb>,
        after -> Nullable<Jsonb>,
        prev_hash -> Bytea,
        hash -> Bytea,
    }
}

diesel::table! {
    email_tokens (token_hash) {
        token_hash -> Bytea,
        user_id -> Uuid,
        purpose -> Text,
        data -> Jsonb,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    emails (id) {
        id -> Uuid,
        to_address -> Text,
        template -> Text,
        subject -> Text,
        text_body -> Text,
        html_body -> Text,
        sent_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    partner_keys (id) {
        id -> Text,
        partner_id -> Uuid,
        secret_enc -> Bytea,
        scopes -> Array<Text>,
        ip_allowlist -> Array<Text>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    partners (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Bytea,
        session_id -> Uuid,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    security_events (id) {
        id -> Int8,
        user_id -> Uuid,
        kind -> Text,
        ip -> Text,
        withdrawals_locked_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        audience -> Text,
        device -> Text,
        ip -> Text,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        email_verified_at -> Nullable<Timestamptz>,
        password_hash -> Text,
        country -> Text,
        role -> Nullable<Text>,
        partner_id -> Nullable<Uuid>,
        status -> Text,
        kyc_level -> Int4,
        totp_secret_enc -> Nullable<Bytea>,
        totp_enabled_at -> Nullable<Timestamptz>,
        totp_last_step -> Int8,
        must_change_password -> Bool,
        password_changed_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    algorithms (code) {
        code -> Text,
        name -> Text,
        hashrate_unit -> Text,
    }
}

diesel::table! {
    contract_events (id) {
        id -> Int8,
        contract_id -> Uuid,
        kind -> Text,
        dedupe_key -> Nullable<Text>,
        detail -> Jsonb,
        at -> Timestamptz,
    }
}

diesel::table! {
    contracts (id) {
        id -> Uuid,
        user_id -> Uuid,
        partner_id -> Nullable<Uuid>,
        product_id -> Uuid,
        terms -> Jsonb,
        hashrate -> Numeric,
        pay_asset -> Text,
        paid_amount -> Numeric,
        payout_asset -> Text,
        state -> Text,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        extended_hours -> Int4,
        zero_net_days -> Int4,
        suspended_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    facilities (id) {
        id -> Uuid,
        name -> Text,
        country -> Text,
        region -> Text,
        miner_model -> Text,
        efficiency -> Numeric,
        efficiency_unit -> Text,
        pue -> Numeric,
        total_hashrate -> Numeric,
        sellable_hashrate -> Numeric,
        algorithm -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    facility_outages (id) {
        id -> Uuid,
        facility_id -> Uuid,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        reason -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    energy_certificates (id) {
        id -> Uuid,
        scheme -> Text,
        registry -> Text,
        serial_start -> Text,
        serial_end -> Text,
        serial_prefix -> Text,
        range_first -> Int8,
        range_last -> Int8,
        mwh -> Int8,
        generator -> Text,
        technology -> Text,
        renewable -> Bool,
        country -> Text,
        production_start -> Date,
        production_end -> Date,
        emission_factor_gco2e_per_kwh -> Numeric,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    certificate_coverage_days (facility_id, day) {
        facility_id -> Uuid,
        day -> Date,
        country -> Text,
        kwh_needed -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    certificate_allocations (id) {
        id -> Int8,
        certificate_id -> Uuid,
        facility_id -> Uuid,
        day -> Date,
        hour -> Nullable<Int4>,
        kwh -> Numeric,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (owner, key) {
        owner -> Text,
        key -> Text,
        request_hash -> Bytea,
        response_status -> Int4,
        response_body -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    network_stats (coin) {
        coin -> Text,
        difficulty -> Numeric,
        block_reward -> Numeric,
        fees_per_block -> Numeric,
        source -> Text,
        observed_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        partner_id -> Nullable<Uuid>,
        quote_id -> Uuid,
        contract_id -> Uuid,
        pay_asset -> Text,
        amount -> Numeric,
        transfer_id -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    pools (id) {
        id -> Uuid,
        name -> Text,
        algorithm -> Text,
        coins -> Array<Text>,
        facility_id -> Uuid,
        external_account -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    price_fixings (asset, day) {
        asset -> Text,
        day -> Date,
        usd -> Numeric,
        source -> Text,
        observed_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    prices (id) {
        id -> Int8,
        asset -> Text,
        usd -> Numeric,
        source -> Text,
        observed_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    products (id) {
        id -> Uuid,
        name -> Text,
        algorithm -> Text,
        mined_coins -> Array<Text>,
        pool_id -> Uuid,
        facility_id -> Uuid,
        hashrate_unit -> Text,
        hashrate_min -> Numeric,
        hashrate_max -> Numeric,
        hashrate_step -> Numeric,
        price_usd_per_unit -> Numeric,
        duration_days -> Int4,
        fee_usd_per_unit_day -> Numeric,
        pay_assets -> Array<Text>,
        payout_assets -> Array<Text>,
        spread_bps -> Int4,
        stop_rule -> Text,
        stop_after_days -> Int4,
        inventory -> Numeric,
        sold -> Numeric,
        state -> Text,
        version -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    quotes (id) {
        id -> Uuid,
        user_id -> Uuid,
        partner_id -> Nullable<Uuid>,
        product_id -> Uuid,
        terms -> Jsonb,
        hashrate -> Numeric,
        pay_asset -> Text,
        price_usd -> Numeric,
        usd_rate -> Numeric,
        rate_source -> Text,
        spread_bps -> Int4,
        amount -> Numeric,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    pool_earnings (id) {
        id -> Uuid,
        pool_id -> Uuid,
        day -> Date,
        coin -> Text,
        amount -> Numeric,
        delivered_hashrate -> Numeric,
        difficulty -> Numeric,
        pool_tx_ids -> Array<Text>,
        source -> Text,
        corrects_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    settlement_lines (contract_id, settlement_id) {
        settlement_id -> Uuid,
        contract_id -> Uuid,
        day -> Date,
        coin -> Text,
        hashrate -> Numeric,
        active_seconds -> Int4,
        gross -> Numeric,
        fee -> Numeric,
        net -> Numeric,
        payout_asset -> Text,
        payout_amount -> Numeric,
        rate -> Numeric,
        rate_source -> Text,
        usd_value -> Numeric,
        account_id -> Nullable<Int8>,
    }
}

diesel::table! {
    settlements (id) {
        id -> Uuid,
        earning_id -> Uuid,
        pool_id -> Uuid,
        day -> Date,
        coin -> Text,
        state -> Text,
        inputs -> Jsonb,
        earnings -> Numeric,
        gross_total -> Numeric,
        fees_total -> Numeric,
        net_total -> Numeric,
        house -> Numeric,
        remainder -> Numeric,
        contracts -> Int4,
        delivered_ratio -> Nullable<Numeric>,
        created_at -> Timestamptz,
        corrects_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    withdrawal_addresses (id) {
        id -> Uuid,
        user_id -> Uuid,
        network -> Text,
        address -> Text,
        label -> Text,
        state -> Text,
        confirm_token_hash -> Nullable<Bytea>,
        confirm_expires_at -> Timestamptz,
        created_at -> Timestamptz,
        confirmed_at -> Nullable<Timestamptz>,
        usable_from -> Nullable<Timestamptz>,
        removed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    withdrawals (id) {
        id -> Uuid,
        user_id -> Uuid,
        asset -> Text,
        network -> Text,
        address -> Text,
        amount -> Numeric,
        fee -> Numeric,
        state -> Text,
        needs_two_approvals -> Bool,
        approvals -> Array<Uuid>,
        required_confirmations -> Int4,
        hold_id -> Uuid,
        fee_hold_id -> Nullable<Uuid>,
        confirm_token_hash -> Nullable<Bytea>,
        confirm_expires_at -> Timestamptz,
        hot_wallet -> Nullable<Text>,
        nonce -> Nullable<Int8>,
        signed_tx -> Nullable<Bytea>,
        txid -> Nullable<Text>,
        confirmations -> Int4,
        waiting_reason -> Nullable<Text>,
        reason -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        claimed_until -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    withdrawal_events (id) {
        id -> Int8,
        withdrawal_id -> Uuid,
        from_state -> Nullable<Text>,
        to_state -> Text,
        event -> Text,
        actor -> Text,
        detail -> Jsonb,
        at -> Timestamptz,
    }
}

diesel::table! {
    deposit_addresses (network, key_fingerprint, derivation_index) {
        network -> Text,
        key_fingerprint -> Text,
        derivation_index -> Int4,
        user_id -> Uuid,
        address -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deposits (id) {
        id -> Uuid,
        user_id -> Uuid,
        network -> Text,
        asset -> Text,
        txid -> Text,
        kind -> Text,
        output_index -> Int8,
        address -> Text,
        amount -> Numeric,
        dust -> Numeric,
        block_height -> Nullable<Int8>,
        block_hash -> Nullable<Text>,
        confirmations -> Int4,
        state -> Text,
        credit_round -> Int4,
        transfer_id -> Nullable<Uuid>,
        reversal_id -> Nullable<Uuid>,
        shortfall -> Numeric,
        first_seen_at -> Timestamptz,
        credited_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deposit_scan_cursors (network) {
        network -> Text,
        height -> Nullable<Int8>,
        block_hash -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    deposit_scan_blocks (network, height) {
        network -> Text,
        height -> Int8,
        block_hash -> Text,
    }
}

diesel::table! {
    deposit_address_imports (network, address, watcher) {
        network -> Text,
        address -> Text,
        watcher -> Text,
        imported_at -> Timestamptz,
    }
}

diesel::table! {
    emission_factors (id) {
        id -> Uuid,
        region -> Text,
        basis -> Text,
        gco2e_per_kwh -> Numeric,
        source -> Text,
        year -> Int4,
        valid_from -> Date,
        note -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    facility_energy (facility_id) {
        facility_id -> Uuid,
        grid_region -> Text,
        renewable_share_pct -> Numeric,
        updated_by -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    meter_readings (facility_id, day) {
        facility_id -> Uuid,
        day -> Date,
        hour -> Nullable<Int2>,
        kwh -> Numeric,
        source -> Text,
        imported_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    carbon_facility_days (facility_id, day) {
        facility_id -> Uuid,
        day -> Date,
        metered -> Bool,
        meter_kwh -> Nullable<Numeric>,
        contracts_kwh -> Numeric,
        unsold_kwh -> Numeric,
        covered_kwh -> Numeric,
        location_factor_id -> Nullable<Uuid>,
        market_factor_id -> Nullable<Uuid>,
        contracts -> Int4,
        computed_at -> Timestamptz,
    }
}

diesel::table! {
    carbon_days (contract_id, day) {
        contract_id -> Uuid,
        day -> Date,
        user_id -> Uuid,
        facility_id -> Uuid,
        hashrate -> Numeric,
        active_seconds -> Int4,
        energy_kwh -> Numeric,
        metered -> Bool,
        covered_kwh -> Numeric,
        location_kgco2e -> Numeric,
        market_kgco2e -> Numeric,
        location_factor_id -> Nullable<Uuid>,
        market_factor_id -> Nullable<Uuid>,
        computed_at -> Timestamptz,
    }
}

diesel::table! {
    carbon_credits (id) {
        id -> Uuid,
        registry -> Text,
        serial -> Text,
        number_space -> Text,
        block_start -> Int8,
        block_end -> Int8,
        units -> Int8,
        project -> Text,
        country -> Text,
        vintage_start -> Date,
        vintage_end -> Date,
        program -> Text,
        unit_type -> Text,
        batch -> Text,
        sectoral_scope -> Int4,
        methodology_ref -> Nullable<Text>,
        kind -> Text,
        project_name -> Nullable<Text>,
        description -> Nullable<Text>,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    credit_demands (id) {
        id -> Uuid,
        beneficiary_user_id -> Nullable<Uuid>,
        beneficiary_name -> Text,
        period_from -> Date,
        period_to -> Date,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    credit_retirements (id) {
        id -> Uuid,
        credit_id -> Uuid,
        demand_id -> Uuid,
        unit_start -> Int8,
        unit_end -> Int8,
        units -> Int8,
        beneficiary_user_id -> Nullable<Uuid>,
        beneficiary_name -> Text,
        reason -> Text,
        period_from -> Date,
        period_to -> Date,
        created_by -> Text,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(asset_networks -> assets (asset));
diesel::joinable!(credit_retirements -> carbon_credits (credit_id));
diesel::joinable!(credit_retirements -> credit_demands (demand_id));
diesel::joinable!(asset_networks -> networks (network));
diesel::joinable!(contract_events -> contracts (contract_id));
diesel::joinable!(contracts -> products (product_id));
diesel::joinable!(contracts -> users (user_id));
diesel::joinable!(email_tokens -> users (user_id));
diesel::joinable!(facility_outages -> facilities (facility_id));
diesel::joinable!(orders -> contracts (contract_id));
diesel::joinable!(orders -> quotes (quote_id));
diesel::joinable!(pool_earnings -> pools (pool_id));
diesel::joinable!(pools -> facilities (facility_id));
diesel::joinable!(settlement_lines -> contracts (contract_id));
diesel::joinable!(withdrawal_addresses -> users (user_id));
diesel::joinable!(deposit_addresses -> users (user_id));
diesel::joinable!(deposits -> users (user_id));
diesel::joinable!(deposits -> networks (network));
diesel::joinable!(withdrawals -> users (user_id));
diesel::joinable!(withdrawal_events -> withdrawals (withdrawal_id));
diesel::joinable!(settlement_lines -> settlements (settlement_id));
diesel::joinable!(settlements -> pool_earnings (earning_id));
diesel::joinable!(products -> pools (pool_id));
diesel::joinable!(quotes -> products (product_id));
diesel::joinable!(partner_keys -> partners (partner_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(security_events -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(users -> partners (partner_id));
diesel::joinable!(accounts -> assets (asset));
diesel::joinable!(certificate_allocations -> energy_certificates (certificate_id));
diesel::joinable!(certificate_allocations -> facilities (facility_id));
diesel::joinable!(certificate_coverage_days -> facilities (facility_id));

diesel::allow_tables_to_appear_in_same_query!(
    carbon_credits,
    credit_demands,
    credit_retirements,
    carbon_days,
    carbon_facility_days,
    emission_factors,
    facility_energy,
    meter_readings,
    accounts,
    algorithms,
    asset_networks,
    assets,
    audit_log,
    contract_events,
    contracts,
    deposit_address_imports,
    deposit_addresses,
    deposit_scan_blocks,
    deposit_scan_cursors,
    deposits,
    email_tokens,
    emails,
    energy_certificates,
    certificate_allocations,
    certificate_coverage_days,
    facilities,
    facility_outages,
    idempotency_keys,
    jobs,
    network_stats,
    networks,
    orders,
    partner_keys,
    partners,
    pool_earnings,
    pools,
    price_fixings,
    prices,
    products,
    quotes,
    recovery_codes,
    refresh_tokens,
    security_events,
    sessions,
    settlement_lines,
    settlements,
    transfers,
    users,
    withdrawal_addresses,
    withdrawal_events,
    withdrawals,
);
