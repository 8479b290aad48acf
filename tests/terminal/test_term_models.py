"""Every item model passes Qt's model tester, before and after its rows arrive; lazy models
fetch only the pages that are looked at."""

from __future__ import annotations

from typing import Any

import pytest
from termtestlib import Term, datamatrix

from pharmacy.checkout import CartPreview, LinePreview
from pharmacy.compliance import Decision
from pharmacy.inventory import Allocation
from terminal.counter import ProductHit
from terminal.models.tables import (
    BatchModel,
    CartModel,
    RegisterModel,
    ReorderModel,
    RxQueueModel,
    SearchModel,
)

pytestmark = pytest.mark.gui


def _line(i: int, error: str | None = None) -> LinePreview:
    return LinePreview(i, "0904-6728-60", f"Item {i}", "200 mg", 2, "pack", 749, 1498,
                       (Allocation("b", "L1", "2027-01-31", 2),), "CII" if i == 2 else None,
                       i == 3, error, "short" if error else None)


def _preview(n: int) -> CartPreview:
    return CartPreview(tuple(_line(i, "OUT_OF_STOCK" if i == 4 else None)
                             for i in range(1, n + 1)), 1498 * n, 0, 1498 * n,
                       Decision("allow"), False, n)


def test_cart_model(qtmodeltester: Any) -> None:
    m = CartModel()
    qtmodeltester.check(m)
    inserted: list[tuple[int, int]] = []
    m.rowsInserted.connect(lambda _p, a, b: inserted.append((a, b)))
    for n in (1, 2, 4):
        m.set_preview(_preview(n))
        qtmodeltester.check(m)
    assert inserted == [(0, 0), (1, 1), (2, 3)]  # a new cart line is a row insert
    assert m.data(m.index(1, 1)) == "[CII] Item 2"
    assert m.data(m.index(3, 3)) == "short"
    m.set_preview(_preview(1))  # lines removed: a reset
    qtmodeltester.check(m)
    m.set_preview(None)
    qtmodeltester.check(m)
    assert m.rowCount() == 0


def test_search_and_reorder_models(qtmodeltester: Any) -> None:
    s = SearchModel()
    s.set_hits([ProductHit("0904-6728-60", "00309046728603", "Ibuprofen", "200 mg", "7.49", 0,
                           None, False),
                ProductHit("50580-451-01", "00350580451013", "Sudafed", "120 mg", "9.99", 4,
                           "PSE", False)])
    qtmodeltester.check(s)
    assert s.data(s.index(1, 4)) == "PSE"
    r = ReorderModel()
    r.set_rows([{"name": "Ibuprofen", "on_hand": 3, "suggested": 24, "why": "weekly 9±3",
                 "model_version": "m-1"}, {"ndc": "0093-0058-01", "order_qty": 100}])
    qtmodeltester.check(r)
    assert r.data(r.index(1, 0)) == "0093-0058-01" and r.data(r.index(1, 2)) == "100"


def test_lazy_models_over_the_real_store(term: Term, qtmodeltester: Any) -> None:
    term.sign_in("pharmacist")
    w = term.win
    c = w.counter
    batches = BatchModel(w.tasks, lambda ids: c.batch_rows(ids))
    qtmodeltester.check(batches)
    batches.set_ids(term.counter_call("batch_ids"))
    qtmodeltester.check(batches)  # placeholders while the rows load
    term.settle()
    assert batches.loaded()
    qtmodeltester.check(batches)
    rxq = RxQueueModel(w.tasks, lambda ids: c.rx_rows(ids))
    register = RegisterModel(w.tasks, lambda keys: c.register_rows(keys))
    term.win.tasks.db(c.receive, [{"ndc": "0406-0552-01", "lot": "OX7",
                                   "expiry": "2028-01-31", "qty": 5}])
    term.settle()
    register.set_ids(term.counter_call("register_ids"))
    qtmodeltester.check(register)
    term.settle()
    qtmodeltester.check(register)
    assert register.rowCount() == 2
    rxq.set_ids([])
    qtmodeltester.check(rxq)


def test_lazy_fetch_asks_only_for_pages_in_view(term: Term) -> None:
    term.sign_in("pharmacist")
    asked: list[int] = []

    def fetch(ids: list[Any]) -> dict[Any, dict[str, Any]]:
        asked.append(len(ids))
        return {i: {"batch_id": i, "name": f"p{i}", "ndc": "x", "lot": str(i),
                    "expiry": "2027-01-01", "days_left": 400, "status": "active",
                    "on_hand": 1, "schedule": None} for i in ids}

    m = BatchModel(term.win.tasks, fetch)
    m.set_ids(list(range(1000)))
    assert m.data(m.index(500, 0)) == "…"
    term.settle()
    assert m.data(m.index(500, 0)) == "p500"
    assert asked == [64]  # one page, not 1000 rows
    m.refresh([500])
    term.settle()
    assert asked == [64, 1]


def test_cart_row_appears_after_a_scan(term: Term) -> None:
    term.sign_in("cashier")
    m = term.win.sale.cart_model
    seen: list[int] = []
    m.rowsInserted.connect(lambda *_a: seen.append(m.rowCount()))
    term.wedge_scan(datamatrix(term.gtin("0904-6728-60"), "2027-01-31", "IB2701"))
    assert seen == [1]
