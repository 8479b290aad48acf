-- An allowed sale keeps its compliance decision on its own row, so a sale writes one B-tree
-- fewer; a refused attempt (deny or hold) keeps its decision in `refusals`. The view
-- `decisions` reads both with the columns of the former table, one row per decision.
-- (migrate() runs this with foreign-key enforcement off and checks the keys before commit.)

DROP TRIGGER offline_usage_count;
DROP TRIGGER policy_override_audit;

CREATE TABLE refusals (
    decision_id    TEXT PRIMARY KEY,
    created_at     TEXT NOT NULL,
    replica_id     TEXT NOT NULL,
    user_id        TEXT,
    decision       TEXT NOT NULL CHECK (decision IN ('allow','deny','hold')),
    reasons        TEXT NOT NULL,               -- JSON
    obligations    TEXT NOT NULL,               -- JSON
    bundle_version TEXT,
    request        TEXT NOT NULL                -- JSON, PHI removed
) WITHOUT ROWID;
INSERT INTO refusals
SELECT decision_id, created_at, replica_id, user_id, decision, reasons, obligations,
       bundle_version, request
FROM decisions WHERE sale_id IS NULL;

CREATE TABLE sales_0008 (
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
    -- the decision that allowed the sale
    decision_id   TEXT NOT NULL,
    decided_at    TEXT NOT NULL,
    reasons       TEXT NOT NULL,                -- JSON
    obligations   TEXT NOT NULL,                -- JSON
    bundle_version TEXT,
    decision_request TEXT NOT NULL              -- JSON: the request's fields not on this row
) WITHOUT ROWID;
INSERT INTO sales_0008
SELECT s.sale_id, s.created_at, s.replica_id, s.user_id, s.kind, s.jurisdiction, s.patient_id,
       s.rx, s.rx_number, s.subtotal_cents, s.tax_cents, s.total_cents, s.decision_id,
       COALESCE(d.created_at, s.created_at), COALESCE(d.reasons, '[]'),
       COALESCE(d.obligations, '[]'), d.bundle_version, COALESCE(d.request, '{}')
FROM sales s LEFT JOIN decisions d ON d.decision_id = s.decision_id;

DROP TABLE sales;
DROP TABLE decisions;
ALTER TABLE sales_0008 RENAME TO sales;
-- Partial indexes: written only by sales that have a patient or a prescription.
CREATE INDEX sales_patient ON sales(patient_id, created_at) WHERE patient_id IS NOT NULL;
CREATE INDEX sales_rx ON sales(rx_number) WHERE rx_number IS NOT NULL;

CREATE VIEW decisions(decision_id, sale_id, created_at, replica_id, user_id, decision, reasons,
                      obligations, bundle_version, request) AS
SELECT decision_id, sale_id, decided_at, replica_id, user_id, 'allow', reasons, obligations,
       bundle_version, decision_request FROM sales
UNION ALL
SELECT decision_id, NULL, created_at, replica_id, user_id, decision, reasons, obligations,
       bundle_version, request FROM refusals;

-- As in 0003: units sold while offline, counted when a sale allowed offline commits.
CREATE TRIGGER offline_usage_count AFTER INSERT ON sale_lines
WHEN (SELECT json_extract(decision_request, '$.offline') FROM sales
      WHERE sale_id = NEW.sale_id) = 1
BEGIN
    INSERT INTO offline_usage(day, ndc, units)
    VALUES ((SELECT substr(created_at, 1, 10) FROM sales WHERE sale_id = NEW.sale_id),
            NEW.ndc, NEW.qty)
    ON CONFLICT(day, ndc) DO UPDATE SET units = units + excluded.units;
END;

-- As in 0003: every decision in which a pharmacist overrode an overridable rule gets an
-- audit entry, whether it allowed the sale or refused it.
CREATE TRIGGER policy_override_audit_sale AFTER INSERT ON sales
WHEN EXISTS (SELECT 1 FROM json_each(NEW.reasons)
             WHERE json_extract(value, '$.overridden_by') IS NOT NULL)
BEGIN
    INSERT INTO audit_log(created_at, user_id, action, subject, detail)
    SELECT NEW.decided_at, json_extract(value, '$.overridden_by'), 'policy.override',
           NEW.decision_id,
           json_object('code', json_extract(value, '$.code'),
                       'rule_id', json_extract(value, '$.rule_id'),
                       'message', json_extract(value, '$.message'),
                       'sale_id', NEW.sale_id, 'requested_by', NEW.user_id,
                       'bundle_version', NEW.bundle_version)
    FROM json_each(NEW.reasons) WHERE json_extract(value, '$.overridden_by') IS NOT NULL;
END;

CREATE TRIGGER policy_override_audit_refusal AFTER INSERT ON refusals
WHEN EXISTS (SELECT 1 FROM json_each(NEW.reasons)
             WHERE json_extract(value, '$.overridden_by') IS NOT NULL)
BEGIN
    INSERT INTO audit_log(created_at, user_id, action, subject, detail)
    SELECT NEW.created_at, json_extract(value, '$.overridden_by'), 'policy.override',
           NEW.decision_id,
           json_object('code', json_extract(value, '$.code'),
                       'rule_id', json_extract(value, '$.rule_id'),
                       'message', json_extract(value, '$.message'),
                       'sale_id', NULL, 'requested_by', NEW.user_id,
                       'bundle_version', NEW.bundle_version)
    FROM json_each(NEW.reasons) WHERE json_extract(value, '$.overridden_by') IS NOT NULL;
END;
