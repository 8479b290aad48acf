-- A sale writes fewer B-trees. Each table or index a sale appends to costs its commit at
-- least one more WAL frame (a page write, checksummed, and part of the fsync), so:
--
-- * A line's stock allocations live on the line, as a JSON array of
--   [batch_id, lot, expiry, qty] in FEFO order; `allocations` becomes a view with the
--   columns the table had, so readers are unchanged.
-- * The decision's engine is kept on the sale row, so that the sale's outbox event can be
--   rebuilt from the sale's own rows (pharmacy/outbox.py, references) instead of storing
--   the same sale twice.

ALTER TABLE sales ADD COLUMN engine TEXT;

ALTER TABLE sale_lines ADD COLUMN allocations TEXT NOT NULL DEFAULT '[]';

UPDATE sale_lines SET allocations = (
    SELECT json_group_array(json_array(batch_id, lot, expiry, qty))
    FROM (SELECT batch_id, lot, expiry, qty FROM allocations a
          WHERE a.sale_id = sale_lines.sale_id AND a.line_no = sale_lines.line_no
          ORDER BY expiry, lot))
WHERE EXISTS (SELECT 1 FROM allocations a
              WHERE a.sale_id = sale_lines.sale_id AND a.line_no = sale_lines.line_no);

DROP TABLE allocations;

CREATE VIEW allocations(sale_id, line_no, batch_id, lot, expiry, qty) AS
SELECT l.sale_id, l.line_no, json_extract(a.value, '$[0]'), json_extract(a.value, '$[1]'),
       json_extract(a.value, '$[2]'), json_extract(a.value, '$[3]')
FROM sale_lines l, json_each(l.allocations) a;

-- FEFO order is expiry, then lot: with the lot in the index a product's sellable batches
-- come out in that order without a sort.
DROP INDEX batches_fefo;
CREATE INDEX batches_fefo ON batches(ndc, expiry, lot);
