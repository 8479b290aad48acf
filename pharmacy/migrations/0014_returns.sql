-- Return to stock: a filled prescription that is never picked up goes back on the shelf.
--
-- * sale_returns: a committed sale reversed before it was handed over, with the units that
--   went back to each batch. The sale row stays as it was (it was committed and synced); the
--   return is a fact of its own, as a refusal is. A controlled dispensing a PMP report had
--   already sent is voided by the next production report, which is noted on the row.
-- * fills gain the state 'returned' (the table is rebuilt: SQLite cannot change a CHECK).

CREATE TABLE sale_returns (
    sale_id     TEXT PRIMARY KEY REFERENCES sales(sale_id),
    created_at  TEXT NOT NULL,
    replica_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    fill_id     TEXT,                           -- the prescription fill, when there is one
    allocations TEXT NOT NULL,                  -- JSON [[batch_id, lot, expiry, qty], ...]
    pmp_void_report TEXT                        -- the PMP report that voided what one before
                                                -- had sent of it (policy_cache/pmp.py)
);

CREATE TABLE fills_new (
    fill_id        TEXT PRIMARY KEY,
    rx_id          TEXT NOT NULL REFERENCES prescriptions(rx_id),
    refill_number  INTEGER NOT NULL CHECK (refill_number >= 0),
    state          TEXT NOT NULL CHECK (state IN ('intake','verified','filled','labeled',
                                                  'will_call','picked_up','cancelled',
                                                  'returned')),
    dispense_ndc   TEXT REFERENCES products(ndc),  -- chosen at verification
    daw_dispensed  INTEGER,
    substitution   TEXT,                           -- JSON of the substitution choice
    alerts         TEXT NOT NULL DEFAULT '[]',     -- JSON: interaction alerts acknowledged
    verified_by    TEXT,
    verified_at    TEXT,
    filled_by      TEXT,
    filled_at      TEXT,
    sale_id        TEXT,
    lot            TEXT,
    expiry         TEXT,
    serial         TEXT,
    label_count    INTEGER NOT NULL DEFAULT 0,
    labeled_at     TEXT,
    bin            TEXT,
    will_call_at   TEXT,
    picked_up_by   TEXT,
    picked_up_at   TEXT,
    counseling     TEXT CHECK (counseling IN ('accepted','declined')),
    counseled_by   TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    UNIQUE (rx_id, refill_number)
);
INSERT INTO fills_new SELECT * FROM fills;
DROP TABLE fills;
ALTER TABLE fills_new RENAME TO fills;
CREATE INDEX fills_state ON fills(state, updated_at);
