"""REGULATIONS.md §7 rules 14-20: Schedule V without a prescription, and pseudoephedrine."""

from __future__ import annotations

from typing import Any

import pytest

from pharmacy.errors import ComplianceDenied
from tests.policy_cache.policy_support import NDC, PATIENT, TECH, Checker, codes, sale

COUGH = NDC["cough_cv"]
ADULT = dict(PATIENT)
MINOR = dict(PATIENT, id="pat-minor", birth_date="2009-01-15")


# ---- rules 14-17: C-V without a prescription (21 CFR 1306.26) -----------------------------------
def test_cv_otc_allowed_for_pharmacist_with_log(checker: Checker) -> None:
    d = checker.check(sale(COUGH, 1, patient=ADULT))
    assert d.decision == "allow", d.reasons
    assert {"cv_otc_log", "pharmacist_only", "id_check"} <= set(d.obligations)


def test_r14_cv_otc_under_18_denied(checker: Checker) -> None:
    d = checker.check(sale(COUGH, 1, patient=MINOR))
    assert codes(d, "deny") == ["DEA_CV_OTC_AGE"]
    assert d.reasons[0].citation == "21 CFR 1306.26(c)"
    no_birth = {k: v for k, v in ADULT.items() if k != "birth_date"}
    assert codes(checker.check(sale(COUGH, 1, patient=no_birth)), "deny") == ["DEA_CV_OTC_AGE"]


def test_r15_cv_otc_48h_opium_limit(checker: Checker, at: Any) -> None:
    checker.sell(sale(COUGH, 2, patient=ADULT, at=at(-1)))  # 236 mL
    d = checker.check(sale(COUGH, 1, patient=ADULT))  # 354 mL within 48 h
    assert codes(d, "deny") == ["DEA_CV_OTC_48H_LIMIT"]
    assert "240 mL" in d.reasons[0].message
    later = checker.check(sale(COUGH, 1, patient=ADULT, at=at(1, 1)))  # first sale is 49 h old
    assert later.decision == "allow", later.reasons
    other = dict(ADULT, id="pat-2")
    assert checker.check(sale(COUGH, 2, patient=other)).decision == "allow"
    assert codes(checker.check(sale(COUGH, 3, patient=other)), "deny") == [
        "DEA_CV_OTC_48H_LIMIT"]


def test_r16_cv_otc_pharmacist_only(checker: Checker) -> None:
    d = checker.check(sale(COUGH, 1, patient=ADULT, user=TECH))
    assert codes(d, "deny") == ["DEA_CV_OTC_PHARMACIST_ONLY"]


@pytest.mark.parametrize("drop", ["address", "name", "id"])
def test_r17_cv_otc_log_incomplete(checker: Checker, drop: str) -> None:
    p = {k: v for k, v in ADULT.items() if k != drop}
    d = checker.check(sale(COUGH, 1, patient=p))
    assert d.decision == "hold" and codes(d) == ["DEA_CV_OTC_LOG_INCOMPLETE"]


def test_cv_not_otc_eligible_needs_rx(checker: Checker) -> None:
    d = checker.check(sale(NDC["pregabalin"], 10, patient=ADULT))
    assert codes(d, "deny") == ["DEA_RX_REQUIRED"]


# ---- rules 18-20: pseudoephedrine (21 CFR Part 1314) --------------------------------------------
BUYER = dict(PATIENT, id="pat-pse")
SIGNED = {"purchaser_signature": "sig:ab12"}


def test_r18_daily_3_6_g_base(checker: Checker, at: Any) -> None:
    # Sudafed 12 h 120 mg x 10 = 1,200 mg HCl = 982.8 mg base per pack
    three = checker.check(sale(NDC["sudafed12h"], 3, patient=BUYER, **SIGNED))
    assert three.decision == "allow", three.reasons
    assert {"cmea_log", "id_check", "behind_counter"} <= set(three.obligations)
    four = checker.check(sale(NDC["sudafed12h"], 4, patient=BUYER, **SIGNED))
    assert codes(four, "deny") == ["CMEA_DAILY_3_6G"]
    assert "3.931" in four.reasons[0].message and "3.6 g" in four.reasons[0].message
    # across transactions of the same calendar day
    checker.sell(sale(NDC["sudafed12h"], 3, patient=BUYER, at=at(-0.2), **SIGNED))
    assert codes(checker.check(sale(NDC["sudafed12h"], 1, patient=BUYER, **SIGNED)),
                 "deny") == ["CMEA_DAILY_3_6G"]


def test_r18_daily_cap_applies_to_logbook_exempt_single_package(checker: Checker, at: Any
                                                                ) -> None:
    exempt_anonymous = checker.check(sale(NDC["pse_single"], 1, patient=None))
    assert exempt_anonymous.decision == "allow", exempt_anonymous.reasons
    assert "cmea_log" not in exempt_anonymous.obligations
    checker.sell(sale(NDC["sudafed12h"], 3, patient=BUYER, at=at(-0.1), **SIGNED))  # 2948.4 mg
    checker.sell(sale(NDC["pse26"], 1, patient=BUYER, at=at(-0.05), **SIGNED))  # +638.82 mg
    d = checker.check(sale(NDC["pse_single"], 1, patient={"id": "pat-pse"}))  # +49.14 mg
    assert codes(d, "deny") == ["CMEA_DAILY_3_6G"]


def test_r19_rolling_30_day_limit(checker: Checker, at: Any) -> None:
    for day in (-20, -10, -5):  # 3 x 2948.4 mg = 8845.2 mg
        checker.sell(sale(NDC["sudafed12h"], 3, patient=BUYER, at=at(day), **SIGNED))
    d = checker.check(sale(NDC["sudafed12h"], 1, patient=BUYER, **SIGNED))
    assert codes(d, "deny") == ["CMEA_30DAY_LIMIT"]
    assert d.reasons[0].citation == "21 U.S.C. 844(a)"
    # a purchase 31 days ago has left the window
    later = checker.check(sale(NDC["sudafed12h"], 1, patient=BUYER, at=at(11), **SIGNED))
    assert later.decision == "allow", later.reasons


def test_r19_mail_order_7_5_g(checker: Checker, at: Any) -> None:
    buyer = dict(BUYER, id="pat-mail")
    for day in (-3, -2):
        checker.sell(sale(NDC["sudafed12h"], 3, patient=buyer, at=at(day), **SIGNED))
    retail = checker.check(sale(NDC["sudafed12h"], 2, patient=buyer, **SIGNED))
    assert retail.decision == "allow", retail.reasons  # 7.86 g <= 9 g
    mail = checker.check(sale(NDC["sudafed12h"], 2, patient=buyer, channel="mail_order",
                              **SIGNED))
    assert codes(mail, "deny") == ["CMEA_30DAY_LIMIT"]
    assert "1314.20(b)" in (mail.reasons[0].citation or "")


def test_r20_photo_id_required_and_name_must_match(checker: Checker) -> None:
    no_id = {k: v for k, v in BUYER.items() if k != "id_document"}
    d = checker.check(sale(NDC["sudafed12h"], 1, patient=no_id, **SIGNED))
    assert codes(d, "deny") == ["CMEA_ID_REQUIRED"]
    other_name = dict(BUYER, id_document={"type": "passport", "number": "X1",
                                          "name": "John Roe"})
    d = checker.check(sale(NDC["sudafed12h"], 1, patient=other_name, **SIGNED))
    assert codes(d, "deny") == ["CMEA_ID_REQUIRED"]
    same_name_other_case = dict(BUYER, id_document={"type": "dl", "number": "X1",
                                                    "name": "JANE Q. DOE"})
    assert checker.check(sale(NDC["sudafed12h"], 1, patient=same_name_other_case,
                              **SIGNED)).allowed


def test_r20_log_incomplete_without_signature(checker: Checker) -> None:
    d = checker.check(sale(NDC["sudafed12h"], 1, patient=BUYER))
    assert d.decision == "hold" and codes(d) == ["CMEA_LOG_INCOMPLETE"]
    with pytest.raises(ComplianceDenied) as ei:
        checker.sell(sale(NDC["sudafed12h"], 1, patient=BUYER))
    assert ei.value.code == "CMEA_LOG_INCOMPLETE"


def test_base_content_comes_from_bundle_not_salt(checker: Checker) -> None:
    """The catalog says 1,200 mg per pack (salt); the bundle's base content (982.8 mg) is what
    counts, so three packs (2.95 g base) pass while 3.6 g of salt would not."""
    bg = checker.gate.bundle_gate
    assert bg is not None
    assert bg.data.pse_base_mg[NDC["sudafed12h"]] == pytest.approx(982.8)


def test_signature_flags(checker: Checker) -> None:
    unsigned = dict(BUYER, signature=False)
    assert codes(checker.check(sale(NDC["sudafed12h"], 1, patient=unsigned))) == [
        "CMEA_LOG_INCOMPLETE"]
    assert checker.check(sale(NDC["sudafed12h"], 1, patient=dict(BUYER, signature=True))).allowed
    assert checker.check(sale(NDC["sudafed12h"], 1, patient=BUYER,
                              signature_captured=True)).allowed
