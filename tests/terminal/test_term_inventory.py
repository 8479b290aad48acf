"""Inventory on screen: receive by DataMatrix, expiry colouring, quarantine / recall / release,
adjustments with reasons, stocktake, the controlled register and its chain status."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from termtestlib import Term, datamatrix

pytestmark = pytest.mark.gui

IBU, OXY = "0904-6728-60", "0406-0552-01"


@pytest.fixture
def inv(term: Term) -> Term:
    term.sign_in("pharmacist")
    term.fkey("F4")
    term.settle()
    return term


def row_of(t: Term, lot: str) -> int:
    m = t.win.inventory.batch_model
    for i in range(m.rowCount()):
        d = m.row_data(i)
        if d and d["lot"] == lot:
            return i
    raise AssertionError(f"lot {lot} not shown")


def select(t: Term, lot: str) -> None:
    t.win.inventory.batches.selectRow(row_of(t, lot))
    t.settle()


def test_batches_are_coloured_by_expiry_and_status(inv: Term) -> None:
    m = inv.win.inventory.batch_model
    inv.wait_until(lambda: m.loaded())
    assert m.rowCount() == 8
    expired = m.index(row_of(inv, "IB2510"), 0)
    soon = m.index(row_of(inv, "IB2606"), 0)  # 2026-12-31: 59 days after 2026-11-02
    later = m.index(row_of(inv, "AM1"), 0)
    assert m.data(expired.siblingAtColumn(5)) == "expired"
    bg = Qt.ItemDataRole.BackgroundRole
    assert m.data(expired, bg).color().name() == "#f5b7b1"
    assert m.data(soon, bg).color().name() == "#fcf3cf"
    assert m.data(later, bg) is None
    inv.win.inventory.status_box.setCurrentIndex(3)  # Expired
    inv.settle()
    assert m.rowCount() == 1


def test_receive_by_scanning_the_datamatrix(inv: Term) -> None:
    i = inv.win.inventory
    inv.fkey("F5")
    assert i.mode == "receive"
    inv.wedge_scan(datamatrix(inv.gtin(OXY), "2028-02-29", "OX9", "SER42"))
    assert i.r_ndc.text() == OXY and i.r_lot.text() == "OX9"
    assert i.r_expiry.text() == "2028-02-29" and i.r_serial.text() == "SER42"
    assert i.r_order_form.isEnabled() and i.r_qty.hasFocus()
    i.r_qty.setText("100")
    i.r_order_form.setText("222-778899")
    inv.fkey("F5")
    assert "Received 100 of lot OX9" in inv.error and "controlled-register entry" in inv.error
    row = i.batch_model.row_data(row_of(inv, "OX9"))
    assert row is not None and row["on_hand"] == 100 and row["schedule"] == "CII"
    body = inv.sql("SELECT body FROM register WHERE kind = 'receive' AND ndc = ? "
                   "ORDER BY seq DESC LIMIT 1", OXY)[0][0]
    assert '"order_form":"222-778899"' in body


def test_quarantine_recall_release(inv: Term) -> None:
    i = inv.win.inventory
    select(inv, "IB2701")
    inv.fkey("F6")
    assert i.mode == "status" and i.s_reason.hasFocus()
    i.confirm_status()  # no reason
    inv.settle()
    assert inv.error_code == "REASON_REQUIRED"
    i.s_reason.setText("carton crushed")
    i.confirm_status()
    inv.settle()
    assert i.batch_model.row_data(row_of(inv, "IB2701"))["status"] == "quarantined"  # type: ignore[index]
    bg = i.batch_model.data(i.batch_model.index(row_of(inv, "IB2701"), 0),
                            Qt.ItemDataRole.BackgroundRole)
    assert bg.color().name() == "#d7bde2"
    select(inv, "IB2701")
    inv.fkey("F10")
    i.s_reason.setText("inspected: fine")
    i.confirm_status()
    inv.settle()
    assert i.batch_model.row_data(row_of(inv, "IB2701"))["status"] == "active"  # type: ignore[index]
    select(inv, "AM1")
    inv.fkey("F7")
    assert i.s_ndc.text() == ""  # a recall covers the lot of every product
    i.s_reason.setText("FDA recall Z-1234-2026")
    i.confirm_status()
    inv.settle()
    assert i.batch_model.row_data(row_of(inv, "AM1"))["status"] == "recalled"  # type: ignore[index]
    select(inv, "AM1")
    inv.fkey("F10")
    i.s_reason.setText("try to release")
    i.confirm_status()
    inv.settle()
    assert inv.error_code == "LOT_RECALLED"


def test_adjust_and_stocktake(inv: Term) -> None:
    i = inv.win.inventory
    select(inv, "OX1")
    inv.fkey("F8")
    assert i.mode == "adjust"
    i.a_delta.setText("-2")
    i.a_reason.setCurrentIndex(i.a_reason.findData("DAMAGED"))
    inv.fkey("F8")
    assert "Adjusted lot OX1 by -2" in inv.error and "register" in inv.error
    assert i.batch_model.row_data(row_of(inv, "OX1"))["on_hand"] == 298  # type: ignore[index]
    select(inv, "OX1")
    inv.fkey("F9")
    i.t_counted.setText("297")
    inv.fkey("F9")
    assert "delta -1" in inv.error
    assert i.batch_model.row_data(row_of(inv, "OX1"))["on_hand"] == 297  # type: ignore[index]
    select(inv, "OX1")
    inv.fkey("F8")
    i.a_delta.setText("-1000")
    inv.fkey("F8")
    assert inv.error_code == "OUT_OF_STOCK"


def test_controlled_register_and_chain_status(inv: Term) -> None:
    i = inv.win.inventory
    inv.fkey("Shift+F7")
    assert i.tabs.currentIndex() == 1
    inv.wait_until(lambda: i.chain_ok is True)
    assert i.chain.text().startswith("✔ Chain verified: 1 entries")
    m = i.register_model
    inv.wait_until(lambda: m.rowCount() == 1 and m.loaded())
    assert m.data(m.index(0, 2)) == "receive" and m.data(m.index(0, 4)) == "OX1"
    inv.sql("UPDATE register SET qty = 999")  # tampering shows at once
    inv.fkey("Shift+F9")
    assert i.chain_ok is False and "CHAIN BROKEN" in i.chain.text()


def test_cashier_sees_no_register(term: Term) -> None:
    term.sign_in("cashier")
    term.fkey("F4")
    i = term.win.inventory
    i.tabs.setCurrentIndex(1)
    term.settle()
    assert "pharmacists and managers" in i.chain.text()
    assert i.register_model.rowCount() == 0


def test_reorder_panel_shows_suggestions_or_why_not(inv: Term) -> None:
    i = inv.win.inventory
    inv.fkey("Shift+F8")
    assert i.tabs.currentIndex() == 2
    assert i.reorder_note.text() or i.reorder_model.rowCount() > 0
