"""The demo catalog shipped in pharmacy/data/demo_catalog.json: coverage of every category the
compliance rules care about, valid identifiers, and Orange Book links that really match."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from pharmacy import catalog
from pharmacy.catalog import Product
from pharmacy.ids import parse_hyphenated_ndc, validate_gtin14
from pharmacy.store import Store
from tests.conftest import FakeClock, shared_data

INDIA_LABELER = "0000"  # fictitious store-brand labeler, used only for India-market items
PSE_BASE_FACTOR = {"HCl": Decimal("0.82"), "sulfate": Decimal("0.77")}

OrangeBook = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def products() -> list[Product]:
    return catalog.demo_catalog()


def _india(p: Product) -> bool:
    return p.attrs.get("market") == "IN"


def _count(products: list[Product], pred: Callable[[Product], bool]) -> int:
    return sum(1 for p in products if pred(p))


# ------------------------------------------------------------------ categories


def test_size_and_category_minimums(products: list[Product]) -> None:
    us = [p for p in products if not _india(p)]
    assert len(products) >= 60
    assert _count(us, lambda p: not p.rx_only and not p.cmea and p.dea_schedule is None) >= 15
    assert _count(us, lambda p: p.rx_only and p.dea_schedule is None) >= 15
    assert _count(us, lambda p: p.dea_schedule == "CII") >= 5
    assert _count(us, lambda p: p.dea_schedule == "CIII") >= 3
    assert _count(us, lambda p: p.dea_schedule == "CIV") >= 4
    assert _count(us, lambda p: p.dea_schedule == "CV") >= 3
    assert _count(products, lambda p: p.dea_schedule == "CI") <= 1
    assert _count(us, lambda p: p.cmea) >= 3
    india = Counter(p.india_schedule for p in products if _india(p))
    assert india["H"] >= 3 and india["H1"] >= 3 and india["X"] >= 2 and india["G"] >= 1


def test_controlled_classes_are_flagged(products: list[Product]) -> None:
    assert _count(products, lambda p: p.attrs.get("opioid") is True) >= 5
    assert _count(products, lambda p: p.attrs.get("benzodiazepine") is True) >= 2
    assert _count(products, lambda p: p.attrs.get("stimulant") is True) >= 3
    assert _count(products, lambda p: p.attrs.get("carisoprodol") is True) >= 1
    for p in products:
        if p.attrs.get("stimulant") and not _india(p):
            assert p.dea_schedule == "CII", p.name


def test_cv_without_prescription_item(products: list[Product]) -> None:
    otc_cv = [p for p in products if p.dea_schedule == "CV" and not p.rx_only]
    assert otc_cv
    for p in otc_cv:
        assert p.attrs["cv_otc_eligible"] is True
        assert isinstance(p.attrs["opium_containing"], bool)
        assert p.attrs["ml_per_unit"] > 0
    assert any(p.attrs["opium_containing"] for p in otc_cv)
    # prescription-only C-V products are never marked sellable without a prescription
    assert not any(p.attrs.get("cv_otc_eligible") for p in products if p.rx_only)


def test_schedule_one_item_is_marked_and_unlinked(products: list[Product]) -> None:
    for p in products:
        if p.dea_schedule == "CI":
            assert "(C-I, not dispensable)" in p.name
            assert p.appl is None


def test_pseudoephedrine_base_content(products: list[Product]) -> None:
    pse = [p for p in products if p.cmea]
    for p in pse:
        assert "pseudoephedrine" in p.ingredients
        assert p.pse_mg_per_unit is not None and p.pse_mg_per_unit > 0
        assert not p.rx_only and p.unit == "pack"
        factor = PSE_BASE_FACTOR[p.attrs["pse_salt"]]
        expected = (p.attrs["container_size"] * Decimal(str(p.attrs["pse_salt_mg_per_dose_unit"]))
                    * factor)
        assert Decimal(str(p.pse_mg_per_unit)) == expected.quantize(Decimal("0.1")), p.name
    assert any(p.pse_mg_per_unit is not None and p.pse_mg_per_unit <= 60 for p in pse)
    assert any(p.attrs["pse_salt"] == "sulfate" for p in pse)
    for p in products:
        if not p.cmea:
            assert p.pse_mg_per_unit is None and "pseudoephedrine" not in p.ingredients


def test_india_items_use_the_fictitious_labeler_only(products: list[Product]) -> None:
    for p in products:
        labeler = parse_hyphenated_ndc(p.ndc).labeler
        if _india(p):
            assert labeler == INDIA_LABELER, p.name
            assert p.appl is None and p.dea_schedule is None and p.manufacturer
            assert p.rx_only == (p.india_schedule in ("H", "H1", "X")), p.name
        else:
            assert labeler != INDIA_LABELER, p.name
            assert p.india_schedule is None, p.name


def test_entries_are_well_formed(products: list[Product]) -> None:
    allowed_attrs = {
        "opioid", "benzodiazepine", "barbiturate", "carisoprodol", "stimulant",
        "cv_otc_eligible", "opium_containing", "container_size", "ml_per_unit", "counseling",
        "aux_warnings", "formulary_tier", "atc", "market", "currency", "ndps", "pse_salt",
        "pse_salt_mg_per_dose_unit", "actuations_per_unit", "not_dispensable",
    }
    for p in products:
        assert p.ingredients and all(i == i.lower() for i in p.ingredients), p.name
        assert p.strength and p.dosage_form and p.route and p.manufacturer, p.name
        assert set(p.attrs) <= allowed_attrs, (p.name, set(p.attrs) - allowed_attrs)
        assert p.attrs["container_size"] >= 1
        if p.dea_schedule != "CI":
            assert p.price_cents > 0, p.name
        if p.rx_only and not _india(p) and p.dea_schedule != "CI":
            assert p.tax_rate_bp == 0 and p.attrs["formulary_tier"] in (1, 2, 3), p.name
        if p.unit == "mL" or p.dosage_form in ("syrup", "solution"):
            assert p.attrs["ml_per_unit"] > 0, p.name
        if "atc" in p.attrs:
            assert re.fullmatch(r"[A-Z]\d\d[A-Z][A-Z]\d\d", p.attrs["atc"]), p.name
        for w in p.attrs.get("aux_warnings", []):
            assert isinstance(w, str) and 0 < len(w) <= 80


# ------------------------------------------------------------------ identifiers


def test_identifiers_valid_and_unique(products: list[Product]) -> None:
    for p in products:
        assert validate_gtin14(p.gtin) == p.gtin
        assert p.gtin[1:3] == "03" and p.gtin[3:13] == p.ndc.replace("-", "")
    columns: dict[str, list[str]] = {
        "ndc": [p.ndc for p in products],
        "ndc digits": [p.ndc.replace("-", "") for p in products],
        "ndc11": [p.ndc11 for p in products],
        "gtin": [p.gtin for p in products],
    }
    for column, values in columns.items():
        assert len(values) == len(set(values)), f"duplicate {column}"


def test_loads_into_a_store_and_is_found_by_every_identifier(
    tmp_path: Path, clock: FakeClock, products: list[Product]
) -> None:
    store = Store.init(tmp_path / "demo", "store-demo", clock=clock)
    try:
        assert catalog.upsert_products(store, products) == len(products)
        assert catalog.count(store.conn) == len(products)
        for p in products:
            for ident in (p.ndc, p.ndc11, p.gtin):
                assert catalog.lookup(store.conn, ident) == p
    finally:
        store.close()


# ------------------------------------------------------------------ Orange Book links

_MASS_IN_MG = {"MCG": Decimal("0.001"), "MG": Decimal(1), "G": Decimal(1000)}


def _mg(m: re.Match[str]) -> str:
    value = Decimal(m[1]) * _MASS_IN_MG[m[2]]
    return format(value.normalize(), "f") + "MG"


def _component(text: str) -> str:
    t = re.sub(r"\s+", " ", text.strip().upper())
    # "EQ 20MG BASE", "EQ 50MG TARTRATE", "EQ 0.09MG BASE/INH": the amount of the named moiety
    m = re.fullmatch(r"EQ ([\d.]+ ?(?:MCG|MG|G))(?: [A-Z ]+?)?(/.+)?", t)
    if m:
        t = m[1] + (m[2] or "")
    t = t.replace(" ", "")
    return re.sub(r"([\d.]+)(MCG|MG|G)(?![A-Z])", _mg, t)


def strength_components(text: str) -> list[str]:
    """Normalized, order-free strength components; Orange Book notes after "**" dropped."""
    return sorted(_component(c) for c in text.split("**")[0].split(";"))


def strengths_equivalent(product_strength: str, ob_strength: str) -> bool:
    mine, theirs = strength_components(product_strength), strength_components(ob_strength)
    if mine == theirs:
        return True
    # mixed amphetamine salts: the label states the total of the Orange Book's equal parts
    single = re.fullmatch(r"([\d.]+)MG", mine[0]) if len(mine) == 1 else None
    parts = [re.fullmatch(r"([\d.]+)MG", c) for c in theirs]
    if single and len(parts) > 1 and all(parts):
        return Decimal(single[1]) == sum(Decimal(p[1]) for p in parts if p)
    return False


@pytest.mark.parametrize(("mine", "ob", "same"), [
    ("20 mg", "EQ 20MG BASE", True),
    ("50 mg", "EQ 50MG TARTRATE", True),
    ("100 mcg", "0.1MG **See current Annual Edition, 1.8 Description of Special Situations", True),
    ("90 mcg/inh", "EQ 0.09MG BASE/INH", True),
    ("25 mcg/hr", "25MCG/HR", True),
    ("30 mg/5 mL", "EQ 30MG HYDROBROMIDE/5ML", True),
    ("10 mg; 325 mg", "325MG;10MG", True),
    ("20 mg", "5MG;5MG;5MG;5MG", True),
    ("200 mg/mL", "200MG/ML", True),
    ("10 mg", "EQ 20MG BASE", False),
    ("10 mg; 300 mg", "325MG;10MG", False),
    ("5 mg/5 mL", "5MG", False),
])
def test_strength_equivalence_rule(mine: str, ob: str, same: bool) -> None:
    assert strengths_equivalent(mine, ob) is same


@pytest.fixture(scope="module")
def orange_book() -> OrangeBook:
    text = shared_data("orange_book", "2024-11", "products.txt").read_text("ascii")
    lines = text.splitlines()
    header = lines[0].split("~")
    rows: OrangeBook = {}
    for line in lines[1:]:
        r = dict(zip(header, line.split("~"), strict=True))
        rows[f"{r['Appl_Type']}{r['Appl_No']}:{r['Product_No']}"] = r
    return rows


def _release(text: str) -> set[str]:
    return {w for w in ("EXTENDED", "DELAYED") if w in text.upper()}


@pytest.mark.shared_data
def test_every_prescription_product_links_to_a_current_orange_book_row(
    products: list[Product], orange_book: OrangeBook
) -> None:
    for p in products:
        if p.rx_only and not _india(p) and p.dea_schedule != "CI":
            assert p.appl, f"{p.name} is a US prescription product without an Orange Book link"
    linked = [p for p in products if p.appl]
    assert len(linked) >= 50
    for p in linked:
        assert p.appl is not None and p.strength is not None and p.dosage_form is not None
        row = orange_book.get(p.appl)
        assert row is not None, f"{p.name}: {p.appl} is not in the Orange Book"
        assert row["Type"] == ("RX" if p.rx_only else "OTC"), (p.name, row["Type"])
        ob_words = set(re.split(r"[;,\s]+", row["Ingredient"].lower()))
        for ingredient in p.ingredients:
            assert ingredient.split()[0] in ob_words, (p.name, ingredient, row["Ingredient"])
        assert strengths_equivalent(p.strength, row["Strength"]), (
            p.name, p.strength, row["Strength"])
        assert p.dosage_form.split(",")[0].split()[0].upper() in row["DF;Route"], (
            p.name, p.dosage_form, row["DF;Route"])
        assert _release(p.dosage_form) == _release(row["DF;Route"]), (p.name, row["DF;Route"])
        assert p.manufacturer is not None
        assert p.manufacturer.casefold() == row["Applicant_Full_Name"].casefold(), (
            p.name, p.manufacturer, row["Applicant_Full_Name"])


def _a_codes(te_code: str) -> set[str]:
    return {c for c in te_code.split(",") if c.startswith("A")}


@pytest.mark.shared_data
def test_generic_substitution_has_pairs_and_traps(
    products: list[Product], orange_book: OrangeBook
) -> None:
    """Brand/generic pairs share an Orange Book group (ingredient, form and strength) with a
    common A-code; the catalog also holds same-group products that must not be swapped."""
    groups: dict[tuple[str, str, str], list[Product]] = defaultdict(list)
    for p in products:
        if p.appl and p.rx_only:
            r = orange_book[p.appl]
            groups[(r["Ingredient"], r["DF;Route"], r["Strength"])].append(p)
    substitutable, traps = 0, 0
    for members in groups.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                assert a.appl is not None and b.appl is not None
                common = (_a_codes(orange_book[a.appl]["TE_Code"])
                          & _a_codes(orange_book[b.appl]["TE_Code"]))
                if common:
                    substitutable += 1
                else:
                    traps += 1
    assert substitutable >= 8
    assert traps >= 2  # levothyroxine AB4-only vs Synthroid AB1/AB2; Ventolin HFA (BX)
