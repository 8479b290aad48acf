"""REGULATIONS.md §7 rules 22-27 (records), 37-39 (PMP files), 45-47 (HIPAA), 48 (scans)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pharmacy.compliance import ComplianceRequest, LineFacts
from pharmacy.errors import BadInput, LotExpired
from pharmacy.ids import gtin_from_ndc, parse_hyphenated_ndc
from policy_cache import hipaa, pmp, records
from policy_cache.records import RecordRuleViolation
from tests.policy_cache.policy_support import NDC, PATIENT, Checker, codes, sale


# ---- rules 22-23 --------------------------------------------------------------------------------
def test_r22_opened_cii_container_needs_exact_count() -> None:
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_inventory_count("CII", opened=True, estimated=True, container_units=100)
    assert ei.value.code == "DEA_INV_EXACT_CII"
    records.check_inventory_count("CII", opened=True, estimated=False, container_units=100)
    records.check_inventory_count("CII", opened=False, estimated=True, container_units=100)


def test_r23_opened_ciii_v_over_1000_needs_exact_count() -> None:
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_inventory_count("CIV", opened=True, estimated=True, container_units=1001)
    assert ei.value.code == "DEA_INV_EXACT_OVER_1000"
    records.check_inventory_count("CIV", opened=True, estimated=True, container_units=1000)
    records.check_inventory_count(None, opened=True, estimated=True, container_units=5000)


# ---- rule 24 ------------------------------------------------------------------------------------
def test_r24_biennial_inventory_overdue() -> None:
    last = date(2024, 11, 2)
    assert records.biennial_inventory_alert(last, date(2026, 11, 2)) is None
    alert = records.biennial_inventory_alert(last, date(2026, 11, 3))
    assert alert is not None and alert.code == "DEA_INV_BIENNIAL_OVERDUE"
    assert alert.citation == "21 CFR 1304.11(c)"
    assert records.biennial_inventory_alert(date(2024, 2, 29), date(2026, 3, 1)) is not None


# ---- rule 25 ------------------------------------------------------------------------------------
def test_r25_theft_creates_two_deadlines() -> None:
    friday = datetime(2026, 11, 6, 16, 0, tzinfo=UTC)
    notice, form = records.theft_loss_deadlines(friday, "theft")
    assert notice.code == "DEA_THEFT_LOSS_NOTICE" and notice.due.date() == date(2026, 11, 9)
    assert form.code == "DEA_FORM_106" and form.due == friday + timedelta(days=45)
    assert records.theft_loss_deadlines(friday, "significant_loss")
    assert records.theft_loss_deadlines(friday, "count_error") == []
    holiday = records.theft_loss_deadlines(friday, "theft", holidays={date(2026, 11, 9)})
    assert holiday[0].due.date() == date(2026, 11, 10)


# ---- rule 26 ------------------------------------------------------------------------------------
def test_r26_cii_receipt_needs_order_form() -> None:
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_cii_receipt("CII", None)
    assert ei.value.code == "DEA_CII_ORDER_FORM_REQUIRED"
    records.check_cii_receipt("CII", "CSOS-2026-000123")
    records.check_cii_receipt("CIII", None)


# ---- rule 27 ------------------------------------------------------------------------------------
def test_r27_retention() -> None:
    created = date(2025, 1, 10)
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_purge("cs_record", created, date(2027, 1, 9))
    assert ei.value.code == "DEA_RETENTION_2Y"
    records.check_purge("cs_record", created, date(2027, 1, 10))
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_purge("e_prescription", created, date(2030, 1, 1), to_paper=True)
    assert ei.value.code == "DEA_ERX_KEEP_ELECTRONIC"
    with pytest.raises(RecordRuleViolation) as ei:
        records.check_purge("in_h1_register", created, date(2027, 6, 1))
    assert ei.value.code == "RETENTION_3Y"
    assert records.retention_until("in_schx_duplicate_rx", created) == date(2027, 1, 10)


# ---- rules 37-39 --------------------------------------------------------------------------------
PHARMACY = {"npi": "1234567893", "dea": "FP1234563", "name": "Main Street Pharmacy"}


def test_r38_zero_report_validates() -> None:
    text = pmp.zero_report(control_number="000123", created=datetime(2026, 11, 2, 23, 0),
                           period_start=date(2026, 11, 2), period_end=date(2026, 11, 2),
                           pharmacy=PHARMACY)
    f = pmp.validate_asap(text)
    assert f.ids() == ["TH", "IS", "PHA", "PAT", "DSP", "TP", "TT"]
    pat = next(s for s in f.segments if s[0] == "PAT")
    assert pat[7:9] == ("Report", "Zero")
    dsp = next(s for s in f.segments if s[0] == "DSP")
    assert dsp[5] == "20261102"
    assert "#20261102#-#20261102#" in text


def test_r37_trailer_mismatch() -> None:
    good = pmp.zero_report(control_number="77", created=datetime(2026, 11, 2, 23, 0),
                           period_start=date(2026, 11, 2), period_end=date(2026, 11, 2),
                           pharmacy=PHARMACY)
    with pytest.raises(BadInput) as ei:
        pmp.validate_asap(good.replace("TT*77*", "TT*78*"))
    assert ei.value.code == "ASAP_TRAILER_MISMATCH"
    with pytest.raises(BadInput) as ei:
        pmp.validate_asap(good.replace("TT*77*7~", "TT*77*6~"))
    assert ei.value.code == "ASAP_TRAILER_MISMATCH"
    crlf = good.replace("~", "~\r\n")
    assert pmp.validate_asap(crlf).ids()[-1] == "TT"
    sample = "TH*4.2A*123456*01**20150101*223000*T**\\IS*X*Y*#20150101#-#20150107#\\TT*123456*3\\"
    assert pmp.validate_asap(sample).terminator == "\\"


def test_r39_ca_deadline_at_risk() -> None:
    la = ZoneInfo("America/Los_Angeles")
    friday = datetime(2026, 11, 6, 10, 0, tzinfo=la)
    queue = [{"dispensed_at": friday, "sent_at": None, "jurisdiction": "US-CA", "ref": "s-1"},
             {"dispensed_at": friday, "sent_at": friday, "jurisdiction": "US-CA", "ref": "s-2"},
             {"dispensed_at": friday, "sent_at": None, "jurisdiction": "US-TX", "ref": "s-3"}]
    monday_noon = datetime(2026, 11, 9, 12, 0, tzinfo=la)
    assert pmp.pmp_deadline_alerts(queue, monday_noon, la) == []
    monday_evening = datetime(2026, 11, 9, 21, 0, tzinfo=la)
    alerts = pmp.pmp_deadline_alerts(queue, monday_evening, la)
    assert [a.code for a in alerts] == ["PMP_DEADLINE_AT_RISK"]
    assert alerts[0].citation == "CA H&S 11165(d)"


# ---- rules 45-47 --------------------------------------------------------------------------------
def test_r45_idle_session_locks() -> None:
    t0 = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    assert not hipaa.session_state(t0, t0 + timedelta(minutes=4)).locked
    st = hipaa.session_state(t0, t0 + timedelta(minutes=6))
    assert st.locked and "164.312(a)(2)(iii)" in (st.reason or "")
    with pytest.raises(hipaa.HipaaRefusal) as ei:
        hipaa.require_unlocked(t0, t0 + timedelta(minutes=6))
    assert ei.value.code == "HIPAA_SESSION_LOCKED"
    assert hipaa.session_state(t0, t0 - timedelta(minutes=1)).locked


def test_r45_break_glass_needs_reason_and_is_flagged(checker: Checker) -> None:
    with pytest.raises(hipaa.HipaaRefusal) as ei:
        hipaa.break_glass(checker.store, {"id": "ph-ana"}, "", "pat-1")
    assert ei.value.code == "HIPAA_BREAK_GLASS_REASON"
    ev = hipaa.break_glass(checker.store, {"id": "ph-ana"}, "patient collapsed; allergy check",
                           "pat-1")
    assert ev["flagged"] and ev["review"] == "pending"
    pending = hipaa.pending_break_glass_reviews(checker.store)
    assert [p["subject"] for p in pending] == ["pat-1"]


def test_r46_phi_needs_unique_user() -> None:
    for user in (None, {}, {"id": ""}, {"id": "counter"}):
        with pytest.raises(hipaa.HipaaRefusal) as ei:
            hipaa.check_phi_access(user, "read")
        assert ei.value.code == "HIPAA_UNIQUE_USER"
    assert hipaa.check_phi_access({"id": "ph-ana"}, "read") == {"user_id": "ph-ana",
                                                                "action": "phi.read"}


def test_r47_cashier_min_necessary() -> None:
    for scope in ("medication_history", "diagnosis"):
        with pytest.raises(hipaa.HipaaRefusal) as ei:
            hipaa.check_read_scope("cashier", scope)
        assert ei.value.code == "HIPAA_MIN_NECESSARY"
    hipaa.check_read_scope("cashier", "pickup_essentials")
    hipaa.check_read_scope("pharmacist", "medication_history")


# ---- rule 48 ------------------------------------------------------------------------------------
def _scan(ndc: str, expiry: str, lot: str) -> str:
    gtin = gtin_from_ndc(parse_hyphenated_ndc(ndc))
    return f"]d201{gtin}17{expiry}10{lot}"


def test_r48_scanned_product_mismatch_and_expired_lot(checker: Checker) -> None:
    req = sale(NDC["ibuprofen"], 1, patient=None)
    req["lines"] = [{"ndc": NDC["ibuprofen"], "qty": 1,
                     "scan": _scan(NDC["amoxicillin"], "271231", "AM9")}]
    with pytest.raises(BadInput) as ei:
        checker.check(req)
    assert ei.value.code == "DSCSA_PRODUCT_MISMATCH"
    req["lines"] = [{"qty": 1, "scan": _scan(NDC["ibuprofen"], "251031", "IB2510")}]
    with pytest.raises(LotExpired) as e2:
        checker.check(req)
    assert e2.value.code == "EXPIRED_LOT"


def test_r48_expired_allocation_denied_by_the_rules(checker: Checker) -> None:
    bg = checker.gate.bundle_gate
    assert bg is not None
    line = LineFacts(1, NDC["ibuprofen"], "Ibuprofen", 1, "pack", False, None, None, False, None,
                     ("ibuprofen",), {"manufacturer": "X", "strength": "200 mg"},
                     ({"lot": "IB2510", "expiry": "2025-10-31", "qty": 1},))
    req = ComplianceRequest(at=datetime(2026, 11, 2, 15, 0, tzinfo=UTC), jurisdiction="US",
                            lines=(line,), user={"id": "ph-ana", "role": "pharmacist"},
                            patient=dict(PATIENT))
    d = bg.decide(req)
    assert d.decision == "deny" and codes(d) == ["EXPIRED_LOT"]


def test_decisions_name_rule_and_citation_for_every_reason(checker: Checker) -> None:
    reqs: list[dict[str, Any]] = [sale(NDC["oxycodone"], 5), sale(NDC["psilocybin"], 1),
                                  sale(NDC["sudafed12h"], 9)]
    for req in reqs:
        d = checker.check(req)
        assert d.reasons and all(r.code and r.message and r.citation and r.rule_id
                                 for r in d.reasons)
