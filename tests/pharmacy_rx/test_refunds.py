"""Refunds of paid sales: whole or by line, cash or card, sealed OTC units back on the shelf,
medicines never; the money refunded adds up to exactly what was paid; bad requests write
nothing."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import catalog, checkout, inventory, refunds, replication
from pharmacy.compliance import InterimGate
from pharmacy.errors import PharmosError
from pharmacy.phi import FileKeyProvider
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from tests.conftest import SMALL_CATALOG, FakeClock

IBU, AMOX = "0904-6728-60", "0093-0058-01"
PHARMACIST = {"id": "u-paula", "role": "pharmacist"}
MANAGER = {"id": "u-max", "role": "manager"}


def paid_sale(dispenser: Dispenser, lines: list[dict[str, Any]], method: str = "cash",
              tendered: str | None = None) -> checkout.CheckoutResult:
    return checkout.checkout(dispenser, {"user": PHARMACIST, "lines": lines},
                             lambda total: checkout.tender_for(method, total, tendered,
                                                               "APPR1" if method == "card"
                                                               else None))


def on_hand(store: Store, lot: str) -> int:
    return next(int(r["on_hand"]) for r in inventory.stock(store.conn, store.clock().date())
                if r["lot"] == lot)


def ibu_stock(store: Store) -> dict[str, int]:
    return {lot: on_hand(store, lot) for lot in ("IB2606", "IB2701")}


def written(store: Store) -> tuple[int, int]:
    c = store.conn
    return (c.execute("SELECT COUNT(*) FROM refunds").fetchone()[0],
            c.execute("SELECT COUNT(*) FROM events WHERE kind = 'sale_refund'").fetchone()[0])


def test_whole_refund_pays_back_what_was_paid_once(dispenser: Dispenser) -> None:
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 3}, {"ndc": AMOX, "qty": 20}], "cash",
                     "50.00").sale
    before = {lot: on_hand(store, lot) for lot in ("IB2606", "AM1")}
    r = refunds.refund(store, MANAGER, sale.sale_id, method="cash", reason="wrong items")
    assert (r.subtotal_cents, r.tax_cents, r.total_cents) == (
        sale.subtotal_cents, sale.tax_cents, sale.total_cents)
    assert [(ln.line_no, ln.qty, ln.restocked) for ln in r.lines] == [(1, 3, ()), (2, 20, ())]
    # nothing goes back on the shelf unless the cashier says so
    assert {lot: on_hand(store, lot) for lot in before} == before
    body = json.loads(store.conn.execute(
        "SELECT body FROM events WHERE kind = 'sale_refund'").fetchone()[0])
    assert body["sale_id"] == sale.sale_id and body["total_cents"] == sale.total_cents
    assert body["method"] == "cash" and body["user_id"] == "u-max"
    assert r.to_json()["total"] == sale.to_json()["total"]
    with pytest.raises(PharmosError) as e:
        refunds.refund(store, MANAGER, sale.sale_id, method="cash", reason="again")
    assert e.value.code == "ALREADY_REFUNDED" and e.value.exit_code == 2
    assert written(store) == (1, 1)
    shown = refunds.refundable(store.conn, sale.sale_id, store.clock().date())
    assert shown["paid"] and shown["refunded"] == shown["total"]
    assert [ln["refundable"] for ln in shown["lines"]] == [0, 0]
    assert [ln["restockable"] for ln in shown["lines"]] == [True, False]
    assert refunds.refunds_for(store.conn, sale.sale_id)[0]["total"] == r.to_json()["total"]


def test_sealed_otc_units_go_back_to_the_lots_they_came_from(dispenser: Dispenser) -> None:
    store = dispenser.store
    # 7 packs: FEFO takes 5 from IB2606 and 2 from IB2701 (IB2510 is expired)
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 7}], "card").sale
    assert (on_hand(store, "IB2606"), on_hand(store, "IB2701")) == (0, 8)
    first = refunds.refund(store, PHARMACIST, sale.sale_id, method="card", reference=" R-9 ",
                           reason="unopened", lines=[{"line_no": 1, "qty": 3, "restock": True}])
    assert first.reference == "R-9" and first.method == "card"
    assert [(lot, q) for _, lot, _, q in first.lines[0].restocked] == [("IB2701", 2),
                                                                       ("IB2606", 1)]
    assert (on_hand(store, "IB2606"), on_hand(store, "IB2701")) == (1, 10)
    assert set(first.changed.batch_ids) == {"00904672860:IB2701", "00904672860:IB2606"}
    # the rest refunded but kept off the shelf (opened): stock does not move
    rest = refunds.refund(store, PHARMACIST, sale.sale_id, method="card", reason="opened")
    assert rest.lines[0].qty == 4 and rest.lines[0].restocked == ()
    assert (on_hand(store, "IB2606"), on_hand(store, "IB2701")) == (1, 10)
    assert first.total_cents + rest.total_cents == sale.total_cents
    # a forked replica's rebase moves what the refund put back
    body = json.loads(store.conn.execute(
        "SELECT body FROM events WHERE kind = 'sale_refund' ORDER BY rowid").fetchone()[0])
    assert sorted(replication.counter_effects("sale_refund", body)) == sorted([
        (inventory.counter_id("00904672860:IB2701"), 2),
        (inventory.counter_id("00904672860:IB2606"), 1)])


def test_medicine_is_never_restocked_and_a_refused_refund_writes_nothing(
        dispenser: Dispenser) -> None:
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}, {"ndc": AMOX, "qty": 30}]).sale
    stock_before = on_hand(store, "AM1")

    def refused(code: str, user: dict[str, Any] = PHARMACIST, sale_id: Any = sale.sale_id,
                **kw: Any) -> PharmosError:
        kw.setdefault("method", "cash")
        kw.setdefault("reason", "customer changed their mind")
        with pytest.raises(PharmosError) as e:
            refunds.refund(store, user, sale_id, **kw)
        assert e.value.code == code, (e.value.code, e.value.message)
        assert written(store) == (0, 0) and on_hand(store, "AM1") == stock_before
        return e.value

    e = refused("NOT_RESTOCKABLE", lines=[{"line_no": 2, "qty": 30, "restock": True}])
    assert "destruction" in e.message and e.exit_code == 2
    refused("NOT_RESTOCKABLE", lines=[{"line_no": 1, "restock": True},
                                      {"line_no": 2, "qty": 1, "restock": True}])
    e = refused("REFUND_EXCEEDS_SALE", lines=[{"line_no": 2, "qty": 31}])
    assert e.details["refundable"] == 30
    refused("ROLE_NOT_PERMITTED", user={"id": "u-cara", "role": "cashier"})
    refused("HIPAA_UNIQUE_USER", user={"role": "manager"})
    refused("REASON_REQUIRED", reason="  ")
    refused("BAD_REASON", reason="x" * 501)
    refused("BAD_TENDER", method="cheque")
    refused("BAD_REFERENCE", method="card", reference=7)
    refused("UNKNOWN_SALE", sale_id="no-such-sale")
    refused("BAD_REQUEST", sale_id=None)
    refused("UNKNOWN_LINE", lines=[{"line_no": 3, "qty": 1}])
    refused("UNKNOWN_LINE", lines=[{"line_no": True, "qty": 1}])
    refused("BAD_REQUEST", lines=[{"line_no": 1}, {"line_no": 1}])
    refused("BAD_REQUEST", lines=[])
    refused("BAD_REQUEST", lines=["line 1"])
    refused("BAD_REQUEST", lines=[{"line_no": 1, "restock": "yes"}])
    for qty in (0, -1, 1.5, "1"):
        assert refused("BAD_QUANTITY", lines=[{"line_no": 1, "qty": qty}]).exit_code == 1
    # an unpaid sale (a prescription filled and never picked up) is returned, not refunded
    unpaid = dispenser.sell({"user": PHARMACIST, "lines": [{"ndc": IBU, "qty": 1}]})
    e = refused("SALE_NOT_PAID", sale_id=unpaid.sale_id)
    assert "return to stock" in e.message
    # the refund that is allowed goes through: the medicine's money back, no stock
    ok = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="allergy",
                        lines=[{"line_no": 2}])
    assert ok.lines[0].qty == 30 and ok.lines[0].restocked == ()
    assert on_hand(store, "AM1") == stock_before


def test_tax_share_when_the_rate_changed_since_the_sale(dispenser: Dispenser) -> None:
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 3}]).sale  # 22.47 + 1.85 tax
    assert sale.tax_cents == 185
    p = catalog.lookup(store.conn, IBU)
    catalog.upsert_products(store, [catalog.product_from_json(
        {**p.to_json(), "tax_rate_bp": 1000, "price": "7.49"})])
    first = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                           lines=[{"line_no": 1, "qty": 1}])
    assert first.tax_cents == 62  # a third of what was paid, not 10% of 7.49
    rest = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r")
    assert first.tax_cents + rest.tax_cents == 185


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_refunds_in_any_parts_add_up_to_the_sale(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.init(Path(tmp) / "term", "store-1",
                           clock=FakeClock(datetime(2026, 11, 2, 15, 0, tzinfo=UTC)))
        try:
            catalog.upsert_products(store, [catalog.product_from_json(p)
                                            for p in SMALL_CATALOG])
            inventory.receive(store, [
                {"ndc": IBU, "lot": "IB2701", "expiry": "2027-01-31", "qty": 10},
                {"ndc": IBU, "lot": "IB2606", "expiry": "2026-12-31", "qty": 5},
                {"ndc": AMOX, "lot": "AM1", "expiry": "2027-06-30", "qty": 500}])
            parts(Dispenser(store, InterimGate(), keys=FileKeyProvider(store.data_dir)), data)
        finally:
            store.close()


def parts(dispenser: Dispenser, data: st.DataObject) -> None:
    store = dispenser.store
    qty_ibu = data.draw(st.integers(1, 15), label="ibuprofen packs")
    qty_amox = data.draw(st.integers(1, 40), label="amoxicillin capsules")
    ibu_before = ibu_stock(store)
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": qty_ibu},
                                 {"ndc": AMOX, "qty": qty_amox}]).sale
    left = {1: qty_ibu, 2: qty_amox}
    refunded = 0
    while any(left.values()):
        n = data.draw(st.sampled_from([k for k, v in left.items() if v]), label="line")
        q = data.draw(st.integers(1, left[n]), label="qty")
        restock = n == 1 and data.draw(st.booleans(), label="restock")
        r = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                           lines=[{"line_no": n, "qty": q, "restock": restock}])
        assert r.lines[0].tax_cents >= 0 and sum(a[3] for a in r.lines[0].restocked) == (
            q if restock else 0)
        left[n] -= q
        refunded += r.total_cents
    assert refunded == sale.total_cents
    with pytest.raises(PharmosError):
        refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r")
    # what was put back went into the lots it left, never more than each gave
    back: dict[str, int] = {}
    for (text,) in store.conn.execute("SELECT lines FROM refunds WHERE sale_id = ?",
                                      (sale.sale_id,)):
        for ln in json.loads(text):
            for a in ln["restocked"]:
                back[a[1]] = back.get(a[1], 0) + a[3]
    took = {a.lot: a.qty for a in sale.lines[0].allocations}
    assert all(back[lot] <= took[lot] for lot in back)
    after = ibu_stock(store)
    assert {lot: after[lot] - (ibu_before[lot] - took.get(lot, 0)) for lot in after} == {
        lot: back.get(lot, 0) for lot in after}


def test_an_untaxed_line_never_refunds_tax_after_another_rate_changed(
        dispenser: Dispenser) -> None:
    """Each line's tax is what it paid at the sale: a rate changed since on another line
    does not spread the sale's tax onto a line that paid none."""
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 2}, {"ndc": AMOX, "qty": 30}]).sale
    assert sale.tax_cents == 124  # all of it on the ibuprofen; amoxicillin is untaxed
    p = catalog.lookup(store.conn, IBU)
    catalog.upsert_products(store, [catalog.product_from_json(
        {**p.to_json(), "tax_rate_bp": 900, "price": "7.49"})])
    amox = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                          lines=[{"line_no": 2}])
    assert (amox.subtotal_cents, amox.tax_cents) == (360, 0)
    half = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                          lines=[{"line_no": 1, "qty": 1}])
    assert half.tax_cents == 62
    # and the rate changing again between two parts of one line moves nothing either
    catalog.upsert_products(store, [catalog.product_from_json(
        {**p.to_json(), "tax_rate_bp": 0, "price": "7.49"})])
    rest = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r")
    assert [(ln.line_no, ln.tax_cents) for ln in rest.lines] == [(1, 62)]
    assert amox.total_cents + half.total_cents + rest.total_cents == sale.total_cents


def test_a_sale_from_before_lines_kept_their_tax_still_refunds_what_was_paid(
        dispenser: Dispenser) -> None:
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 2}, {"ndc": AMOX, "qty": 30}]).sale
    with store.transaction() as c:  # as a sale written before migration 0017
        c.execute("UPDATE sale_lines SET tax_cents = NULL WHERE sale_id = ?", (sale.sale_id,))
    first = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                           lines=[{"line_no": 1, "qty": 1}])
    assert first.tax_cents == 62  # the rate is unchanged: it gives the line's tax
    p = catalog.lookup(store.conn, IBU)
    catalog.upsert_products(store, [catalog.product_from_json(
        {**p.to_json(), "tax_rate_bp": 0, "price": "7.49"})])
    rest = refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r")
    assert all(ln.tax_cents >= 0 for ln in rest.lines)
    assert first.total_cents + rest.total_cents == sale.total_cents


def test_a_refund_goes_back_the_way_the_sale_was_paid(dispenser: Dispenser) -> None:
    """A card sale is refunded to the card, never in cash from the drawer (card fraud turned
    into cash), and a cash sale in cash."""
    store = dispenser.store
    card = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}], "card").sale
    cash = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}], "cash").sale
    for sale, wrong in ((card, "cash"), (cash, "card")):
        with pytest.raises(PharmosError) as e:
            refunds.refund(store, PHARMACIST, sale.sale_id, method=wrong, reason="r")
        assert e.value.code == "REFUND_METHOD_MISMATCH" and e.value.exit_code == 2
        assert written(store) == (0, 0)
    shown = refunds.refundable(store.conn, card.sale_id, store.clock().date())
    assert shown["paid_by"] == ["card"]
    assert refunds.refund(store, PHARMACIST, card.sale_id, method="card",
                          reason="r").method == "card"


def test_the_user_is_an_id_as_text(dispenser: Dispenser) -> None:
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}]).sale
    for user in ({"id": ["u-max"], "role": "manager"}, {"id": 7, "role": "manager"},
                 {"id": "u\x00max", "role": "manager"}, {"id": "u" * 200, "role": "manager"}):
        with pytest.raises(PharmosError) as e:
            refunds.refund(store, user, sale.sale_id, method="cash", reason="r")
        assert e.value.code == "BAD_USER" and e.value.exit_code == 1
    assert written(store) == (0, 0)


def test_units_never_go_back_into_a_recalled_quarantined_or_expired_lot(
        dispenser: Dispenser) -> None:
    """A sealed pack of a lot recalled, quarantined or expired since it was sold does not go
    back on the shelf: the refund says so and the pack is set aside with its lot."""
    store = dispenser.store
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 2}]).sale  # both from IB2606
    inventory.set_status(store, "IB2606", "recalled", reason="FDA recall Z-1")
    assert not refunds.refundable(store.conn, sale.sale_id,
                                  store.clock().date())["lines"][0]["restockable"]
    before = on_hand(store, "IB2606")
    with pytest.raises(PharmosError) as e:
        refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="r",
                       lines=[{"line_no": 1, "qty": 1, "restock": True}])
    assert e.value.code == "LOT_NOT_RESTOCKABLE" and "IB2606" in e.value.message
    assert written(store) == (0, 0) and on_hand(store, "IB2606") == before
    # refunded without restocking, it goes through
    assert refunds.refund(store, PHARMACIST, sale.sale_id, method="cash", reason="recall",
                          lines=[{"line_no": 1, "qty": 1}]).lines[0].restocked == ()
    # a lot past its expiry since the sale: the same
    later = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}]).sale  # from IB2701
    store.clock.advance(days=120)  # type: ignore[attr-defined]
    assert not refunds.refundable(store.conn, later.sale_id,
                                  store.clock().date())["lines"][0]["restockable"]
    with pytest.raises(PharmosError) as e:
        refunds.refund(store, PHARMACIST, later.sale_id, method="cash", reason="r",
                       lines=[{"line_no": 1, "restock": True}])
    assert e.value.code == "LOT_NOT_RESTOCKABLE" and "expired" in e.value.message


@pytest.mark.parametrize("text", ["a\tb", "ring\x07", "esc\x1b@", "two\nlines", "del\x7f"])
def test_control_characters_never_reach_the_printer(dispenser: Dispenser, text: str) -> None:
    """A reference or reason is printed on the slip: an ESC, a bell or a tab in it would be
    a printer command. Refused, nothing written."""
    sale = paid_sale(dispenser, [{"ndc": IBU, "qty": 1}], "card").sale
    for kw in ({"reason": text}, {"reason": "r", "reference": text}):
        with pytest.raises(PharmosError) as e:
            refunds.refund(dispenser.store, PHARMACIST, sale.sale_id, method="card", **kw)
        assert e.value.code in ("BAD_REASON", "BAD_REFERENCE")
    with pytest.raises(PharmosError) as e:
        checkout.tender_for("card", 100, None, text)
    assert e.value.code == "BAD_TENDER"
    assert written(dispenser.store) == (0, 0)
