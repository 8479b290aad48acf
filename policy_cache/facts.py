"""From a ComplianceRequest to one Cedar context per cart line.

Arithmetic over history (CMEA grams per calendar day and 30 days, C-V units in 48 hours,
partial-fill windows, prior fills, offline units used today) happens here, in Python; every
threshold comes from the bundle's jurisdiction data and is handed to Cedar as ``cap_*``.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

from pharmacy.clock import iso, parse_iso
from pharmacy.compliance import ComplianceRequest, HistoryPort, LineFacts
from policy_cache.bundle import BundleMeta
from policy_cache.data import DEA_RANK, INDIA_RANK, BundleData, zone
from policy_cache.dea import dea_number_ok, registration_covers, registration_expired

PolicyHistory = HistoryPort  # the core's port: what the gate reads of the terminal's records


@dataclass
class Env:
    """What the gate knows besides the request."""

    now: datetime
    last_seen: datetime | None = None
    allowances: dict[str, Any] | None = None
    history: PolicyHistory | None = None
    timezone: str | None = None


@dataclass
class LineEval:
    """One line's facts: ``context`` holds the numbers, ``flags`` the facts Cedar sees as
    ``context.f``; ``vars`` fill in messages. The gate prunes both to what a partition uses."""

    line: LineFacts
    tags: frozenset[str]
    context: dict[str, Any]
    flags: frozenset[str]
    cls: LineClass
    layers: tuple[dict[str, Any], ...]  # the request's, the caps' and the bundle's values

    @cached_property
    def vars(self) -> Mapping[str, Any]:
        """Message values: the line's over ``layers``. Built when a message is rendered (most
        lines have none), from what ``context`` already holds."""
        ln, cls, ctx = self.line, self.cls, self.context
        own: dict[str, Any] = {"name": ln.name, "ndc": ln.ndc, "schedule": cls.schedule,
                               "india_schedule": cls.india}
        if "offline_used" in ctx:  # a restricted line of an offline sale
            own["offline_class"] = cls.offline_class or "restricted"
        if "pse_day_ug" in ctx:
            own["pse_day_g"], own["pse_30d_g"] = _fmt_g(ctx["pse_day_ug"]), _fmt_g(
                ctx["pse_30d_ug"])
        return ChainMap(own, *self.layers)


@dataclass(frozen=True)
class LineClass:
    dea: str | None
    india: str | None
    pse: bool
    classes: frozenset[str]
    restricted: bool
    # what the classification alone adds to a line's flags and tags (see FactBuilder._line)
    flags: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    rx_class: bool = False  # a prescription item whatever the catalog says (DEA, India H/H1/X)
    schedule: str | None = None  # the message value {schedule}: "II" for CII

    @property
    def offline_class(self) -> str | None:
        if self.dea:
            return self.dea
        if self.pse:
            return "PSE"
        if self.india in ("H", "H1", "X"):
            return self.india
        return None


def _stricter(rank: Mapping[str, int], a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if rank.get(a, 0) >= rank.get(b, 0) else b


def classify(data: BundleData, ndc: str, dea: str | None, india: str | None, cmea: bool,
             ingredients: tuple[str, ...], attrs: Mapping[str, Any]) -> LineClass:
    """The stricter of the catalog's and the bundle's classification (memoized)."""
    attr_classes = data.catalog_attr_classes
    key = (ndc, dea, india, cmea, ingredients,
           tuple([a for a in attrs if a in attr_classes and attrs[a]]) if attrs else ())
    hit: LineClass | None = data.class_cache.get(key)
    if hit is None:
        hit = _classify(data, ndc, dea, india, cmea, ingredients, attrs)
        if len(data.class_cache) > 4096:
            data.class_cache.clear()
        data.class_cache[key] = hit
    return hit


def _classify(data: BundleData, ndc: str, dea: str | None, india: str | None, cmea: bool,
              ingredients: tuple[str, ...], attrs: Mapping[str, Any]) -> LineClass:
    dea = _stricter(DEA_RANK, dea, data.schedule_overrides.get(ndc))
    india = _stricter(INDIA_RANK, india, data.india_schedule_of(ingredients))
    pse = bool(cmea) or ndc in data.pse_base_mg
    classes: set[str] = set()
    for ing in ingredients:
        classes.update(data.ingredient_classes.get(ing.strip().lower(), ()))
    for attr, cls in data.catalog_attr_classes.items():
        if attrs.get(attr):
            classes.add(cls)
    if ndc in data.cv_opium:
        classes.add("opium")
    restricted = bool(dea) or pse or india in ("H", "H1", "X")
    flags: set[str] = {f"class:{c}" for c in classes}
    tags: set[str] = set()
    if restricted:
        flags.add("restricted")
        tags.add("restricted")
    if dea:
        flags.update(("controlled", f"dea:{dea}"))
        tags.add("dea")
        tags.add("cii" if dea == "CII" else "ciii_v" if dea != "CI" else "dea")
    if pse:
        flags.add("pse")
        tags.add("pse")
    if india:
        flags.add(f"india:{india}")
        tags.add("india")
    if "opium" in classes:
        flags.add("opium")
    return LineClass(dea, india, pse, frozenset(classes), restricted, frozenset(flags),
                     frozenset(tags), bool(dea) or india in ("H", "H1", "X"),
                     (dea or "")[1:] or dea)


# ---- small parsers: None when absent; the field name goes to ``bad`` when unreadable ----------
def _present(v: Any) -> bool:
    if v.__class__ is str:
        return bool(v.strip())
    if v is None or v is False:
        return False
    if isinstance(v, str):
        return bool(v.strip())
    if isinstance(v, dict):
        return any(_present(x) for x in v.values())
    if isinstance(v, list | tuple):
        return bool(v)
    return True


def _int(d: Mapping[str, Any], key: str, bad: set[str], name: str | None = None) -> int | None:
    v = d.get(key)
    if v.__class__ is int:
        return v  # the common case, first
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        bad.add(name or key)
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    bad.add(name or key)
    return None


def _date(d: Mapping[str, Any], key: str, bad: set[str], name: str | None = None) -> date | None:
    v = d.get(key)
    if v is None or v == "":
        return None
    day = _parse_day(str(v).strip())
    if day is None:
        bad.add(name or key)
    return day


@lru_cache(maxsize=1024)
def _parse_day(s: str) -> date | None:
    """The date a field's text starts with; None when unreadable (memoized: dates repeat)."""
    try:
        return date.fromisoformat(s[:10]) if len(s) >= 10 else date.fromisoformat(s)
    except ValueError:
        return None


def _flag(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "yes", "y", "1")
    return v is True or (isinstance(v, int) and not isinstance(v, bool) and v == 1)


def rx_origin(rx: Mapping[str, Any]) -> tuple[str, bool]:
    """How a prescription reached the pharmacy (one of ORIGINS) and whether its ``origin``
    field, when given, was one of them. Without a valid one: ``electronic``, ``emergency_oral``
    (oral) or else paper."""
    origin = rx.get("origin")
    origin = str(origin).strip().lower() if origin else ""
    if origin in ORIGINS:
        return origin, True
    return ("electronic" if _flag(rx.get("electronic")) else
            "oral" if _flag(rx.get("emergency_oral")) else "paper"), not origin


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    last = (date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(d.day, last))


def months_ceil(start: date, end: date) -> int:
    """The smallest m with end <= start + m months ("more than 6 months" <=> result > 6)."""
    if end <= start:
        return 0
    m = (end.year - start.year) * 12 + end.month - start.month
    return m if add_months(start, m) >= end else m + 1


@lru_cache(maxsize=1024)
def _norm_name(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.casefold()).split())


_RX_FLAGS = frozenset(("emergency_oral", "pmp_checked", "acute_pain", "acute_pain_exception",
                       "original_verified", "duplicate_retained", "security_form"))
PARTIAL_MODES = {"cara": "cara", "patient_request": "cara", "prescriber_request": "cara",
                 "short_stock": "short_stock", "pharmacy_short": "short_stock",
                 "ltcf": "ltcf", "terminal": "terminal", "terminally_ill": "terminal"}
ORIGINS = ("paper", "electronic", "fax", "oral")
CHANNELS = ("retail", "mail_order", "mobile")
SETTINGS = ("ltcf", "hospice", "home_infusion", "terminal")
_RX_SALE_ONLY = frozenset(("rx", "invalid"))  # request flags an OTC line of an Rx sale drops
# purchaser totals of a sale without pseudoephedrine or OTC C-V lines (read, never written)
_NO_TOTALS: Mapping[str, Any] = MappingProxyType({"cv_otc": frozenset(),
                                                  "pse_unknown": frozenset()})


def partial_mode(v: Any) -> str | None:
    if v is True:
        return "short_stock"
    if isinstance(v, str):
        return PARTIAL_MODES.get(v.strip().lower())
    return None


_PATIENT_REQUIRED = (("id", "patient.id"), ("name", "patient.name"),
                     ("address", "patient.address"))
_PRESCRIBER_REQUIRED = (("name", "prescriber.name"), ("address", "prescriber.address"),
                        ("dea", "prescriber.dea"))


def _require(obj: Mapping[str, Any], fields: tuple[tuple[str, str], ...],
             missing: set[str]) -> None:
    """Note each (key, name) whose value is absent or blank as missing, by name."""
    for key, name in fields:
        if not _present(obj.get(key)):
            missing.add(name)


@lru_cache(maxsize=256)
def _missing_flag(name: str) -> str:
    return f"missing:{name}"


_BUNDLE_VARS: dict[int, tuple[BundleMeta, dict[str, Any]]] = {}


def _bundle_vars(meta: BundleMeta) -> dict[str, Any]:
    """The bundle's message values, built once per bundle (a read-only layer of every line's
    vars; the entry holds the meta, so its id is not reused)."""
    hit = _BUNDLE_VARS.get(id(meta))
    if hit is None or hit[0] is not meta:
        if len(_BUNDLE_VARS) >= 16:
            _BUNDLE_VARS.clear()
        hit = _BUNDLE_VARS[id(meta)] = (meta, {"bundle_version": meta.bundle_version,
                                               "offline_until": iso(meta.offline_until)})
    return hit[1]


def _fmt_g(ug: Any) -> str:
    return f"{float(ug) / 1e6:.3f}".rstrip("0").rstrip(".") if isinstance(ug, int) else "?"


@lru_cache(maxsize=256)
def _written_facts(written: date, day: date, tz: tzinfo) -> tuple[int, datetime, int]:
    """Days since written, the local midnight it was written (as UTC: subtracting it from
    another UTC time needs no zone lookup), months since (ceiling)."""
    midnight = datetime.combine(written, time(0), tz).astimezone(UTC)
    return (day - written).days, midnight, months_ceil(written, day)


def _hours(a: datetime, b: datetime) -> int:
    return int((a - b).total_seconds() // 3600)


class FactBuilder:
    """Builds the per-line contexts of one request."""

    __slots__ = ("active", "at", "caps_key", "chain", "data", "day", "env", "history", "meta",
                 "req", "rules", "today", "tz")

    def __init__(self, data: BundleData, meta: BundleMeta, req: ComplianceRequest,
                 env: Env) -> None:
        self.data, self.meta, self.req, self.env = data, meta, req, env
        self.tz: tzinfo = data.timezone(req.jurisdiction)
        if env.timezone:
            try:
                self.tz = zone(env.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                pass  # an unknown zone name in settings: keep the jurisdiction's zone
        self.at = req.at if req.at.tzinfo is not None else req.at.replace(tzinfo=UTC)
        self.day = self.at.astimezone(self.tz).date()
        self.active = data.active(req.jurisdiction, self.day)
        self.today = self.active.today  # the day, ISO
        self.chain = self.active.chain
        self.rules = self.active.rules
        self.caps_key = self.active.caps_key
        self.history = env.history

    # ---- request-level facts -----------------------------------------------------------------
    def build(self) -> list[LineEval]:
        req, data = self.req, self.data
        lines = req.lines
        classes = [classify(data, ln.ndc, ln.dea_schedule, ln.india_schedule, ln.cmea,
                            ln.ingredients, ln.attrs) for ln in lines]
        flags: set[str] = set()
        nums: dict[str, int] = {}  # all of these go into the context of Rx lines
        vars_: dict[str, Any] = {}  # request-level message values, over the caps' and bundle's
        missing: set[str] = set()
        bad: set[str] = set()
        user = req.user or {}
        if str(user.get("role") or "") == "pharmacist":
            flags.add("pharmacist")
        if not _present(user.get("id")):
            missing.add("dispenser")
        patient = req.patient
        if not isinstance(patient, dict):
            if patient is not None:
                bad.add("patient")
            patient = {}
        self._patient_facts(patient, flags, nums, missing, bad)
        rx = req.rx
        if rx is not None:
            flags.add("rx")
            if isinstance(rx, dict):
                rx_lines_qty = 0  # what this sale dispenses of prescription items
                for ln, c in zip(lines, classes, strict=True):
                    if ln.rx_only or c.rx_class:
                        rx_lines_qty += ln.qty
                self._rx_facts(rx, flags, nums, vars_, missing, bad, rx_lines_qty, classes)
            else:
                bad.add("rx")
        extra = req.extra or {}
        channel = str(extra.get("channel") or "retail")
        if channel not in CHANNELS:
            bad.add("channel")
            channel = "retail"
        flags.add(f"channel:{channel}")
        if (_present(extra.get("purchaser_signature"))
                or _present(extra.get("signature_captured"))
                or _present(patient.get("signature"))):
            flags.add("signature")
        else:
            missing.add("signature")
        if req.offline:
            flags.add("offline")
        now = self.env.now
        if max(self.at, now) > self.meta.offline_until:
            flags.add("bundle_expired")
        if self.env.last_seen is not None and now < self.env.last_seen - data.rollback_tolerance:
            flags.add("clock_rollback")
            vars_["last_seen"] = iso(self.env.last_seen)
        flags.update(self.active.outage_flags)
        if bad:
            flags.add("invalid")
            vars_["invalid_fields"] = ", ".join(sorted(bad))
            missing.update(bad)
        flags.update(map(_missing_flag, missing))
        purchase = self._purchase_totals(classes, patient, flags)
        offline_usage = self._offline_usage(classes) if req.offline else None
        layers = (vars_, self.active.caps_vars, _bundle_vars(self.meta))
        sale = _sale_flags(flags)
        return [self._line(i, ln, cls, sale, nums, layers, purchase, offline_usage)
                for i, (ln, cls) in enumerate(zip(lines, classes, strict=True))]

    def _patient_facts(self, patient: Mapping[str, Any], flags: set[str], nums: dict[str, int],
                       missing: set[str], bad: set[str]) -> None:
        _require(patient, _PATIENT_REQUIRED, missing)
        born = _date(patient, "birth_date", bad, "patient.birth_date")
        if born is None:
            missing.add("patient.birth_date")
        else:
            age = self.day.year - born.year - ((self.day.month, self.day.day) <
                                               (born.month, born.day))
            nums["patient_age"] = age
        doc = patient.get("id_document")
        if _present(doc):
            flags.add("id_captured")
            if isinstance(doc, dict) and _present(doc.get("name")) and _present(
                    patient.get("name")) and _norm_name(str(doc["name"])) != _norm_name(
                    str(patient["name"])):
                flags.add("id_name_mismatch")
        else:
            missing.add("id_document")

    def _rx_facts(self, rx: Mapping[str, Any], flags: set[str], nums: dict[str, int],
                  vars_: dict[str, Any], missing: set[str], bad: set[str], rx_lines_qty: int,
                  classes: list[LineClass]) -> None:
        origin, valid = rx_origin(rx)
        if not valid:
            bad.add("origin")
        flags.add(f"origin:{origin}")
        for key in rx.keys() & _RX_FLAGS:
            v = rx[key]
            if v is True or (v is not None and v is not False and _flag(v)):
                flags.add(key)
        if _present(rx.get("pmp_outage")):
            flags.add("pmp_outage")
        if _present(rx.get("condition_code")):
            flags.add("condition_code")
        setting = rx.get("patient_setting")
        setting = str(setting).strip().lower() if setting else ""
        if setting in SETTINGS:
            flags.add(f"setting:{setting}")
        written = _date(rx, "written_on", bad)
        if written is None:
            missing.add("written_on")
        else:
            nums["rx_age_days"], start, months = _written_facts(written, self.day, self.tz)
            nums["rx_age_hours"] = _hours(self.at, start)
            nums["rx_age_months"] = months
            earliest = _date(rx, "earliest_fill_date", bad)
            base = max(written, earliest) if earliest else written
            nums["tx_cii_age_days"] = nums["rx_age_days"] if base is written else (
                self.day - base).days
        refill = _int(rx, "refill_number", bad)
        refill = 0 if refill is None else refill
        nums["refill_number"] = refill
        auth = _int(rx, "refills_authorized", bad)
        if auth is not None:
            nums["refills_authorized"] = auth
        days = _int(rx, "days_supply", bad)
        if days is not None:
            nums["days_supply"] = days
        else:
            missing.add("days_supply")
        qty_key = "quantity_prescribed" if rx.get("quantity_prescribed") is not None else "quantity"
        qty_rx = _int(rx, qty_key, bad, "quantity")
        if qty_rx is None:
            missing.add("quantity")
        else:
            nums["qty_prescribed"] = qty_rx
        if not _present(rx.get("directions")):
            missing.add("directions")
        repeats = _int(rx, "repeats", bad)
        nums["repeats_allowed"] = repeats or 0
        pres = rx.get("prescriber")
        if pres is not None and not isinstance(pres, dict):
            bad.add("prescriber")
            pres = None
        pres = pres or {}
        _require(pres, _PRESCRIBER_REQUIRED, missing)
        dea_no = str(pres.get("dea") or "").strip().upper()
        if dea_no:
            vars_["prescriber_dea"] = dea_no
            if not dea_number_ok(dea_no):
                flags.add("prescriber_dea:bad")
            expires = _date(pres, "dea_expires", bad, "prescriber.dea_expires")
            if expires is not None and registration_expired(expires, self.day):
                flags.add("prescriber_dea:expired")
                vars_["prescriber_dea_expires"] = expires and expires.isoformat()
            schedules = pres.get("dea_schedules")
            if isinstance(schedules, list | tuple):  # else unknown: nothing to check
                for c in classes:
                    if c.dea and registration_covers(schedules, c.dea) is False:
                        flags.add("prescriber_dea:not_covered")
        partial = rx.get("partial_fill")
        mode = None if partial is None else partial_mode(partial)
        if partial not in (None, False, "", True) and mode is None:
            bad.add("partial_fill")
        fills: list[dict[str, Any]] = []
        number = rx.get("rx_number")
        if _present(number) and self.history is not None:
            fills = self.history.rx_fill_history(str(number))
        same = [f for f in fills if int(f.get("refill_number") or 0) == refill] if fills else []
        if mode is None and same:
            mode = partial_mode(same[0].get("partial_fill"))
        if mode:
            flags.add(f"partial:{mode}")
        if same:
            flags.add("later_portion")
            first = parse_iso(str(same[0]["created_at"]))
            nums["hours_since_first_partial"] = _hours(self.at, first)
        qty_after = rx_lines_qty
        if same:
            qty_after += sum(int(f.get("qty") or 0) for f in same)
        nums["qty_after"] = qty_after
        nums["prior_fills"] = len(fills)
        if mode or same or (qty_rx is not None and qty_after < qty_rx):
            flags.add("is_partial")
        if _present(rx.get("strength")):
            flags.add("rx_strength")

    # ---- purchaser totals (CMEA, C-V without prescription) -----------------------------------
    def _purchase_totals(self, classes: list[LineClass], patient: Mapping[str, Any],
                         flags: set[str]) -> Mapping[str, Any]:
        data, req = self.data, self.req
        pse_idx: list[int] = []
        cv_idx: list[int] = []
        for i, c in enumerate(classes):
            if c.pse:
                pse_idx.append(i)
            if c.dea == "CV" and "rx" not in flags and self._cv_eligible(req.lines[i]):
                cv_idx.append(i)
        if not pse_idx and not cv_idx:
            return _NO_TOTALS
        out: dict[str, Any] = {"cv_otc": set(cv_idx), "pse_unknown": set()}
        rows: list[dict[str, Any]] = []
        pid = patient.get("id")
        if _present(pid) and self.history is not None:
            rows = self.history.purchases_since(str(pid), self.at - timedelta(days=30))
        if pse_idx:
            day_ug = month_ug = 0
            cut30 = self.at - timedelta(days=30)
            for r in rows:
                cls = classify(data, r["ndc"], r["dea_schedule"], None, r["cmea"], (), r["attrs"])
                if not cls.pse:
                    continue
                mg = data.pse_base_mg.get(r["ndc"], r["pse_mg_per_unit"])
                if mg is None:
                    continue
                ug = round(float(mg) * 1000) * r["qty"]
                when = parse_iso(str(r["created_at"]))
                if when.astimezone(self.tz).date() == self.day:
                    day_ug += ug
                if when >= cut30:
                    month_ug += ug
            for i in pse_idx:
                ln = req.lines[i]
                mg = data.pse_base_mg.get(ln.ndc, ln.pse_mg_per_unit)
                if mg is None:
                    out["pse_unknown"].add(i)
                    continue
                ug = round(float(mg) * 1000) * ln.qty
                day_ug += ug
                month_ug += ug
            out["pse_day_ug"], out["pse_30d_ug"] = day_ug, month_ug
            out["pse_log_required"] = not self._log_exempt(pse_idx)
        if cv_idx:
            du = ml = 0
            cut48 = self.at - timedelta(hours=48)
            for r in rows:
                if r["kind"] != "otc":
                    continue
                cls = classify(data, r["ndc"], r["dea_schedule"], None, False, (), r["attrs"])
                if cls.dea != "CV" or parse_iso(str(r["created_at"])) < cut48:
                    continue
                d, m = self._cv_units(r["ndc"], str(r["unit"]), r["qty"], r["attrs"])
                du, ml = du + d, ml + m
            for i in cv_idx:
                ln = req.lines[i]
                d, m = self._cv_units(ln.ndc, ln.unit, ln.qty, ln.attrs)
                du, ml = du + d, ml + m
            out["cv_48h_du"], out["cv_48h_ml"] = du, ml
        return out

    def _cv_eligible(self, ln: LineFacts) -> bool:
        return ln.ndc in self.data.cv_otc_eligible or bool(ln.attrs.get("cv_otc_eligible"))

    def _cv_units(self, ndc: str, unit: str, qty: int, attrs: Mapping[str, Any]
                  ) -> tuple[int, int]:
        ml_per = self.data.volume_ml.get(ndc) or attrs.get("ml_per_unit")
        if isinstance(ml_per, int | float) and ml_per > 0:
            return 0, math.ceil(qty * float(ml_per))
        if unit.strip().lower() in ("ml", "milliliter", "millilitre"):
            return 0, qty
        per = attrs.get("dosage_units_per_unit")
        if not isinstance(per, int):
            per = attrs.get("container_size") if unit.lower() in ("pack", "box", "bottle",
                                                                 "strip") else 1
        return qty * (per if isinstance(per, int) and per > 0 else 1), 0

    def _log_exempt(self, pse_idx: list[int]) -> bool:
        """One package containing no more than the exempt amount (21 CFR 1314.30(a)(1))."""
        if len(pse_idx) != 1:
            return False
        ln = self.req.lines[pse_idx[0]]
        if ln.qty != 1:
            return False
        salt = self.data.pse_salt_mg.get(ln.ndc)
        if salt is None:
            per, n = ln.attrs.get("pse_salt_mg_per_dose_unit"), ln.attrs.get("container_size")
            if isinstance(per, int | float) and isinstance(n, int):
                salt = float(per) * n
        limit = self.data.thresholds.get("pse_log_exempt_salt_mg")
        return salt is not None and limit is not None and salt <= limit

    # ---- offline allowance -------------------------------------------------------------------
    def _offline_usage(self, classes: list[LineClass]) -> dict[str, Any]:
        grant = self.env.allowances or {}
        raw = grant.get("per_day")
        per_day: dict[str, Any] = raw if isinstance(raw, dict) else {}
        valid_until = grant.get("valid_until")
        valid = False
        if isinstance(valid_until, str):
            try:
                valid = self.env.now <= min(parse_iso(valid_until), self.meta.offline_until)
            except ValueError:
                valid = False
        used: dict[str, int] = {}
        day = self.at.astimezone(UTC).date().isoformat()
        if self.history is not None and any(c.restricted for c in classes):
            for r in self.history.offline_usage(day):
                oc = classify(self.data, r["ndc"], r["dea_schedule"], r["india_schedule"],
                              r["cmea"], r["ingredients"], r["attrs"]).offline_class
                if oc:
                    used[oc] = used.get(oc, 0) + int(r["units"])
        for ln, c in zip(self.req.lines, classes, strict=True):
            oc = c.offline_class
            if oc:
                used[oc] = used.get(oc, 0) + ln.qty
        allowance = {k: int(v) for k, v in per_day.items()
                     if isinstance(v, int) and not isinstance(v, bool)} if valid else {}
        return {"used": used, "allowance": allowance}

    # ---- one line ----------------------------------------------------------------------------
    def _line(self, idx: int, ln: LineFacts, cls: LineClass, sale: frozenset[str],
              nums: dict[str, int], vars_: tuple[dict[str, Any], ...],
              purchase: Mapping[str, Any], offline_usage: dict[str, Any] | None) -> LineEval:
        attrs = ln.attrs
        rx_line = ln.rx_only or cls.rx_class
        add: list[str] = []  # this line's own flags, besides the classification's
        if ln.rx_only:
            add.append("rx_only")
        if attrs.get("opium_containing"):
            add.append("opium")
        if attrs.get("ndps"):
            add.append("ndps")
        today = self.today
        for a in ln.allocations:
            if str(a.get("expiry") or "9999") < today:
                add.append("lot_expired")
            if not _present(a.get("lot")):
                add.append("missing:batch")
            if not _present(a.get("expiry")):
                add.append("missing:expiry")
        if not ln.allocations:
            add += ("missing:batch", "missing:expiry")
        if not _present(attrs.get("manufacturer")):
            add.append("missing:manufacturer")
        if "rx_strength" not in sale and not _present(attrs.get("strength")):
            add.append("missing:strength")
        ctx: dict[str, Any] = {"j": self.req.jurisdiction, "qty": ln.qty}
        if rx_line or cls.india:
            ctx.update(nums)  # patient age and the prescription's numbers
        elif "patient_age" in nums:
            ctx["patient_age"] = nums["patient_age"]
        if cls.pse:
            if idx in purchase["pse_unknown"]:
                add.append("pse_content_unknown")
            if "pse_day_ug" in purchase:
                ctx["pse_day_ug"], ctx["pse_30d_ug"] = purchase["pse_day_ug"], purchase[
                    "pse_30d_ug"]
            if purchase.get("pse_log_required"):
                add.append("pse_log_required")
        cv_otc = idx in purchase["cv_otc"]
        if cv_otc:
            add.append("cv_otc")
            ctx["cv_48h_du"], ctx["cv_48h_ml"] = purchase["cv_48h_du"], purchase["cv_48h_ml"]
        if offline_usage is not None and cls.restricted:
            oc = cls.offline_class or "restricted"
            ctx["offline_used"] = offline_usage["used"].get(oc, 0)
            ctx["offline_allowance"] = offline_usage["allowance"].get(oc, 0)
        flags = _line_flags(sale, bool(rx_line), cls.flags, tuple(add))
        tags = _line_tags(cls.tags, ln.rx_only, rx_line and "rx" in sale, cv_otc)
        return LineEval(ln, tags, ctx, flags, cls, vars_)


# Flag sets: few combinations exist, so each is built once and shared. A line's flags are then
# found from the request's by identity, and the gate looks partitions up by sets whose hash is
# kept and which compare equal by identity. Frozensets are immutable: sharing is safe.
_SALE_FLAGS: dict[frozenset[str], frozenset[str]] = {}
_LINE_FLAGS: dict[tuple[frozenset[str], bool, frozenset[str], tuple[str, ...]],
                  frozenset[str]] = {}


def _sale_flags(flags: set[str]) -> frozenset[str]:
    """The request's flags, as the one shared frozenset with these members."""
    key = frozenset(flags)
    hit = _SALE_FLAGS.get(key)
    if hit is None:
        if len(_SALE_FLAGS) >= 4096:
            _SALE_FLAGS.clear()
        hit = _SALE_FLAGS[key] = key
    return hit


def _line_flags(sale: frozenset[str], rx_line: bool, class_flags: frozenset[str],
                own: tuple[str, ...]) -> frozenset[str]:
    """A line's flags: the request's (without the Rx and its invalid fields for an OTC item
    in a prescription sale: they are not about it), the classification's (restricted,
    controlled, dea:*, pse, india:*, class:*, opium) and the line's own."""
    key = (sale, rx_line, class_flags, own)
    hit = _LINE_FLAGS.get(key)
    if hit is None:
        base = sale if rx_line or "rx" not in sale else sale - _RX_SALE_ONLY
        hit = base.union(class_flags, own)
        if len(_LINE_FLAGS) >= 4096:
            _LINE_FLAGS.clear()
        _LINE_FLAGS[key] = hit
    return hit


_TAGS: dict[tuple[frozenset[str], bool, bool, bool], frozenset[str]] = {}


def _line_tags(class_tags: frozenset[str], rx_only: bool, rx: bool, cv_otc: bool
               ) -> frozenset[str]:
    """A line's partition tags. Few combinations exist, so each is built once: the gate then
    looks up partitions by the same frozenset object (hash kept, equal by identity)."""
    key = (class_tags, rx_only, rx, cv_otc)
    tags = _TAGS.get(key)
    if tags is None:
        tags = class_tags | {"any"}
        if rx_only:
            tags |= {"rx_only"}
        if rx:
            tags |= {"rx"}
        if cv_otc:
            tags |= {"cv_otc"}
        if len(_TAGS) >= 1024:
            _TAGS.clear()
        _TAGS[key] = tags
    return tags
