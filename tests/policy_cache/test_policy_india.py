"""REGULATIONS.md §7 rules 40-44: India, Drugs and Cosmetics Rules Schedules G, H, H1, X."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from tests.policy_cache.policy_support import NDC, PATIENT, Checker, codes, sale

IN_PATIENT = {"id": "pat-in-1", "name": "Ravi Kumar", "address": "14 MG Road, Bengaluru 560001"}


def in_rx(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rx_number": "IN-RX-1", "written_on": "2026-11-01", "quantity": 10, "days_supply": 5,
        "directions": "1 tablet twice daily after food",
        "prescriber": {"name": "Dr Meera Iyer", "address": "City Clinic, Bengaluru",
                       "registration": "KMC-44512"}}
    base.update(kw)
    return base


def test_h1_and_x_lists_are_bundle_data() -> None:
    doc = json.loads(resources.files("policy_cache.rules").joinpath(
        "india_schedules.json").read_text())
    assert len(doc["H1"]) == len(set(doc["H1"])) == 46
    assert {"cefixime", "levofloxacin", "tramadol", "zolpidem", "rifampicin"} <= set(doc["H1"])
    assert {"methylphenidate", "amphetamine", "meprobamate"} <= set(doc["X"])


# ---- rule 40 ------------------------------------------------------------------------------------
def test_r40_schedule_h_h1_x_need_prescription(checker: Checker) -> None:
    for drug in ("azee", "taxim", "addwize"):
        d = checker.check(sale(NDC[drug], 10, j="IN", patient=IN_PATIENT))
        assert codes(d, "deny") == ["IN_RX_REQUIRED"], (drug, d.reasons)
        assert d.reasons[0].citation == "D&C Rules r. 65(9)(a)"
    g = checker.check(sale(NDC["avil"], 10, j="IN", patient=None))
    assert g.allowed and "label:schedule_g_caution" in g.obligations
    h = checker.check(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert h.allowed, h.reasons
    assert {"label:schedule_h_rx_warning", "rx_register_entry"} <= set(h.obligations)


# ---- rule 41 ------------------------------------------------------------------------------------
def test_r41_h1_register_entry(checker: Checker) -> None:
    ok = checker.check(sale(NDC["taxim"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert ok.allowed, ok.reasons
    assert {"h1_register", "retain:h1_register:3y", "label:schedule_h1_red_box"} <= set(
        ok.obligations)
    r = in_rx()
    r["prescriber"] = {"name": "Dr Meera Iyer"}
    d = checker.check(sale(NDC["taxim"], 10, j="IN", patient=IN_PATIENT, rx=r))
    assert d.decision == "hold" and "IN_H1_REGISTER_INCOMPLETE" in codes(d)
    assert any(x.citation and "588(E)" in x.citation for x in d.reasons)


def test_r41_h1_by_ingredient_overrides_catalog(checker: Checker) -> None:
    """Levofloxacin is filed as Schedule H in the catalog; the bundle's H1 list wins."""
    d = checker.check(sale(NDC["levoflox"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert "h1_register" in d.obligations


# ---- rule 42 ------------------------------------------------------------------------------------
def test_r42_schedule_x_duplicate_prescription(checker: Checker) -> None:
    d = checker.check(sale(NDC["addwize"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert d.decision == "hold" and codes(d) == ["IN_SCHX_DUPLICATE_RX"]
    ok = checker.check(sale(NDC["addwize"], 10, j="IN", patient=IN_PATIENT,
                            rx=in_rx(duplicate_retained=True)))
    assert ok.allowed
    assert {"retain:schx_duplicate_rx:2y", "label:schedule_x_xrx",
            "label:ndps_nrx_red"} <= set(ok.obligations)


# ---- rule 43 ------------------------------------------------------------------------------------
def test_r43_register_needs_manufacturer_batch_expiry(checker: Checker) -> None:
    d = checker.check(sale(NDC["atorva_nomfr"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert d.decision == "hold" and codes(d) == ["IN_RX_REGISTER_INCOMPLETE"]
    assert d.reasons[0].citation == "D&C Rules r. 65(3)(1)(f)"
    no_addr = {k: v for k, v in IN_PATIENT.items() if k != "address"}
    d = checker.check(sale(NDC["azee"], 10, j="IN", patient=no_addr, rx=in_rx()))
    assert codes(d) == ["IN_RX_REGISTER_INCOMPLETE"]


# ---- rule 44 ------------------------------------------------------------------------------------
def test_r44_schedule_h_not_dispensed_twice(checker: Checker, at: Any) -> None:
    checker.sell(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=in_rx(), at=at(-2)))
    again = checker.check(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=in_rx()))
    assert codes(again, "deny") == ["IN_SCHH_NO_REPEAT"]
    repeat = in_rx(rx_number="IN-RX-2", repeats=1)
    checker.sell(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=repeat, at=at(-2)))
    assert checker.check(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=repeat)).allowed
    checker.sell(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=repeat, at=at(-1)))
    assert codes(checker.check(sale(NDC["azee"], 10, j="IN", patient=IN_PATIENT, rx=repeat)),
                 "deny") == ["IN_SCHH_NO_REPEAT"]


def test_us_rules_do_not_apply_in_india(checker: Checker) -> None:
    d = checker.check(sale(NDC["ibuprofen"], 1, j="IN", patient=PATIENT))
    assert d.allowed and d.obligations == ()
