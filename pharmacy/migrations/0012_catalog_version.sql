-- A token that changes whenever a product row does. Product lookups (pharmacy/catalog.py)
-- are remembered per (token, identifier), so a sale reads one small row instead of each
-- product's whole row, and any change to the catalog — by this process, another process or
-- sync — is seen by the next lookup. Each change draws a new random 64-bit token: a counter
-- would come back to a value already seen after a rolled-back change, and two stores open
-- in one process would share values.

CREATE TABLE catalog_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    token   INTEGER NOT NULL
);
INSERT INTO catalog_version(id, token) VALUES (1, random());

CREATE TRIGGER catalog_version_insert AFTER INSERT ON products
BEGIN
    UPDATE catalog_version SET token = random() WHERE id = 1;
END;
CREATE TRIGGER catalog_version_update AFTER UPDATE ON products
BEGIN
    UPDATE catalog_version SET token = random() WHERE id = 1;
END;
CREATE TRIGGER catalog_version_delete AFTER DELETE ON products
BEGIN
    UPDATE catalog_version SET token = random() WHERE id = 1;
END;
