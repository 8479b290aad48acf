-- Head-office sync server schema (PostgreSQL). Every row carries its tenant and store.
CREATE TABLE tenants (
    tenant_id     TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    trusted_keys  TEXT NOT NULL DEFAULT '[]'   -- JSON list of PEM public keys sent at enrollment
);

CREATE TABLE stores (
    tenant_id     TEXT NOT NULL REFERENCES tenants(tenant_id),
    store_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    jurisdiction  TEXT,
    next_seq      BIGINT NOT NULL DEFAULT 0,     -- last server_seq handed out in this store
    PRIMARY KEY (tenant_id, store_id)
);

CREATE TABLE enroll_codes (
    code_hash     TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    used_at       TEXT,
    terminal_id   TEXT
);

CREATE TABLE terminals (
    terminal_id   TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    name          TEXT,
    enrolled_at   TEXT NOT NULL,
    revoked_at    TEXT,
    replica_id    TEXT,
    last_push_at  TEXT,
    last_pull_at  TEXT,
    pull_cursor   BIGINT,
    status        TEXT NOT NULL DEFAULT '{}'    -- JSON reported by the terminal
);
CREATE INDEX terminals_store ON terminals(tenant_id, store_id);

CREATE TABLE events (
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    replica_id    TEXT NOT NULL,
    local_seq     BIGINT,                       -- the terminal's events.seq; NULL for head office
    kind          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    body          TEXT NOT NULL,                -- JSON
    server_seq    BIGINT NOT NULL,
    shared        INTEGER NOT NULL,             -- 1: pulled by the store's terminals
    terminal_id   TEXT,
    blob_sha256   TEXT,
    received_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, store_id, event_id)
);
CREATE UNIQUE INDEX events_replica_seq ON events(tenant_id, store_id, replica_id, local_seq);
CREATE INDEX events_shared ON events(tenant_id, store_id, server_seq) WHERE shared = 1;

CREATE TABLE counters (
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    counter_id    TEXT NOT NULL,
    replica_id    TEXT NOT NULL,
    p             BIGINT NOT NULL CHECK (p >= 0),
    n             BIGINT NOT NULL CHECK (n >= 0),
    server_seq    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, store_id, counter_id, replica_id)
);
CREATE INDEX counters_seq ON counters(tenant_id, store_id, server_seq);

CREATE TABLE idempotency (
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    key           TEXT NOT NULL,
    terminal_id   TEXT NOT NULL,
    response      TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, store_id, key)
);
CREATE INDEX idempotency_age ON idempotency(tenant_id, store_id, created_at);

CREATE TABLE blobs (
    tenant_id     TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size          BIGINT NOT NULL,
    data          BYTEA NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);

-- Publications to a whole tenant, replayed into stores created later.
CREATE TABLE tenant_publications (
    pub_id        TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    blob_sha256   TEXT,
    created_at    TEXT NOT NULL
);

-- Head-office views materialised from product, batch and batch_status events.
CREATE TABLE srv_products (
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    ndc           TEXT NOT NULL,
    name          TEXT NOT NULL,
    dea_schedule  TEXT,
    india_schedule TEXT,
    cmea          INTEGER NOT NULL,
    body          TEXT NOT NULL,
    PRIMARY KEY (tenant_id, store_id, ndc)
);

CREATE TABLE srv_batches (
    tenant_id     TEXT NOT NULL,
    store_id      TEXT NOT NULL,
    batch_id      TEXT NOT NULL,
    ndc           TEXT NOT NULL,
    lot           TEXT NOT NULL,
    expiry        TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_at     TEXT NOT NULL,
    status_reason TEXT,
    unit_cost_cents INTEGER,
    received_at   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, store_id, batch_id)
);
