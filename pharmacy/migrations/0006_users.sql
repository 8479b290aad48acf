-- Users and roles, prescriptions and their fills (the Rx workflow), tenders.
-- Secrets are hashed with scrypt (memory-hard); the parameters travel with each hash.
CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    username        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL
                    CHECK (role IN ('pharmacist','technician','cashier','manager')),
    secret_kind     TEXT NOT NULL CHECK (secret_kind IN ('pin','password')),
    secret_hash     TEXT NOT NULL,              -- scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>
    active          INTEGER NOT NULL DEFAULT 1,
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    locked_until    TEXT,                       -- ISO UTC; NULL when not locked out
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- A keyed hash of (normalised name, birth date) -> patient id, so a returning patient is
-- found without unsealing every patient record.
CREATE TABLE patient_index (
    lookup      TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients(patient_id)
) WITHOUT ROWID;

CREATE TABLE prescriptions (
    rx_id              TEXT PRIMARY KEY,
    rx_number          TEXT NOT NULL UNIQUE,
    patient_id         TEXT NOT NULL REFERENCES patients(patient_id),
    prescriber         TEXT NOT NULL,           -- JSON {name, address, dea, npi}
    ndc                TEXT NOT NULL REFERENCES products(ndc),   -- as prescribed
    quantity           INTEGER NOT NULL CHECK (quantity > 0),
    days_supply        INTEGER NOT NULL CHECK (days_supply > 0),
    refills_authorized INTEGER NOT NULL CHECK (refills_authorized >= 0),
    daw                INTEGER NOT NULL CHECK (daw BETWEEN 0 AND 9),
    written_on         TEXT NOT NULL,           -- YYYY-MM-DD
    directions         TEXT NOT NULL,
    electronic         INTEGER NOT NULL DEFAULT 0,
    flags              TEXT NOT NULL DEFAULT '{}', -- JSON: acute_pain, emergency_oral, pmp_checked
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL
);
CREATE INDEX prescriptions_patient ON prescriptions(patient_id);

-- One fill of a prescription (refill_number 0 is the original) moving through
-- intake -> verified -> filled -> labeled -> will_call -> picked_up (or cancelled).
CREATE TABLE fills (
    fill_id        TEXT PRIMARY KEY,
    rx_id          TEXT NOT NULL REFERENCES prescriptions(rx_id),
    refill_number  INTEGER NOT NULL CHECK (refill_number >= 0),
    state          TEXT NOT NULL CHECK (state IN ('intake','verified','filled','labeled',
                                                  'will_call','picked_up','cancelled')),
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
CREATE INDEX fills_state ON fills(state, updated_at);

CREATE TABLE rx_events (
    seq      INTEGER PRIMARY KEY,
    fill_id  TEXT NOT NULL REFERENCES fills(fill_id),
    at       TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    action   TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX rx_events_fill ON rx_events(fill_id);

-- How a committed sale was paid. Card payments are taken on an external terminal and
-- recorded here with its reference; cash records the amount tendered and the change.
CREATE TABLE tenders (
    tender_id      TEXT PRIMARY KEY,
    sale_id        TEXT NOT NULL REFERENCES sales(sale_id),
    created_at     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    method         TEXT NOT NULL CHECK (method IN ('cash','card')),
    amount_cents   INTEGER NOT NULL CHECK (amount_cents >= 0),
    tendered_cents INTEGER NOT NULL CHECK (tendered_cents >= 0),
    change_cents   INTEGER NOT NULL CHECK (change_cents >= 0),
    reference      TEXT
);
CREATE INDEX tenders_sale ON tenders(sale_id);
