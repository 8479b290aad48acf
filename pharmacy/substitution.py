"""Generic substitution: Orange Book equivalents, ranking, DAW codes and state law.

``find_equivalents(conn, query, today)`` answers "what may I dispense instead?" for an NDC,
a GTIN, ``appl:N020610:001`` or a name, from the imported Orange Book (REGULATIONS.md §6.4):
same ingredient, dosage form and route, and strength; both A-rated; numbered sub-groups
only within the same number; B codes, blanks and discontinued products never offered.

Ranking: equivalents in stock first (the FEFO lot is shown), then formulary tier (catalog
``attrs.formulary_tier``, 1 best), then price per unit, then appl. Each candidate explains
why it is equivalent and why it is ranked there.

``check_substitution(...)`` returns ``compliance.Reason`` objects for REGULATIONS.md §7
#34-36 from a data table of state substitution law (``DEFAULT_STATE_LAW``), which a policy
bundle may replace (``state_law_from_json``).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from pharmacy import inventory, ndc_directory, orange_book
from pharmacy.catalog import Product
from pharmacy.compliance import Reason
from pharmacy.errors import BadInput, NotFound, UnknownProduct
from pharmacy.ids import classify_identifier
from pharmacy.money import fmt
from pharmacy.orange_book import ObProduct

# ---- DAW (NCPDP 408-D8) ---------------------------------------------------------------------
DAW_CODES: dict[int, str] = {
    0: "No product selection indicated",
    1: "Substitution not allowed by prescriber",
    2: "Substitution allowed; patient requested brand",
    3: "Substitution allowed; pharmacist selected the product dispensed",
    4: "Substitution allowed; generic not in stock",
    5: "Substitution allowed; brand dispensed as generic",
    6: "Override",
    7: "Substitution not allowed; brand mandated by law",
    8: "Substitution allowed; generic not available in marketplace",
    9: "Other",
}


def parse_daw(value: Any) -> int:
    """A DAW / product selection code 0-9 (int or a one-digit string)."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value not in DAW_CODES:
        raise BadInput(f"DAW code {value!r} is not 0-9 (NCPDP 408-D8)", code="BAD_DAW")
    return value


def daw_meaning(value: Any) -> str:
    return DAW_CODES[parse_daw(value)]


# ---- state substitution law (data) ------------------------------------------------------------
@dataclass(frozen=True)
class StateLaw:
    """How one jurisdiction treats generic substitution. Carried as JSON in a policy bundle."""

    jurisdiction: str
    model: Literal["mandatory", "permissive"]
    citation: str | None
    code: str                                   # reason code when substitution is required
    purchaser_may_refuse: bool = True           # refusal recorded as DAW 2
    prescriber_phrase: str | None = None        # wording that prohibits substitution
    label_fields: tuple[str, ...] = ()          # what the label must show for a substitute
    inform_savings: bool = False
    negative_formulary: tuple[str, ...] = ()    # ingredient names never substituted
    negative_formulary_citation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model, "citation": self.citation, "code": self.code,
            "purchaser_may_refuse": self.purchaser_may_refuse,
            "prescriber_phrase": self.prescriber_phrase, "label_fields": list(self.label_fields),
            "inform_savings": self.inform_savings,
            "negative_formulary": list(self.negative_formulary),
            "negative_formulary_citation": self.negative_formulary_citation,
        }


DEFAULT_STATE_LAW: dict[str, StateLaw] = {
    "US-NY": StateLaw("US-NY", "mandatory", "NY Educ. Law 6816-a(1)", "NY_SUBSTITUTION_REQUIRED",
                      purchaser_may_refuse=False, prescriber_phrase="DAW",
                      label_fields=("name", "strength", "manufacturer")),
    "US-FL": StateLaw("US-FL", "mandatory", "Fla. Stat. 465.025(2)", "FL_SUBSTITUTION_REQUIRED",
                      purchaser_may_refuse=True, prescriber_phrase="MEDICALLY NECESSARY",
                      inform_savings=True,
                      negative_formulary_citation="Fla. Stat. 465.025(6); 465.0251"),
    "US-CA": StateLaw("US-CA", "permissive", "Cal. Bus. & Prof. Code 4073",
                      "CA_SUBSTITUTION", prescriber_phrase="Do not substitute"),
    "US-TX": StateLaw("US-TX", "permissive", "Tex. Occ. Code 562.008", "TX_SUBSTITUTION",
                      prescriber_phrase="Brand medically necessary"),
}
_DEFAULT_US = StateLaw("US", "permissive", None, "US_SUBSTITUTION")


def state_law_to_json(table: Mapping[str, StateLaw] | None = None) -> dict[str, Any]:
    """The table as bundle data: {"version": 1, "states": {"US-NY": {...}, ...}}."""
    t = DEFAULT_STATE_LAW if table is None else table
    return {"version": 1, "states": {k: v.to_json() for k, v in sorted(t.items())}}


def state_law_from_json(data: Mapping[str, Any]) -> dict[str, StateLaw]:
    """Read the table from bundle data (see ``state_law_to_json``)."""
    if data.get("version") != 1 or not isinstance(data.get("states"), dict):
        raise BadInput("substitution law data must be {'version': 1, 'states': {...}}",
                       code="BAD_SUBSTITUTION_LAW")
    out: dict[str, StateLaw] = {}
    for j, d in data["states"].items():
        if d.get("model") not in ("mandatory", "permissive"):
            raise BadInput(f"{j}: model must be mandatory or permissive",
                           code="BAD_SUBSTITUTION_LAW")
        out[j] = StateLaw(
            j, d["model"], d.get("citation"), str(d.get("code") or f"{j}_SUBSTITUTION"),
            bool(d.get("purchaser_may_refuse", True)), d.get("prescriber_phrase"),
            tuple(d.get("label_fields", ())), bool(d.get("inform_savings", False)),
            tuple(orange_book.norm_name(x) for x in d.get("negative_formulary", ())),
            d.get("negative_formulary_citation"))
    return out


def law_for(jurisdiction: str, table: Mapping[str, StateLaw] | None = None) -> StateLaw | None:
    """The state's law, the permissive default for other US jurisdictions, None outside the US."""
    t = DEFAULT_STATE_LAW if table is None else table
    if jurisdiction in t:
        return t[jurisdiction]
    if jurisdiction == "US" or jurisdiction.startswith("US-"):
        return replace(_DEFAULT_US, jurisdiction=jurisdiction)
    return None


# ---- resolving what was prescribed ------------------------------------------------------------
@dataclass(frozen=True)
class Prescribed:
    query: str
    group_key: str
    ingredient: str
    df_route: str
    strength: str
    subgroups: frozenset[str]          # A sub-groups the prescription admits
    ob: ObProduct | None = None        # None for a generic-name prescription
    product: Product | None = None     # the catalog product named by an NDC / GTIN
    directory: ndc_directory.DirectoryEntry | None = None
    class_codes: str = ""              # a generic prescription's A codes, e.g. "AB"

    @property
    def generic(self) -> bool:
        return self.ob is None

    @property
    def te_code(self) -> str:
        if self.ob is not None:
            return self.ob.te_code
        return self.class_codes


def _is_identifier(q: str) -> bool:
    return bool(re.fullmatch(r"[\d\-\s]+", q))


def resolve(conn: sqlite3.Connection, query: str) -> Prescribed:
    """Resolve QUERY (NDC, GTIN, appl:N020610:001 or a name) to what was prescribed."""
    q = query.strip()
    if not q:
        raise BadInput("give an NDC, a GTIN, appl:N020610:001 or a drug name", code="BAD_QUERY")
    if conn.execute("SELECT 1 FROM ob_products LIMIT 1").fetchone() is None:
        raise NotFound("no Orange Book is imported in this store; run 'pharmos catalog import "
                       "--orange-book products.txt' first", code="NO_ORANGE_BOOK")
    if q.lower().startswith("appl:"):
        ob = orange_book.get(conn, orange_book.parse_appl_key(q))
        return _from_ob(q, ob)
    if _is_identifier(q):
        return _resolve_identifier(conn, q)
    return _resolve_name(conn, q)


def _from_ob(q: str, ob: ObProduct, **kw: Any) -> Prescribed:
    return Prescribed(q, ob.group_key, ob.ingredient, ob.df_route, ob.strength,
                      orange_book.subgroups(ob.te_code), ob=ob, **kw)


def _resolve_identifier(conn: sqlite3.Connection, q: str) -> Prescribed:
    from pharmacy import catalog

    classify_identifier(q)  # BadInput for a malformed NDC / GTIN
    product: Product | None
    try:
        product = catalog.lookup(conn, q)
    except UnknownProduct:
        product = None
    entry = None
    if product is None or not product.appl:
        entry = ndc_directory.find(conn, product.ndc if product else q)
    if product is not None and product.appl:
        return _from_ob(q, orange_book.get(conn, orange_book.parse_appl_key(product.appl)),
                        product=product)
    if entry is None:
        if product is not None:
            raise NotFound(
                f"{product.name} ({product.ndc}) has no Orange Book application number in the "
                "catalog and is not in the imported NDC Directory; substitution needs one",
                code="NO_ORANGE_BOOK_LINK", ndc=product.ndc)
        raise UnknownProduct(
            f"{q} is not in this store's catalog or the imported NDC Directory",
            code="UNKNOWN_NDC", identifier=q)
    if entry.ob_appl_key is None:
        appl = entry.application_number or "none"
        why = ("a biologic (BLA): interchangeability is in the Purple Book, not the Orange Book"
               if appl.upper().startswith("BLA") else
               f"its application ({appl}) has no single Orange Book product")
        raise NotFound(f"{entry.proprietary_name} ({entry.ndc}) is {why}",
                       code="NOT_IN_ORANGE_BOOK", ndc=entry.ndc, application_number=appl)
    return _from_ob(q, orange_book.get(conn, entry.ob_appl_key), product=product,
                    directory=entry)


_UNIT_WORDS = {"MG", "MCG", "G", "GM", "ML", "%", "MEQ", "UNIT", "UNITS", "IU", "/", "HR", "L"}


def _split_name(q: str) -> tuple[str, str | None, list[str]]:
    """'Lipitor 10 mg tablet' → ('LIPITOR', '10MG', ['TABLET'])."""
    tokens = orange_book.norm_name(q).split()
    start = next((i for i, t in enumerate(tokens) if re.match(r"^\.?\d", t)), None)
    if start is None or start == 0:
        return " ".join(tokens), None, []
    name = " ".join(tokens[:start])
    strength: list[str] = []
    i = start
    while i < len(tokens) and (re.search(r"\d", tokens[i]) or tokens[i] in _UNIT_WORDS
                               or tokens[i].startswith("/")):
        strength.append(tokens[i])
        i += 1
    return name, "".join(strength), tokens[i:]


def _canon_strength(s: str) -> str:
    return ndc_directory.canon_token(orange_book.compact_strength(s))


def _strength_matches(ob_strength: str, typed: str) -> bool:
    if _canon_strength(ob_strength) == ndc_directory.canon_token(typed):
        return True
    typed_nums = tuple(sorted(ndc_directory.canon_token(n)
                              for n in re.findall(r"\d*\.?\d+", typed)))
    ob_nums = tuple(sorted(ndc_directory.canon_token(n)
                           for n in orange_book.strength_numbers(ob_strength)))
    return bool(typed_nums) and typed_nums == ob_nums


MAX_CANDIDATES = 25


def _ambiguous(q: str, candidates: list[dict[str, Any]], what: str) -> BadInput:
    shown = "; ".join(
        f"{c.get('trade_name') or c.get('ingredient')} {c['strength']} {c['df_route']} "
        f"({c['query']})" for c in candidates[:8])
    more = f" and {len(candidates) - 8} more" if len(candidates) > 8 else ""
    return BadInput(
        f"'{q}' matches {len(candidates)} {what}: {shown}{more}. Add a strength or dosage form, "
        "or give one of the appl: queries", code="AMBIGUOUS_NAME", query=q,
        candidates=candidates[:MAX_CANDIDATES], total=len(candidates))


def _product_candidate(ob: ObProduct) -> dict[str, Any]:
    return {"query": ob.query, "trade_name": ob.trade_name, "applicant": ob.applicant,
            "ingredient": ob.ingredient, "strength": ob.strength, "df_route": ob.df_route,
            "te_code": ob.te_code or None, "type": ob.type}


def _resolve_name(conn: sqlite3.Connection, q: str) -> Prescribed:
    from pharmacy import catalog

    hits = conn.execute("SELECT ndc FROM products WHERE name = ? COLLATE NOCASE",
                        (q,)).fetchall()
    if len(hits) == 1:
        product = catalog.lookup(conn, hits[0][0])
        if product.appl:
            return _from_ob(q, orange_book.get(conn, orange_book.parse_appl_key(product.appl)),
                            product=product)
    name, strength, forms = _split_name(q)
    rows = orange_book.select(conn, "trade_key = ? OR ingredient = ?", (name, name))
    if not rows:
        rows = orange_book.select(conn, "ingredient_base = ?",
                                  (orange_book.ingredient_base(name),))
    if not rows:
        like = name.replace("%", "").replace("_", "") + "%"
        near = conn.execute(
            "SELECT DISTINCT trade_name FROM ob_products WHERE trade_key LIKE ? "
            "UNION SELECT DISTINCT ingredient FROM ob_products WHERE ingredient LIKE ? LIMIT 10",
            (like, like)).fetchall()
        raise UnknownProduct(
            f"'{q}' is not a trade name or ingredient in the imported Orange Book"
            + (f"; did you mean {', '.join(r[0] for r in near)}?" if near else ""),
            code="UNKNOWN_NAME", query=q, suggestions=[r[0] for r in near])
    if strength:
        kept = [r for r in rows if _strength_matches(r.strength, strength)]
        if not kept:
            have = sorted({orange_book.strength_key(r.strength) for r in rows})
            raise UnknownProduct(
                f"'{name}' has no {strength} strength in the Orange Book; listed: "
                f"{', '.join(have[:20])}", code="UNKNOWN_STRENGTH", query=q, strengths=have)
        rows = kept
    for word in forms:
        kept = [r for r in rows if word in r.df_route]
        if not kept:
            have = sorted({r.df_route for r in rows})
            raise UnknownProduct(
                f"'{name}' has no dosage form or route '{word}'; listed: {', '.join(have)}",
                code="UNKNOWN_FORM", query=q, forms=have)
        rows = kept
    if any(not r.discontinued for r in rows):
        rows = [r for r in rows if not r.discontinued]
    brand = [r for r in rows if orange_book.norm_name(r.trade_name) == name and
             orange_book.norm_name(r.ingredient) != name]
    if brand:
        if len({r.appl_key for r in brand}) == 1:
            return _from_ob(q, brand[0])
        brand.sort(key=lambda r: (r.df_route, r.strength, r.appl_key))
        raise _ambiguous(q, [_product_candidate(r) for r in brand], "products")
    groups: dict[str, list[ObProduct]] = {}
    for r in rows:
        groups.setdefault(r.group_key, []).append(r)
    if len(groups) > 1:
        cands = []
        for members in groups.values():
            rep = min(members, key=lambda r: (not r.rld, r.discontinued, r.appl_key))
            cands.append({"query": rep.query, "ingredient": rep.ingredient,
                          "strength": orange_book.strength_key(rep.strength),
                          "df_route": rep.df_route, "products": len(members)})
        cands.sort(key=lambda c: (c["df_route"], c["strength"]))
        raise _ambiguous(q, cands, "strengths or dosage forms")
    members = next(iter(groups.values()))
    rated = [r for r in members if r.type == "RX" and r.a_rated]
    if not rated:
        if len({r.appl_key for r in members}) == 1:
            return _from_ob(q, members[0])
        raise _ambiguous(q, [_product_candidate(r) for r in members], "products")
    common = frozenset.intersection(*(orange_book.subgroups(r.te_code) for r in rated))
    if not common:  # e.g. levothyroxine AB1..AB4: the prescriber's reference product decides
        raise _ambiguous(q, [_product_candidate(r) for r in
                             sorted(rated, key=lambda r: r.appl_key)], "products")
    rep = rated[0]
    codes = sorted({c for r in rated for c in orange_book.split_te(
        orange_book.format_subgroups(r.te_code, common))})
    return Prescribed(q, rep.group_key, rep.ingredient, rep.df_route,
                      orange_book.strength_key(rep.strength), common,
                      class_codes=",".join(codes))


# ---- equivalents and ranking ----------------------------------------------------------------
@dataclass(frozen=True)
class Package:
    """A catalog product carrying one Orange Book product, with its FEFO stock."""

    product: Product
    on_hand: int
    lot: str | None
    expiry: str | None
    unit_cost_cents: int | None

    @property
    def tier(self) -> int | None:
        t = self.product.attrs.get("formulary_tier")
        return t if isinstance(t, int) and not isinstance(t, bool) else None


def _package_key(p: Package) -> tuple[int, int, int, str]:
    return (0 if p.on_hand > 0 else 1, p.tier if p.tier is not None else 99,
            p.product.price_cents, p.product.ndc)


@dataclass(frozen=True)
class Candidate:
    ob: ObProduct
    shared: str                      # TE codes shared with the prescription, e.g. "AB1"
    package: Package | None
    directory_ndcs: tuple[str, ...] = ()
    rank: int = 0
    why: str = ""
    patient_savings_cents: int | None = None
    pharmacy_savings_cents: int | None = None

    def sort_key(self) -> tuple[int, int, int, str]:
        p = self.package
        if p is None:
            return (2, 99, 1 << 62, self.ob.appl_key)
        return (0 if p.on_hand > 0 else 1, p.tier if p.tier is not None else 99,
                p.product.price_cents, self.ob.appl_key)

    def to_json(self) -> dict[str, Any]:
        p = self.package
        savings = None
        if self.patient_savings_cents is not None or self.pharmacy_savings_cents is not None:
            savings = {
                "patient": None if self.patient_savings_cents is None
                else fmt(self.patient_savings_cents),
                "pharmacy": None if self.pharmacy_savings_cents is None
                else fmt(self.pharmacy_savings_cents),
                "per": p.product.unit if p else None,
            }
        return {
            "rank": self.rank, "appl": self.ob.appl_key, "te_code": self.ob.te_code,
            "trade_name": self.ob.trade_name, "applicant": self.ob.applicant,
            "strength": self.ob.strength, "rld": self.ob.rld, "rs": self.ob.rs,
            "in_stock": bool(p and p.on_hand > 0), "on_hand": p.on_hand if p else 0,
            "ndc": p.product.ndc if p else None, "name": p.product.name if p else None,
            "lot": p.lot if p else None, "expiry": p.expiry if p else None,
            "price": fmt(p.product.price_cents) if p else None,
            "unit": p.product.unit if p else None,
            "formulary_tier": p.tier if p else None,
            "savings": savings, "directory_ndcs": list(self.directory_ndcs), "why": self.why,
        }


@dataclass(frozen=True)
class Substitution:
    prescribed: Prescribed
    package: Package | None          # the prescribed product as the store carries it
    equivalents: tuple[Candidate, ...]
    note: str | None = None
    law: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def cheaper(self) -> list[Candidate]:
        """Equivalents the store prices below the prescribed product (same unit)."""
        return [c for c in self.equivalents
                if c.patient_savings_cents is not None and c.patient_savings_cents > 0]

    def to_json(self) -> dict[str, Any]:
        pr = self.prescribed
        body: dict[str, Any]
        if pr.ob is not None:
            body = pr.ob.to_json()
        else:
            body = {"appl": None, "trade_name": None, "applicant": None,
                    "ingredient": pr.ingredient, "df_route": pr.df_route,
                    "strength": pr.strength, "te_code": pr.te_code, "rld": None, "rs": None,
                    "type": None}
        body["query"] = pr.query
        body["generic"] = pr.generic
        p = self.package
        body.update({
            "ndc": p.product.ndc if p else (pr.directory.ndc if pr.directory else None),
            "name": p.product.name if p else (
                pr.directory.proprietary_name if pr.directory else None),
            "in_stock": bool(p and p.on_hand > 0), "on_hand": p.on_hand if p else 0,
            "price": fmt(p.product.price_cents) if p else None,
            "unit": p.product.unit if p else None,
        })
        out: dict[str, Any] = {"prescribed": body,
                               "equivalents": [c.to_json() for c in self.equivalents]}
        if self.note:
            out["note"] = self.note
        if self.law is not None:
            out["law"] = self.law
        return out


def _packages(conn: sqlite3.Connection, products: Sequence[Product], today: date
              ) -> list[Package]:
    if not products:
        return []
    lots: dict[str, list[tuple[str, str, int | None, int]]] = {}
    for b in inventory.sellable_stock(conn, today, [p.ndc for p in products]):
        lots.setdefault(b.ndc, []).append((b.lot, b.expiry, b.unit_cost_cents, b.qty))
    out = []
    for prod in products:
        have = lots.get(prod.ndc)
        if have:
            lot, expiry, cost, _ = have[0]
            out.append(Package(prod, sum(x[3] for x in have), lot, expiry, cost))
        else:
            out.append(Package(prod, 0, None, None, None))
    return out


def _catalog_by_appl(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, list[Product]]:
    if not keys:
        return {}
    rows = conn.execute(
        f"SELECT * FROM products WHERE appl IN ({', '.join('?' for _ in keys)})",
        list(keys)).fetchall()
    out: dict[str, list[Product]] = {}
    for r in rows:
        out.setdefault(r["appl"], []).append(Product.from_row(r))
    return out


def _directory_ndcs(conn: sqlite3.Connection, keys: Sequence[str]) -> dict[str, list[str]]:
    if not keys or conn.execute("SELECT 1 FROM ndc_products LIMIT 1").fetchone() is None:
        return {}
    marks = ", ".join("?" for _ in keys)
    out: dict[str, list[str]] = {}
    for key, ndc in conn.execute(
            "SELECT np.ob_appl_key, pk.ndc FROM ndc_products np JOIN ndc_packages pk "
            f"ON pk.product_id = np.product_id WHERE np.ob_appl_key IN ({marks}) "
            "AND pk.sample = 0 ORDER BY pk.ndc", list(keys)):
        lst = out.setdefault(key, [])
        if len(lst) < 3:
            lst.append(ndc)
    return out


def _no_equivalents_note(pr: Prescribed) -> str | None:
    ob = pr.ob
    if ob is None:
        return None
    if ob.discontinued:
        return (f"{ob.trade_name} ({ob.appl_key}) is discontinued in the Orange Book and has no "
                "TE code; nothing can be substituted on its rating")
    if not ob.te_code:
        return (f"{ob.trade_name} ({ob.appl_key}) has no TE code (single-source or not a "
                "multisource listing); nothing to substitute")
    if not ob.a_rated:
        return (f"{ob.trade_name} ({ob.appl_key}) is rated {ob.te_code}: B codes are not "
                "therapeutically equivalent; do not substitute")
    return None


def find_equivalents(conn: sqlite3.Connection, query: str, today: date, *,
                     jurisdiction: str | None = None,
                     law_table: Mapping[str, StateLaw] | None = None) -> Substitution:
    """Orange Book equivalents of QUERY, ranked for this store."""
    pr = resolve(conn, query)
    note = _no_equivalents_note(pr)
    eligible: list[tuple[ObProduct, frozenset[str]]] = []
    for ob in (() if note else orange_book.group(conn, pr.group_key)):
        if pr.ob is not None and ob.appl_key == pr.ob.appl_key:
            continue
        if ob.type != "RX":
            continue  # discontinued and OTC listings are never offered
        shared = pr.subgroups & orange_book.subgroups(ob.te_code)
        if shared:  # else blank, B-rated, or another numbered sub-group
            eligible.append((ob, shared))
    keys = [ob.appl_key for ob, _ in eligible]
    if pr.ob is not None:
        keys.append(pr.ob.appl_key)
    by_appl = _catalog_by_appl(conn, keys)
    carried = [p for ps in by_appl.values() for p in ps]
    if pr.product is not None and all(p.ndc != pr.product.ndc for p in carried):
        carried.append(pr.product)
    pkgs: dict[str, list[Package]] = {}
    for pkg in _packages(conn, carried, today):
        pkgs.setdefault(pkg.product.appl or "", []).append(pkg)
    # the prescribed product as carried: the NDC asked for, else the best package of its appl
    pres_pkg: Package | None = None
    if pr.product is not None:
        pres_pkg = next(p for ps in pkgs.values() for p in ps if p.product.ndc == pr.product.ndc)
    elif pr.ob is not None and pr.ob.appl_key in pkgs:
        pres_pkg = min(pkgs[pr.ob.appl_key], key=_package_key)
    found: list[Candidate] = []
    for ob, shared in eligible:
        options = pkgs.get(ob.appl_key)
        best = min(options, key=_package_key) if options else None
        found.append(Candidate(ob, orange_book.format_subgroups(ob.te_code, shared), best))
    dir_ndcs = _directory_ndcs(conn, [c.ob.appl_key for c in found if c.package is None])
    found.sort(key=Candidate.sort_key)
    ranked = tuple(_explain(pr, pres_pkg, c, i + 1, dir_ndcs.get(c.ob.appl_key, []))
                   for i, c in enumerate(found))
    if not ranked and note is None:
        note = ("no other A-rated product with the same ingredient, dosage form, route and "
                "strength is marketed (RX) in the imported Orange Book")
    sub = Substitution(pr, pres_pkg, ranked, note)
    if jurisdiction:
        law = law_for(jurisdiction, law_table)
        if law is not None:
            cheaper = sub.cheaper()
            sub = replace(sub, law={
                "jurisdiction": jurisdiction, "model": law.model, "citation": law.citation,
                "substitution_required": law.model == "mandatory" and bool(cheaper),
                "cheaper_equivalents": [c.ob.appl_key for c in cheaper],
            })
    return sub


def _explain(pr: Prescribed, pres_pkg: Package | None, c: Candidate, rank: int,
             dir_ndcs: Sequence[str]) -> Candidate:
    ob = c.ob
    if pr.ob is not None:
        te_part = f"TE {ob.te_code} shares {c.shared} with the prescribed {pr.ob.te_code}"
    else:
        te_part = f"TE {ob.te_code} is in the prescription's A-rated class ({pr.te_code})"
    ref = []
    if ob.rld:
        ref.append("reference listed drug")
    if ob.rs:
        ref.append("reference standard")
    eq = (f"equivalent: same ingredient ({ob.ingredient}), dosage form and route "
          f"({ob.df_route}) and strength ({orange_book.strength_key(ob.strength)}); {te_part}"
          + (f"; {' and '.join(ref)}" if ref else ""))
    p = c.package
    patient = pharmacy = None
    if p is None:
        rk = "not carried by this store"
    else:
        if p.on_hand > 0:
            rk = f"in stock ({p.on_hand} on hand; FEFO lot {p.lot} expires {p.expiry})"
        else:
            rk = "carried but not in stock"
        rk += (f", formulary tier {p.tier}" if p.tier is not None else ", no formulary tier")
        rk += f", {fmt(p.product.price_cents)} per {p.product.unit}"
        if pres_pkg is not None and pres_pkg.product.unit == p.product.unit:
            patient = pres_pkg.product.price_cents - p.product.price_cents
            if pres_pkg.unit_cost_cents is not None and p.unit_cost_cents is not None:
                pharmacy = pres_pkg.unit_cost_cents - p.unit_cost_cents
            if patient > 0:
                rk += f" (patient saves {fmt(patient)} per {p.product.unit})"
            elif patient < 0:
                rk += f" (costs the patient {fmt(-patient)} more per {p.product.unit})"
    return Candidate(c.ob, c.shared, p, tuple(dir_ndcs), rank, f"{eq}. Ranked {rank}: {rk}",
                     patient, pharmacy)


# ---- compliance: DAW and state law ------------------------------------------------------------
def _reason(code: str, message: str, citation: str | None, severity: Any = "deny",
            overridable: bool = False) -> Reason:
    return Reason(code=code, message=message, citation=citation, severity=severity,
                  overridable=overridable, rule_id=f"substitution.{code.lower()}")


def check_substitution(prescribed: ObProduct, dispensed: ObProduct, daw: Any,
                       jurisdiction: str, *, cheaper_equivalent: ObProduct | None = None,
                       cheaper_in_stock: bool = False, medically_necessary: bool = False,
                       law_table: Mapping[str, StateLaw] | None = None) -> tuple[Reason, ...]:
    """Reasons for dispensing ``dispensed`` against a prescription for ``prescribed``.

    REGULATIONS.md §7 #34-36. ``cheaper_equivalent``: a less expensive A-rated equivalent the
    store could dispense (from ``find_equivalents(...).cheaper()``); ``medically_necessary``:
    the prescriber's wording that prohibits substitution (FL "MEDICALLY NECESSARY"), treated
    as DAW 1. Severity deny blocks; hold asks the pharmacist; info is for the record.
    """
    code = parse_daw(daw)
    law = law_for(jurisdiction, law_table)
    reasons: list[Reason] = []
    if law is None:
        return ()
    prohibited = code in (1, 7) or medically_necessary
    substituted = dispensed.appl_key != prescribed.appl_key
    if substituted:
        if prohibited:
            why = ("the prescriber wrote MEDICALLY NECESSARY" if medically_necessary and code
                   not in (1, 7) else f"DAW {code}: {DAW_CODES[code]}")
            reasons.append(_reason(
                "DAW1_NO_SUBSTITUTION",
                f"{why}; dispense {prescribed.trade_name} ({prescribed.appl_key}), not "
                f"{dispensed.trade_name}", "NCPDP 408-D8 (DAW 1)"))
        shared = (orange_book.te_equivalent(prescribed.te_code, dispensed.te_code)
                  if prescribed.group_key == dispensed.group_key and dispensed.type == "RX"
                  else frozenset())
        if not shared:
            reasons.append(_reason(
                "TE_NOT_EQUIVALENT",
                f"{dispensed.trade_name} {dispensed.strength} ({dispensed.appl_key}, TE "
                f"{dispensed.te_code or 'none'}, {dispensed.type}) is not an A-rated equivalent "
                f"of {prescribed.trade_name} {prescribed.strength} ({prescribed.appl_key}, TE "
                f"{prescribed.te_code or 'none'})",
                "FDA Orange Book preface (TE codes); Fla. Stat. 465.0251"))
        if code == 2:
            reasons.append(_reason(
                "DAW2_BRAND_REQUESTED",
                "DAW 2 records that the patient asked for the brand, but a substitute is being "
                "dispensed; correct the DAW code or dispense the prescribed product",
                "NCPDP 408-D8", "hold", True))
        base = orange_book.ingredient_base(prescribed.ingredient)
        if base in {orange_book.ingredient_base(x) for x in law.negative_formulary}:
            reasons.append(_reason(
                f"{law.jurisdiction.split('-')[-1]}_NEGATIVE_FORMULARY",
                f"{prescribed.ingredient} is on the {law.jurisdiction} negative formulary: do "
                "not substitute", law.negative_formulary_citation or law.citation))
        if not reasons:
            if law.label_fields:
                reasons.append(_reason(
                    "SUBSTITUTION_LABEL",
                    f"label the substitute with its {', '.join(law.label_fields)}: "
                    f"{dispensed.trade_name}, {dispensed.strength}, "
                    f"{dispensed.applicant_full_name}", law.citation, "info"))
            if law.inform_savings:
                reasons.append(_reason(
                    "SUBSTITUTION_INFORM_SAVINGS",
                    "tell the patient about the substitution and the savings", law.citation,
                    "info"))
        return tuple(reasons)
    # the prescribed product itself is dispensed
    if law.model != "mandatory" or cheaper_equivalent is None:
        return ()
    if prohibited:
        return (_reason("SUBSTITUTION_PROHIBITED_BY_PRESCRIBER",
                        f"brand dispensed as written (DAW {code})", law.citation, "info"),)
    if code == 2:
        if law.purchaser_may_refuse:
            return (_reason("SUBSTITUTION_REFUSED_BY_PURCHASER",
                            "the purchaser refused the less expensive equivalent (DAW 2)",
                            law.citation, "info"),)
        return (_reason(
            law.code,
            f"{law.jurisdiction} requires dispensing the less expensive equivalent "
            f"{cheaper_equivalent.trade_name} ({cheaper_equivalent.appl_key}) unless the "
            "prescriber prohibits substitution; this reference lists no purchaser-refusal "
            "exception: pharmacist to confirm", law.citation, "hold", True),)
    if code == 4:
        if not cheaper_in_stock:
            return (_reason("GENERIC_NOT_IN_STOCK", "DAW 4: the equivalent is not in stock",
                            law.citation, "info"),)
        return (_reason(
            "DAW4_BUT_IN_STOCK",
            f"DAW 4 says the generic is not in stock, but {cheaper_equivalent.trade_name} "
            f"({cheaper_equivalent.appl_key}) is", "NCPDP 408-D8", "hold", True),)
    refusal = " or the purchaser refuses (record DAW 2)" if law.purchaser_may_refuse else ""
    return (_reason(
        law.code,
        f"{law.jurisdiction} law requires substituting the less expensive equivalent "
        f"{cheaper_equivalent.trade_name} ({cheaper_equivalent.appl_key}, TE "
        f"{cheaper_equivalent.te_code}) for {prescribed.trade_name} unless the prescriber "
        f"prohibits it (DAW 1{', ' + repr(law.prescriber_phrase) if law.prescriber_phrase else ''})"
        f"{refusal}", law.citation),)


def check_dispense(conn: sqlite3.Connection, prescribed_query: str, dispensed_query: str,
                   daw: Any, jurisdiction: str, today: date, *, medically_necessary: bool = False,
                   law_table: Mapping[str, StateLaw] | None = None) -> tuple[Reason, ...]:
    """``check_substitution`` with the facts looked up in the store (prices, stock)."""
    sub = find_equivalents(conn, prescribed_query, today)
    if sub.prescribed.ob is None:
        raise BadInput("name the prescribed product itself (NDC or appl:), not a generic class",
                       code="BAD_QUERY")
    dispensed = resolve(conn, dispensed_query)
    if dispensed.ob is None:
        raise BadInput("name the dispensed product itself (NDC or appl:)", code="BAD_QUERY")
    cheaper = sub.cheaper()
    return check_substitution(
        sub.prescribed.ob, dispensed.ob, daw, jurisdiction,
        cheaper_equivalent=cheaper[0].ob if cheaper else None,
        cheaper_in_stock=any(c.package is not None and c.package.on_hand > 0 for c in cheaper),
        medically_necessary=medically_necessary, law_table=law_table)

