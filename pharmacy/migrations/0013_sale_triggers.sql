-- Less work per sale in triggers.
--
-- * Units sold offline are counted by the sale itself (pharmacy/sales.py, in the sale's
--   transaction, the only writer of sale lines) instead of by a trigger on each line that
--   looked up its sale and parsed the sale's request JSON to find out whether it was offline.
-- * The override audit on allowed sales first checks that the decision has any reasons at
--   all (an allowed sale's usually has none) before parsing them.

DROP TRIGGER offline_usage_count;

DROP TRIGGER policy_override_audit_sale;
CREATE TRIGGER policy_override_audit_sale AFTER INSERT ON sales
WHEN NEW.reasons <> '[]' AND EXISTS (SELECT 1 FROM json_each(NEW.reasons)
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
