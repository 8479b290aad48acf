"""Cart, preview and tender: one transaction for the sale and how it was paid."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rxtestlib import datamatrix, gtin_of

from pharmacy import checkout
from pharmacy.errors import BadInput, ComplianceDenied
from pharmacy.gs1 import parse_scan
from pharmacy.sales import Dispenser

IBU = "0904-6728-60"
AT = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
USER = {"id": "u-cara", "role": "cashier"}


def test_cart_merges_and_previews_fefo(dispenser: Dispenser) -> None:
    store = dispenser.store
    cart = checkout.Cart()
    cart.add_product(IBU)
    cart.add_product(IBU, 2)
    assert [(ln.ndc, ln.qty) for ln in cart.lines] == [(IBU, 3)]
    pv = checkout.preview(store.conn, dispenser, cart, USER, AT)
    (line,) = pv.lines
    assert [(a.lot, a.qty) for a in line.allocations] == [("IB2606", 3)]  # FEFO, not expired
    assert pv.subtotal_cents == 3 * 749 and pv.tax_cents == 185 and pv.ok_to_tender
    cart.set_qty(cart.lines[0].line_id, 9)
    pv = checkout.preview(store.conn, dispenser, cart, USER, AT)
    assert line.lots_text == "IB2606 exp 2026-12-31 ×3"
    assert [(a.lot, a.qty) for a in pv.lines[0].allocations] == [("IB2606", 5), ("IB2701", 4)]
    cart.set_qty(cart.lines[0].line_id, 99)
    pv = checkout.preview(store.conn, dispenser, cart, USER, AT)
    assert pv.lines[0].error_code == "OUT_OF_STOCK" and pv.decision is None
    assert not pv.ok_to_tender


def test_scans_merge_by_lot_and_serials_are_unique(dispenser: Dispenser) -> None:
    store = dispenser.store
    g = gtin_of(store, IBU)
    cart = checkout.Cart()
    cart.add_scan(IBU, parse_scan(datamatrix(g, date(2027, 1, 31), "IB2701")))
    cart.add_scan(IBU, parse_scan(datamatrix(g, date(2027, 1, 31), "IB2701")))
    assert [(ln.lot, ln.qty) for ln in cart.lines] == [("IB2701", 2)]
    s1 = parse_scan(datamatrix(g, date(2027, 1, 31), "IB2701", "S1"))
    cart.add_scan(IBU, s1)
    with pytest.raises(BadInput) as e:
        cart.add_scan(IBU, s1)
    assert e.value.code == "DUPLICATE_SERIAL"
    with pytest.raises(BadInput):
        cart.set_qty(cart.lines[1].line_id, 2)
    req = cart.request(USER)
    assert req["lines"][0] == {"ndc": IBU, "qty": 2, "lot": "IB2701"}
    assert req["lines"][1]["scan"].endswith("21S1")
    cart.remove(cart.lines[0].line_id)
    with pytest.raises(BadInput):
        cart.remove(999)


def test_cash_checkout_records_tender_and_change(dispenser: Dispenser) -> None:
    store = dispenser.store
    cart = checkout.Cart()
    cart.add_product(IBU, 2)
    res = checkout.checkout(dispenser, cart.request(USER), checkout.Tender("cash", 2000))
    assert res.sale.total_cents == 1622 and res.change_cents == 378
    assert checkout.tenders_for(store.conn, res.sale.sale_id) == [
        {"method": "cash", "amount": "16.22", "tendered": "20.00", "change": "3.78",
         "reference": None}]
    with pytest.raises(BadInput) as e:
        checkout.checkout(dispenser, cart.request(USER), checkout.Tender("cash", 100))
    assert e.value.code == "INSUFFICIENT_TENDER"
    assert store.conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0] == 1  # rolled back
    card = checkout.checkout(dispenser, cart.request(USER),
                             checkout.Tender("card", 1622, "AUTH-991"))
    assert card.tender.reference == "AUTH-991" and card.change_cents == 0


def test_refused_checkout_keeps_decision_and_no_tender(dispenser: Dispenser) -> None:
    store = dispenser.store
    cart = checkout.Cart()
    cart.add_product("50580-451-01")
    pv = checkout.preview(store.conn, dispenser, cart, USER, AT)
    assert pv.decision is not None and pv.decision.decision == "deny"
    assert pv.lines[0].schedule == "PSE"
    with pytest.raises(ComplianceDenied):
        checkout.checkout(dispenser, cart.request(USER), checkout.Tender("cash", 5000))
    assert store.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1
    assert store.conn.execute("SELECT COUNT(*) FROM tenders").fetchone()[0] == 0


@given(st.integers(0, 10**7), st.integers(0, 10**7))
def test_change_law(total: int, tendered: int) -> None:
    t = checkout.Tender("cash", tendered)
    if tendered < total:
        with pytest.raises(BadInput):
            checkout.change_due(total, t)
    else:
        assert checkout.change_due(total, t) + total == tendered
    if tendered != total:
        with pytest.raises(BadInput):
            checkout.change_due(total, checkout.Tender("card", tendered))




@pytest.mark.parametrize("tendered, reference", [
    (None, "A\ud800"), ("\udcff5.00", None), (None, "R" * 101), (None, "A\x00"), (5, None),
    (None, ["A1"])])
def test_tender_text_a_store_cannot_keep_is_bad_tender(dispenser: Dispenser, tendered: object,
                                                       reference: object) -> None:
    """The counter's card reference box and cash box reach tender_for as typed or pasted:
    a lone surrogate used to pass and fail at SQLite inside the sale's transaction."""
    for method in ("cash", "card"):
        with pytest.raises(BadInput) as e:
            checkout.tender_for(method, 811, tendered, reference)  # type: ignore[arg-type]
        assert e.value.code == "BAD_TENDER"
    assert dispenser.store.conn.execute("SELECT COUNT(*) FROM tenders").fetchone()[0] == 0
