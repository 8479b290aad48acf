-- Reference data: FDA Orange Book products, FDA NDC Directory, drug-interaction knowledge.
-- Imported from files (pharmos catalog import / pharmos interactions --install-source);
-- never edited at the counter.

-- One row per Orange Book product listing. An application product can be listed twice
-- (an RX and an OTC listing of the same Appl_No/Product_No), hence the otc flag in the key.
CREATE TABLE ob_products (
    appl_key       TEXT NOT NULL,     -- "N020610:001" = Appl_Type + Appl_No ":" Product_No (as products.appl)
    otc            INTEGER NOT NULL,  -- 1 for an OTC listing, else 0 (RX or DISCN)
    appl_type      TEXT NOT NULL CHECK (appl_type IN ('N','A')),
    appl_no        TEXT NOT NULL,     -- 6 digits
    product_no     TEXT NOT NULL,     -- 3 digits
    ingredient     TEXT NOT NULL,
    df_route       TEXT NOT NULL,     -- "TABLET;ORAL"
    trade_name     TEXT NOT NULL,
    applicant      TEXT NOT NULL,
    strength       TEXT NOT NULL,     -- as published, notes ("**Federal Register ...**") included
    te_code        TEXT NOT NULL,     -- as published: '', 'AB', 'AB1,AB2', 'BX' ...
    approval_date  TEXT,              -- ISO date; NULL for "Approved Prior to Jan 1, 1982"
    approval_text  TEXT NOT NULL,
    rld            INTEGER NOT NULL,
    rs             INTEGER NOT NULL,
    type           TEXT NOT NULL CHECK (type IN ('RX','OTC','DISCN')),
    applicant_full_name TEXT NOT NULL,
    group_key      TEXT NOT NULL,     -- ingredient | df_route | strength without notes
    trade_key      TEXT NOT NULL,     -- normalized trade name (name search)
    ingredient_base TEXT NOT NULL,    -- ingredients without salt words, sorted (name search)
    PRIMARY KEY (appl_key, otc)
) WITHOUT ROWID;
CREATE INDEX ob_products_group ON ob_products(group_key);
CREATE INDEX ob_products_appl_no ON ob_products(appl_type, appl_no);
CREATE INDEX ob_products_trade ON ob_products(trade_key);
CREATE INDEX ob_products_ingredient_name ON ob_products(ingredient);
CREATE INDEX ob_products_ingredient ON ob_products(ingredient_base);

-- Every Orange Book import, with what it changed (a monthly update is applied as a diff).
CREATE TABLE ob_imports (
    import_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    imported_at   TEXT NOT NULL,
    source        TEXT NOT NULL,     -- file name as given
    sha256        TEXT NOT NULL,
    rows          INTEGER NOT NULL,
    added         INTEGER NOT NULL,
    removed       INTEGER NOT NULL,
    changed       INTEGER NOT NULL,
    unchanged     INTEGER NOT NULL,
    te_changed    INTEGER NOT NULL,
    discontinued  INTEGER NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}'  -- JSON: samples of each kind of change
);

-- FDA NDC Directory (product.txt / package.txt), when a pharmacy provides it.
CREATE TABLE ndc_products (
    product_id         TEXT PRIMARY KEY,   -- PRODUCTID
    product_ndc        TEXT NOT NULL,      -- PRODUCTNDC, labeler-product
    product_type       TEXT NOT NULL,
    proprietary_name   TEXT NOT NULL,
    proprietary_suffix TEXT,
    nonproprietary_name TEXT,
    dosage_form        TEXT,
    route              TEXT,
    start_marketing    TEXT,               -- ISO date
    end_marketing      TEXT,
    marketing_category TEXT,
    application_number TEXT,               -- "NDA020610", "ANDA215328", "BLA125057", "M012" ...
    appl_type          TEXT,               -- 'N' / 'A' when an NDA / ANDA, else NULL
    appl_no            TEXT,               -- 6 digits when appl_type is set
    ob_appl_key        TEXT,               -- resolved Orange Book product "A215328:001", NULL if not resolved
    labeler            TEXT,
    substance_name     TEXT,
    strength_numerator TEXT,
    strength_unit      TEXT,
    pharm_classes      TEXT,
    dea_schedule       TEXT CHECK (dea_schedule IN ('CI','CII','CIII','CIV','CV')),
    ndc_exclude_flag   TEXT,
    certified_through  TEXT
);
CREATE INDEX ndc_products_appl ON ndc_products(appl_type, appl_no);
CREATE INDEX ndc_products_ob ON ndc_products(ob_appl_key);

CREATE TABLE ndc_packages (
    ndc            TEXT PRIMARY KEY,       -- NDCPACKAGECODE, hyphenated NDC-10
    ndc11          TEXT NOT NULL,
    ndc_digits     TEXT NOT NULL,
    product_id     TEXT NOT NULL REFERENCES ndc_products(product_id),
    description    TEXT,
    start_marketing TEXT,
    end_marketing  TEXT,
    ndc_exclude_flag TEXT,
    sample         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ndc_packages_ndc11 ON ndc_packages(ndc11);
CREATE INDEX ndc_packages_digits ON ndc_packages(ndc_digits);
CREATE INDEX ndc_packages_product ON ndc_packages(product_id);

-- Catalog products link to the Orange Book by appl ("N020610:001").
CREATE INDEX products_appl ON products(appl);

-- Interaction knowledge a pharmacy installed (the team-written core file ships in the package
-- and is read from there). Pairs are stored once with a < b, classes already expanded.
CREATE TABLE ddi_sources (
    source_id    TEXT PRIMARY KEY,        -- name given at install, default the file name
    sha256       TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    pairs        INTEGER NOT NULL,
    aliases      INTEGER NOT NULL
);

CREATE TABLE ddi_pairs (
    source_id   TEXT NOT NULL REFERENCES ddi_sources(source_id),
    a           TEXT NOT NULL,            -- normalized ingredient, a < b
    b           TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ('contraindicated','major','moderate','minor')),
    management  TEXT NOT NULL DEFAULT '',
    citation    TEXT NOT NULL DEFAULT '',
    rule        TEXT NOT NULL DEFAULT '', -- the row as written, e.g. "warfarin + @nsaid"
    line_no     INTEGER NOT NULL,
    PRIMARY KEY (source_id, a, b, line_no)
) WITHOUT ROWID;

CREATE TABLE ddi_aliases (
    source_id   TEXT NOT NULL REFERENCES ddi_sources(source_id),
    alias       TEXT NOT NULL,            -- normalized
    target      TEXT NOT NULL,            -- normalized
    PRIMARY KEY (source_id, alias)
) WITHOUT ROWID;
