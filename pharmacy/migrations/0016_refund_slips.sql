-- Refund slips: the print queue prints a refund as its own document (kind 'refund', naming
-- the refund), with the same durability as a receipt. The table is rebuilt: SQLite cannot
-- change a CHECK.

CREATE TABLE print_jobs_new (
    job_id        TEXT PRIMARY KEY,
    sale_id       TEXT NOT NULL REFERENCES sales(sale_id),
    kind          TEXT NOT NULL CHECK (kind IN ('receipt','rx_label','refund')),
    line_no       INTEGER,                      -- rx_label: the sale line it labels
    refund_id     TEXT REFERENCES refunds(refund_id),  -- refund: the refund it prints
    reprint       INTEGER NOT NULL DEFAULT 0,   -- 1: a copy asked for after the original
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending','printing','done','failed','cancelled')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    printer       TEXT,                         -- URL of the printer last tried
    error_code    TEXT,                         -- stable code of the last failure
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    printed_at    TEXT,
    CHECK ((kind = 'refund') = (refund_id IS NOT NULL))
);
INSERT INTO print_jobs_new(job_id, sale_id, kind, line_no, reprint, status, attempts, printer,
                           error_code, error_message, created_at, updated_at, printed_at)
    SELECT job_id, sale_id, kind, line_no, reprint, status, attempts, printer, error_code,
           error_message, created_at, updated_at, printed_at FROM print_jobs;
DROP TABLE print_jobs;
ALTER TABLE print_jobs_new RENAME TO print_jobs;
CREATE INDEX print_jobs_open ON print_jobs(status, created_at);
CREATE INDEX print_jobs_sale ON print_jobs(sale_id);
