"""Input of the wrong shape from operators and integrations (CLI JSON, catalog files, API
callers) ends in a domain error with a stable code, never a raw database or Python error
(through the CLI: exit 1 and no traceback), and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pharmacy import catalog, checkout, inventory, rx, users
from pharmacy.errors import BadInput
from pharmacy.phi import FileKeyProvider
from pharmacy.store import Store
from terminal import wiring
from tests.core import test_core_cli
from tests.core.test_core_cli import pharmos
from tests.pharmacy_rx.rxtestlib import rx_data

data_dir = test_core_cli.data_dir  # the CLI tests' fixture: a store with a small catalog

RECEIPT = {"batches": [{"ndc": "0904-6728-60", "lot": "A1", "expiry": "2030-01-31",
                        "qty": 10}]}


def _products(store: Store) -> int:
    return int(store.conn.execute("SELECT COUNT(*) FROM products").fetchone()[0])


# ---- catalog ------------------------------------------------------------------------------
def test_two_hyphenations_of_one_package_are_refused(data_dir: str, tmp_path: Path) -> None:
    """0904-6728-60 (4-4-2) is on file; 09046-728-60 (5-3-2) has the same ten digits and
    GTIN: one barcode cannot mean two products."""
    cat = tmp_path / "more.json"
    cat.write_text(json.dumps({"products": [{"ndc": "09046-728-60", "name": "Other"}]}))
    out = pharmos("catalog", "import", "--data-dir", data_dir, "--catalog", str(cat), "--json",
                  code=1)
    assert out["error"]["code"] == "NDC_CONFLICT" and "0904-6728-60" in out["error"]["message"]


def test_one_ndc11_twice_in_one_import(store: Store) -> None:
    before = _products(store)
    with pytest.raises(BadInput) as e:  # both are NDC-11 00904-0728-60
        catalog.upsert_products(store, [
            catalog.product_from_json({"ndc": "0904-0728-60", "name": "A"}),
            catalog.product_from_json({"ndc": "00904-728-60", "name": "B"})])
    assert e.value.code == "NDC_CONFLICT" and _products(store) == before
    # the same product twice is an update, not a conflict
    same = catalog.product_from_json({"ndc": "0904-0728-60", "name": "A"})
    assert catalog.upsert_products(store, [same, same]) == 2


@pytest.mark.parametrize("entry", [
    "not an object",
    {"ndc": 904672861, "name": "x"},
    {"ndc": "0904-6728-61", "name": ["x"]},
    {"ndc": "0904-6728-61", "name": "x", "pack_size": "abc"},
    {"ndc": "0904-6728-61", "name": "x", "pack_size": None},
    {"ndc": "0904-6728-61", "name": "x", "pack_size": 0},
    {"ndc": "0904-6728-61", "name": "x", "tax_rate_bp": "x"},
    {"ndc": "0904-6728-61", "name": "x", "tax_rate_bp": -20000},  # a negative total
    {"ndc": "0904-6728-61", "name": "x", "tax_rate_bp": 10001},
    {"ndc": "0904-6728-61", "name": "x", "attrs": [1]},
    {"ndc": "0904-6728-61", "name": "x", "ingredients": 5},
    {"ndc": "0904-6728-61", "name": "x", "ingredients": [1, 2]},
    {"ndc": "0904-6728-61", "name": "x", "strength": {"mg": 5}},
    {"ndc": "0904-6728-61", "name": "x", "pse_mg_per_unit": "30"},
    {"ndc": "0904-6728-61", "name": "x", "price": "1e30"},
])
def test_catalog_entries_of_the_wrong_shape(entry: Any) -> None:
    with pytest.raises(BadInput) as e:
        catalog.product_from_json(entry)
    assert e.value.code in ("BAD_CATALOG_ENTRY", "BAD_MONEY")


def test_whole_numbers_written_as_text_or_floats_are_whole_numbers() -> None:
    p = catalog.product_from_json({"ndc": "0904-6728-61", "name": "x", "pack_size": "30",
                                   "tax_rate_bp": 825.0})
    assert (p.pack_size, p.tax_rate_bp) == (30, 825)
    for bad in ({"pack_size": "3.5"}, {"tax_rate_bp": 8.25}, {"name": "Ibu\x00profen"},
                {"strength": "200\x00mg"}):
        with pytest.raises(BadInput) as e:
            catalog.product_from_json({"ndc": "0904-6728-61", "name": "x", **bad})
        assert e.value.code == "BAD_CATALOG_ENTRY"


def test_cli_catalog_import_of_a_bad_entry_imports_nothing(data_dir: str,
                                                           tmp_path: Path) -> None:
    cat = tmp_path / "bad.json"
    cat.write_text(json.dumps({"products": [{"ndc": "0904-6728-61", "name": "ok"},
                                            {"ndc": "0904-6728-62", "name": "x",
                                             "pack_size": "ten"}]}))
    out = pharmos("catalog", "import", "--data-dir", data_dir, "--catalog", str(cat), "--json",
                  code=1)
    assert out["error"]["code"] == "BAD_CATALOG_ENTRY" and "pack_size" in out["error"]["message"]
    pharmos("catalog", "show", "--data-dir", data_dir, "--json", "0904-6728-61", code=1)


# ---- money, stock -------------------------------------------------------------------------
def test_amounts_beyond_any_real_price_are_refused(stocked: Store) -> None:
    with pytest.raises(BadInput) as e:
        inventory.receive(stocked, [{"ndc": "0904-6728-60", "lot": "N1",
                                     "expiry": "2027-01-31", "qty": 1, "unit_cost": "1e30"}])
    assert e.value.code == "BAD_MONEY"
    d = wiring.dispenser(stocked)
    req = {"lines": [{"ndc": "0904-6728-60", "qty": 1}], "user": {"id": "u1"}}
    sales = stocked.conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0]
    with pytest.raises(BadInput) as e2:
        checkout.checkout(d, req, checkout.tender_for("cash", 811, "99999999999999999999"))
    assert e2.value.code == "BAD_MONEY"
    assert stocked.conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0] == sales


def test_what_head_office_could_not_hold_is_refused_at_the_counter(stocked: Store) -> None:
    """A unit cost beyond head office's column or text with a NUL character would be
    committed here and then refused by every sync: refused here instead."""
    item = {"ndc": "0904-6728-60", "lot": "N2", "expiry": "2027-01-31", "qty": 1}
    with pytest.raises(BadInput) as e:
        inventory.receive(stocked, [{**item, "unit_cost": "21474836.48"}])  # 2**31 cents
    assert e.value.code == "BAD_MONEY"
    inventory.receive(stocked, [{**item, "unit_cost": "21474836.47"}])
    with pytest.raises(BadInput) as e:
        inventory.receive(stocked, [{**item, "lot": "N3"}], supplier="Mc\x00Kesson")
    assert e.value.code == "BAD_REQUEST"


def test_cli_receive_and_stocktake_of_the_wrong_shape(data_dir: str) -> None:
    for receipt in ({**RECEIPT, "supplier": {"name": "McKesson"}},
                    {**RECEIPT, "reference": ["PO-1"]},
                    {"batches": [{**RECEIPT["batches"][0], "supplier": 7}]}):
        out = pharmos("receive", "--data-dir", data_dir, "--json", "-",
                      stdin=json.dumps(receipt), code=1)
        assert out["error"]["code"] == "BAD_REQUEST"
    out = pharmos("stocktake", "--data-dir", data_dir, "--json", "-",
                  stdin=json.dumps({"counts": ["0904-6728-60"]}), code=1)
    assert out["error"]["code"] == "BAD_REQUEST" and "count 1" in out["error"]["message"]
    assert pharmos("stock", "--data-dir", data_dir, "--json")["batches"] == []


def test_status_and_adjust_notes_must_be_text(stocked: Store) -> None:
    lot = stocked.conn.execute("SELECT lot FROM batches LIMIT 1").fetchone()[0]
    with pytest.raises(BadInput) as e:
        inventory.set_status(stocked, lot, "quarantined", reason={"why": "x"})  # type: ignore[arg-type]
    assert e.value.code == "BAD_REQUEST" and "'reason'" in str(e.value)
    with pytest.raises(BadInput) as e:
        inventory.adjust(stocked, "0904-6728-60", lot, -1, "DAMAGED",
                         note=["broken"])  # type: ignore[arg-type]
    assert e.value.code == "BAD_REQUEST" and "'note'" in str(e.value)


# ---- sale -----------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, code", [
    ({"rx": "RX-1"}, "BAD_REQUEST"),
    ({"rx": ["RX-1"]}, "BAD_REQUEST"),
    ({"rx": {"rx_number": {"n": 1}}}, "BAD_REQUEST"),
    ({"user": {"id": {"n": 1}}}, "BAD_USER"),
    ({"patient": "Ana Reyes"}, "BAD_PATIENT"),
    ({"at": "0001-01-01T00:30:00+01:00"}, "BAD_TIME"),  # before year 1 in UTC
])
def test_cli_sale_of_the_wrong_shape(data_dir: str, extra: dict[str, Any], code: str) -> None:
    pharmos("receive", "--data-dir", data_dir, "--json", "-", stdin=json.dumps(RECEIPT))
    req = {"lines": [{"ndc": "0904-6728-60", "qty": 1}], **extra}
    out = pharmos("sale", "--data-dir", data_dir, "--json", "-", stdin=json.dumps(req), code=1)
    assert out["error"]["code"] == code
    stock = pharmos("stock", "--data-dir", data_dir, "--json", "--ndc", "0904-6728-60")
    assert stock["batches"][0]["on_hand"] == 10


# ---- Rx intake ------------------------------------------------------------------------------
@pytest.fixture
def pharmacist(store: Store) -> dict[str, Any]:
    ch = users.add_user(store, "paula", "Paula", "pharmacist", "2580")
    return {"id": ch.user_id, "role": "pharmacist"}


@pytest.mark.parametrize("flags", [["acute_pain"], "acute_pain"])
def test_rx_flags_must_be_an_object(store: Store, pharmacist: dict[str, Any],
                                    flags: Any) -> None:
    with pytest.raises(BadInput) as e:
        rx.intake(store, FileKeyProvider(store.data_dir), pharmacist, rx_data(flags=flags))
    assert e.value.code == "BAD_RX_FIELD"


def test_automatic_rx_numbers_skip_one_entered_by_hand(store: Store,
                                                       pharmacist: dict[str, Any]) -> None:
    """A paper prescription entered with the number the next automatic one would get: the
    automatic numbering moves past it instead of refusing every intake after it."""
    keys = FileKeyProvider(store.data_dir)
    first = rx.intake(store, keys, pharmacist, rx_data()).details["rx_number"]
    n, suffix = first.split("-")
    taken = f"{int(n) + 1}-{suffix}"
    rx.intake(store, keys, pharmacist, rx_data(rx_number=taken))
    got = rx.intake(store, keys, pharmacist, rx_data()).details["rx_number"]
    assert got == f"{int(n) + 2}-{suffix}"
    with pytest.raises(BadInput) as e:  # a number typed twice is still refused
        rx.intake(store, keys, pharmacist, rx_data(rx_number=taken))
    assert e.value.code == "RX_NUMBER_EXISTS"
