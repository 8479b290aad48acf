-- PMP (ASAP) dispensing reports written at this terminal: which period each covered, how many
-- dispensings, and a digest of the file as written (the file itself holds PHI and is kept
-- where the operator chose, readable by its owner only).

CREATE TABLE pmp_reports (
    report_id       TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    period_start    TEXT NOT NULL,              -- local dates, inclusive
    period_end      TEXT NOT NULL,
    control_number  TEXT NOT NULL,
    dispensings     INTEGER NOT NULL,
    production      INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    path            TEXT NOT NULL
) WITHOUT ROWID;
