-- Refunds: money given back for a paid sale, whole or in part.
--
-- A refund is a fact of its own, as a return to stock is: the sale row stays as committed.
-- Each refund names the lines and units it pays back and, for the units a cashier put back
-- on the shelf (sealed OTC goods only), the batches they went back to.

CREATE TABLE refunds (
    refund_id      TEXT PRIMARY KEY,
    sale_id        TEXT NOT NULL REFERENCES sales(sale_id),
    created_at     TEXT NOT NULL,
    replica_id     TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    method         TEXT NOT NULL CHECK (method IN ('cash','card')),
    reference      TEXT,                         -- card: the card terminal's refund reference
    subtotal_cents INTEGER NOT NULL CHECK (subtotal_cents >= 0),
    tax_cents      INTEGER NOT NULL CHECK (tax_cents >= 0),
    total_cents    INTEGER NOT NULL CHECK (total_cents > 0),
    lines          TEXT NOT NULL                 -- JSON [{line_no, ndc, qty, amount_cents,
                                                 --   tax_cents, restocked: [[batch_id, lot,
                                                 --   expiry, qty], ...]}, ...]
);
CREATE INDEX refunds_sale ON refunds(sale_id);
