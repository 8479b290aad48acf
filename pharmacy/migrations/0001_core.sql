-- Core schema of the terminal store. Money in integer cents; times in ISO-8601 UTC.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE replicas (
    replica_id  TEXT PRIMARY KEY,
    install_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    reason      TEXT NOT NULL      -- init | restored | copied | install-file-missing
);

CREATE TABLE products (
    ndc             TEXT PRIMARY KEY,          -- hyphenated NDC-10
    ndc11           TEXT NOT NULL UNIQUE,
    ndc_digits      TEXT NOT NULL UNIQUE,      -- NDC-10 without hyphens
    gtin            TEXT NOT NULL UNIQUE,      -- GTIN-14, indicator 0
    name            TEXT NOT NULL,
    generic_name    TEXT,
    ingredients     TEXT NOT NULL DEFAULT '[]', -- JSON list of active ingredients
    strength        TEXT,
    dosage_form     TEXT,
    route           TEXT,
    unit            TEXT NOT NULL DEFAULT 'each',
    pack_size       INTEGER NOT NULL DEFAULT 1,
    price_cents     INTEGER NOT NULL DEFAULT 0, -- per unit sold
    tax_rate_bp     INTEGER NOT NULL DEFAULT 0, -- basis points
    rx_only         INTEGER NOT NULL DEFAULT 0,
    dea_schedule    TEXT CHECK (dea_schedule IN ('CI','CII','CIII','CIV','CV')),
    india_schedule  TEXT CHECK (india_schedule IN ('G','H','H1','X')),
    cmea            INTEGER NOT NULL DEFAULT 0,
    pse_mg_per_unit REAL,                       -- CMEA base content per unit sold
    appl            TEXT,                       -- Orange Book link, e.g. "N020610:001"
    manufacturer    TEXT,
    attrs           TEXT NOT NULL DEFAULT '{}', -- JSON: anything rule packs need
    updated_at      TEXT NOT NULL
);
CREATE INDEX products_name ON products(name COLLATE NOCASE);

CREATE TABLE batches (
    batch_id     TEXT PRIMARY KEY,              -- "<ndc11>:<lot>": the same lot received anywhere is one batch
    ndc          TEXT NOT NULL REFERENCES products(ndc),
    lot          TEXT NOT NULL,
    expiry       TEXT NOT NULL,                 -- YYYY-MM-DD, last day the lot may be sold
    status       TEXT NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active','quarantined','recalled')),
    status_at    TEXT NOT NULL,                 -- LWW timestamp of status
    status_reason TEXT,
    supplier     TEXT,
    unit_cost_cents INTEGER,
    received_at  TEXT NOT NULL,
    UNIQUE (ndc, lot)
);
CREATE INDEX batches_fefo ON batches(ndc, expiry);

-- PN-counter rows (crdt/): value = sum over replicas of (p - n).
CREATE TABLE counters (
    counter_id  TEXT NOT NULL,
    replica_id  TEXT NOT NULL,
    p           INTEGER NOT NULL DEFAULT 0 CHECK (p >= 0),
    n           INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0),
    dirty       INTEGER NOT NULL DEFAULT 1,     -- changed since last sync ack
    PRIMARY KEY (counter_id, replica_id)
) WITHOUT ROWID;

CREATE TABLE patients (
    patient_id  TEXT PRIMARY KEY,
    sealed      BLOB NOT NULL,                  -- PHI, sealed by pharmacy/phi.py
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE decisions (
    decision_id    TEXT PRIMARY KEY,
    sale_id        TEXT,                        -- NULL for an attempt that was refused
    created_at     TEXT NOT NULL,
    replica_id     TEXT NOT NULL,
    user_id        TEXT,
    decision       TEXT NOT NULL CHECK (decision IN ('allow','deny','hold')),
    reasons        TEXT NOT NULL,               -- JSON
    obligations    TEXT NOT NULL,               -- JSON
    bundle_version TEXT,
    request        TEXT NOT NULL                -- JSON, PHI removed
) WITHOUT ROWID;

CREATE TABLE sales (
    sale_id       TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    replica_id    TEXT NOT NULL,
    user_id       TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('otc','rx')),
    jurisdiction  TEXT NOT NULL,
    patient_id    TEXT,
    rx            TEXT,                         -- JSON, PHI removed
    rx_number     TEXT,
    subtotal_cents INTEGER NOT NULL,
    tax_cents     INTEGER NOT NULL,
    total_cents   INTEGER NOT NULL,
    decision_id   TEXT NOT NULL REFERENCES decisions(decision_id)
) WITHOUT ROWID;
-- Partial indexes: written only by sales that have a patient or a prescription.
CREATE INDEX sales_patient ON sales(patient_id, created_at) WHERE patient_id IS NOT NULL;
CREATE INDEX sales_rx ON sales(rx_number) WHERE rx_number IS NOT NULL;

CREATE TABLE sale_lines (
    sale_id     TEXT NOT NULL REFERENCES sales(sale_id),
    line_no     INTEGER NOT NULL,
    ndc         TEXT NOT NULL,
    qty         INTEGER NOT NULL CHECK (qty > 0),
    unit_price_cents INTEGER NOT NULL,
    line_total_cents INTEGER NOT NULL,
    PRIMARY KEY (sale_id, line_no)
) WITHOUT ROWID;

CREATE TABLE allocations (
    sale_id   TEXT NOT NULL,
    line_no   INTEGER NOT NULL,
    batch_id  TEXT NOT NULL REFERENCES batches(batch_id),
    lot       TEXT NOT NULL,
    expiry    TEXT NOT NULL,
    qty       INTEGER NOT NULL CHECK (qty > 0),
    PRIMARY KEY (sale_id, line_no, batch_id)
) WITHOUT ROWID;

-- Stock movements other than sales: receipts, adjustments, stocktake deltas.
CREATE TABLE movements (
    movement_id TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    replica_id  TEXT NOT NULL,
    user_id     TEXT,
    batch_id    TEXT NOT NULL REFERENCES batches(batch_id),
    kind        TEXT NOT NULL CHECK (kind IN ('receive','adjust','stocktake')),
    delta       INTEGER NOT NULL,
    reason      TEXT,
    reference   TEXT
);
CREATE INDEX movements_batch ON movements(batch_id);

-- Controlled-substance register: a hash chain per replica.
CREATE TABLE register (
    replica_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    entry_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ndc         TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    body        TEXT NOT NULL,                  -- canonical JSON of the entry
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (replica_id, seq)
) WITHOUT ROWID;

-- Outbox of append-only events for sync. Never deleted, so seq only grows.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL,                  -- time-ordered UUID; the server dedups on it
    replica_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    body        TEXT NOT NULL
);

-- Append-only and never deleted, so seq only grows without AUTOINCREMENT (which would
-- write sqlite_sequence, one more page, on every sale).
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    created_at  TEXT NOT NULL,
    user_id     TEXT,
    action      TEXT NOT NULL,
    subject     TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
