"""FDA NDC Directory (product.txt + package.txt): import, Orange Book links, lookups.

Both files are tab-separated with FDA's column names in the header (columns are found by
name, so FDA's column order may change). The directory is a full snapshot: an import replaces
the previous one atomically, and one bad row rejects the import (``NDC_CORRUPT_ROW`` with its
file and line).

Links (REGULATIONS.md §6.5): APPLICATIONNUMBER "NDA020610" / "ANDA215328" is Orange Book
Appl_Type N / A with the 6-digit Appl_No; BLAs (Purple Book), monograph and unapproved
products have no Orange Book listing. An application can hold several Orange Book products
(strengths), so the product number is resolved by strength and dosage form; the result is
``ndc_products.ob_appl_key`` (NULL when it cannot be told apart). Resolution runs after this
import and after every Orange Book import.

The directory is reference data, not the store's catalog: it never creates sellable products
(those need a price and stock policy). It is consulted by substitution for NDCs that are not
in the catalog, and an import fills ``products.appl`` for catalog products that lack it.
"""

from __future__ import annotations

import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pharmacy.clock import iso
from pharmacy.errors import BadInput, UnknownProduct
from pharmacy.ids import Gtin, classify_identifier, ndc_digits_from_gtin, parse_hyphenated_ndc
from pharmacy.importing import RowErrors
from pharmacy.orange_book import compact_strength, strength_numbers
from pharmacy.store import Store

PRODUCT_COLUMNS = ("PRODUCTID", "PRODUCTNDC", "PRODUCTTYPENAME", "PROPRIETARYNAME",
                   "PROPRIETARYNAMESUFFIX", "NONPROPRIETARYNAME", "DOSAGEFORMNAME", "ROUTENAME",
                   "STARTMARKETINGDATE", "ENDMARKETINGDATE", "MARKETINGCATEGORYNAME",
                   "APPLICATIONNUMBER", "LABELERNAME", "SUBSTANCENAME",
                   "ACTIVE_NUMERATOR_STRENGTH", "ACTIVE_INGRED_UNIT", "PHARM_CLASSES",
                   "DEASCHEDULE", "NDC_EXCLUDE_FLAG", "LISTING_RECORD_CERTIFIED_THROUGH")
PACKAGE_COLUMNS = ("PRODUCTID", "PRODUCTNDC", "NDCPACKAGECODE", "PACKAGEDESCRIPTION",
                   "STARTMARKETINGDATE", "ENDMARKETINGDATE", "NDC_EXCLUDE_FLAG", "SAMPLE_PACKAGE")
# Columns an import cannot do without; the others may be absent from older extracts.
PRODUCT_REQUIRED = ("PRODUCTID", "PRODUCTNDC", "PRODUCTTYPENAME", "PROPRIETARYNAME",
                    "APPLICATIONNUMBER", "DEASCHEDULE")
PACKAGE_REQUIRED = ("PRODUCTID", "PRODUCTNDC", "NDCPACKAGECODE")
DEA = ("CI", "CII", "CIII", "CIV", "CV")

_PRODUCT_NDC = re.compile(r"^(\d{4}-\d{4}|\d{5}-\d{3}|\d{5}-\d{4})$")
_APPLICATION = re.compile(r"^(NDA|ANDA)\s*(\d{1,6})$")
_DATE8 = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


class NdcDirectoryCorrupt(BadInput):
    code = "NDC_CORRUPT_ROW"


def parse_application(text: str) -> tuple[str, str] | None:
    """'NDA020610' → ('N', '020610'); 'ANDA215328' → ('A', '215328'); BLA and others → None."""
    m = _APPLICATION.match(text.strip().upper())
    if not m:
        return None
    return ("N" if m.group(1) == "NDA" else "A", m.group(2).zfill(6))


# ---- reading ------------------------------------------------------------------------------
def _read_table(path: Path, required: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", code="BAD_INPUT_FILE") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")  # FDA extracts are Windows-1252
    lines = text.split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()
    if not lines:
        raise NdcDirectoryCorrupt(f"{path.name} is empty", code="NDC_BAD_HEADER", file=path.name)
    header = [h.strip().upper() for h in lines[0].rstrip("\r").split("\t")]
    missing = [c for c in required if c not in header]
    if missing:
        raise NdcDirectoryCorrupt(
            f"{path.name} line 1: header lacks {', '.join(missing)}; is this an FDA NDC "
            "Directory tab-separated file?", code="NDC_BAD_HEADER", file=path.name,
            missing=missing)
    return header, [ln.rstrip("\r").split("\t") for ln in lines[1:]]


Getter = Callable[[list[str], str], str]


def _records(path: Path, required: Sequence[str], errors: RowErrors
             ) -> Iterator[tuple[int, list[str], Getter]]:
    """(line number, fields, getter by FDA column name) for each well-formed row; a row with
    the wrong number of fields is reported with its line number, never dropped silently."""
    header, rows = _read_table(path, required)
    col = {name: i for i, name in enumerate(header)}
    n = len(header)

    def g(f: list[str], name: str) -> str:
        i = col.get(name)
        return f[i].strip() if i is not None else ""

    for i, f in enumerate(rows):
        if len(f) != n:
            errors.add(i + 2, f"expected {n} tab-separated fields, found {len(f)}",
                       file=path.name)
            continue
        yield i + 2, f, g


def _iso8(text: str) -> str | None:
    m = _DATE8.match(text)
    if not m:
        raise ValueError(f"date {text!r} is not YYYYMMDD")
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}"


def _opt_date(text: str) -> str | None:
    return _iso8(text) if text else None


def _parse_products(path: Path, errors: RowErrors) -> list[tuple[Any, ...]]:
    seen: dict[str, int] = {}
    out: list[tuple[Any, ...]] = []
    for line, f, g in _records(path, PRODUCT_REQUIRED, errors):
        pid, pndc = g(f, "PRODUCTID"), g(f, "PRODUCTNDC")
        dea = g(f, "DEASCHEDULE").upper() or None
        appl_text = g(f, "APPLICATIONNUMBER")
        try:
            if not pid:
                raise ValueError("PRODUCTID is empty")
            if not _PRODUCT_NDC.match(pndc):
                raise ValueError(f"PRODUCTNDC {pndc!r} is not labeler-product (4-4, 5-3, 5-4)")
            if dea is not None and dea not in DEA:
                raise ValueError(f"DEASCHEDULE {dea!r} is not CI..CV")
            if pid in seen:
                raise ValueError(f"PRODUCTID {pid} is listed twice (also line {seen[pid]})")
            start = _opt_date(g(f, "STARTMARKETINGDATE"))
            end = _opt_date(g(f, "ENDMARKETINGDATE"))
            certified = _opt_date(g(f, "LISTING_RECORD_CERTIFIED_THROUGH"))
        except ValueError as e:
            errors.add(line, str(e), file=path.name)
            continue
        seen[pid] = line
        appl = parse_application(appl_text)
        out.append((
            pid, pndc, g(f, "PRODUCTTYPENAME"), g(f, "PROPRIETARYNAME"),
            g(f, "PROPRIETARYNAMESUFFIX") or None, g(f, "NONPROPRIETARYNAME") or None,
            g(f, "DOSAGEFORMNAME") or None, g(f, "ROUTENAME") or None, start, end,
            g(f, "MARKETINGCATEGORYNAME") or None, appl_text or None,
            appl[0] if appl else None, appl[1] if appl else None, None,
            g(f, "LABELERNAME") or None, g(f, "SUBSTANCENAME") or None,
            g(f, "ACTIVE_NUMERATOR_STRENGTH") or None, g(f, "ACTIVE_INGRED_UNIT") or None,
            g(f, "PHARM_CLASSES") or None, dea, g(f, "NDC_EXCLUDE_FLAG") or None, certified,
        ))
    return out


def _parse_packages(path: Path, products: dict[str, str], errors: RowErrors
                    ) -> list[tuple[Any, ...]]:
    seen: dict[str, int] = {}
    out: list[tuple[Any, ...]] = []
    for line, f, g in _records(path, PACKAGE_REQUIRED, errors):
        pid, pndc, code = g(f, "PRODUCTID"), g(f, "PRODUCTNDC"), g(f, "NDCPACKAGECODE")
        try:
            try:
                parts = parse_hyphenated_ndc(code)
            except BadInput:
                raise ValueError(f"NDCPACKAGECODE {code!r} is not an NDC-10 (4-4-2, 5-3-2, "
                                 "5-4-1)") from None
            if pid not in products:
                raise ValueError(f"PRODUCTID {pid!r} is not in the product file")
            if not code.startswith(pndc + "-") or products[pid] != pndc:
                raise ValueError(f"NDC {code} does not belong to product {pndc}")
            if parts.ndc10 in seen:
                raise ValueError(f"NDC {code} is listed twice (also line {seen[parts.ndc10]})")
            sample = g(f, "SAMPLE_PACKAGE").upper()
            if sample not in ("", "Y", "N"):
                raise ValueError(f"SAMPLE_PACKAGE {sample!r} is not Y or N")
            start = _opt_date(g(f, "STARTMARKETINGDATE"))
            end = _opt_date(g(f, "ENDMARKETINGDATE"))
        except ValueError as e:
            errors.add(line, str(e), file=path.name)
            continue
        seen[parts.ndc10] = line
        out.append((parts.ndc10, parts.ndc11, parts.digits10, pid,
                    g(f, "PACKAGEDESCRIPTION") or None, start, end,
                    g(f, "NDC_EXCLUDE_FLAG") or None, int(sample == "Y")))
    return out


# ---- import -------------------------------------------------------------------------------
def import_ndc_directory(store: Store, product_path: Path | str, package_path: Path | str
                         ) -> dict[str, int]:
    """Replace the store's NDC Directory with these files; link to the Orange Book.

    Returns counts: ndc_products, ndc_packages, ndc_linked (products resolved to an Orange
    Book product), catalog_linked (catalog products whose missing appl was filled in).
    """
    errors = RowErrors(NdcDirectoryCorrupt, "NDC Directory")
    products = _parse_products(Path(product_path), errors)
    errors.raise_if_any()
    packages = _parse_packages(Path(package_path), {p[0]: p[1] for p in products}, errors)
    errors.raise_if_any()
    with store.transaction() as c:
        c.execute("DELETE FROM ndc_packages")
        c.execute("DELETE FROM ndc_products")
        c.executemany(f"INSERT INTO ndc_products VALUES ({', '.join('?' * 23)})", products)
        c.executemany(f"INSERT INTO ndc_packages VALUES ({', '.join('?' * 9)})", packages)
        linked = relink(c)
        catalog_linked = _fill_catalog_appl(c, iso(store.clock()))
    return {"ndc_products": len(products), "ndc_packages": len(packages),
            "ndc_linked": linked, "catalog_linked": catalog_linked}


def _fill_catalog_appl(c: sqlite3.Connection, now: str) -> int:
    cur = c.execute(
        "UPDATE products SET appl = (SELECT np.ob_appl_key FROM ndc_packages pk "
        "  JOIN ndc_products np ON np.product_id = pk.product_id WHERE pk.ndc = products.ndc), "
        "  updated_at = ? "
        "WHERE appl IS NULL AND EXISTS (SELECT 1 FROM ndc_packages pk "
        "  JOIN ndc_products np ON np.product_id = pk.product_id "
        "  WHERE pk.ndc = products.ndc AND np.ob_appl_key IS NOT NULL)", (now,))
    return cur.rowcount


# ---- linking to the Orange Book -------------------------------------------------------------
_UNITS = {"UG": "MCG", "G": "GM", "[IU]": "UNITS", "IU": "UNITS", "MEQ": "MEQ"}


def _canon_number(m: re.Match[str]) -> str:
    t = m.group(0)
    if "." in t:
        t = t.rstrip("0").rstrip(".")
        if t.startswith("."):
            t = "0" + t
    return t or "0"


def canon_token(token: str) -> str:
    t = re.sub(r"\s+", "", token.upper())
    return re.sub(r"\d*\.\d+|\d+", _canon_number, t)


def ndc_strength_tokens(numerators: str | None, units: str | None) -> tuple[str, ...]:
    """'5; 325' with 'mg/1; mg/1' → ('325MG', '5MG')."""
    if not numerators or not units:
        return ()
    nums = [x.strip() for x in numerators.split(";")]
    us = [x.strip() for x in units.split(";")]
    if len(nums) != len(us):
        return ()
    out = []
    for n, u in zip(nums, us, strict=True):
        parts = u.upper().split("/")
        parts[0] = _UNITS.get(parts[0], parts[0])
        if len(parts) == 2 and parts[1] == "1":
            parts = parts[:1]
        out.append(canon_token(n + "/".join(parts)))
    return tuple(sorted(out))


def ob_strength_tokens(strength: str) -> tuple[str, ...]:
    return tuple(sorted(canon_token(t) for t in compact_strength(strength).split(";") if t))


def _form_word(text: str | None) -> str:
    return (text or "").upper().replace(";", ",").split(",")[0].split(" ")[0]


def resolve_product_no(ndc_row: Sequence[Any], ob_rows: Sequence[tuple[str, str, str]]
                       ) -> str | None:
    """Pick the Orange Book product of an application for one NDC Directory product.

    ndc_row: (dosage_form, strength_numerator, strength_unit); ob_rows: (appl_key, strength,
    df_route) of the application's listings. None when they cannot be told apart.
    """
    keys = {r[0] for r in ob_rows}
    if len(keys) == 1:
        return next(iter(keys))
    if not ob_rows:
        return None
    tokens = ndc_strength_tokens(ndc_row[1], ndc_row[2])
    stage = [r for r in ob_rows if tokens and ob_strength_tokens(r[1]) == tokens]
    if not stage:
        nums = tuple(sorted(canon_token(x) for x in re.findall(r"\d*\.?\d+", ndc_row[1] or "")))
        stage = [r for r in ob_rows if nums and
                 tuple(sorted(canon_token(x) for x in strength_numbers(r[1]))) == nums]
    if len({r[0] for r in stage}) > 1:
        form = _form_word(ndc_row[0])
        by_form = [r for r in stage if _form_word(r[2]) == form]
        if by_form:
            stage = by_form
    found = {r[0] for r in stage}
    return next(iter(found)) if len(found) == 1 else None


def relink(c: sqlite3.Connection) -> int:
    """Resolve ``ndc_products.ob_appl_key`` against the current Orange Book; returns links."""
    todo = c.execute(
        "SELECT product_id, appl_type, appl_no, dosage_form, strength_numerator, strength_unit, "
        "ob_appl_key FROM ndc_products WHERE appl_type IS NOT NULL"
    ).fetchall()
    if not todo:
        return 0
    wanted = {(r[1], r[2]) for r in todo}
    apps: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    for key, a_type, a_no, strength, df_route in c.execute(
            "SELECT appl_key, appl_type, appl_no, strength, df_route FROM ob_products"):
        if (a_type, a_no) in wanted:
            apps[(a_type, a_no)].append((key, strength, df_route))
    updates = []
    linked = 0
    for r in todo:
        key = resolve_product_no((r[3], r[4], r[5]), apps.get((r[1], r[2]), []))
        linked += key is not None
        if key != r[6]:
            updates.append((key, r[0]))
    if updates:
        c.executemany("UPDATE ndc_products SET ob_appl_key = ? WHERE product_id = ?", updates)
    return linked


# ---- lookups --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DirectoryEntry:
    """One NDC Directory package with its product."""

    ndc: str
    ndc11: str
    product_id: str
    product_ndc: str
    proprietary_name: str
    nonproprietary_name: str | None
    dosage_form: str | None
    route: str | None
    application_number: str | None
    ob_appl_key: str | None
    labeler: str | None
    substance_name: str | None
    strength: str | None
    dea_schedule: str | None
    description: str | None
    marketing_category: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ndc": self.ndc, "ndc11": self.ndc11, "name": self.proprietary_name,
            "generic_name": self.nonproprietary_name, "dosage_form": self.dosage_form,
            "route": self.route, "application_number": self.application_number,
            "appl": self.ob_appl_key, "labeler": self.labeler,
            "substances": self.substance_name, "strength": self.strength,
            "dea_schedule": self.dea_schedule, "package": self.description,
            "marketing_category": self.marketing_category, "source": "ndc_directory",
        }

    @property
    def ingredients(self) -> tuple[str, ...]:
        return tuple(s.strip().lower() for s in (self.substance_name or "").split(";")
                     if s.strip())


_ENTRY_SQL = (
    "SELECT pk.ndc, pk.ndc11, pk.product_id, np.product_ndc, np.proprietary_name, "
    "np.nonproprietary_name, np.dosage_form, np.route, np.application_number, np.ob_appl_key, "
    "np.labeler, np.substance_name, np.strength_numerator, np.strength_unit, np.dea_schedule, "
    "pk.description, np.marketing_category "
    "FROM ndc_packages pk JOIN ndc_products np ON np.product_id = pk.product_id WHERE ")


def _entry(r: Sequence[Any]) -> DirectoryEntry:
    strength = None
    if r[12]:
        strength = f"{r[12]} {r[13] or ''}".strip()
    return DirectoryEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                          r[11], strength, r[14], r[15], r[16])


def find(conn: sqlite3.Connection, identifier: str) -> DirectoryEntry | None:
    """The directory package for an NDC (any form) or GTIN-14; None when not listed.

    Raises BadInput for a malformed identifier.
    """
    kind, value = classify_identifier(identifier)
    if kind == "ndc10":
        row = conn.execute(_ENTRY_SQL + "pk.ndc = ?", (value,)).fetchone()
    elif kind == "ndc11":
        row = conn.execute(_ENTRY_SQL + "pk.ndc11 = ?", (value,)).fetchone()
    elif kind == "digits10":
        row = conn.execute(_ENTRY_SQL + "pk.ndc_digits = ?", (value,)).fetchone()
    else:
        digits = ndc_digits_from_gtin(Gtin(value))
        row = None if digits is None else conn.execute(
            _ENTRY_SQL + "pk.ndc_digits = ?", (digits,)).fetchone()
    return None if row is None else _entry(row)


def lookup(conn: sqlite3.Connection, identifier: str) -> DirectoryEntry:
    entry = find(conn, identifier)
    if entry is None:
        raise UnknownProduct(f"{identifier} is not in the imported NDC Directory",
                             code="UNKNOWN_NDC", identifier=identifier)
    return entry


def count(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        "ndc_products": int(conn.execute("SELECT COUNT(*) FROM ndc_products").fetchone()[0]),
        "ndc_packages": int(conn.execute("SELECT COUNT(*) FROM ndc_packages").fetchone()[0]),
    }
