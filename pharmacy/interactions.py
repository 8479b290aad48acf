"""Drug-drug interactions by ingredient, from documented knowledge files.

Knowledge file format (``pharmos-interactions 1``; the shipped core file is
``pharmacy/data/interactions_core.tsv``, a pharmacy may install its own):

* UTF-8 text; ``#`` starts a comment line; blank lines are ignored.
* Directives (lines starting with ``@``, no tab): ``@format pharmos-interactions 1``,
  ``@alias NAME = TARGET`` (another name for an ingredient) and
  ``@class NAME = ingredient, ingredient, ...`` (a group a row can name as ``@NAME``).
* A tab-separated table: the first non-directive line is its header and must name
  ``drug_a``, ``drug_b`` and ``severity``; ``management`` and ``citation`` are optional
  columns. Each row is one interaction; ``drug_a`` / ``drug_b`` are ingredient names or
  ``@class`` references. Severity is one of contraindicated, major, moderate, minor.

Ingredient names are matched after normalization: lower case, ``_`` as a space, single
spaces, trailing salt words dropped (``warfarin sodium`` → ``warfarin``,
``ferrous sulfate`` → ``ferrous``; the first word always stays), then aliases applied.
An interaction fires whichever drug is listed first.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pharmacy import orange_book
from pharmacy.clock import iso
from pharmacy.errors import BadInput, UnknownProduct
from pharmacy.store import Store

SEVERITIES = ("contraindicated", "major", "moderate", "minor")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}
CORE_SOURCE = "pharmos-core"
FORMAT = "pharmos-interactions 1"


class InteractionFileCorrupt(BadInput):
    code = "DDI_CORRUPT_ROW"


# ---- names ------------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def normalize_ingredient(name: str) -> str:
    """'Warfarin Sodium' → 'warfarin'; 'acetylsalicylic_acid' → 'acetylsalicylic acid'."""
    t = " ".join(name.replace("_", " ").replace("\ufeff", "").split()).upper()
    return orange_book.strip_salts(t).lower()


def split_ingredients(text: str) -> tuple[str, ...]:
    """'ACETAMINOPHEN; HYDROCODONE BITARTRATE' → ('acetaminophen', 'hydrocodone')."""
    return tuple(dict.fromkeys(
        normalize_ingredient(p) for p in re.split(r"[;/+]", text) if p.strip()))


# ---- knowledge files --------------------------------------------------------------------------
@dataclass(frozen=True)
class Interaction:
    a: str
    b: str
    severity: str
    management: str
    citation: str
    source: str
    rule: str
    line_no: int

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "management": self.management,
                "citation": self.citation, "source": self.source, "rule": self.rule}


@dataclass
class ParsedSource:
    name: str
    sha256: str
    pairs: list[Interaction] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)


def parse_source(text: str, name: str) -> ParsedSource:
    """Parse a knowledge file; classes are expanded into ingredient pairs (a < b)."""
    out = ParsedSource(name, hashlib.sha256(text.encode("utf-8")).hexdigest())
    classes: dict[str, list[str]] = {}
    cols: dict[str, int] | None = None

    def fail(line: int, problem: str) -> InteractionFileCorrupt:
        return InteractionFileCorrupt(f"{name} line {line}: {problem}", file=name, line=line)

    def members(token: str, line: int) -> list[str]:
        t = token.strip()
        if t.startswith("@"):
            key = t[1:].strip().lower()
            if key not in classes:
                raise fail(line, f"class @{key} is not defined above this row")
            return classes[key]
        n = normalize_ingredient(t)
        if not n:
            raise fail(line, "a drug name is empty")
        return [n]

    for i, raw in enumerate(text.lstrip("\ufeff").splitlines()):
        line = i + 1
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("@") and "\t" not in s:
            word, _, rest = s[1:].partition(" ")
            word = word.lower()
            if word == "format":
                if rest.strip() != FORMAT:
                    raise fail(line, f"format {rest.strip()!r} is not '{FORMAT}'")
            elif word in ("alias", "class"):
                left, eq, right = rest.partition("=")
                if not eq or not left.strip() or not right.strip():
                    raise fail(line, f"@{word} needs 'NAME = ...'")
                if word == "alias":
                    out.aliases[normalize_ingredient(left)] = normalize_ingredient(right)
                else:
                    names = [normalize_ingredient(x) for x in right.split(",") if x.strip()]
                    classes[left.strip().lower()] = list(dict.fromkeys(names))
            else:
                raise fail(line, f"unknown directive @{word} (use @format, @alias, @class)")
            continue
        fields = [f.strip() for f in raw.rstrip("\r\n").split("\t")]
        if cols is None:
            cols = {h.lower(): j for j, h in enumerate(fields)}
            missing = [c for c in ("drug_a", "drug_b", "severity") if c not in cols]
            if missing:
                raise fail(line, f"the header must name drug_a, drug_b and severity "
                                 f"(tab-separated); missing {', '.join(missing)}")
            continue
        if len(fields) > len(cols) or len(fields) < 3:
            raise fail(line, f"expected {len(cols)} tab-separated fields, found {len(fields)}")
        fields += [""] * (len(cols) - len(fields))
        sev = fields[cols["severity"]].lower()
        if sev not in _RANK:
            raise fail(line, f"severity {fields[cols['severity']]!r} is not one of "
                             f"{', '.join(SEVERITIES)}")
        da, db = fields[cols["drug_a"]], fields[cols["drug_b"]]
        mgmt = fields[cols["management"]] if "management" in cols else ""
        cite = fields[cols["citation"]] if "citation" in cols else ""
        rule = f"{da} + {db}"
        done: set[tuple[str, str]] = set()
        for a in members(da, line):
            for b in members(db, line):
                lo, hi = (a, b) if a < b else (b, a)
                if a == b or (lo, hi) in done:
                    continue
                done.add((lo, hi))
                out.pairs.append(Interaction(lo, hi, sev, mgmt, cite, name, rule, line))
    if cols is None and out.pairs == []:
        raise fail(1, "no table header (drug_a, drug_b, severity) found")
    return out


def load_file(path: Path | str, name: str | None = None) -> ParsedSource:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise BadInput(f"cannot read {p}: {e.strerror}", code="BAD_INPUT_FILE") from None
    except UnicodeDecodeError:
        raise InteractionFileCorrupt(f"{p.name} is not UTF-8 text", file=p.name,
                                     line=0) from None
    return parse_source(text, name or p.name)


@lru_cache(maxsize=1)
def core_source() -> ParsedSource:
    """The team-written knowledge file shipped with pharmos."""
    text = resources.files("pharmacy.data").joinpath("interactions_core.tsv").read_text("utf-8")
    return parse_source(text, CORE_SOURCE)


# ---- the index --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Drug:
    """One drug of a check: what was typed or scanned, and its normalized ingredients."""

    label: str
    ingredients: tuple[str, ...]


@dataclass(frozen=True)
class Finding:
    drugs: tuple[str, str]
    ingredients: tuple[str, str]
    entries: tuple[Interaction, ...]  # most severe first

    @property
    def severity(self) -> str:
        return self.entries[0].severity

    def to_json(self) -> dict[str, Any]:
        top = self.entries[0]
        return {"drugs": list(self.drugs), "ingredients": list(self.ingredients),
                "severity": top.severity, "management": top.management,
                "citation": top.citation, "source": top.source, "rule": top.rule,
                "also": [e.to_json() for e in self.entries[1:]]}


class InteractionIndex:
    """Ingredient → ingredient → interactions, symmetric, in memory.

    Sources are added first; the adjacency is built on the first check, after every alias
    of every source is known (an alias applies to all sources).
    """

    def __init__(self) -> None:
        self._adj: dict[str, dict[str, list[Interaction]]] | None = None
        self._aliases: dict[str, str] = {}
        self._entries: list[Interaction] = []
        self.sources: list[str] = []

    def add(self, src: ParsedSource) -> None:
        self.add_pairs(src.name, src.pairs, src.aliases)

    def add_pairs(self, source: str, pairs: Iterable[Interaction],
                  aliases: dict[str, str] | None = None) -> None:
        self.sources.append(source)
        self._aliases.update(aliases or {})
        self._entries.extend(pairs)
        self._adj = None

    def _alias(self, name: str) -> str:
        seen = 0
        while name in self._aliases and seen < 8:
            name = self._aliases[name]
            seen += 1
        return name

    def _built(self) -> dict[str, dict[str, list[Interaction]]]:
        adj = self._adj
        if adj is not None:
            return adj
        adj = {}
        alias = self._alias if self._aliases else None
        for it in self._entries:
            a, b = (alias(it.a), alias(it.b)) if alias else (it.a, it.b)
            if a == b:
                continue
            row = adj.get(a)
            if row is None:
                row = adj[a] = {}
            lst = row.get(b)
            if lst is None:
                lst = row[b] = []
                other = adj.get(b)
                if other is None:
                    other = adj[b] = {}
                other[a] = lst
            lst.append(it)
        self._adj = adj
        return adj

    @property
    def pairs(self) -> int:
        return sum(len(row) for row in self._built().values()) // 2

    def canonical(self, name: str) -> str:
        return self._alias(normalize_ingredient(name))

    def knows(self, ingredient: str) -> bool:
        return ingredient in self._built()

    def drug(self, label: str, ingredients: Iterable[str]) -> Drug:
        return Drug(label, tuple(dict.fromkeys(self.canonical(x) for x in ingredients)))

    def _pair(self, adj: dict[str, dict[str, list[Interaction]]], x: Drug, y: Drug,
              out: list[Finding]) -> None:
        for ia in x.ingredients:
            row = adj.get(ia)
            if row is None:
                continue
            for ib in y.ingredients:
                lst = row.get(ib)
                if lst:
                    out.append(Finding((x.label, y.label), (ia, ib),
                                       tuple(sorted(lst, key=_entry_key))))

    def check(self, drugs: Sequence[Drug]) -> list[Finding]:
        """Every interacting pair among the drugs, most severe first."""
        adj = self._built()
        out: list[Finding] = []
        for i in range(len(drugs)):
            for j in range(i + 1, len(drugs)):
                self._pair(adj, drugs[i], drugs[j], out)
        out.sort(key=lambda f: _RANK[f.severity])
        return out

    def check_new(self, new: Drug, active: Sequence[Drug]) -> list[Finding]:
        """A new drug against the patient's active medications."""
        adj = self._built()
        out: list[Finding] = []
        for d in active:
            self._pair(adj, new, d, out)
        out.sort(key=lambda f: _RANK[f.severity])
        return out


def _entry_key(it: Interaction) -> tuple[int, str, int]:
    return (_RANK[it.severity], it.source, it.line_no)


# ---- the store: installed sources and a per-process index -------------------------------------
_cache: dict[str, tuple[str, InteractionIndex]] = {}
_cache_lock = threading.Lock()


def _db_path(conn: sqlite3.Connection) -> str:
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2])


def install_source(store: Store, path: Path | str, name: str | None = None) -> dict[str, Any]:
    """Install (or replace) a pharmacy-supplied knowledge file in the store."""
    src = load_file(path, name)
    if src.name == CORE_SOURCE:
        raise BadInput(f"'{CORE_SOURCE}' is the shipped file's name; choose another",
                       code="BAD_SOURCE_NAME")
    with store.transaction() as c:
        c.execute("DELETE FROM ddi_pairs WHERE source_id = ?", (src.name,))
        c.execute("DELETE FROM ddi_aliases WHERE source_id = ?", (src.name,))
        c.execute("DELETE FROM ddi_sources WHERE source_id = ?", (src.name,))
        c.execute("INSERT INTO ddi_sources VALUES (?, ?, ?, ?, ?)",
                  (src.name, src.sha256, iso(store.clock()), len(src.pairs), len(src.aliases)))
        c.executemany(
            "INSERT OR IGNORE INTO ddi_pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(src.name, p.a, p.b, p.severity, p.management, p.citation, p.rule, p.line_no)
             for p in src.pairs])
        c.executemany("INSERT INTO ddi_aliases VALUES (?, ?, ?)",
                      [(src.name, k, v) for k, v in src.aliases.items()])
        _bump_version(c, src.sha256)
    return {"source": src.name, "pairs": len(src.pairs), "aliases": len(src.aliases),
            "sha256": src.sha256}


def uninstall_source(store: Store, name: str) -> int:
    with store.transaction() as c:
        n = c.execute("DELETE FROM ddi_pairs WHERE source_id = ?", (name,)).rowcount
        c.execute("DELETE FROM ddi_aliases WHERE source_id = ?", (name,))
        gone = c.execute("DELETE FROM ddi_sources WHERE source_id = ?", (name,)).rowcount
        if not gone:
            raise BadInput(f"no interaction source named {name!r} is installed",
                           code="UNKNOWN_SOURCE")
        _bump_version(c, f"-{name}")
    return n


def _bump_version(c: sqlite3.Connection, salt: str) -> None:
    row = c.execute("SELECT value FROM settings WHERE key = 'ddi.version'").fetchone()
    v = hashlib.sha256(((row[0] if row else "") + salt).encode()).hexdigest()[:16]
    c.execute("INSERT INTO settings(key, value) VALUES ('ddi.version', ?) "
              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (v,))


def installed_sources(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute("SELECT * FROM ddi_sources ORDER BY source_id")]


def index_for(conn: sqlite3.Connection, extra: Sequence[ParsedSource] = ()) -> InteractionIndex:
    """The core file plus the store's installed sources (cached per process), plus ``extra``."""
    row = conn.execute("SELECT value FROM settings WHERE key = 'ddi.version'").fetchone()
    version = row[0] if row else ""
    path = _db_path(conn)
    with _cache_lock:
        hit = _cache.get(path)
        if hit is not None and hit[0] == version and not extra:
            return hit[1]
    idx = InteractionIndex()
    idx.add(core_source())
    aliases: dict[str, dict[str, str]] = {}
    for sid, alias, target in conn.execute("SELECT source_id, alias, target FROM ddi_aliases"):
        aliases.setdefault(sid, {})[alias] = target
    by_source: dict[str, list[Interaction]] = {}
    for r in conn.execute("SELECT source_id, a, b, severity, management, citation, rule, line_no "
                          "FROM ddi_pairs"):
        by_source.setdefault(r[0], []).append(
            Interaction(r[1], r[2], r[3], r[4], r[5], r[0], r[6], r[7]))
    for sid in sorted(set(by_source) | set(aliases)):
        idx.add_pairs(sid, by_source.get(sid, []), aliases.get(sid))
    if not extra:
        with _cache_lock:
            _cache[path] = (version, idx)
        return idx
    for src in extra:
        idx.add(src)
    return idx


# ---- resolving what the pharmacist typed ------------------------------------------------------
def resolve_drug(conn: sqlite3.Connection, text: str, index: InteractionIndex) -> Drug:
    """An NDC / GTIN (catalog, then NDC Directory), a trade name (Orange Book) or an ingredient."""
    t = text.strip()
    if not t:
        raise BadInput("an empty drug name was given", code="BAD_DRUG")
    if re.fullmatch(r"[\d\-\s]+", t):
        from pharmacy import catalog, ndc_directory

        try:
            p = catalog.lookup(conn, t)
            ings: tuple[str, ...] = tuple(p.ingredients) or split_ingredients(
                p.generic_name or p.name)
            return index.drug(f"{t} ({p.name})", ings)
        except UnknownProduct:
            entry = ndc_directory.find(conn, t)
            if entry is None:
                raise UnknownProduct(f"{t} is not in this store's catalog or the imported NDC "
                                     "Directory", code="UNKNOWN_NDC", identifier=t) from None
            return index.drug(f"{t} ({entry.proprietary_name})",
                              split_ingredients(entry.substance_name or entry.proprietary_name))
    key = orange_book.norm_name(t)
    row = conn.execute("SELECT ingredient FROM ob_products WHERE trade_key = ? LIMIT 1",
                       (key,)).fetchone()
    if row is not None and orange_book.norm_name(row[0]) != key:
        return index.drug(t, split_ingredients(row[0]))
    return index.drug(t, split_ingredients(t))


def unrecognized(conn: sqlite3.Connection, drugs: Sequence[Drug], index: InteractionIndex
                 ) -> list[str]:
    """Ingredients neither the knowledge sources nor the Orange Book know (likely typos)."""
    out = []
    for d in drugs:
        for ing in d.ingredients:
            if index.knows(ing):
                continue
            base = orange_book.ingredient_base(ing)
            if conn.execute("SELECT 1 FROM ob_products WHERE ingredient_base = ? LIMIT 1",
                            (base,)).fetchone() is None:
                out.append(ing)
    return out
