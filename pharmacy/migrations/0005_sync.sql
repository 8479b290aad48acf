-- Head-office sync state of a terminal (pharmacy/replication.py, terminal/sync_client.py).

-- Cursors and status: pull_cursor (server_seq applied), acked_seq (last local events.seq the
-- server acknowledged), last_success, last_attempt, last_error, offline_since, server_seq.
CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Replica ids of this database whose counter rows are no longer pushed: the server holds a
-- newer state for them (the database was restored or cloned). Their events still are.
CREATE TABLE sync_retired_replicas (
    replica_id  TEXT PRIMARY KEY,
    retired_at  TEXT NOT NULL,
    reason      TEXT NOT NULL
);

-- Outbox events never to be pushed: written under a replica id that had forked (restored
-- database), and re-recorded under the current replica (replaced_by = the new event id).
CREATE TABLE sync_skipped_events (
    event_id     TEXT PRIMARY KEY,
    reason       TEXT NOT NULL,
    replaced_by  TEXT,
    skipped_at   TEXT NOT NULL
);

-- Register entries of a forked replica chain, moved out of `register` so the chain the
-- server holds for that replica can be stored; each was re-recorded under the new replica.
CREATE TABLE register_forked (
    replica_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    entry_id    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ndc         TEXT NOT NULL,
    qty         INTEGER NOT NULL,
    body        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    forked_at   TEXT NOT NULL,
    rebased_entry_id TEXT NOT NULL
);

-- Events pulled from the server (other replicas and head office), kept as received.
-- applied: 1 applied, 0 waiting (e.g. a batch whose product has not arrived yet).
CREATE TABLE sync_foreign_events (
    event_id    TEXT PRIMARY KEY,
    server_seq  INTEGER NOT NULL,
    replica_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    body        TEXT NOT NULL,
    applied     INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);
CREATE INDEX sync_foreign_waiting ON sync_foreign_events(applied, server_seq);

-- Head-office publications that need a download or another package to install:
-- policy bundles, model bundles, allowances. state: pending | installed | failed.
CREATE TABLE sync_publications (
    event_id    TEXT PRIMARY KEY,
    server_seq  INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    body        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending','installed','failed','superseded')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX sync_publications_state ON sync_publications(state, server_seq);

-- Updates of multi-writer pycrdt documents (crdt/shared_doc.py): the will-call board and
-- store settings. Local updates are pushed; remote ones arrive by pull.
CREATE TABLE doc_updates (
    update_id   TEXT PRIMARY KEY,
    doc         TEXT NOT NULL,
    replica_id  TEXT NOT NULL,
    data        BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    pushed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX doc_updates_doc ON doc_updates(doc);
CREATE INDEX doc_updates_unpushed ON doc_updates(pushed) WHERE pushed = 0;
