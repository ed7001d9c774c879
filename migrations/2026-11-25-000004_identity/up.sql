-- Identity and access: customers, back-office staff and partners; sessions
-- and refresh tokens; e-mail tokens; 2FA; security events; the audit log.

CREATE TABLE partners (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id                UUID PRIMARY KEY,
    -- normalised: trimmed, lower-cased; unique
    email             TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND position('@' IN email) > 1),
    email_verified_at TIMESTAMPTZ,
    password_hash     TEXT NOT NULL,
    country           TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    -- NULL for customers; a back-office role for staff
    role              TEXT CHECK (role IN ('support', 'finance', 'compliance', 'operations', 'superadmin')),
    -- a partner's sub-customer
    partner_id        UUID REFERENCES partners (id),
    status            TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    kyc_level         INTEGER NOT NULL DEFAULT 0 CHECK (kyc_level BETWEEN 0 AND 3),
    -- TOTP: the secret is AES-GCM encrypted; last_step makes a code single-use
    totp_secret_enc   BYTEA,
    totp_enabled_at   TIMESTAMPTZ,
    totp_last_step    BIGINT NOT NULL DEFAULT 0,
    -- staff must change the one-time password printed by `api create-admin`
    must_change_password BOOLEAN NOT NULL DEFAULT false,
    password_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (totp_enabled_at IS NULL OR totp_secret_enc IS NOT NULL)
);
CREATE INDEX users_partner ON users (partner_id) WHERE partner_id IS NOT NULL;

-- Single-use tokens sent by e-mail (verification, password reset, e-mail change).
CREATE TABLE email_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id),
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    data       JSONB NOT NULL DEFAULT '{}'::jsonb,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);

-- A session is a refresh-token family: one login on one device.
CREATE TABLE sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES users (id),
    audience       TEXT NOT NULL CHECK (audience IN ('customer', 'admin')),
    device         TEXT NOT NULL DEFAULT '',
    ip             TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

-- Opaque refresh tokens, stored as SHA-256; each is used at most once.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

CREATE TABLE recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id),
    code_hash  BYTEA NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, code_hash)
);

-- Changes to credentials; they lock withdrawals for a while.
CREATE TABLE security_events (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                 UUID NOT NULL REFERENCES users (id),
    kind                    TEXT NOT NULL,
    ip                      TEXT NOT NULL DEFAULT '',
    withdrawals_locked_until TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX security_events_user ON security_events (user_id, created_at DESC);

-- Partner API keys: the secret is needed to verify HMAC signatures, so it is
-- kept AES-GCM encrypted (never in clear) and shown once at creation.
CREATE TABLE partner_keys (
    id           TEXT PRIMARY KEY CHECK (id ~ '^hgk_[A-Za-z0-9]{16,64}$'),
    partner_id   UUID NOT NULL REFERENCES partners (id),
    secret_enc   BYTEA NOT NULL,
    scopes       TEXT[] NOT NULL CHECK (scopes <@ ARRAY['read', 'trade', 'withdraw']::text[] AND cardinality(scopes) > 0),
    ip_allowlist TEXT[] NOT NULL DEFAULT '{}',
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    created_by   UUID REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ
);
CREATE INDEX partner_keys_partner ON partner_keys (partner_id);

-- The audit log: append-only, hash-chained. Each row's hash covers its
-- content and the previous row's hash, so an edit anywhere breaks the chain.
CREATE TABLE audit_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    ip        TEXT NOT NULL DEFAULT '',
    before    JSONB,
    after     JSONB,
    prev_hash BYTEA NOT NULL,
    hash      BYTEA NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_target ON audit_log (target, id);

CREATE FUNCTION audit_row_hash(prev BYTEA, r audit_log) RETURNS BYTEA
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || convert_to(
        concat_ws(E'\x1f', r.id::text, to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
                  r.actor, r.action, r.target, r.ip,
                  coalesce(r.before::text, ''), coalesce(r.after::text, '')), 'UTF8'))
$$;

CREATE FUNCTION audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last BYTEA;
BEGIN
    -- One writer at a time extends the chain, until it commits. The id and
    -- time are taken under the lock, so id order is chain order (an id
    -- drawn before the lock could land behind a row chained after it).
    PERFORM pg_advisory_xact_lock(727274003);
    NEW.id := nextval(pg_get_serial_sequence('audit_log', 'id'));
    NEW.at := clock_timestamp();
    SELECT hash INTO last FROM audit_log ORDER BY id DESC LIMIT 1;
    NEW.prev_hash := coalesce(last, '\x'::bytea);
    NEW.hash := audit_row_hash(NEW.prev_hash, NEW);
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_chain();

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The ids of rows whose hash or link does not match: empty means intact.
CREATE FUNCTION audit_log_broken_links() RETURNS TABLE (id BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT a.id FROM (
        SELECT l.*, lag(l.hash, 1, '\x'::bytea) OVER (ORDER BY l.id) AS expected_prev
        FROM audit_log l
    ) a
    WHERE a.prev_hash <> a.expected_prev
       OR a.hash <> audit_row_hash(a.prev_hash,
            ROW(a.id, a.at, a.actor, a.action, a.target, a.ip, a.before, a.after, a.prev_hash, a.hash)::audit_log)
    ORDER BY a.id
$$;

-- Outgoing e-mail, written in the same transaction as the change that causes it.
CREATE TABLE emails (
    id         UUID PRIMARY KEY,
    to_address TEXT NOT NULL,
    template   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    text_body  TEXT NOT NULL,
    html_body  TEXT NOT NULL,
    sent_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
