-- Policy bundles, offline allowance counters, override audit (policy_cache/).

-- Installed bundles: the active one and the last good ones before it. Bytes are the signed
-- file exactly as received; they are re-verified whenever they are loaded.
CREATE TABLE policy_bundles (
    sha256         TEXT PRIMARY KEY,
    bundle_version TEXT NOT NULL,
    issued_at      TEXT NOT NULL,
    offline_until  TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    installed_at   TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'previous')),
    body           BLOB NOT NULL
);
CREATE UNIQUE INDEX policy_bundles_one_active ON policy_bundles(status) WHERE status = 'active';

-- Units of each product sold while offline, per UTC day: the local counter behind the
-- per-schedule offline allowances. Maintained by the trigger below when a sale commits whose
-- decision was taken offline, so an attempt that was refused consumes nothing.
CREATE TABLE offline_usage (
    day    TEXT NOT NULL,
    ndc    TEXT NOT NULL,
    units  INTEGER NOT NULL CHECK (units >= 0),
    PRIMARY KEY (day, ndc)
) WITHOUT ROWID;

CREATE TRIGGER offline_usage_count AFTER INSERT ON sale_lines
WHEN (SELECT json_extract(d.request, '$.offline') FROM sales s
      JOIN decisions d ON d.decision_id = s.decision_id WHERE s.sale_id = NEW.sale_id) = 1
BEGIN
    INSERT INTO offline_usage(day, ndc, units)
    VALUES ((SELECT substr(created_at, 1, 10) FROM sales WHERE sale_id = NEW.sale_id),
            NEW.ndc, NEW.qty)
    ON CONFLICT(day, ndc) DO UPDATE SET units = units + excluded.units;
END;

-- Every decision in which a pharmacist overrode an overridable rule gets an audit entry.
CREATE TRIGGER policy_override_audit AFTER INSERT ON decisions
WHEN EXISTS (SELECT 1 FROM json_each(NEW.reasons)
             WHERE json_extract(value, '$.overridden_by') IS NOT NULL)
BEGIN
    INSERT INTO audit_log(created_at, user_id, action, subject, detail)
    SELECT NEW.created_at, json_extract(value, '$.overridden_by'), 'policy.override',
           NEW.decision_id,
           json_object('code', json_extract(value, '$.code'),
                       'rule_id', json_extract(value, '$.rule_id'),
                       'message', json_extract(value, '$.message'),
                       'sale_id', NEW.sale_id, 'requested_by', NEW.user_id,
                       'bundle_version', NEW.bundle_version)
    FROM json_each(NEW.reasons) WHERE json_extract(value, '$.overridden_by') IS NOT NULL;
END;

-- Follow-ups recorded against prescriptions (e.g. the written prescription that must follow
-- an emergency oral C-II within 7 days, 21 CFR 1306.11(d)(4)).
CREATE TABLE policy_followups (
    followup_id TEXT PRIMARY KEY,
    rx_number   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    user_id     TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX policy_followups_rx ON policy_followups(rx_number, kind);

