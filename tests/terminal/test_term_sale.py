"""The sale screen over the real core: scan or search -> cart with lots -> compliance inline
-> tender -> receipt -> drawer."""

from __future__ import annotations

import os
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from termtestlib import Term, datamatrix

pytestmark = pytest.mark.gui

IBU, SUDAFED, AMOX = "0904-6728-60", "50580-451-01", "0093-0058-01"


def ibu(term: Term, lot: str = "IB2701", expiry: str = "2027-01-31",
        serial: str | None = None) -> str:
    return datamatrix(term.gtin(IBU), expiry, lot, serial)


@pytest.fixture
def cashier(term: Term) -> Term:
    term.sign_in("cashier")
    return term


def test_wedge_scan_from_any_widget_adds_a_row_with_its_lot(cashier: Term) -> None:
    s = cashier.win.sale
    s.qty.setFocus()  # focus somewhere unrelated: the scan still goes to the cart
    cashier.wedge_scan(ibu(cashier, serial="A1"))
    assert s.cart_model.rowCount() == 1
    assert s.qty.text() == "1"  # no scan characters leaked into the field
    line = s.cart_model.line_at(0)
    assert line is not None and line.lots_text == "IB2701 exp 2027-01-31 ×1"
    assert s.total.text() == "8.11" and s.decision.kind == "allow"
    cashier.wedge_scan(ibu(cashier, serial="A2"))  # another serialised package: its own line
    cashier.wedge_scan(ibu(cashier, serial="A2"))  # the same package twice: refused
    assert s.cart_model.rowCount() == 2 and cashier.error_code == "DUPLICATE_SERIAL"


def test_expired_package_is_blocked_at_the_scan(cashier: Term) -> None:
    cashier.wedge_scan(ibu(cashier, lot="IB2510", expiry="2025-10-31"))
    assert cashier.error_code == "EXPIRED_LOT"
    assert cashier.win.sale.cart_model.rowCount() == 0


def test_typing_is_not_taken_for_a_scan_and_search_by_name_ndc_gtin(cashier: Term) -> None:
    s = cashier.win.sale
    cashier.type_slowly("amox", s.search)
    assert s.search.text() == "amox"
    cashier.key(Qt.Key.Key_Return, "\r", target=s.search)
    cashier.qtbot.wait(80)
    cashier.settle()
    assert s.results.isVisible() and s.results_model.rowCount() == 1
    assert s.results_model.hit_at(0).ndc == AMOX
    s.add_hit(0)
    cashier.settle()
    assert s.cart_model.line_at(0).ndc == AMOX  # type: ignore[union-attr]
    for ident in ("0904-6728-60", "00904672860", cashier.gtin(IBU)):  # NDC-10, NDC-11, GTIN
        s.search.setText(ident)
        s.do_search()
        cashier.settle()
    line = s.cart_model.line_at(1)
    assert line is not None and line.ndc == IBU and line.qty == 3


def test_quantity_and_remove_with_f_keys(cashier: Term) -> None:
    s = cashier.win.sale
    s.search.setText(IBU)
    s.do_search()
    cashier.settle()
    cashier.fkey("F6")
    assert s.qty.hasFocus()
    s.qty.setText("9")
    s.apply_qty()
    cashier.settle()
    line = s.cart_model.line_at(0)
    assert line is not None and [(a.lot, a.qty) for a in line.allocations] == [
        ("IB2606", 5), ("IB2701", 4)]  # FEFO, the expired IB2510 never offered
    s.qty.setText("99")
    s.apply_qty()
    cashier.settle()
    assert s.cart_model.line_at(0).error_code == "OUT_OF_STOCK"  # type: ignore[union-attr]
    assert s.decision.kind == "none"
    cashier.fkey("F7")
    assert s.cart_model.rowCount() == 0


def test_cash_sale_prints_receipt_and_kicks_the_drawer(cashier: Term) -> None:
    s = cashier.win.sale
    cashier.wedge_scan(ibu(cashier))
    s.search.setText(AMOX)
    s.do_search()
    cashier.settle()
    cashier.fkey("F9")  # first press: the cash field, prefilled with the total
    assert s.cash.hasFocus() and s.cash.text() == "8.23"
    s.cash.setText("20.00")
    cashier.fkey("F9")  # second press pays
    assert s.change.text() == "Change due  11.77"
    cashier.wait_until(lambda: s.print_status == "printed")
    out = cashier.backend.output
    assert b"\x1bp\x00" in out[:8]  # drawer kick (pin 2) before the receipt
    assert out.count(b"\x1bp") == 1  # one kick: the receipt's, not a second command
    for text in (b"TOTAL", b"8.23", b"Lot IB2701", b"Ibuprofen"):
        assert text in out
    rows = cashier.sql("SELECT method, amount_cents, tendered_cents, change_cents FROM tenders")
    assert rows == [("cash", 823, 2000, 1177)]
    assert cashier.sql("SELECT status FROM print_jobs") == [("done",)]
    assert s.cart_model.rowCount() == 0 and "Sale complete" in cashier.error


def test_card_sale_records_the_external_reference(cashier: Term) -> None:
    s = cashier.win.sale
    cashier.wedge_scan(ibu(cashier))
    cashier.fkey("F10")
    assert s.card_ref.hasFocus()
    s.card_ref.setText("AUTH-4471")
    s.pay("card")
    cashier.settle()
    cashier.wait_until(lambda: s.print_status == "printed")
    assert b"TOTAL" in cashier.backend.output and b"\x1bp" not in cashier.backend.output
    assert cashier.sql("SELECT method, reference, change_cents FROM tenders") == [
        ("card", "AUTH-4471", 0)]


def test_short_cash_is_refused_and_nothing_is_sold(cashier: Term) -> None:
    s = cashier.win.sale
    cashier.wedge_scan(ibu(cashier))
    s.cash.setText("1.00")
    s.pay("cash")
    cashier.settle()
    assert cashier.error_code == "INSUFFICIENT_TENDER"
    assert s.cart_model.rowCount() == 1
    assert cashier.sql("SELECT COUNT(*) FROM sales") == [(0,)]


def test_printer_down_keeps_the_sale_and_reprints(cashier: Term) -> None:
    from hardware.errors import PrinterOffline

    s = cashier.win.sale
    cashier.backend.fail_open = PrinterOffline("the printer is off", code="PRINTER_OFFLINE")
    cashier.wedge_scan(ibu(cashier))
    s.cash.setText("10.00")
    s.pay("cash")
    cashier.wait_until(lambda: s.print_status == "PRINTER_OFFLINE")
    assert "PRINTER_OFFLINE" in cashier.error and "saved" in cashier.error
    assert cashier.sql("SELECT COUNT(*) FROM sales") == [(1,)]
    cashier.wait_until(lambda: cashier.win.status is not None
                       and cashier.win.status.print_queue == 1)
    cashier.backend.fail_open = None
    cashier.fkey("Shift+F9")
    cashier.wait_until(lambda: s.print_status == "printed")
    # the receipt never printed, so this is the original, not a copy marked REPRINT
    assert b"TOTAL" in cashier.backend.output and b"REPRINT" not in cashier.backend.output
    assert cashier.sql("SELECT status, reprint FROM print_jobs ORDER BY created_at") == [
        ("done", 0)]  # the failed job itself was printed again, not duplicated


@pytest.fixture
def policy_term(qtbot: Any, term_dir: Path, clock: Any) -> Iterator[Term]:
    """The terminal with the gate it wires in production: a signed demo policy bundle."""
    from pharmacy.store import Store
    from terminal import wiring

    with Store.open(term_dir, clock=clock) as store:
        store.set_setting("jurisdiction", "US-TX")
        wiring.install_demo_policy(store)
    t = Term.start(qtbot, term_dir, clock, gate=wiring.compliance_gate)
    yield t
    t.stop()


def test_pseudoephedrine_needs_id_capture_then_sells(policy_term: Term) -> None:
    t = policy_term
    t.sign_in("cashier")
    s = t.win.sale
    t.wedge_scan(datamatrix(t.gtin(SUDAFED), "2027-05-31", "SU1"))
    assert s.decision.kind == "deny"
    assert s.decision.codes == ["CMEA_ID_REQUIRED", "CMEA_LOG_INCOMPLETE"]
    assert "21 CFR 1314.30(b), (d)" in s.decision.reasons.text()
    assert s.customer.isVisible() and s.c_name.hasFocus()
    s.cash.setText("20.00")
    s.pay("cash")  # refused: the decision is recorded, nothing sold
    t.settle()
    assert t.error_code == "CMEA_ID_REQUIRED"
    assert t.sql("SELECT decision FROM decisions") == [("deny",)]
    s.c_name.setText("Jordan Blake")
    s.c_address.setText("48 Pecan St, Austin TX 78704")
    s.c_birth.setText("1986-03-14")
    s.c_id_number.setText("TXDL40917731")
    s.apply_customer()
    t.settle()
    assert s.decision.codes == ["CMEA_LOG_INCOMPLETE"]  # the logbook signature is missing
    s.c_signature.setChecked(True)
    s.apply_customer()
    t.settle()
    assert s.decision.kind == "allow"
    assert "id_check" in s.decision.reasons.text() and "cmea_log" in s.decision.reasons.text()
    s.cash.setText("20.00")
    s.pay("cash")
    t.settle()
    assert t.sql("SELECT COUNT(*), MIN(patient_id) LIKE 'pt-%' FROM sales") == [(1, 1)]
    assert "bundle demo-" in s.decision.engine.text() or s.paid is not None


def test_serial_scanner_on_a_pty(cashier: Term) -> None:
    from hardware.config import ScannerConfig

    master, slave = os.openpty()
    tty.setraw(master)
    try:
        ports = cashier.win.router.start_serial(
            [ScannerConfig(kind="serial", port=os.ttyname(slave))])
        assert ports == [os.ttyname(slave)]
        cashier.qtbot.wait(150)
        os.write(master, (ibu(cashier) + "\r").encode())
        cashier.wait_until(lambda: cashier.win.sale.cart_model.rowCount() == 1)
    finally:
        cashier.win.router.stop()
        os.close(master)
        os.close(slave)


def test_refund_by_receipt_number_puts_sealed_packs_back(term: Term) -> None:
    term.sign_in("manager")
    s = term.win.sale
    term.wedge_scan(ibu(term))
    s.search.setText(AMOX)
    s.do_search()
    term.settle()
    s.cash.setText("20.00")
    s.pay("cash")
    term.settle()
    assert s.paid is not None
    term.wait_until(lambda: s.print_status == "printed")
    on_hand = term.sql("SELECT SUM(p - n) FROM counters")
    term.fkey("Shift+F10")  # the last sale's number, as its receipt prints it
    term.settle()
    assert s.refund_box.isVisible() and s.r_sale.text() == s.paid.sale_id[-12:]
    assert "1 of 1 × Ibuprofen" in s.r_summary.text()
    assert "(not restocked)" in s.r_summary.text()  # amoxicillin is a prescription drug
    s.do_refund()  # no reason yet
    term.settle()
    assert term.error_code == "REASON_REQUIRED" and s.refund_box.isVisible()
    s.r_reason.setText("wrong strength")
    s.r_restock.setChecked(True)
    s.do_refund()
    term.settle()
    assert "Refunded 8.23 by cash; 1 back on the shelf" in term.error
    assert not s.refund_box.isVisible()
    # the refund slip prints after the refund committed and opens the drawer
    term.wait_until(lambda: b"TOTAL REFUNDED" in term.backend.output)
    term.wait_until(lambda: "refund slip printed" in s.last.text())
    assert term.backend.output.count(b"\x1bp") == 2  # the sale's kick and the refund's
    assert term.sql("SELECT kind, status FROM print_jobs ORDER BY created_at") == [
        ("receipt", "done"), ("refund", "done")]
    assert term.sql("SELECT method, total_cents, user_id FROM refunds")[0][:2] == ("cash", 823)
    # one pack of ibuprofen back; the amoxicillin stays out (to be destroyed)
    assert term.sql("SELECT SUM(p - n) FROM counters") == [(on_hand[0][0] + 1,)]
    term.fkey("Shift+F10")
    s.r_sale.setText(term.sql("SELECT sale_id FROM sales")[0][0])
    s.r_reason.setText("again")
    s.do_refund()
    term.settle()
    assert term.error_code == "ALREADY_REFUNDED"


def test_a_cashier_cannot_refund(cashier: Term) -> None:
    keys = {a.key: a for a in cashier.win.sale.fkey_actions()}
    assert not keys["Shift+F10"].enabled


def test_day_report_for_the_manager(term: Term) -> None:
    term.sign_in("manager")
    s = term.win.sale
    term.wedge_scan(ibu(term))
    s.cash.setText("10.00")
    s.pay("cash")
    term.settle()
    term.fkey("Shift+F11")
    term.settle()
    assert s.day_box.isVisible()
    text = s.day_text.text()
    assert "Day report" in text and "8.11" in text
    assert "cash expected in the drawer (plus the float)  8.11" in text
    term.wait_until(lambda: s.print_status == "printed")
    term.fkey("Shift+F11")  # again: print it and close
    assert not s.day_box.isVisible()
    term.wait_until(lambda: b"DAY REPORT" in term.backend.output)
    term.wait_until(lambda: "Day report printed" in term.error)
    from hardware.escpos_parse import parse

    printed = parse(term.backend.output).text
    assert "CASH EXPECTED" in printed and "Cash counted" in printed
    assert "8.11" in printed.split("CASH EXPECTED")[1].splitlines()[0]
    assert {a.key: a for a in s.fkey_actions()}["Shift+F11"].enabled


def test_a_cashier_has_no_day_report(cashier: Term) -> None:
    keys = {a.key: a for a in cashier.win.sale.fkey_actions()}
    assert not keys["Shift+F11"].enabled
    from pharmacy.errors import PharmosError

    with pytest.raises(PharmosError) as e:
        cashier.win.counter.day_report()
    assert e.value.code == "ROLE_NOT_PERMITTED"


def test_a_card_sale_is_refunded_to_the_card(term: Term) -> None:
    term.sign_in("manager")
    s = term.win.sale
    term.wedge_scan(ibu(term))
    s.card_ref.setText("AUTH-1")
    s.pay("card")
    term.settle()
    term.wait_until(lambda: s.print_status == "printed")
    term.fkey("Shift+F10")
    term.settle()
    assert "paid by card" in s.r_summary.text() and s.r_method.currentText() == "card"
    s.r_method.setCurrentText("cash")  # cash from the drawer for a card sale: refused
    s.r_reason.setText("damaged")
    s.do_refund()
    term.settle()
    assert term.error_code == "REFUND_METHOD_MISMATCH" and s.refund_box.isVisible()
    assert term.sql("SELECT COUNT(*) FROM refunds") == [(0,)]
    s.r_method.setCurrentText("card")
    s.r_reference.setText("RF-1")
    s.do_refund()
    term.settle()
    assert term.sql("SELECT method, reference FROM refunds") == [("card", "RF-1")]


def test_printer_down_the_refund_slip_waits_and_shift_f9_prints_it(term: Term) -> None:
    from hardware.errors import PrinterOffline

    term.sign_in("manager")
    s = term.win.sale
    term.wedge_scan(ibu(term))
    s.cash.setText("10.00")
    s.pay("cash")
    term.wait_until(lambda: s.print_status == "printed")
    term.backend.fail_open = PrinterOffline("the printer is off", code="PRINTER_OFFLINE")
    term.fkey("Shift+F10")
    term.settle()
    s.r_reason.setText("unopened")
    s.do_refund()
    term.wait_until(lambda: s.print_status == "PRINTER_OFFLINE")
    # the refund is saved and the warning is about its slip, not the sale
    assert "refund is saved" in term.error and "PRINTER_OFFLINE" in term.error
    assert "refund slip NOT printed" in s.last.text()
    assert term.sql("SELECT COUNT(*) FROM refunds") == [(1,)]
    assert term.sql("SELECT kind, status FROM print_jobs ORDER BY created_at") == [
        ("receipt", "done"), ("refund", "failed")]
    term.backend.fail_open = None
    term.fkey("Shift+F9")  # prints the slip that waits, not a copy of the sale's receipt
    term.wait_until(lambda: s.print_status == "printed")
    assert b"TOTAL REFUNDED" in term.backend.output and b"REPRINT" not in term.backend.output
    assert term.sql("SELECT kind, status, reprint FROM print_jobs ORDER BY created_at") == [
        ("receipt", "done", 0), ("refund", "done", 0)]
