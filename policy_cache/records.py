"""Record-keeping rules that are not sale decisions (REGULATIONS.md §1.6-1.9; §7 rules 22-27,
India retention §4.7). Small pure functions: callers (stocktake, receiving, purge, the
register screens) call them and surface the error or the deadline."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pharmacy.errors import DomainRefusal


class RecordRuleViolation(DomainRefusal):
    code = "RECORD_RULE"


@dataclass(frozen=True)
class Alert:
    code: str
    message: str
    citation: str
    due: date | datetime | None = None


@dataclass(frozen=True)
class Deadline:
    code: str
    action: str
    due: datetime
    citation: str


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


# ---- rules 22-23: inventory counts of opened containers (21 CFR 1304.11(e)(3)) --------------
def check_inventory_count(dea_schedule: str | None, *, opened: bool, estimated: bool,
                          container_units: int) -> None:
    """Raise when a count must be exact: any opened C-I/C-II container, or an opened
    C-III-V container holding more than 1,000 tablets or capsules."""
    if not dea_schedule or not opened or not estimated:
        return
    if dea_schedule in ("CI", "CII"):
        raise RecordRuleViolation(
            "an opened Schedule I/II container must be counted exactly, not estimated "
            "[21 CFR 1304.11(e)(3)(i)]", code="DEA_INV_EXACT_CII")
    if container_units > 1000:
        raise RecordRuleViolation(
            f"an opened Schedule III-V container of {container_units} units (over 1,000) must "
            "be counted exactly [21 CFR 1304.11(e)(3)(ii)]", code="DEA_INV_EXACT_OVER_1000")


# ---- rule 24: biennial inventory ------------------------------------------------------------
def biennial_inventory_alert(last_inventory: date, today: date) -> Alert | None:
    due = add_years(last_inventory, 2)
    if today > due:
        return Alert("DEA_INV_BIENNIAL_OVERDUE",
                     f"the biennial controlled-substance inventory was due by {due.isoformat()} "
                     f"(last taken {last_inventory.isoformat()}); take it now",
                     "21 CFR 1304.11(c)", due)
    return None


# ---- rule 25: theft or significant loss ------------------------------------------------------
def next_business_day(t: datetime, holidays: Collection[date] = ()) -> datetime:
    d = t + timedelta(days=1)
    while d.weekday() >= 5 or d.date() in holidays:
        d += timedelta(days=1)
    return d


def theft_loss_deadlines(discovered_at: datetime, classification: str,
                         holidays: Collection[date] = ()) -> list[Deadline]:
    """Deadlines a theft or significant loss creates when it is saved; none for other
    variances (which are still recorded)."""
    if classification not in ("theft", "significant_loss"):
        return []
    return [
        Deadline("DEA_THEFT_LOSS_NOTICE", "written notice to the DEA Field Division Office",
                 next_business_day(discovered_at, holidays), "21 CFR 1301.76(b)"),
        Deadline("DEA_FORM_106", "file DEA Form 106 electronically",
                 discovered_at + timedelta(days=45), "21 CFR 1301.76(b); 88 FR 40707"),
    ]


# ---- rule 26: C-II receipts need a Form 222 or CSOS order -------------------------------------
def check_cii_receipt(dea_schedule: str | None, order_reference: str | None) -> None:
    if dea_schedule in ("CI", "CII") and not (order_reference or "").strip():
        raise RecordRuleViolation(
            "a Schedule I/II receipt needs the DEA Form 222 or CSOS order number it was "
            "ordered on [21 CFR Part 1305]", code="DEA_CII_ORDER_FORM_REQUIRED")


# ---- rule 27 and India retention ---------------------------------------------------------------
RETENTION_YEARS = {
    "cs_record": (2, "21 CFR 1304.04(a)"),
    "e_prescription": (2, "21 CFR 1311.305"),
    "form_222": (2, "21 CFR 1305.17"),
    "cmea_log": (2, "21 CFR 1314.30(g)"),
    "in_h1_register": (3, "GSR 588(E)"),
    "in_schx_duplicate_rx": (2, "D&C Rules r. 65(9)(a)"),
    "in_rx_register": (2, "D&C Rules r. 65"),
    "hipaa_documentation": (6, "45 CFR 164.316(b)(2)(i)"),
}


def retention_until(kind: str, created: date) -> date:
    years, _ = RETENTION_YEARS[kind]
    return add_years(created, years)


def check_purge(kind: str, created: date, today: date, *, to_paper: bool = False) -> None:
    """Raise when a record may not be deleted yet, or an e-prescription would leave
    electronic form."""
    if kind not in RETENTION_YEARS:
        raise RecordRuleViolation(f"unknown record kind {kind!r}", code="RECORD_KIND_UNKNOWN")
    if kind == "e_prescription" and to_paper:
        raise RecordRuleViolation("an electronic prescription must be kept electronically "
                                  "[21 CFR 1311.305]", code="DEA_ERX_KEEP_ELECTRONIC")
    years, cite = RETENTION_YEARS[kind]
    until = add_years(created, years)
    if today < until:
        code = "DEA_RETENTION_2Y" if kind in ("cs_record", "e_prescription", "form_222") else (
            f"RETENTION_{years}Y")
        raise RecordRuleViolation(
            f"this {kind.replace('_', ' ')} must be kept until {until.isoformat()} "
            f"({years} years from {created.isoformat()}) [{cite}]", code=code)
