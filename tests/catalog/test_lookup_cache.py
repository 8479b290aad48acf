"""Product lookups are remembered per catalog version: any change to a product row, from
this connection or another process, is seen by the next lookup."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pharmacy import catalog
from pharmacy.errors import UnknownProduct
from pharmacy.store import DB_NAME, Store

ITEM = {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "price": "7.49",
        "unit": "pack"}


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store.init(tmp_path / "t", "s1")
    catalog.upsert_products(s, [catalog.product_from_json(ITEM)])
    return s


def test_lookups_of_an_unchanged_catalog_read_no_product_row(store: Store) -> None:
    first = catalog.lookup(store.conn, ITEM["ndc"])
    reads: list[str] = []
    store.conn.set_trace_callback(reads.append)
    again = catalog.lookup(store.conn, ITEM["ndc"])
    store.conn.set_trace_callback(None)
    assert again is first
    assert not [sql for sql in reads if "FROM products" in sql]


def test_an_upsert_is_seen(store: Store) -> None:
    assert catalog.lookup(store.conn, ITEM["ndc"]).price_cents == 749
    catalog.upsert_products(store, [catalog.product_from_json({**ITEM, "price": "8.00"})])
    assert catalog.lookup(store.conn, ITEM["ndc"]).price_cents == 800


def test_a_change_by_another_process_is_seen(store: Store) -> None:
    gtin = catalog.lookup(store.conn, ITEM["ndc"]).gtin
    assert catalog.lookup(store.conn, gtin).dea_schedule is None
    other = sqlite3.connect(store.data_dir / DB_NAME, isolation_level=None)
    other.execute("UPDATE products SET dea_schedule = 'CIV' WHERE ndc = ?", (ITEM["ndc"],))
    other.close()
    assert catalog.lookup(store.conn, ITEM["ndc"]).dea_schedule == "CIV"
    assert catalog.lookup(store.conn, gtin).dea_schedule == "CIV"


def test_a_delete_and_a_rolled_back_change_are_seen(store: Store) -> None:
    catalog.lookup(store.conn, ITEM["ndc"])
    with pytest.raises(RuntimeError), store.transaction() as c:
        c.execute("UPDATE products SET price_cents = 1 WHERE ndc = ?", (ITEM["ndc"],))
        assert catalog.lookup(c, ITEM["ndc"]).price_cents == 1
        raise RuntimeError("rolled back")
    assert catalog.lookup(store.conn, ITEM["ndc"]).price_cents == 749
    store.conn.execute("DELETE FROM products WHERE ndc = ?", (ITEM["ndc"],))
    with pytest.raises(UnknownProduct):
        catalog.lookup(store.conn, ITEM["ndc"])


def test_two_stores_in_one_process_do_not_share_lookups(tmp_path: Path, store: Store) -> None:
    other = Store.init(tmp_path / "u", "s2")
    catalog.upsert_products(other, [catalog.product_from_json({**ITEM, "price": "9.99"})])
    assert catalog.lookup(store.conn, ITEM["ndc"]).price_cents == 749
    assert catalog.lookup(other.conn, ITEM["ndc"]).price_cents == 999
