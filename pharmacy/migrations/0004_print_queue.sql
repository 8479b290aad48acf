-- Durable print queue. A receipt or label job is written only after its sale committed and
-- stays here until a printer has taken all of it, so a printer fault never loses a sale's
-- paper: failed and unfinished jobs are listed for reprint. Local to the terminal (not synced).
CREATE TABLE print_jobs (
    job_id        TEXT PRIMARY KEY,
    sale_id       TEXT NOT NULL REFERENCES sales(sale_id),
    kind          TEXT NOT NULL CHECK (kind IN ('receipt','rx_label')),
    line_no       INTEGER,                      -- rx_label: the sale line it labels
    reprint       INTEGER NOT NULL DEFAULT 0,   -- 1: a copy asked for after the original
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending','printing','done','failed','cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    printer       TEXT,                         -- URL of the printer last tried
    error_code    TEXT,                         -- stable code of the last failure
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    printed_at    TEXT
);
CREATE INDEX print_jobs_open ON print_jobs(status, created_at);
CREATE INDEX print_jobs_sale ON print_jobs(sale_id);
