"""Substitution: equivalence, ranking, queries, bad input, DAW and state law, the CLI."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from pharmacy import catalog, orange_book, substitution
from pharmacy.errors import BadInput
from pharmacy.ids import gtin_from_ndc, parse_hyphenated_ndc
from pharmacy.store import Store
from terminal.cli import main
from tests.conftest import shared_data

TODAY = date(2026, 11, 2)


def _eq(store: Store, query: str, **kw: Any) -> dict[str, Any]:
    return substitution.find_equivalents(store.conn, query, TODAY, **kw).to_json()


def test_ranking_stock_first_then_tier_then_price(clinical_store: Store) -> None:
    out = _eq(clinical_store, "appl:N020610:001")
    assert out["prescribed"]["trade_name"] == "COLAZAL"
    assert out["prescribed"]["rld"] is True and out["prescribed"]["rs"] is True
    assert out["prescribed"]["in_stock"] is True and out["prescribed"]["price"] == "2.10"
    eq = out["equivalents"]
    # Zydus: in stock, tier 1; Apotex: in stock, tier 2; Hikma: carried, out of stock
    assert [e["appl"] for e in eq] == ["A217592:001", "A077883:001", "A077806:001"]
    assert [e["in_stock"] for e in eq] == [True, True, False]
    assert all(e["te_code"] == "AB" for e in eq)
    assert "A077807:001" not in {e["appl"] for e in eq}  # discontinued
    apotex = eq[1]
    assert apotex["lot"] == "AP1" and apotex["expiry"] == "2027-03-31"  # FEFO lot
    assert apotex["on_hand"] == 150 and apotex["price"] == "0.60"
    assert apotex["savings"] == {"patient": "1.50", "pharmacy": "1.28", "per": "capsule"}
    assert eq[0]["savings"]["patient"] == "1.70"
    for e in eq:
        assert set(e) >= {"appl", "te_code", "trade_name", "applicant", "strength", "in_stock",
                          "price", "savings", "why", "rld", "rs"}
        assert "equivalent: same ingredient (BALSALAZIDE DISODIUM)" in e["why"]
        assert f"Ranked {e['rank']}:" in e["why"]
    assert "in stock (150 on hand; FEFO lot AP1 expires 2027-03-31)" in apotex["why"]
    assert "formulary tier 2" in apotex["why"] and "patient saves 1.50" in apotex["why"]
    assert "carried but not in stock" in eq[2]["why"]


def test_equivalents_not_carried_still_listed(clinical_store: Store) -> None:
    out = _eq(clinical_store, "appl:N020702:001")  # Lipitor 10 mg
    eq = {e["appl"]: e for e in out["equivalents"]}
    assert set(eq) == {"A091650:001", "A077575:001"}  # not BX, not discontinued, not 20 mg
    assert all(e["in_stock"] is False and e["price"] is None for e in eq.values())
    assert all("not carried by this store" in e["why"] for e in eq.values())


def test_numbered_subgroups_only_within_the_same_number(clinical_store: Store) -> None:
    out = _eq(clinical_store, "appl:N021402:001")  # Synthroid AB1,AB2
    got = {e["appl"]: e["te_code"] for e in out["equivalents"]}
    # Levoxyl AB1,AB3 (shares AB1), Euthyrox AB2, Mylan and Thyro-Tabs (all four); not Ascent AB4
    assert set(got) == {"N021301:001", "N021292:001", "A076187:001", "N021116:001"}
    assert "A215259:001" not in got
    # the Ascent product (AB4 only) is cheaper and in stock but never offered
    ascent = _eq(clinical_store, "appl:A215259:001")
    assert {e["appl"] for e in ascent["equivalents"]} == {"A076187:001", "N021116:001"}
    mylan = next(e for e in out["equivalents"] if e["appl"] == "A076187:001")
    assert "shares AB1,AB2 with the prescribed AB1,AB2" in mylan["why"]
    assert out["equivalents"][0]["appl"] == "A076187:001"  # the only one in stock


def test_unnumbered_a_codes_are_one_subgroup(clinical_store: Store) -> None:
    out = _eq(clinical_store, "appl:N020080:003")  # Imitrex STATdose AB; generic AP
    assert [e["appl"] for e in out["equivalents"]] == ["A079242:001"]


def test_b_rated_blank_and_discontinued_have_nothing(clinical_store: Store) -> None:
    bx = _eq(clinical_store, "appl:A213853:001")
    assert bx["equivalents"] == [] and "rated BX" in bx["note"]
    discn = _eq(clinical_store, "appl:A078773:001")
    assert discn["equivalents"] == [] and "discontinued" in discn["note"]
    otc = _eq(clinical_store, "appl:N018989:001")  # Advil: OTC, no TE code
    assert otc["equivalents"] == [] and "no TE code" in otc["note"]


def test_query_forms_ndc_gtin_appl_name(clinical_store: Store) -> None:
    by_ndc = _eq(clinical_store, "65649-101-02")
    assert by_ndc["prescribed"]["ndc"] == "65649-101-02"
    parts = parse_hyphenated_ndc("65649-101-02")
    by_ndc11 = _eq(clinical_store, parts.ndc11)
    by_gtin = _eq(clinical_store, gtin_from_ndc(parts))
    by_appl = _eq(clinical_store, "APPL:n020610:001")
    by_name = _eq(clinical_store, "colazal")
    by_catalog_name = _eq(clinical_store, "Colazal 750 mg capsules")
    for other in (by_ndc11, by_gtin, by_appl, by_name, by_catalog_name):
        assert [e["appl"] for e in other["equivalents"]] == \
               [e["appl"] for e in by_ndc["equivalents"]]
    lip = _eq(clinical_store, "Lipitor 10 mg")
    assert lip["prescribed"]["appl"] == "N020702:001"
    assert _eq(clinical_store, "lipitor 20mg tablet")["prescribed"]["appl"] == "N020702:002"


def test_generic_name_prescription(clinical_store: Store) -> None:
    out = _eq(clinical_store, "balsalazide 750 mg capsule")
    assert out["prescribed"]["generic"] is True and out["prescribed"]["appl"] is None
    assert out["prescribed"]["te_code"] == "AB"
    # every A-rated marketed product qualifies, the RLD included
    assert {e["appl"] for e in out["equivalents"]} == {
        "N020610:001", "A077883:001", "A077806:001", "A217592:001"}
    assert _eq(clinical_store, "atorvastatin 10mg")["prescribed"]["generic"] is True


def test_ambiguous_name_lists_candidates(clinical_store: Store) -> None:
    with pytest.raises(BadInput) as e:
        _eq(clinical_store, "Lipitor")
    assert e.value.code == "AMBIGUOUS_NAME"
    queries = [c["query"] for c in e.value.details["candidates"]]
    assert queries == ["appl:N020702:001", "appl:N020702:002"]
    assert "appl:N020702:001" in e.value.message and "appl:N020702:002" in e.value.message
    with pytest.raises(BadInput) as e:  # generic, two strengths
        _eq(clinical_store, "atorvastatin")
    assert e.value.code == "AMBIGUOUS_NAME" and e.value.details["total"] == 2
    with pytest.raises(BadInput) as e:  # levothyroxine AB1..AB4: no common sub-group
        _eq(clinical_store, "levothyroxine 0.025 mg")
    assert e.value.code == "AMBIGUOUS_NAME"
    assert "appl:N021402:001" in {c["query"] for c in e.value.details["candidates"]}


@pytest.mark.parametrize(("query", "code"), [
    ("0093-58-01", "BAD_NDC"),            # not a legal 4-4-2 / 5-3-2 / 5-4-1 form
    ("12345", "BAD_IDENTIFIER"),
    ("00365649101025", "GTIN_CHECK_DIGIT"),
    ("1234-5678-90", "UNKNOWN_NDC"),      # well formed, nowhere
    ("0904-5800-61", "NO_ORANGE_BOOK_LINK"),  # in the catalog, no appl
    ("appl:N20610:1", "BAD_APPL"),
    ("appl:N999999:001", "NOT_IN_ORANGE_BOOK"),
    ("Wonderpill", "UNKNOWN_NAME"),
    ("Lipitor 15 mg", "UNKNOWN_STRENGTH"),
    ("  ", "BAD_QUERY"),
])
def test_bad_queries(clinical_store: Store, query: str, code: str) -> None:
    with pytest.raises(BadInput) as e:
        _eq(clinical_store, query)
    assert e.value.code == code, e.value.message
    assert e.value.message


def test_no_orange_book_imported(store: Store) -> None:
    with pytest.raises(BadInput) as e:
        _eq(store, "0093-0058-01")
    assert e.value.code == "NO_ORANGE_BOOK" and "--orange-book" in e.value.message


def test_law_block_for_mandatory_state(clinical_store: Store) -> None:
    out = _eq(clinical_store, "appl:N020610:001", jurisdiction="US-NY")
    assert out["law"]["model"] == "mandatory" and out["law"]["substitution_required"] is True
    assert out["law"]["cheaper_equivalents"][0] == "A217592:001"
    assert _eq(clinical_store, "appl:N020610:001", jurisdiction="US-TX")["law"][
        "substitution_required"] is False
    assert "law" not in _eq(clinical_store, "appl:N020610:001", jurisdiction="IN")


# ---- DAW and state law ------------------------------------------------------------------------
def _ob(store: Store, key: str) -> orange_book.ObProduct:
    return orange_book.get(store.conn, key)


def _codes(reasons: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(r.code, r.severity) for r in reasons]


def test_te_not_equivalent_and_daw1(clinical_store: Store) -> None:
    synth, ascent, mylan = (_ob(clinical_store, k) for k in
                            ("N021402:001", "A215259:001", "A076187:001"))
    chk = substitution.check_substitution
    assert _codes(chk(synth, ascent, 0, "US-TX")) == [("TE_NOT_EQUIVALENT", "deny")]
    assert _codes(chk(synth, mylan, 0, "US-TX")) == []
    assert _codes(chk(synth, mylan, 1, "US-TX")) == [("DAW1_NO_SUBSTITUTION", "deny")]
    assert _codes(chk(synth, mylan, 0, "US-FL", medically_necessary=True)) == [
        ("DAW1_NO_SUBSTITUTION", "deny")]
    lipitor, bx = _ob(clinical_store, "N020702:001"), _ob(clinical_store, "A213853:001")
    reasons = chk(lipitor, bx, 3, "US-CA")
    assert _codes(reasons) == [("TE_NOT_EQUIVALENT", "deny")]
    assert "TE BX" in reasons[0].message and reasons[0].citation
    other_strength = _ob(clinical_store, "A091650:002")
    assert _codes(chk(lipitor, other_strength, 0, "US-CA")) == [("TE_NOT_EQUIVALENT", "deny")]
    discn = _ob(clinical_store, "A078773:001")
    assert _codes(chk(lipitor, discn, 0, "US-CA")) == [("TE_NOT_EQUIVALENT", "deny")]
    with pytest.raises(BadInput) as e:
        chk(synth, mylan, 10, "US-TX")
    assert e.value.code == "BAD_DAW"


def test_mandatory_states_require_the_cheaper_equivalent(clinical_store: Store) -> None:
    colazal, zydus = _ob(clinical_store, "N020610:001"), _ob(clinical_store, "A217592:001")
    chk = substitution.check_substitution
    kw = {"cheaper_equivalent": zydus, "cheaper_in_stock": True}
    ny = chk(colazal, colazal, 0, "US-NY", **kw)
    assert _codes(ny) == [("NY_SUBSTITUTION_REQUIRED", "deny")]
    assert ny[0].citation == "NY Educ. Law 6816-a(1)" and "A217592:001" in ny[0].message
    fl = chk(colazal, colazal, 0, "US-FL", **kw)
    assert _codes(fl) == [("FL_SUBSTITUTION_REQUIRED", "deny")]
    assert "purchaser refuses (record DAW 2)" in fl[0].message
    # the prescriber prohibits: fine everywhere
    assert _codes(chk(colazal, colazal, 1, "US-NY", **kw)) == [
        ("SUBSTITUTION_PROHIBITED_BY_PRESCRIBER", "info")]
    assert _codes(chk(colazal, colazal, 0, "US-FL", medically_necessary=True, **kw)) == [
        ("SUBSTITUTION_PROHIBITED_BY_PRESCRIBER", "info")]
    # the purchaser refuses: DAW 2 (FL allows it; NY names no such exception → hold)
    assert _codes(chk(colazal, colazal, 2, "US-FL", **kw)) == [
        ("SUBSTITUTION_REFUSED_BY_PURCHASER", "info")]
    ny2 = chk(colazal, colazal, 2, "US-NY", **kw)
    assert _codes(ny2) == [("NY_SUBSTITUTION_REQUIRED", "hold")] and ny2[0].overridable
    # DAW 4 only when the equivalent really is out of stock
    assert _codes(chk(colazal, colazal, 4, "US-NY", cheaper_equivalent=zydus)) == [
        ("GENERIC_NOT_IN_STOCK", "info")]
    assert _codes(chk(colazal, colazal, 4, "US-NY", **kw)) == [("DAW4_BUT_IN_STOCK", "hold")]
    # permissive states, or no cheaper equivalent: nothing to say
    assert chk(colazal, colazal, 0, "US-CA", **kw) == ()
    assert chk(colazal, colazal, 0, "US-TX", **kw) == ()
    assert chk(colazal, colazal, 0, "US-NY") == ()
    assert chk(colazal, colazal, 0, "IN", **kw) == ()


def test_substitute_dispensed_labels_and_daw2_mismatch(clinical_store: Store) -> None:
    colazal, zydus = _ob(clinical_store, "N020610:001"), _ob(clinical_store, "A217592:001")
    ny = substitution.check_substitution(colazal, zydus, 0, "US-NY")
    assert _codes(ny) == [("SUBSTITUTION_LABEL", "info")]
    assert "ZYDUS LIFESCIENCES GLOBAL FZE" in ny[0].message
    fl = substitution.check_substitution(colazal, zydus, 3, "US-FL")
    assert _codes(fl) == [("SUBSTITUTION_INFORM_SAVINGS", "info")]
    assert _codes(substitution.check_substitution(colazal, zydus, 2, "US-TX")) == [
        ("DAW2_BRAND_REQUESTED", "hold")]


def test_negative_formulary_from_bundle_data(clinical_store: Store) -> None:
    data = substitution.state_law_to_json()
    data["states"]["US-FL"]["negative_formulary"] = ["balsalazide"]
    table = substitution.state_law_from_json(json.loads(json.dumps(data)))
    colazal, zydus = _ob(clinical_store, "N020610:001"), _ob(clinical_store, "A217592:001")
    reasons = substitution.check_substitution(colazal, zydus, 0, "US-FL", law_table=table)
    assert _codes(reasons) == [("FL_NEGATIVE_FORMULARY", "deny")]
    assert substitution.state_law_from_json(substitution.state_law_to_json()) == \
        substitution.DEFAULT_STATE_LAW
    with pytest.raises(BadInput):
        substitution.state_law_from_json({"version": 2, "states": {}})


def test_check_dispense_uses_store_prices_and_stock(clinical_store: Store) -> None:
    reasons = substitution.check_dispense(clinical_store.conn, "65649-101-02", "65649-101-02", 0,
                                          "US-NY", TODAY)
    assert _codes(reasons) == [("NY_SUBSTITUTION_REQUIRED", "deny")]
    assert "A217592:001" in reasons[0].message
    assert substitution.check_dispense(clinical_store.conn, "65649-101-02", "70710-1544-2", 0,
                                       "US-NY", TODAY)[0].code == "SUBSTITUTION_LABEL"
    assert substitution.daw_meaning(2) == "Substitution allowed; patient requested brand"


# ---- CLI ----------------------------------------------------------------------------------------
def test_cli_substitute(clinical_store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(clinical_store.data_dir)
    clinical_store.set_setting("jurisdiction", "US-FL")
    assert main(["substitute", "--data-dir", d, "--json", "appl:N020610:001"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"prescribed", "equivalents", "law"}
    assert out["equivalents"][0]["appl"] == "A217592:001"
    assert out["law"]["jurisdiction"] == "US-FL"
    assert main(["substitute", "--data-dir", d, "65649-101-02"]) == 0
    assert "A217592:001" in capsys.readouterr().out
    assert main(["substitute", "--data-dir", d, "--json", "lipitor"]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "AMBIGUOUS_NAME" and len(err["details"]["candidates"]) == 2
    assert main(["substitute", "--data-dir", d, "--json", "0093-58-01"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_NDC"


# ---- the real Orange Book ----------------------------------------------------------------------
@pytest.mark.shared_data
def test_real_orange_book_equivalents_are_exactly_the_rule(tmp_path: Path, clock: Any) -> None:
    """Against a brute-force reading of the 2024-11 file: every lookup returns exactly the
    marketed A-rated products of the same ingredient/DF;Route/strength sharing a sub-group."""
    path = shared_data("orange_book", "2024-11", "products.txt")
    rows = [ln.split("~") for ln in path.read_bytes().decode("ascii").split("\r\n")[1:]]
    groups: dict[tuple[str, str, str], list[list[str]]] = defaultdict(list)
    for r in rows:
        groups[(r[0], r[1], r[4].split("**")[0].strip())].append(r)

    def subs(te: str) -> set[str]:
        return {c[2:] for c in te.split(",") if c.startswith("A")}

    store = Store.init(tmp_path / "real", "s", clock=clock)
    try:
        orange_book.import_orange_book(store, path)
        rated = [r for r in rows if r[12] == "RX" and subs(r[8])]
        rng = random.Random(36)
        sample = rng.sample(rated, 400) + [r for r in rated if "," in r[8]][:100]
        for r in sample:
            key = f"{r[5]}{r[6]}:{r[7]}"
            got = {e["appl"] for e in _eq(store, f"appl:{key}")["equivalents"]}
            want = {f"{o[5]}{o[6]}:{o[7]}" for o in groups[(r[0], r[1], r[4].split("**")[0]
                                                            .strip())]
                    if o[12] == "RX" and subs(o[8]) & subs(r[8])} - {key}
            assert got == want, key
        never = [r for r in rows if r[12] == "RX" and r[8] and not subs(r[8])][:50]
        for r in never:  # B-rated products are never anyone's equivalent, nor have any
            assert _eq(store, f"appl:{r[5]}{r[6]}:{r[7]}")["equivalents"] == []
        with pytest.raises(BadInput) as e:
            _eq(store, "Synthroid")
        assert e.value.code == "AMBIGUOUS_NAME" and e.value.details["total"] >= 10
        catalog.upsert_products(store, [catalog.product_from_json(
            {"ndc": "0071-0155-23", "name": "Lipitor 10 mg", "price": "3.00",
             "appl": "N020702:001"})])
        assert len(_eq(store, "0071-0155-23")["equivalents"]) >= 20
    finally:
        store.close()


def test_batched_stock_matches_the_inventory_fefo_rule(clinical_store: Store) -> None:
    from pharmacy import inventory

    products = [catalog.lookup(clinical_store.conn, p["ndc"]) for p in
                ({"ndc": "60505-2560-2"}, {"ndc": "0054-0065-29"}, {"ndc": "70710-1544-2"})]
    for pkg in substitution._packages(clinical_store.conn, products, TODAY):
        lots = inventory.sellable_batches(clinical_store.conn, pkg.product.ndc, TODAY)
        assert pkg.on_hand == sum(x[3] for x in lots)
        assert pkg.lot == (lots[0][1] if lots else None)
