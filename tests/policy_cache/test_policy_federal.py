"""REGULATIONS.md §7 rules 1-13 and 21: federal controlled-substance prescriptions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pharmacy.errors import ComplianceDenied
from policy_cache.dea import dea_number_ok, with_check_digit
from policy_cache.tasks import emergency_followup_alerts, record_followup, tasks
from tests.policy_cache.policy_support import NDC, PATIENT, Checker, codes, rx, sale

OXY = NDC["oxycodone"]


def test_clean_cii_is_allowed_with_obligations(checker: Checker) -> None:
    d = checker.check(sale(OXY, 20, rx=rx()))
    assert d.decision == "allow", d.reasons
    assert {"register_entry", "pmp_report", "label:federal_transfer_warning",
            "counseling_offer"} <= set(d.obligations)
    assert d.bundle_version == "t-1"
    assert d.engine == "cedar"


# ---- rule 1 -------------------------------------------------------------------------------------
def test_r1_cii_refill_denied(checker: Checker) -> None:
    d = checker.check(sale(OXY, 20, rx=rx(refill_number=1, refills_authorized=2)))
    assert d.decision == "deny"
    r = next(r for r in d.reasons if r.code == "DEA_CII_NO_REFILL")
    assert r.citation == "21 CFR 1306.12(a)" and r.severity == "deny" and not r.overridable


def test_r1_cii_refills_on_face_warn(checker: Checker) -> None:
    d = checker.check(sale(OXY, 20, rx=rx(refills_authorized=3)))
    assert d.decision == "allow"
    assert codes(d, "warn") == ["DEA_CII_REFILLS_IGNORED"]
    assert "rx_record_refills_zero" in d.obligations


# ---- rule 2 -------------------------------------------------------------------------------------
def test_r2_cara_partial_day_31_denied(checker: Checker, at: Any) -> None:
    written = "2026-10-02"
    first = sale(OXY, 10, rx=rx(written_on=written, quantity=30,
                                partial_fill="patient_request"), at=f"{written}T16:00:00+00:00")
    checker.sell(first)
    later = rx(written_on=written, quantity=30)  # mode comes from the first portion
    day30 = checker.check(sale(OXY, 10, rx=later, at="2026-11-01T16:00:00+00:00"))
    assert day30.decision == "allow", day30.reasons
    day31 = checker.check(sale(OXY, 10, rx=later, at="2026-11-02T16:00:00+00:00"))
    assert codes(day31, "deny") == ["DEA_CII_PARTIAL_WINDOW_30D"]
    assert day31.reasons[0].citation == "21 CFR 1306.13(b)"


# ---- rule 3 -------------------------------------------------------------------------------------
def test_r3_short_stock_balance_after_72h_denied_with_task(checker: Checker, at: Any) -> None:
    r = rx(quantity=30, partial_fill="short_stock")
    first = checker.sell(sale(OXY, 10, rx=r, at=at(-4)))
    assert "task:cii_partial_balance_72h" in first.decision.obligations
    ok = checker.check(sale(OXY, 20, rx=rx(quantity=30), at=at(-4, 71)))
    assert ok.decision == "allow", ok.reasons
    late = sale(OXY, 20, rx=rx(quantity=30), at=at(-4, 73))
    d = checker.check(late)
    assert codes(d, "deny") == ["DEA_CII_PARTIAL_72H"]
    assert "task:notify_prescriber" in d.obligations
    with pytest.raises(ComplianceDenied):
        checker.sell(late)
    open_tasks = {t["task"] for t in tasks(checker.store)}
    assert "task:notify_prescriber" in open_tasks
    record_followup(checker.store, "RX-100", "prescriber_notified", user_id="ph-ana")
    assert "task:notify_prescriber" not in {t["task"] for t in tasks(checker.store)}


# ---- rule 4 -------------------------------------------------------------------------------------
def test_r4_ltcf_partial_after_60_days_denied(checker: Checker) -> None:
    r = rx(written_on="2026-09-02", quantity=60, partial_fill="ltcf")
    day60 = checker.check(sale(OXY, 5, rx=r, at="2026-11-01T15:00:00+00:00"))
    assert day60.decision == "allow", day60.reasons
    day61 = checker.check(sale(OXY, 5, rx=r, at="2026-11-02T15:00:00+00:00"))
    assert codes(day61, "deny") == ["DEA_CII_LTCF_60D"]
    terminal = checker.check(sale(OXY, 5, rx=dict(r, partial_fill="terminally_ill"),
                                  at="2026-11-02T15:00:00+00:00"))
    assert codes(terminal, "deny") == ["DEA_CII_LTCF_60D"]


# ---- rule 5 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("drug", ["oxycodone", "apap_codeine"])
def test_r5_cumulative_over_prescribed_denied(checker: Checker, at: Any, drug: str) -> None:
    r = rx(quantity=30, partial_fill="short_stock", written_on="2026-11-01")
    checker.sell(sale(NDC[drug], 20, rx=r, at=at(-1)))
    over = checker.check(sale(NDC[drug], 15, rx=rx(quantity=30), at=at(-1, 2)))
    assert codes(over, "deny") == ["DEA_PARTIAL_EXCEEDS_QTY"]
    assert "1306.13" in (over.reasons[0].citation or "")
    exact = checker.check(sale(NDC[drug], 10, rx=rx(quantity=30), at=at(-1, 2)))
    assert exact.decision == "allow", exact.reasons
    first_too_big = checker.check(sale(NDC[drug], 31, rx=rx(quantity=30, rx_number="RX-101")))
    assert codes(first_too_big, "deny") == ["DEA_PARTIAL_EXCEEDS_QTY"]


# ---- rule 6 -------------------------------------------------------------------------------------
def test_r6_oral_cii_needs_emergency(checker: Checker) -> None:
    d = checker.check(sale(OXY, 12, rx=rx(origin="oral", electronic=False, quantity=12)))
    assert codes(d, "deny") == ["DEA_CII_ORAL_NOT_EMERGENCY"]


def test_r6_emergency_oral_quantity_and_followup(checker: Checker, at: Any) -> None:
    too_long = checker.check(sale(OXY, 20, rx=rx(origin="oral", emergency_oral=True,
                                                 days_supply=5, quantity=20)))
    assert codes(too_long, "deny") == ["DEA_CII_EMERGENCY_QTY"]
    r = rx(origin="oral", emergency_oral=True, days_supply=3, quantity=12, rx_number="RX-E1")
    sold = checker.sell(sale(OXY, 12, rx=r))
    assert "task:cii_emergency_followup_7d" in sold.decision.obligations
    store = checker.store
    assert emergency_followup_alerts(store) == []
    later = store.clock() + timedelta(days=7, hours=1)
    alerts = emergency_followup_alerts(store, later)
    assert [a["alert"] for a in alerts] == ["DEA_CII_EMERGENCY_NO_FOLLOWUP"]
    assert alerts[0]["rx_number"] == "RX-E1"
    record_followup(store, "RX-E1", "cii_emergency_followup", user_id="ph-ana")
    assert emergency_followup_alerts(store, later) == []


# ---- rule 7 -------------------------------------------------------------------------------------
def test_r7_faxed_cii_held_until_original_verified(checker: Checker) -> None:
    fax = rx(origin="fax", electronic=False)
    d = checker.check(sale(OXY, 20, rx=fax))
    assert d.decision == "hold" and codes(d) == ["DEA_CII_FAX_ORIGINAL_REQUIRED"]
    assert checker.check(sale(OXY, 20, rx=dict(fax, original_verified=True))).allowed
    for setting in ("hospice", "ltcf", "home_infusion"):
        assert checker.check(sale(OXY, 20, rx=dict(fax, patient_setting=setting))).allowed


# ---- rules 8-10 ---------------------------------------------------------------------------------
def test_r8_ciii_iv_filled_after_six_months_denied(checker: Checker) -> None:
    at = "2026-11-02T15:00:00+00:00"
    edge = checker.check(sale(NDC["alprazolam"], 30, rx=rx(written_on="2026-05-02", quantity=30),
                              at=at))
    assert edge.decision == "allow", edge.reasons
    for drug in ("alprazolam", "apap_codeine"):
        d = checker.check(sale(NDC[drug], 30, rx=rx(written_on="2026-05-01", quantity=30), at=at))
        assert "DEA_CIII_IV_6_MONTHS" in codes(d, "deny")


def test_r9_sixth_refill_denied(checker: Checker, at: Any) -> None:
    for n in range(6):
        checker.sell(sale(NDC["alprazolam"], 30, rx=rx(refill_number=n, refills_authorized=5,
                                                        quantity=30, written_on="2026-10-01"),
                          at=at(-30 + 5 * n)))
    d = checker.check(sale(NDC["alprazolam"], 30, rx=rx(refill_number=6, refills_authorized=5,
                                                        quantity=30, written_on="2026-10-01")))
    assert "DEA_CIII_IV_5_REFILLS" in codes(d, "deny")
    assert d.decision == "deny"


def test_r10_ciii_v_partial_after_six_months_denied(checker: Checker) -> None:
    at = "2026-11-02T15:00:00+00:00"
    partial = rx(written_on="2026-04-20", quantity=90, partial_fill="patient_request")
    d = checker.check(sale(NDC["pregabalin"], 30, rx=partial, at=at))
    assert codes(d, "deny") == ["DEA_CIII_V_PARTIAL_6_MONTHS"]
    full = checker.check(sale(NDC["pregabalin"], 90, rx=rx(written_on="2026-04-20",
                                                           quantity=90), at=at))
    assert full.decision == "allow", full.reasons  # C-V: no federal 6-month cap on a full fill


# ---- rule 11 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, change", [
    ("prescriber.dea", lambda r, p: r["prescriber"].pop("dea")),
    ("prescriber.address", lambda r, p: r["prescriber"].pop("address")),
    ("patient.address", lambda r, p: p.pop("address")),
    ("quantity", lambda r, p: r.pop("quantity")),
    ("directions", lambda r, p: r.update(directions="  ")),
    ("written_on", lambda r, p: r.update(written_on="last tuesday")),
])
def test_r11_missing_rx_field_holds(checker: Checker, field: str, change: Any) -> None:
    r = rx()
    r["prescriber"] = dict(r["prescriber"])
    p = dict(PATIENT)
    change(r, p)
    d = checker.check(sale(OXY, 20, rx=r, patient=p))
    assert d.decision == "hold", d.reasons
    assert f"DEA_RX_MISSING_FIELD:{field}" in codes(d, "hold")
    assert all(reason.citation for reason in d.reasons)


def test_r11_missing_strength_holds(checker: Checker) -> None:
    d = checker.check(sale(NDC["morphine_sol"], 20, rx=rx()))
    assert "DEA_RX_MISSING_FIELD:strength" in codes(d, "hold")
    ok = checker.check(sale(NDC["morphine_sol"], 20, rx=rx(strength="20 mg/5 mL")))
    assert ok.decision == "allow", ok.reasons


@pytest.mark.parametrize("bad_rx", ["not an object", {"prescriber": "Dr Who", "quantity": "x"},
                                    {"refill_number": True, "written_on": 20261101}])
def test_r11_malformed_rx_holds_not_crashes(checker: Checker, bad_rx: Any) -> None:
    d = checker.check(sale(OXY, 20, rx=bad_rx))
    assert d.decision in ("hold", "deny")
    assert any(c.startswith("DEA_RX_MISSING_FIELD:") or c == "RX_FIELD_UNREADABLE"
               for c in codes(d))


# ---- rule 12 ------------------------------------------------------------------------------------
def test_r12_dea_number_check_digit() -> None:
    good = with_check_digit("AB123456")
    assert dea_number_ok(good)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not dea_number_ok(bad)
    assert not dea_number_ok("A1234567") and not dea_number_ok("AB12345")


@pytest.mark.parametrize("prescriber_change", [
    {"dea": "AS1234560"},
    {"dea_expires": "2026-10-31"},
    {"dea_schedules": ["3", "3N", "4", "5"]},
])
def test_r12_prescriber_invalid_holds(checker: Checker, prescriber_change: dict[str, Any]
                                      ) -> None:
    assert not dea_number_ok("AS1234560")
    r = rx()
    r["prescriber"] = {**r["prescriber"], **prescriber_change}
    d = checker.check(sale(OXY, 20, rx=r))
    assert codes(d) == ["DEA_PRESCRIBER_INVALID"] and d.decision == "hold"
    ok = dict(r["prescriber"], dea=rx()["prescriber"]["dea"], dea_expires="2027-01-01",
              dea_schedules=["2", "2N", "3", "4", "5"])
    assert checker.check(sale(OXY, 20, rx=dict(r, prescriber=ok))).allowed


# ---- rule 13 ------------------------------------------------------------------------------------
def test_r13_schedule_i_never_dispensable(checker: Checker) -> None:
    for r in (None, rx()):
        d = checker.check(sale(NDC["psilocybin"], 1, rx=r))
        assert "DEA_CI_NOT_DISPENSABLE" in codes(d, "deny")


def test_controlled_without_prescription_denied(checker: Checker) -> None:
    d = checker.check(sale(OXY, 5))
    assert codes(d, "deny") == ["DEA_RX_REQUIRED"]
    d = checker.check(sale(NDC["amoxicillin"], 10, patient=None))
    assert codes(d, "deny") == ["RX_REQUIRED"]
    assert checker.check(sale(NDC["ibuprofen"], 1, patient=None)).allowed


# ---- rule 21 ------------------------------------------------------------------------------------
def test_r21_dispense_record_incomplete(checker: Checker) -> None:
    p = {k: v for k, v in PATIENT.items() if k != "name"}
    d = checker.check(sale(OXY, 20, rx=rx(), patient=p))
    assert "DEA_DISPENSE_RECORD_INCOMPLETE" in codes(d, "hold")
    assert "DEA_RX_MISSING_FIELD:patient.name" in codes(d, "hold")


def test_refusal_is_recorded_and_exits_2(checker: Checker) -> None:
    req = sale(OXY, 20, rx=rx(refill_number=1))
    with pytest.raises(ComplianceDenied) as ei:
        checker.sell(req)
    assert ei.value.exit_code == 2 and ei.value.code == "DEA_CII_NO_REFILL"
    row = checker.store.conn.execute(
        "SELECT decision, reasons, bundle_version, sale_id FROM decisions").fetchone()
    assert row[0] == "deny" and "21 CFR 1306.12(a)" in row[1] and row[2] == "t-1"
    assert row[3] is None


def test_cart_with_rx_and_otc_lines(checker: Checker) -> None:
    req = sale(OXY, 20, rx=rx(refill_number=1))
    req["lines"].append({"ndc": NDC["ibuprofen"], "qty": 1})
    d = checker.check(req)
    assert [(r.code, r.line_no) for r in d.reasons] == [("DEA_CII_NO_REFILL", 1)]
    ok = sale(OXY, 20, rx=rx())
    ok["lines"] += [{"ndc": NDC["ibuprofen"], "qty": 1}, {"ndc": NDC["sudafed12h"], "qty": 1}]
    ok["purchaser_signature"] = "sig"
    d = checker.check(ok)
    assert d.decision == "allow", d.reasons
    assert {"register_entry", "cmea_log", "behind_counter"} <= set(d.obligations)
    sold = checker.sell(ok)
    assert sold.register_entries == 1 and len(sold.lines) == 3
