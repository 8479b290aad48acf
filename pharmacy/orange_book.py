"""FDA Orange Book products (products.txt): import, monthly diff, TE-code rules.

The file is ``~``-delimited with 14 columns, CRLF line endings and no final newline
(REGULATIONS.md §6.5). Every row is validated; one bad row rejects the whole import
(``OB_CORRUPT_ROW`` names its line number) and the store keeps its previous Orange Book.
An import is applied as a diff against what the store holds: rows added, removed and
changed (TE code changes and discontinuations counted apart) are recorded in ``ob_imports``.

Equivalence groups (REGULATIONS.md §6.4): products share a group when ingredient, DF;Route
and strength (without the Orange Book's ``**...**`` notes) are equal. Within a group two
products are substitutable when both carry an A code and their codes share a sub-group:
``AB``/``AP``/``AA``/``AT``… without a number form sub-group "" and ``AB1``, ``AP1`` form "1".
A multi-valued cell (``AB1,AB2``) belongs to each of its sub-groups. B codes and blanks
belong to none.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

from pharmacy.clock import iso
from pharmacy.errors import BadInput, NotFound
from pharmacy.importing import MAX_ERRORS_LISTED, RowErrors
from pharmacy.store import Store

HEADER = ("Ingredient", "DF;Route", "Trade_Name", "Applicant", "Strength", "Appl_Type",
          "Appl_No", "Product_No", "TE_Code", "Approval_Date", "RLD", "RS", "Type",
          "Applicant_Full_Name")
PRE_1982 = "Approved Prior to Jan 1, 1982"

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}
_DATE = re.compile(r"^([A-Z][a-z]{2}) (\d{1,2}), (\d{4})$")
_TE_ONE = re.compile(r"^(A[A-Z]|B[A-Z*])(\d*)$")
_APPL_KEY = re.compile(r"^([NA])(\d{6}):(\d{3})$")

# Trailing words dropped when matching ingredient names (never the first word).
SALT_WORDS = frozenset("""
HYDROCHLORIDE HCL HYDROBROMIDE HYDROIODIDE DIHYDROCHLORIDE SODIUM DISODIUM TRISODIUM POTASSIUM
DIPOTASSIUM CALCIUM MAGNESIUM SULFATE SULPHATE BISULFATE MALEATE DIMALEATE MESYLATE MESILATE
DIMESYLATE BESYLATE BESILATE TARTRATE BITARTRATE SUCCINATE CITRATE FUMARATE HEMIFUMARATE
ACETATE DIACETATE PHOSPHATE DIPHOSPHATE BROMIDE CHLORIDE IODIDE LACTATE GLUCONATE HYCLATE
HYDRATE MONOHYDRATE DIHYDRATE TRIHYDRATE SESQUIHYDRATE HEMIHYDRATE HEPTAHYDRATE ANHYDROUS
PAMOATE NAPSYLATE XINAFOATE TOSYLATE DECANOATE ENANTHATE CYPIONATE VALERATE PROPIONATE
DIPROPIONATE FUROATE ACETONIDE STEARATE ESTOLATE ETHYLSUCCINATE MEGLUMINE TROMETHAMINE
ERBUMINE BENZOATE CARBONATE BICARBONATE OXALATE MALATE ASPARTATE MEDOXOMIL AXETIL PIVOXIL NITRATE
""".split())  # noqa: SIM905


class OrangeBookCorrupt(BadInput):
    code = "OB_CORRUPT_ROW"


# ---- names and strengths --------------------------------------------------------------------
def norm_name(text: str) -> str:
    """Upper case, single spaces."""
    return " ".join(text.upper().split())


def strip_salts(name: str) -> str:
    """'ATORVASTATIN CALCIUM' → 'ATORVASTATIN'; the first word always stays."""
    words = name.split()
    while len(words) > 1 and words[-1] in SALT_WORDS:
        words.pop()
    return " ".join(words)


def ingredient_base(ingredient: str) -> str:
    """Each ingredient of '; '-separated ingredients without salt words, sorted."""
    parts = [strip_salts(norm_name(p)) for p in re.split(r"[;/+]", ingredient) if p.strip()]
    return "; ".join(sorted(parts))


@lru_cache(maxsize=16384)
def strength_key(strength: str) -> str:
    """The strength without the Orange Book's trailing ``**...**`` notes, single spaces."""
    return " ".join(strength.split("**", 1)[0].split())


def compact_strength(strength: str) -> str:
    """'EQ 10MG BASE' → '10MG'; '325MG;5MG' → '325MG;5MG'; for matching typed strengths."""
    s = strength_key(strength).upper()
    s = re.sub(r"\(.*?\)", "", s)
    s = s.replace("EQ ", "").replace(" BASE", "")
    return re.sub(r"\s+", "", s)


def strength_numbers(strength: str) -> tuple[str, ...]:
    """The sorted numbers of a strength: '5/325 mg' and '325MG;5MG' → ('325', '5')."""
    nums = re.findall(r"\d+(?:\.\d+)?", re.sub(r"\(.*?\)", "", strength_key(strength)))
    return tuple(sorted(n.rstrip("0").rstrip(".") if "." in n else n for n in nums))


# ---- TE codes -------------------------------------------------------------------------------
def split_te(te_code: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in te_code.split(",") if c.strip())


@lru_cache(maxsize=1024)
def subgroups(te_code: str) -> frozenset[str]:
    """Sub-groups of a TE cell's A codes: 'AB' → {''}, 'AB1,AB2' → {'1','2'}, 'BX' → {}."""
    out = set()
    for code in split_te(te_code):
        m = _TE_ONE.match(code)
        if m and code.startswith("A"):
            out.add(m.group(2))
    return frozenset(out)


def is_a_rated(te_code: str) -> bool:
    return bool(subgroups(te_code))


def te_equivalent(prescribed_te: str, candidate_te: str) -> frozenset[str]:
    """The A sub-groups both cells share; empty means not substitutable."""
    return subgroups(prescribed_te) & subgroups(candidate_te)


@lru_cache(maxsize=4096)
def format_subgroups(te_code: str, shared: frozenset[str]) -> str:
    """The codes of ``te_code`` in the shared sub-groups, e.g. 'AB1' or 'AB'."""
    codes = [c for c in split_te(te_code)
             if c.startswith("A") and (m := _TE_ONE.match(c)) and m.group(2) in shared]
    return ",".join(codes)


# ---- rows -----------------------------------------------------------------------------------
_COLUMNS = ("appl_key", "otc", "appl_type", "appl_no", "product_no", "ingredient", "df_route",
            "trade_name", "applicant", "strength", "te_code", "approval_date", "approval_text",
            "rld", "rs", "type", "applicant_full_name", "group_key", "trade_key",
            "ingredient_base")
_SELECT = ", ".join(_COLUMNS)


@dataclass(frozen=True)
class ObProduct:
    appl_key: str
    otc: bool
    appl_type: str
    appl_no: str
    product_no: str
    ingredient: str
    df_route: str
    trade_name: str
    applicant: str
    strength: str
    te_code: str
    approval_date: str | None
    approval_text: str
    rld: bool
    rs: bool
    type: str
    applicant_full_name: str
    group_key: str

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> ObProduct:
        return cls(r[0], bool(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                   r[11], r[12], bool(r[13]), bool(r[14]), r[15], r[16], r[17])

    @property
    def discontinued(self) -> bool:
        return self.type == "DISCN"

    @property
    def a_rated(self) -> bool:
        return is_a_rated(self.te_code)

    @property
    def query(self) -> str:
        return f"appl:{self.appl_key}"

    def to_json(self) -> dict[str, Any]:
        return {
            "appl": self.appl_key, "trade_name": self.trade_name, "applicant": self.applicant,
            "ingredient": self.ingredient, "df_route": self.df_route, "strength": self.strength,
            "te_code": self.te_code or None, "rld": self.rld, "rs": self.rs, "type": self.type,
            "approval_date": self.approval_date or self.approval_text,
        }


def appl_key(appl_type: str, appl_no: str, product_no: str) -> str:
    return f"{appl_type}{appl_no}:{product_no}"


def parse_appl_key(text: str) -> str:
    """Validate 'N020610:001' (also accepts lower case and an 'appl:' prefix)."""
    t = text.strip()
    if t.lower().startswith("appl:"):
        t = t[5:]
    t = t.upper()
    if not _APPL_KEY.match(t):
        raise BadInput(
            f"'{text}' is not an Orange Book product: expected appl:N020610:001 "
            "(Appl_Type N or A, 6-digit Appl_No, ':', 3-digit Product_No)",
            code="BAD_APPL",
        )
    return t


def get(conn: sqlite3.Connection, key: str) -> ObProduct:
    """The Orange Book listing for an appl key; the RX/DISCN listing before an OTC one."""
    row = conn.execute(
        f"SELECT {_SELECT} FROM ob_products WHERE appl_key = ? ORDER BY otc LIMIT 1", (key,)
    ).fetchone()
    if row is None:
        raise NotFound(
            f"{key} is not in the imported Orange Book (import products.txt with "
            "'pharmos catalog import --orange-book', or check the number)",
            code="NOT_IN_ORANGE_BOOK", appl=key,
        )
    return ObProduct.from_row(row)


def version(conn: sqlite3.Connection) -> str | None:
    """SHA-256 of the last imported file: after an import the table equals that file."""
    row = conn.execute(
        "SELECT sha256 FROM ob_imports ORDER BY import_id DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


_groups: dict[tuple[str, str], tuple[ObProduct, ...]] = {}
_GROUPS_MAX = 8192


def group(conn: sqlite3.Connection, group_key: str) -> tuple[ObProduct, ...]:
    """Every listing of an equivalence group (cached per process and Orange Book version)."""
    v = version(conn)
    if v is not None:
        hit = _groups.get((v, group_key))
        if hit is not None:
            return hit
    rows = conn.execute(
        f"SELECT {_SELECT} FROM ob_products WHERE group_key = ?", (group_key,)
    ).fetchall()
    out = tuple(ObProduct.from_row(r) for r in rows)
    if v is not None:
        if len(_groups) >= _GROUPS_MAX:
            _groups.clear()
        _groups[(v, group_key)] = out
    return out


def select(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[ObProduct]:
    rows = conn.execute(f"SELECT {_SELECT} FROM ob_products WHERE {where}", params).fetchall()
    return [ObProduct.from_row(r) for r in rows]


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM ob_products").fetchone()[0])


# ---- parsing --------------------------------------------------------------------------------
RowTuple = tuple[Any, ...]


def _parse_date(text: str, cache: dict[str, str | None]) -> str | None:
    """'Dec 17, 1996' → '1996-12-17'; the pre-1982 marker → None. ValueError otherwise."""
    if text in cache:
        return cache[text]
    if text == PRE_1982:
        value = None
    else:
        m = _DATE.match(text)
        if not m or m.group(1) not in _MONTHS:
            raise ValueError(f"approval date {text!r} is not like 'Dec 17, 1996'")
        value = date(int(m.group(3)), _MONTHS[m.group(1)], int(m.group(2))).isoformat()
    cache[text] = value
    return value


def parse_products(data: bytes, source: str) -> list[RowTuple]:
    """Validate and convert products.txt into row tuples (column order of ``_COLUMNS``)."""
    errors = RowErrors(OrangeBookCorrupt, "Orange Book", source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        errors.add(line, f"byte 0x{data[e.start]:02x} is not valid text (UTF-8/ASCII)")
        errors.raise_if_any()
        raise AssertionError("unreachable") from None
    lines = text.split("\n")
    if lines and lines[-1] in ("", "\r"):
        lines.pop()  # a final newline is tolerated
    if not lines:
        errors.add(1, "the file is empty; expected the products.txt header")
        errors.raise_if_any()
    header = tuple(h.strip() for h in lines[0].rstrip("\r").split("~"))
    if header != HEADER:
        raise OrangeBookCorrupt(
            f"{source} line 1: header is not the Orange Book products.txt header "
            f"({'~'.join(HEADER)})", code="OB_BAD_HEADER", line=1, file=source,
            found=list(header))
    out: list[RowTuple] = []
    seen: dict[tuple[str, int], int] = {}
    dates: dict[str, str | None] = {}
    te_ok: dict[str, bool] = {}
    for i in range(1, len(lines)):
        line_no = i + 1
        f = lines[i].rstrip("\r").split("~")
        if len(f) != 14:
            errors.add(line_no, f"expected 14 '~'-separated fields, found {len(f)}")
            continue
        (ingredient, df_route, trade, applicant, strength, a_type, a_no, p_no, te, appr,
         rld, rs, typ, full) = (x.strip() for x in f)
        problem = None
        if a_type not in ("N", "A"):
            problem = f"Appl_Type {a_type!r} is not N or A"
        elif len(a_no) != 6 or not a_no.isdigit():
            problem = f"Appl_No {a_no!r} is not 6 digits"
        elif len(p_no) != 3 or not p_no.isdigit():
            problem = f"Product_No {p_no!r} is not 3 digits"
        elif typ not in ("RX", "OTC", "DISCN"):
            problem = f"Type {typ!r} is not RX, OTC or DISCN"
        elif rld not in ("Yes", "No") or rs not in ("Yes", "No"):
            problem = f"RLD/RS {rld!r}/{rs!r} are not Yes/No"
        elif not ingredient or not df_route or not trade or not strength:
            problem = "Ingredient, DF;Route, Trade_Name and Strength must not be empty"
        elif ";" not in df_route:
            problem = f"DF;Route {df_route!r} lacks the ';' between dosage form and route"
        if problem is None and te:
            ok = te_ok.get(te)
            if ok is None:
                ok = te_ok[te] = all(_TE_ONE.match(c) for c in te.split(","))
            if not ok:
                problem = f"TE_Code {te!r} is not a list of A/B codes"
        if problem is None:
            try:
                appr_iso = _parse_date(appr, dates)
            except ValueError as e:
                problem = str(e)
        if problem is not None:
            errors.add(line_no, problem)
            continue
        otc = 1 if typ == "OTC" else 0
        key = f"{a_type}{a_no}:{p_no}"
        prev = seen.get((key, otc))
        if prev is not None:
            errors.add(line_no, f"{key} ({typ}) is listed twice (also line {prev})")
            continue
        seen[(key, otc)] = line_no
        out.append((key, otc, a_type, a_no, p_no, ingredient, df_route, trade, applicant,
                    strength, te, appr_iso, appr, int(rld == "Yes"), int(rs == "Yes"), typ, full,
                    f"{ingredient}|{df_route}|{strength_key(strength)}", norm_name(trade),
                    ingredient_base(ingredient)))
    errors.raise_if_any()
    return out


# ---- import ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObImport:
    """What an import changed, against the Orange Book the store held before."""

    source: str
    sha256: str
    rows: int
    added: int
    removed: int
    changed: int
    unchanged: int
    te_changed: int
    discontinued: int
    ndc_linked: int
    samples: dict[str, list[dict[str, Any]]]

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "added": self.added, "removed": self.removed,
                "changed": self.changed, "unchanged": self.unchanged,
                "te_changed": self.te_changed, "discontinued": self.discontinued,
                "ndc_linked": self.ndc_linked, "sha256": self.sha256, "samples": self.samples}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", code="BAD_INPUT_FILE") from None


def import_orange_book_diff(store: Store, path: Path | str) -> ObImport:
    """Import products.txt as a diff against the store's Orange Book, atomically."""
    p = Path(path)
    data = _read(p)
    rows = parse_products(data, p.name)
    new = {(r[0], r[1]): r for r in rows}
    with store.transaction() as c:
        old = {(r[0], r[1]): tuple(r) for r in c.execute(f"SELECT {_SELECT} FROM ob_products")}
        removed = [k for k in old if k not in new]
        upserts: list[RowTuple] = []
        samples: dict[str, list[dict[str, Any]]] = {
            "added": [], "removed": [], "te_changed": [], "discontinued": []}
        added = changed = te_changed = discontinued = 0

        def sample(kind: str, item: dict[str, Any]) -> None:
            if len(samples[kind]) < MAX_ERRORS_LISTED:
                samples[kind].append(item)

        for k, r in new.items():
            o = old.get(k)
            if o is None:
                added += 1
                upserts.append(r)
                sample("added", {"appl": r[0], "trade_name": r[7], "type": r[15]})
            elif o != r:
                changed += 1
                upserts.append(r)
                if o[10] != r[10]:
                    te_changed += 1
                    sample("te_changed", {"appl": r[0], "trade_name": r[7],
                                          "from": o[10], "to": r[10]})
                if o[15] != "DISCN" and r[15] == "DISCN":
                    discontinued += 1
                    sample("discontinued", {"appl": r[0], "trade_name": r[7]})
        for k in removed[:MAX_ERRORS_LISTED]:
            sample("removed", {"appl": old[k][0], "trade_name": old[k][7]})
        if removed:
            c.executemany("DELETE FROM ob_products WHERE appl_key = ? AND otc = ?", removed)
        if upserts:
            bulk = not old  # first import: build the indexes once, after the rows
            if bulk:
                _drop_indexes(c)
            c.executemany(
                f"INSERT OR REPLACE INTO ob_products ({_SELECT}) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)})", upserts)
            if bulk:
                _create_indexes(c)
        from pharmacy import ndc_directory

        linked = ndc_directory.relink(c)
        sha = hashlib.sha256(data).hexdigest()
        result = ObImport(p.name, sha, len(rows), added, len(removed), changed,
                          len(rows) - added - changed, te_changed, discontinued, linked, samples)
        c.execute(
            "INSERT INTO ob_imports (imported_at, source, sha256, rows, added, removed, changed, "
            "unchanged, te_changed, discontinued, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(store.clock()), p.name, sha, result.rows, added, len(removed), changed,
             result.unchanged, te_changed, discontinued, json.dumps(samples, sort_keys=True)),
        )
    return result


_INDEXES = {
    "ob_products_group": "ob_products(group_key)",
    "ob_products_appl_no": "ob_products(appl_type, appl_no)",
    "ob_products_trade": "ob_products(trade_key)",
    "ob_products_ingredient_name": "ob_products(ingredient)",
    "ob_products_ingredient": "ob_products(ingredient_base)",
}


def _drop_indexes(c: sqlite3.Connection) -> None:
    for name in _INDEXES:
        c.execute(f"DROP INDEX IF EXISTS {name}")


def _create_indexes(c: sqlite3.Connection) -> None:
    for name, on in _INDEXES.items():
        c.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")


def import_orange_book(store: Store, path: Path | str) -> int:
    """Import products.txt (see ``import_orange_book_diff``); returns the rows in the file."""
    return import_orange_book_diff(store, path).rows


def last_import(conn: sqlite3.Connection) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM ob_imports ORDER BY import_id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    out = {k: row[k] for k in row.keys() if k != "detail"}  # noqa: SIM118 (sqlite3.Row)
    out["samples"] = json.loads(row["detail"])
    return out
