"""REGULATIONS.md §7 rules 34-36 with the state substitution law carried in the signed bundle
(data/substitution_law.json), evaluated by pharmacy.substitution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pharmacy import orange_book, substitution
from pharmacy.signing import TrustStore
from pharmacy.store import Store
from policy_cache.bundle import verify_bundle
from tests.policy_cache.policy_support import hq_key, signed_bundle

# Real rows of FDA's Orange Book products.txt (2024-11, public domain).
ROWS = [
    "BALSALAZIDE DISODIUM~CAPSULE;ORAL~COLAZAL~VALEANT PHARMS INTL~750MG~N~020610~001~AB~"
    "Jul 18, 2000~Yes~Yes~RX~VALEANT PHARMACEUTICALS INTERNATIONAL",
    "BALSALAZIDE DISODIUM~CAPSULE;ORAL~BALSALAZIDE DISODIUM~ZYDUS LIFESCIENCES~750MG~A~217592~"
    "001~AB~Jun 8, 2023~No~No~RX~ZYDUS LIFESCIENCES GLOBAL FZE",
    "LEVOTHYROXINE SODIUM~TABLET;ORAL~SYNTHROID~ABBVIE~0.025MG~N~021402~001~AB1,AB2~"
    "Jul 24, 2002~Yes~No~RX~ABBVIE INC",
    "LEVOTHYROXINE SODIUM~TABLET;ORAL~LEVOTHYROXINE SODIUM~ASCENT PHARMS INC~0.025MG~A~215259~"
    "001~AB4~Jan 18, 2023~No~No~RX~ASCENT PHARMACEUTICALS INC",
    "LEVOTHYROXINE SODIUM~TABLET;ORAL~LEVOTHYROXINE SODIUM~MYLAN~0.025MG~A~076187~001~"
    "AB1,AB2,AB3,AB4~Jun 5, 2002~No~No~RX~MYLAN PHARMACEUTICALS INC",
]


@pytest.fixture
def ob(store: Store, tmp_path: Path) -> dict[str, Any]:
    p = tmp_path / "products.txt"
    p.write_bytes("\r\n".join(["~".join(orange_book.HEADER), *ROWS]).encode("ascii"))
    orange_book.import_orange_book(store, p)
    return {k: orange_book.get(store.conn, k) for k in
            ("N020610:001", "A217592:001", "N021402:001", "A215259:001", "A076187:001")}


@pytest.fixture
def law() -> dict[str, substitution.StateLaw]:
    vb = verify_bundle(signed_bundle(), TrustStore([hq_key().public]))
    assert vb.data.substitution_law is not None
    table = substitution.state_law_from_json(vb.data.substitution_law)
    assert table == substitution.DEFAULT_STATE_LAW
    return table


def _codes(reasons: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(r.code, r.severity) for r in reasons]


def test_r34_ny_substitution_required_and_labelled(ob: dict[str, Any],
                                                   law: dict[str, Any]) -> None:
    colazal, zydus = ob["N020610:001"], ob["A217592:001"]
    brand = substitution.check_substitution(colazal, colazal, 0, "US-NY", law_table=law,
                                            cheaper_equivalent=zydus, cheaper_in_stock=True)
    assert _codes(brand) == [("NY_SUBSTITUTION_REQUIRED", "deny")]
    assert brand[0].citation == "NY Educ. Law 6816-a(1)"
    generic = substitution.check_substitution(colazal, zydus, 0, "US-NY", law_table=law)
    assert _codes(generic) == [("SUBSTITUTION_LABEL", "info")]
    assert "750MG" in generic[0].message and "ZYDUS LIFESCIENCES GLOBAL FZE" in generic[0].message


def test_r35_fl_substitute_unless_purchaser_refuses(ob: dict[str, Any],
                                                    law: dict[str, Any]) -> None:
    colazal, zydus = ob["N020610:001"], ob["A217592:001"]
    kw: dict[str, Any] = {"law_table": law, "cheaper_equivalent": zydus, "cheaper_in_stock": True}
    assert _codes(substitution.check_substitution(colazal, colazal, 0, "US-FL", **kw)) == [
        ("FL_SUBSTITUTION_REQUIRED", "deny")]
    assert _codes(substitution.check_substitution(colazal, colazal, 2, "US-FL", **kw)) == [
        ("SUBSTITUTION_REFUSED_BY_PURCHASER", "info")]
    assert _codes(substitution.check_substitution(colazal, colazal, 0, "US-FL",
                                                  medically_necessary=True, **kw)) == [
        ("SUBSTITUTION_PROHIBITED_BY_PRESCRIBER", "info")]


def test_r36_te_not_equivalent_and_daw1(ob: dict[str, Any], law: dict[str, Any]) -> None:
    synthroid, ascent, mylan = ob["N021402:001"], ob["A215259:001"], ob["A076187:001"]
    assert _codes(substitution.check_substitution(synthroid, ascent, 0, "US-TX",
                                                  law_table=law)) == [
        ("TE_NOT_EQUIVALENT", "deny")]  # AB4 vs AB1/AB2
    assert substitution.check_substitution(synthroid, mylan, 0, "US-TX", law_table=law) == ()
    assert _codes(substitution.check_substitution(synthroid, mylan, 1, "US-TX",
                                                  law_table=law)) == [
        ("DAW1_NO_SUBSTITUTION", "deny")]
