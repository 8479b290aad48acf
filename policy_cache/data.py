"""Jurisdiction data shipped in a bundle: rule packs and caps with effective dates, outage
paths, list-chemical base content, drug classes and the India H1/X lists.

Parsed and validated once per bundle; lookups used on the decision path are cached.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, timedelta, tzinfo
from functools import lru_cache
from typing import Any

from policy_cache.errors import DataInvalid

DATA_FILES = ("jurisdictions.json", "products.json", "india_schedules.json")
OPTIONAL_DATA_FILES = ("substitution_law.json",)
DEA_RANK = {"CI": 5, "CII": 4, "CIII": 3, "CIV": 2, "CV": 1}
INDIA_RANK = {"X": 4, "H1": 3, "H": 2, "G": 1}


@dataclass(frozen=True)
class RulePack:
    id: str
    jurisdictions: frozenset[str]
    effective_from: date | None
    effective_to: date | None
    title: str
    source: str

    def in_force(self, chain: tuple[str, ...], day: date) -> bool:
        return bool(self.jurisdictions.intersection(chain)) and _in_window(
            day, self.effective_from, self.effective_to)


@dataclass(frozen=True)
class Active:
    """What is in force for one jurisdiction on one day (computed once, then cached)."""

    chain: tuple[str, ...]
    rules: frozenset[str]
    caps: tuple[Cap, ...]
    caps_key: tuple[tuple[str, int], ...]
    caps_vars: dict[str, Any]
    outage_flags: frozenset[str]
    today: str  # the day, ISO


@dataclass(frozen=True)
class Cap:
    name: str
    value: int
    jurisdictions: frozenset[str]
    effective_from: date | None
    effective_to: date | None
    citation: str

    def in_force(self, chain: tuple[str, ...], day: date) -> bool:
        return bool(self.jurisdictions.intersection(chain)) and _in_window(
            day, self.effective_from, self.effective_to)


def _in_window(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)


def _date(v: Any, where: str) -> date | None:
    if v is None:
        return None
    try:
        return date.fromisoformat(str(v))
    except ValueError:
        raise DataInvalid(f"{where}: {v!r} is not a date YYYY-MM-DD") from None


def _obj(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DataInvalid(f"{where} must be a JSON object")
    return d


def _list(d: Any, where: str) -> list[Any]:
    if not isinstance(d, list):
        raise DataInvalid(f"{where} must be a JSON list")
    return d


def _str_list(d: Any, where: str) -> list[str]:
    items = _list(d, where)
    if not all(isinstance(x, str) and x for x in items):
        raise DataInvalid(f"{where} must be a list of non-empty strings")
    return items


class BundleData:
    """The validated data files of one bundle."""

    def __init__(self, files: Mapping[str, str]) -> None:
        docs: dict[str, Any] = {}
        self._active_cache: dict[tuple[str, date], Active] = {}
        self._zones: dict[str, tzinfo] = {}  # a known jurisdiction's zone, once looked up
        self.class_cache: dict[tuple[Any, ...], Any] = {}
        for name in DATA_FILES:
            text = files.get(name)
            if text is None:
                raise DataInvalid(f"the bundle has no data/{name}")
            try:
                docs[name] = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataInvalid(f"data/{name} is not valid JSON: {e.msg} at line {e.lineno}"
                                  ) from None
        self._load_jurisdictions(_obj(docs["jurisdictions.json"], "jurisdictions.json"))
        self._load_products(_obj(docs["products.json"], "products.json"))
        self._load_india(_obj(docs["india_schedules.json"], "india_schedules.json"))
        self.substitution_law: dict[str, Any] | None = None
        if "substitution_law.json" in files:
            try:
                law = json.loads(files["substitution_law.json"])
            except json.JSONDecodeError as e:
                raise DataInvalid(f"data/substitution_law.json is not valid JSON: {e.msg}"
                                  ) from None
            if not isinstance(law, dict) or law.get("version") != 1 or not isinstance(
                    law.get("states"), dict):
                raise DataInvalid("data/substitution_law.json must be {'version': 1, "
                                  "'states': {...}}")
            self.substitution_law = law

    # ---- loading ------------------------------------------------------------------------------
    def _load_jurisdictions(self, doc: dict[str, Any]) -> None:
        js = _obj(doc.get("jurisdictions"), "jurisdictions.json: jurisdictions")
        self.jurisdictions: dict[str, dict[str, Any]] = {}
        for code, info in js.items():
            info = _obj(info, f"jurisdiction {code}")
            parent = info.get("parent")
            if parent is not None and parent not in js:
                raise DataInvalid(f"jurisdiction {code}: unknown parent {parent!r}")
            tz = str(info.get("timezone") or "UTC")
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise DataInvalid(f"jurisdiction {code}: unknown time zone {tz!r}") from None
            self.jurisdictions[code] = {"name": str(info.get("name") or code),
                                        "parent": parent, "timezone": tz}
        self.rules: list[RulePack] = []
        seen: set[str] = set()
        for i, r in enumerate(_list(doc.get("rules"), "jurisdictions.json: rules")):
            r = _obj(r, f"rules[{i}]")
            rid = str(r.get("id") or "")
            if not rid or rid in seen:
                raise DataInvalid(f"rules[{i}]: missing or duplicate id {rid!r}")
            seen.add(rid)
            self.rules.append(RulePack(
                rid, frozenset(self._known(_str_list(r.get("jurisdictions"), f"rule {rid}"),
                                           f"rule {rid}")),
                _date(r.get("effective_from"), f"rule {rid}"),
                _date(r.get("effective_to"), f"rule {rid}"),
                str(r.get("title") or ""), str(r.get("source") or "")))
        self.caps: list[Cap] = []
        for i, c in enumerate(_list(doc.get("caps"), "jurisdictions.json: caps")):
            c = _obj(c, f"caps[{i}]")
            name = str(c.get("name") or "")
            value = c.get("value")
            if not name.replace("_", "").isalnum() or isinstance(value, bool) or not isinstance(
                    value, int):
                raise DataInvalid(f"caps[{i}]: needs a name and a whole-number value")
            self.caps.append(Cap(
                name, value,
                frozenset(self._known(_str_list(c.get("jurisdictions"), f"cap {name}"),
                                      f"cap {name}")),
                _date(c.get("effective_from"), f"cap {name}"),
                _date(c.get("effective_to"), f"cap {name}"),
                str(c.get("citation") or "")))
        self.outage_paths: list[dict[str, Any]] = []
        for i, o in enumerate(_list(doc.get("outage_paths", []), "outage_paths")):
            o = _obj(o, f"outage_paths[{i}]")
            if not o.get("id") or not o.get("citation"):
                raise DataInvalid(f"outage_paths[{i}] needs an id and the citation that "
                                  "documents the outage path")
            self.outage_paths.append({
                "id": str(o["id"]), "citation": str(o["citation"]),
                "note": str(o.get("note") or ""),
                "jurisdictions": frozenset(self._known(
                    _str_list(o.get("jurisdictions"), f"outage path {o['id']}"),
                    f"outage path {o['id']}"))})
        th = _obj(doc.get("thresholds", {}), "thresholds")
        self.thresholds: dict[str, float] = {}
        for k, v in th.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise DataInvalid(f"threshold {k} must be a number")
            self.thresholds[k] = float(v)
        self.offline_classes = tuple(_str_list(doc.get("offline_classes", []),
                                               "offline_classes"))
        self.rollback_tolerance = timedelta(
            seconds=self.thresholds.get("clock_rollback_tolerance_s", 300))

    def _known(self, codes: list[str], where: str) -> list[str]:
        for c in codes:
            if c not in self.jurisdictions:
                raise DataInvalid(f"{where}: unknown jurisdiction {c!r}")
        return codes

    def _load_products(self, doc: dict[str, Any]) -> None:
        fractions = _obj(doc.get("pse_salt_base_fraction"), "pse_salt_base_fraction")
        frac = {k.lower(): float(v) for k, v in fractions.items()
                if not k.startswith("_") and isinstance(v, int | float)}
        if any(not 0 < f <= 1 for f in frac.values()):
            raise DataInvalid("pse_salt_base_fraction values must be in (0, 1]")
        self.pse_base_mg: dict[str, float] = {}
        self.pse_salt_mg: dict[str, float] = {}
        for i, p in enumerate(_list(doc.get("list_chemical_products"),
                                    "list_chemical_products")):
            p = _obj(p, f"list_chemical_products[{i}]")
            ndc, salt = str(p.get("ndc") or ""), str(p.get("salt") or "").lower()
            mg = p.get("salt_mg_per_unit")
            if not ndc or salt not in frac or isinstance(mg, bool) or not isinstance(
                    mg, int | float) or mg <= 0:
                raise DataInvalid(f"list_chemical_products[{i}]: needs ndc, a known salt "
                                  f"({', '.join(sorted(frac))}) and salt_mg_per_unit > 0")
            self.pse_salt_mg[ndc] = float(mg)
            self.pse_base_mg[ndc] = float(mg) * frac[salt]
        over = _obj(doc.get("schedule_overrides", {}), "schedule_overrides")
        self.schedule_overrides: dict[str, str] = {}
        for ndc, v in over.items():
            sched = _obj(v, f"schedule_overrides[{ndc}]").get("dea_schedule")
            if sched not in DEA_RANK:
                raise DataInvalid(f"schedule_overrides[{ndc}]: dea_schedule must be CI..CV")
            self.schedule_overrides[ndc] = str(sched)
        self.cv_otc_eligible = frozenset(_str_list(doc.get("cv_otc_eligible", []),
                                                   "cv_otc_eligible"))
        self.cv_opium = frozenset(_str_list(doc.get("cv_opium_containing", []),
                                            "cv_opium_containing"))
        self.volume_ml: dict[str, float] = {
            str(k): float(v) for k, v in _obj(doc.get("volume_ml_per_unit", {}),
                                              "volume_ml_per_unit").items()}
        classes: dict[str, set[str]] = {}
        for cls, ings in _obj(doc.get("ingredient_classes"), "ingredient_classes").items():
            for ing in _str_list(ings, f"ingredient_classes.{cls}"):
                classes.setdefault(ing.lower(), set()).add(cls)
        self.ingredient_classes = {k: frozenset(v) for k, v in classes.items()}
        self.catalog_attr_classes: dict[str, str] = {
            str(k): str(v) for k, v in _obj(doc.get("catalog_attr_classes", {}),
                                            "catalog_attr_classes").items()}

    def _load_india(self, doc: dict[str, Any]) -> None:
        self.india_h1 = frozenset(x.lower() for x in _str_list(doc.get("H1"), "H1"))
        self.india_x = frozenset(x.lower() for x in _str_list(doc.get("X"), "X"))
        self.india_aliases = {str(k).lower(): str(v).lower()
                              for k, v in _obj(doc.get("aliases", {}), "aliases").items()}

    # ---- lookups ------------------------------------------------------------------------------
    def chain(self, jurisdiction: str) -> tuple[str, ...]:
        return _chain(self, jurisdiction)

    def timezone(self, jurisdiction: str) -> tzinfo:
        tz = self._zones.get(jurisdiction)
        if tz is None:
            info = self.jurisdictions.get(jurisdiction)
            if info is None:
                return UTC
            tz = self._zones[jurisdiction] = zone(str(info["timezone"]))
        return tz

    def active(self, jurisdiction: str, day: date) -> Active:
        """Rule packs, caps and outage paths in force for a jurisdiction on a day."""
        key = (jurisdiction, day)
        hit = self._active_cache.get(key)
        if hit is None:
            hit = _active(self, jurisdiction, day)
            if len(self._active_cache) > 512:
                self._active_cache.clear()
            self._active_cache[key] = hit
        return hit

    def india_schedule_of(self, ingredients: tuple[str, ...]) -> str | None:
        best: str | None = None
        for ing in ingredients:
            name = ing.strip().lower()
            name = self.india_aliases.get(name, name)
            if name in self.india_x:
                return "X"
            if name in self.india_h1:
                best = "H1"
        return best

    def summary(self) -> dict[str, Any]:
        return {
            "jurisdictions": sorted(self.jurisdictions),
            "rule_packs": [{"id": r.id, "jurisdictions": sorted(r.jurisdictions),
                            "effective_from": r.effective_from and r.effective_from.isoformat(),
                            "effective_to": r.effective_to and r.effective_to.isoformat(),
                            "source": r.source} for r in self.rules],
            "caps": len(self.caps), "outage_paths": [o["id"] for o in self.outage_paths],
            "list_chemical_products": len(self.pse_base_mg),
            "india_h1": len(self.india_h1), "india_x": len(self.india_x),
        }


@lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    return zoneinfo.ZoneInfo(name)


def _chain(data: BundleData, jurisdiction: str) -> tuple[str, ...]:
    out: list[str] = []
    j: str | None = jurisdiction
    while j is not None and j in data.jurisdictions and j not in out:
        out.append(j)
        j = data.jurisdictions[j]["parent"]
    return tuple(out)


def _fmt_g(ug: int) -> str:
    return f"{ug / 1e6:.3f}".rstrip("0").rstrip(".")


def _active(data: BundleData, jurisdiction: str, day: date) -> Active:
    chain = _chain(data, jurisdiction)
    rules = frozenset(r.id for r in data.rules if r.in_force(chain, day))
    caps = tuple(c for c in data.caps if c.in_force(chain, day))
    outages = frozenset(o["id"] for o in data.outage_paths
                        if o["jurisdictions"].intersection(chain))
    caps_vars: dict[str, Any] = {}
    for c in caps:
        caps_vars[f"cap_{c.name}"] = c.value
        if c.name.endswith("_ug"):
            caps_vars[f"cap_{c.name[:-3]}_g"] = _fmt_g(c.value)
    return Active(chain, rules, caps, tuple(sorted((c.name, c.value) for c in caps)),
                  caps_vars, frozenset(f"outage:{o}" for o in outages), day.isoformat())
