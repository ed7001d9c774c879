-- The job queue: jobs are enqueued in the caller's transaction, claimed with
-- FOR UPDATE SKIP LOCKED, and held by a lease that the running worker renews.
CREATE TABLE jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind <> ''),
    payload      JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- A schedule or a caller that must enqueue at most once sets a unique key.
    unique_key   TEXT UNIQUE,
    state        TEXT NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    run_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    locked_by    UUID,
    lease_until  TIMESTAMPTZ,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ,
    CHECK ((state = 'running') = (locked_by IS NOT NULL AND lease_until IS NOT NULL))
);

-- The claim query scans only what can run.
CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
