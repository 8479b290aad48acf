-- Each sale line keeps the tax it paid (pharmacy/sales.py writes it with the line). A refund
-- pays back a line's own tax (pharmacy/refunds.py): inferring it later from the product's
-- current rate goes wrong once a rate has changed, and spreading the sale's tax over its
-- lines by amount would refund tax on a line that paid none. Lines sold before this
-- migration keep NULL and are inferred as before.

ALTER TABLE sale_lines ADD COLUMN tax_cents INTEGER CHECK (tax_cents IS NULL OR tax_cents >= 0);
