"""REGULATIONS.md §7 rules 28-33 (TX, FL, NY) plus CA, and pharmacist overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pharmacy.errors import ComplianceDenied
from tests.policy_cache.policy_support import (
    NDC,
    PATIENT,
    PHARMACIST,
    TECH,
    Checker,
    codes,
    rx,
    sale,
)

OXY = NDC["oxycodone"]


# ---- rule 28: Texas PMP check -------------------------------------------------------------------
@pytest.mark.parametrize("drug", ["oxycodone", "alprazolam", "carisoprodol", "apap_codeine"])
def test_r28_tx_pmp_check_required(checker: Checker, drug: str) -> None:
    d = checker.check(sale(NDC[drug], 10, j="US-TX", rx=rx(pmp_checked=False, quantity=10)))
    assert d.decision == "hold" and codes(d) == ["TX_PMP_CHECK_REQUIRED"]
    assert d.reasons[0].citation == "TX H&S 481.0764(a)" and d.reasons[0].overridable
    assert checker.check(sale(NDC[drug], 10, j="US-TX", rx=rx(quantity=10))).allowed


def test_r28_not_required_elsewhere_or_for_other_drugs(checker: Checker) -> None:
    assert checker.check(sale(OXY, 10, j="US", rx=rx(pmp_checked=False, quantity=10))).allowed
    d = checker.check(sale(NDC["pregabalin"], 10, j="US-TX", rx=rx(pmp_checked=False,
                                                                     quantity=10)))
    assert d.allowed, d.reasons


def test_r28_override_by_pharmacist_with_reason_is_audited(checker: Checker) -> None:
    req = sale(OXY, 10, j="US-TX", rx=rx(pmp_checked=False, quantity=10),
               override={"codes": ["TX_PMP_CHECK_REQUIRED"],
                         "reason": "PMP portal down; documented exception per store SOP",
                         "pharmacist": PHARMACIST})
    d = checker.check(req)
    assert d.decision == "allow", d.reasons
    r = next(r for r in d.reasons if r.code == "TX_PMP_CHECK_REQUIRED")
    assert r.severity == "info" and r.overridden_by == "ph-ana"
    assert {"register_entry", "pmp_report", "id_check"} <= set(d.obligations)
    sold = checker.sell(req)
    rows = checker.store.conn.execute(
        "SELECT user_id, action, subject, detail FROM audit_log WHERE action = "
        "'policy.override'").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "ph-ana" and rows[0][2] == sold.decision_id
    assert json.loads(rows[0][3])["code"] == "TX_PMP_CHECK_REQUIRED"


@pytest.mark.parametrize("override, problem", [
    ({"codes": ["TX_PMP_CHECK_REQUIRED"], "reason": "busy", "pharmacist": TECH}, "pharmacist"),
    ({"codes": ["TX_PMP_CHECK_REQUIRED"], "reason": "", "pharmacist": PHARMACIST}, "reason"),
    ({"codes": [], "reason": "x", "pharmacist": PHARMACIST}, "codes"),
    ("please", "object"),
])
def test_override_rejected_without_pharmacist_or_reason(checker: Checker, override: Any,
                                                        problem: str) -> None:
    d = checker.check(sale(OXY, 10, j="US-TX", rx=rx(pmp_checked=False, quantity=10),
                           override=override))
    assert d.decision == "hold"
    assert "OVERRIDE_REJECTED" in codes(d, "warn")


def test_legal_prohibition_is_never_overridable(checker: Checker) -> None:
    req = sale(OXY, 10, rx=rx(refill_number=1, quantity=10),
               override={"codes": ["DEA_CII_NO_REFILL"], "reason": "patient insists",
                         "pharmacist": PHARMACIST})
    d = checker.check(req)
    assert d.decision == "deny"
    assert "DEA_CII_NO_REFILL" in codes(d, "deny") and "OVERRIDE_NOT_ALLOWED" in codes(d)
    with pytest.raises(ComplianceDenied):
        checker.sell(req)
    assert checker.store.conn.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'policy.override'").fetchone()[0] == 0


# ---- rule 29: Texas C-II 30 days ----------------------------------------------------------------
def test_r29_tx_cii_30_days(checker: Checker) -> None:
    at = "2026-11-02T15:00:00+00:00"
    d = checker.check(sale(OXY, 10, j="US-TX", rx=rx(written_on="2026-10-02", quantity=10),
                           at=at))
    assert codes(d, "deny") == ["TX_CII_30D"]
    assert d.reasons[0].citation == "22 TAC 315.3(a)(4)"
    ok = checker.check(sale(OXY, 10, j="US-TX", rx=rx(written_on="2026-10-03", quantity=10),
                            at=at))
    assert ok.allowed, ok.reasons
    series = checker.check(sale(OXY, 10, j="US-TX", at=at, rx=rx(
        written_on="2026-09-20", earliest_fill_date="2026-10-20", quantity=10)))
    assert series.allowed, series.reasons
    assert checker.check(sale(OXY, 10, j="US", rx=rx(written_on="2026-10-02", quantity=10),
                              at=at)).allowed


# ---- rule 30: Texas acute-pain opioid (warning only) --------------------------------------------
def test_r30_tx_acute_opioid_warns(checker: Checker) -> None:
    d = checker.check(sale(OXY, 56, j="US-TX", rx=rx(acute_pain=True, days_supply=14,
                                                      quantity=56)))
    assert d.decision == "allow"
    assert codes(d, "warn") == ["TX_OPIOID_ACUTE_10D"]
    assert d.reasons[0].overridable
    d = checker.check(sale(NDC["apap_codeine"], 20, j="US-TX", rx=rx(
        acute_pain=True, days_supply=5, refills_authorized=1, quantity=20)))
    assert d.decision == "allow" and codes(d, "warn") == ["TX_OPIOID_ACUTE_10D"]
    ack = checker.check(sale(OXY, 56, j="US-TX", rx=rx(acute_pain=True, days_supply=14,
                                                        quantity=56),
                             override={"codes": ["TX_OPIOID_ACUTE_10D"],
                                       "reason": "prescriber confirmed post-surgical need"}))
    assert ack.decision == "allow" and codes(ack, "warn") == []
    assert ack.reasons[0].overridden_by == "ph-ana"


# ---- rule 31: Florida acute-pain C-II opioid ----------------------------------------------------
def test_r31_fl_acute_opioid(checker: Checker) -> None:
    base = {"acute_pain": True, "quantity": 20, "pmp_checked": True}
    three = checker.check(sale(OXY, 12, j="US-FL", rx=rx(days_supply=3, **base)))
    assert three.allowed, three.reasons
    five = checker.check(sale(OXY, 20, j="US-FL", rx=rx(days_supply=5, **base)))
    assert five.decision == "hold" and codes(five) == ["FL_ACUTE_OPIOID_LIMIT"]
    excepted = checker.check(sale(OXY, 20, j="US-FL", rx=rx(days_supply=5,
                                                            acute_pain_exception=True, **base)))
    assert excepted.allowed
    eight = checker.check(sale(OXY, 20, j="US-FL", rx=rx(days_supply=8,
                                                         acute_pain_exception=True, **base)))
    assert eight.decision == "deny" and codes(eight) == ["FL_ACUTE_OPIOID_LIMIT"]
    assert eight.reasons[0].citation == "Fla. Stat. 456.44"
    chronic = checker.check(sale(OXY, 20, j="US-FL", rx=rx(days_supply=30, quantity=20,
                                                           pmp_checked=True)))
    assert chronic.allowed


# ---- rule 32: Florida PDMP ----------------------------------------------------------------------
def test_r32_fl_pdmp_check(checker: Checker) -> None:
    d = checker.check(sale(OXY, 10, j="US-FL", rx=rx(pmp_checked=False, quantity=10)))
    assert d.decision == "hold" and codes(d) == ["FL_PDMP_CHECK_REQUIRED"]
    outage = checker.check(sale(OXY, 10, j="US-FL", rx=rx(
        pmp_checked=False, quantity=10, pmp_outage="E-FORCSE unreachable 14:05, ticket 5521")))
    assert outage.allowed and "pmp_check_after_outage" in outage.obligations
    teen = dict(PATIENT, id="pat-teen", birth_date="2011-06-01")
    assert checker.check(sale(OXY, 10, j="US-FL", patient=teen,
                              rx=rx(pmp_checked=False, quantity=10))).allowed
    nonopioid_cv = checker.check(sale(NDC["pregabalin"], 10, j="US-FL",
                                      rx=rx(pmp_checked=False, quantity=10)))
    assert nonopioid_cv.allowed
    opioid_ciii = checker.check(sale(NDC["apap_codeine"], 10, j="US-FL",
                                     rx=rx(pmp_checked=False, quantity=10)))
    assert codes(opioid_ciii) == ["FL_PDMP_CHECK_REQUIRED"]


# ---- rule 33: New York 30-day supply ------------------------------------------------------------
def test_r33_ny_30_day_supply(checker: Checker) -> None:
    d = checker.check(sale(NDC["alprazolam"], 90, j="US-NY", rx=rx(days_supply=45,
                                                                   quantity=90)))
    assert d.decision == "hold" and codes(d) == ["NY_30_DAY_SUPPLY"]
    assert d.reasons[0].citation == "NY PHL 3332(3)"
    coded = checker.check(sale(NDC["alprazolam"], 90, j="US-NY", rx=rx(
        days_supply=45, quantity=90, condition_code="panic disorder (commissioner list)")))
    assert coded.allowed
    assert checker.check(sale(NDC["alprazolam"], 60, j="US-NY", rx=rx(days_supply=30,
                                                                     quantity=60))).allowed
    unknown = rx(quantity=60)
    unknown.pop("days_supply")
    assert codes(checker.check(sale(NDC["alprazolam"], 60, j="US-NY", rx=unknown))) == [
        "NY_30_DAY_SUPPLY"]


def test_ca_paper_cs_needs_security_form(checker: Checker) -> None:
    paper = rx(electronic=False, quantity=10)
    d = checker.check(sale(NDC["alprazolam"], 10, j="US-CA", rx=paper))
    assert d.decision == "hold" and codes(d) == ["CA_SECURITY_FORM_REQUIRED"]
    assert checker.check(sale(NDC["alprazolam"], 10, j="US-CA",
                              rx=dict(paper, security_form=True))).allowed
    assert checker.check(sale(NDC["alprazolam"], 10, j="US-CA", rx=rx(quantity=10))).allowed


def test_state_rules_follow_effective_dates(checker: Checker) -> None:
    """TX_PMP is in force from 2020-03-01 in the bundle data; a decision dated before it
    does not apply it."""
    before = checker.check(sale(OXY, 10, j="US-TX", at="2020-02-10T15:00:00+00:00",
                                rx=rx(pmp_checked=False, quantity=10, written_on="2020-02-09")))
    assert "TX_PMP_CHECK_REQUIRED" not in codes(before)
    after = checker.check(sale(OXY, 10, j="US-TX", at="2020-03-02T15:00:00+00:00",
                               rx=rx(pmp_checked=False, quantity=10, written_on="2020-03-01")))
    assert "TX_PMP_CHECK_REQUIRED" in codes(after)
