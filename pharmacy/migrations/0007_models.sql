-- On-terminal models: installed bundles, the suggestions they made, purchase-order drafts.

-- Signed model bundles this terminal installed. Exactly one is 'active' once any is installed;
-- the files live in <data_dir>/models/<version>/ and are checked against `manifest` on load.
CREATE TABLE model_bundles (
    installed_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    version       TEXT NOT NULL UNIQUE,
    issued_at     TEXT NOT NULL,
    installed_at  TEXT NOT NULL,
    key_id        TEXT NOT NULL,                 -- head-office key that signed it
    status        TEXT NOT NULL CHECK (status IN ('active','superseded')),
    manifest      TEXT NOT NULL,                 -- the signed manifest, exactly as signed
    signature     TEXT NOT NULL                  -- base64 Ed25519 over `manifest`
);

-- Every suggestion records the model version that made it
-- (a bundle version, 'fallback: moving average' or 'none: no sales history').
CREATE TABLE model_suggestions (
    suggestion_id TEXT PRIMARY KEY,
    run_id        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('reorder','expiry','diversion')),
    subject       TEXT NOT NULL,                 -- NDC, batch id or user id
    action        TEXT NOT NULL,                 -- order | transfer | markdown | return-to-supplier | review
    qty           INTEGER,
    model_version TEXT NOT NULL,
    body          TEXT NOT NULL,                 -- JSON: inputs and arithmetic behind it
    status        TEXT NOT NULL DEFAULT 'open'
                  CHECK (status IN ('open','accepted','dismissed','superseded'))
);
CREATE INDEX model_suggestions_kind ON model_suggestions(kind, status);
CREATE INDEX model_suggestions_run ON model_suggestions(run_id);

-- Purchase orders: drafts built from accepted reorder suggestions. Lines of 'ordered'
-- orders not yet received count as stock on order.
CREATE TABLE purchase_orders (
    po_id       TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft','ordered','received','cancelled')),
    supplier    TEXT,
    created_by  TEXT,
    note        TEXT
);

CREATE TABLE purchase_order_lines (
    po_id         TEXT NOT NULL REFERENCES purchase_orders(po_id),
    line_no       INTEGER NOT NULL,
    ndc           TEXT NOT NULL REFERENCES products(ndc),
    packs         INTEGER NOT NULL CHECK (packs > 0),
    pack_size     INTEGER NOT NULL CHECK (pack_size > 0),
    qty           INTEGER NOT NULL CHECK (qty > 0),        -- units = packs * pack_size
    received_qty  INTEGER NOT NULL DEFAULT 0 CHECK (received_qty >= 0),
    suggestion_id TEXT REFERENCES model_suggestions(suggestion_id),
    model_version TEXT,
    PRIMARY KEY (po_id, line_no)
);
CREATE INDEX purchase_order_lines_ndc ON purchase_order_lines(ndc);
