"""Products and their identifiers: lookup by NDC-10, NDC-11, GTIN-14 or name."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, NoReturn

from pharmacy.canonical import is_utf8_text
from pharmacy.clock import iso
from pharmacy.errors import BadInput, UnknownProduct
from pharmacy.ids import (
    Gtin,
    Ndc,
    classify_identifier,
    gtin_from_ndc,
    ndc_digits_from_gtin,
    parse_hyphenated_ndc,
)
from pharmacy.money import fmt, to_cents
from pharmacy.store import Store

DEA_SCHEDULES = ("CI", "CII", "CIII", "CIV", "CV")
INDIA_SCHEDULES = ("G", "H", "H1", "X")


@dataclass(frozen=True)
class Product:
    ndc: Ndc
    ndc11: str
    gtin: Gtin
    name: str
    generic_name: str | None
    ingredients: tuple[str, ...]
    strength: str | None
    dosage_form: str | None
    route: str | None
    unit: str
    pack_size: int
    price_cents: int
    tax_rate_bp: int
    rx_only: bool
    dea_schedule: str | None
    india_schedule: str | None
    cmea: bool
    pse_mg_per_unit: float | None
    appl: str | None
    manufacturer: str | None
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ingredients"] = list(self.ingredients)
        d["price"] = fmt(self.price_cents)
        del d["price_cents"]
        return d

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Product:
        """Products are immutable snapshots of their row: the same row parses once."""
        key = tuple(row)
        product = _PARSED.get(key)
        if product is None:
            if len(_PARSED) >= 4096:
                _PARSED.clear()
            product = _PARSED[key] = cls._build(row)
        return product

    @classmethod
    def _build(cls, row: sqlite3.Row) -> Product:
        return cls(
            ndc=Ndc(row["ndc"]), ndc11=row["ndc11"], gtin=Gtin(row["gtin"]), name=row["name"],
            generic_name=row["generic_name"], ingredients=tuple(json.loads(row["ingredients"])),
            strength=row["strength"], dosage_form=row["dosage_form"], route=row["route"],
            unit=row["unit"], pack_size=row["pack_size"], price_cents=row["price_cents"],
            tax_rate_bp=row["tax_rate_bp"], rx_only=bool(row["rx_only"]),
            dea_schedule=row["dea_schedule"], india_schedule=row["india_schedule"],
            cmea=bool(row["cmea"]), pse_mg_per_unit=row["pse_mg_per_unit"], appl=row["appl"],
            manufacturer=row["manufacturer"], attrs=json.loads(row["attrs"]),
        )


_PARSED: dict[tuple[Any, ...], Product] = {}


def _entry_error(where: str, message: str) -> BadInput:
    return BadInput(f"{where}: {message}", code="BAD_CATALOG_ENTRY")


def _text(d: Mapping[str, Any], key: str, where: str) -> str | None:
    v = d.get(key)
    if v is None or (isinstance(v, str) and "\x00" not in v):
        return v
    raise _entry_error(where, f"{key} must be text, got {v!r}")


def _whole(d: Mapping[str, Any], key: str, default: int, lo: int, hi: int, where: str) -> int:
    """A whole number, also written as one in text ("30") or as a float (825.0)."""
    v = d.get(key, default)
    n: int | None = None
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, float) and v.is_integer():
        n = int(v)
    elif isinstance(v, str) and v.strip().isascii() and v.strip().isdigit():
        n = int(v.strip())
    if n is None or not lo <= n <= hi:
        raise _entry_error(where, f"{key} must be a whole number from {lo} to {hi}, got {v!r}")
    return n


def product_from_json(d: Mapping[str, Any]) -> Product:
    """Validate one catalog entry (demo catalog, head-office push, CLI)."""
    if not isinstance(d, Mapping):
        raise BadInput(f"a catalog entry must be an object, got {d!r:.60}",
                       code="BAD_CATALOG_ENTRY")
    for key in ("ndc", "name"):
        if key not in d:
            raise BadInput(f"catalog entry lacks {key}", code="BAD_CATALOG_ENTRY")
        if not isinstance(d[key], str) or "\x00" in d[key]:
            raise BadInput(f"catalog entry's {key} must be text, got {d[key]!r:.60}",
                           code="BAD_CATALOG_ENTRY")
    parts = parse_hyphenated_ndc(d["ndc"])
    name = d["name"].strip()
    if not name:
        raise BadInput(f"catalog entry {parts.ndc10} has no name", code="BAD_CATALOG_ENTRY")
    dea = d.get("dea_schedule")
    if dea not in (None, *DEA_SCHEDULES):
        raise BadInput(f"{parts.ndc10}: DEA schedule {dea!r} is not CI..CV",
                       code="BAD_CATALOG_ENTRY")
    india = d.get("india_schedule")
    if india not in (None, *INDIA_SCHEDULES):
        raise BadInput(f"{parts.ndc10}: India schedule {india!r} is not G/H/H1/X",
                       code="BAD_CATALOG_ENTRY")
    where = parts.ndc10
    pack = _whole(d, "pack_size", 1, 1, 1_000_000, where)
    tax = _whole(d, "tax_rate_bp", 0, 0, 10_000, where)  # 0 to 100%
    gtin = gtin_from_ndc(parts)
    if d.get("gtin") and d["gtin"] != gtin:
        raise BadInput(f"{parts.ndc10}: GTIN {d['gtin']} does not embed this NDC (expected {gtin})",
                       code="BAD_CATALOG_ENTRY")
    pse = d.get("pse_mg_per_unit")
    if pse is not None and (isinstance(pse, bool) or not isinstance(pse, (int, float))
                            or not 0 <= pse <= 10_000):
        raise _entry_error(where, f"pse_mg_per_unit must be milligrams per unit, got {pse!r}")
    ingredients = d.get("ingredients", ())
    if not isinstance(ingredients, (list, tuple)) or not all(
            isinstance(i, str) for i in ingredients):
        raise _entry_error(where, f"ingredients must be a list of names, got {ingredients!r}")
    attrs = d.get("attrs", {})
    if not isinstance(attrs, Mapping):
        raise _entry_error(where, f"attrs must be an object, got {attrs!r}")
    return Product(
        ndc=parts.ndc10, ndc11=parts.ndc11, gtin=gtin, name=name,
        generic_name=_text(d, "generic_name", where), ingredients=tuple(ingredients),
        strength=_text(d, "strength", where), dosage_form=_text(d, "dosage_form", where),
        route=_text(d, "route", where), unit=_text(d, "unit", where) or "each", pack_size=pack,
        price_cents=to_cents(d.get("price", "0"), field="price"),
        tax_rate_bp=tax, rx_only=bool(d.get("rx_only", False)),
        dea_schedule=dea, india_schedule=india, cmea=bool(d.get("cmea", False)),
        pse_mg_per_unit=None if pse is None else float(pse), appl=_text(d, "appl", where),
        manufacturer=_text(d, "manufacturer", where), attrs=dict(attrs),
    )


_COLUMNS = ("ndc", "ndc11", "ndc_digits", "gtin", "name", "generic_name", "ingredients",
            "strength", "dosage_form", "route", "unit", "pack_size", "price_cents", "tax_rate_bp",
            "rx_only", "dea_schedule", "india_schedule", "cmea", "pse_mg_per_unit", "appl",
            "manufacturer", "attrs", "updated_at")


def upsert_products(store: Store, products: Iterable[Product]) -> int:
    now = iso(store.clock())
    rows = [
        (p.ndc, p.ndc11, p.ndc.replace("-", ""), p.gtin, p.name, p.generic_name,
         json.dumps(list(p.ingredients)), p.strength, p.dosage_form, p.route, p.unit, p.pack_size,
         p.price_cents, p.tax_rate_bp, int(p.rx_only), p.dea_schedule, p.india_schedule,
         int(p.cmea), p.pse_mg_per_unit, p.appl, p.manufacturer,
         json.dumps(p.attrs, sort_keys=True), now)
        for p in products
    ]
    placeholders = ", ".join("?" for _ in _COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "ndc")
    with store.transaction() as c:
        _check_identifiers(c, rows)
        c.executemany(
            f"INSERT INTO products ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT(ndc) DO UPDATE SET {updates}",
            rows,
        )
    return len(rows)


def _check_identifiers(c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """The NDC-11, its digits and the GTIN each name one product: two hyphenations of one
    labeler/product/package (0904-0728-60 and 00904-728-60) are refused, not merged."""
    seen: dict[tuple[int, str], str] = {}
    for row in rows:
        ndc = row[0]
        for i in (1, 2, 3):  # ndc11, ndc_digits, gtin: another row of this import
            other = seen.setdefault((i, row[i]), ndc)
            if other != ndc:
                _conflict(ndc, other, i, row[i])
        found = c.execute("SELECT ndc, ndc11, ndc_digits, gtin FROM products WHERE "
                          "(ndc11 = ? OR ndc_digits = ? OR gtin = ?) AND ndc <> ?",
                          (row[1], row[2], row[3], ndc)).fetchone()
        if found is not None:  # a product already on file
            i = next(i for i in (1, 2, 3) if found[i] == row[i])
            _conflict(ndc, found[0], i, row[i])


def _conflict(ndc: str, other: str, column: int, value: str) -> NoReturn:
    raise BadInput(f"NDC {ndc} is the same package as {other} ({_COLUMNS[column]} {value}); "
                   "use one of the two", code="NDC_CONFLICT")


def lookup(conn: sqlite3.Connection, identifier: str) -> Product:
    """Find a product by NDC (any form) or GTIN-14. Raises UnknownProduct or BadInput.

    Found products are remembered per catalog version (migration 0012): a later lookup of
    the same identifier reads the version token, not the product's row, until any product
    row changes."""
    return lookup_at(conn, version_token(conn), identifier)


def version_token(conn: sqlite3.Connection) -> int | None:
    """The catalog's version token (migration 0012): it changes whenever a product row does."""
    row = conn.execute("SELECT token FROM catalog_version WHERE id = 1").fetchone()
    return None if row is None else int(row[0])


def lookup_at(conn: sqlite3.Connection, token: int | None, identifier: str) -> Product:
    """``lookup`` with the version token already read, so that several lookups in one
    transaction that does not write products (a sale's lines) share one read of it."""
    key = (token, identifier)
    product = _FOUND.get(key)
    if product is None:
        product = _lookup(conn, identifier)
        if token is not None:
            if len(_FOUND) >= 4096:
                _FOUND.clear()
            _FOUND[key] = product
    return product


_FOUND: dict[tuple[int | None, str], Product] = {}


def _lookup(conn: sqlite3.Connection, identifier: str) -> Product:
    kind, value = classify_identifier(identifier)
    if kind == "ndc10":
        row = conn.execute("SELECT * FROM products WHERE ndc = ?", (value,)).fetchone()
    elif kind == "ndc11":
        row = conn.execute("SELECT * FROM products WHERE ndc11 = ?", (value,)).fetchone()
    elif kind == "digits10":
        row = conn.execute("SELECT * FROM products WHERE ndc_digits = ?", (value,)).fetchone()
    else:
        row = conn.execute("SELECT * FROM products WHERE gtin = ?", (value,)).fetchone()
        if row is None:  # a case or pallet GTIN (indicator 1-8) embeds the same NDC
            digits = ndc_digits_from_gtin(Gtin(value))
            if digits is not None:
                row = conn.execute(
                    "SELECT * FROM products WHERE ndc_digits = ?", (digits,)
                ).fetchone()
    if row is None:
        raise UnknownProduct(
            f"{identifier} is not in this store's catalog", code="UNKNOWN_PRODUCT",
            identifier=identifier,
        )
    return Product.from_row(row)


MAX_SEARCH = 200  # characters: longer is a stuck key or a scanner read into the box


def search_text(text: str) -> str:
    """Text to look for, as typed; ``BAD_SEARCH`` for text no product name could hold."""
    text = text.strip()
    if len(text) > MAX_SEARCH:
        raise BadInput(f"search text is {len(text)} characters; at most {MAX_SEARCH}",
                       code="BAD_SEARCH")
    if not is_utf8_text(text):
        raise BadInput("the search text has characters that are not text",
                       code="BAD_SEARCH")
    return text


def search(conn: sqlite3.Connection, text: str, limit: int = 20) -> list[Product]:
    like = f"%{search_text(text)}%"
    rows = conn.execute(
        "SELECT * FROM products WHERE name LIKE ? OR generic_name LIKE ? "
        "ORDER BY name LIMIT ?",
        (like, like, limit),
    ).fetchall()
    return [Product.from_row(r) for r in rows]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])


def demo_catalog() -> list[Product]:
    """The team-written demo catalog shipped with pharmos (pharmacy/data/demo_catalog.json)."""
    raw = resources.files("pharmacy.data").joinpath("demo_catalog.json").read_text("utf-8")
    return [product_from_json(d) for d in json.loads(raw)["products"]]
