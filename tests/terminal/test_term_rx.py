"""The Rx workflow on screen: intake (DEA check digit) -> pharmacist verification with
interaction alerts -> fill with scan-verify -> label -> will-call -> pickup with counselling."""

from __future__ import annotations

from typing import Any

import pytest
from termtestlib import Term, datamatrix

pytestmark = pytest.mark.gui

WARFARIN, IBU = "0832-1215-10", "0904-6728-60"


def enter_rx(t: Term, ndc: str, *, dea: str = "BA1234563", qty: str = "30") -> None:
    r = t.win.rx
    t.fkey("F5")
    assert r.mode == "intake" and r.i_name.hasFocus()
    r.i_name.setText("Ana Nguyen")
    r.i_birth.setText("1980-04-12")
    r.i_address.setText("12 Oak St, Austin TX 78710")
    r.i_prescriber.setText("Dr. Maria Alvarez")
    r.i_prescriber_address.setText("1200 Main St, Austin TX 78701")
    r.i_dea.setText(dea)
    r.i_drug.setText(ndc)
    r._drug_lookup()
    t.settle()
    r.i_qty.setText(qty)
    r.i_days.setText("30")
    r.i_refills.setText("2")
    r.i_written.setText("2026-11-01")
    r.i_directions.setText("Take 1 tablet by mouth daily")
    t.fkey("F5")


def select_state(t: Term, state: str) -> dict[str, Any]:
    r = t.win.rx
    for row in range(r.model.rowCount()):
        data = r.model.row_data(row)
        if data and data["state"] == state:
            r.view.selectRow(row)
            t.settle()
            return data
    raise AssertionError(f"no {state} row in {[r.model.row_data(i) for i in range(3)]}")


def test_intake_refuses_a_bad_dea_number(term: Term) -> None:
    term.sign_in("technician")
    term.fkey("F3")
    enter_rx(term, WARFARIN, dea="BA1234564")
    assert term.error_code == "DEA_PRESCRIBER_INVALID"
    assert term.win.rx.mode == "intake"  # the form stays, to correct the number
    term.win.rx.i_dea.setText("BA1234563")
    term.fkey("F5")
    assert term.win.rx.mode == "details" and term.win.rx.model.rowCount() == 1
    assert "entered" in term.error.lower()


def test_full_prescription_flow(term: Term) -> None:
    r = term.win.rx
    term.sign_in("technician")
    term.fkey("F3")
    enter_rx(term, IBU, qty="2")  # the patient already takes ibuprofen (entered first)
    enter_rx(term, WARFARIN)
    assert r.model.rowCount() == 2
    select_state(term, "intake")
    assert not {a.key: a for a in r.fkey_actions()}["F6"].enabled  # a technician
    term.fkey("F6")
    assert r.mode != "verify" and "not available" in term.error
    term.fkey("F11")
    term.sign_in("pharmacist")
    term.settle()
    row = select_state(term, "intake")
    if row["drug"].startswith("Ibuprofen"):  # verify the warfarin one
        r.view.selectRow(1 - r.view.currentIndex().row())
        term.settle()
    term.fkey("F6")
    assert r.mode == "verify"
    assert len(r.alert_checks) == 1 and "warfarin + ibuprofen" in r.alert_checks[0][2].text()
    assert "MAJOR" in r.alert_checks[0][2].text()
    term.fkey("F6")  # confirm without reviewing the alert: refused by the core
    assert term.error_code == "INTERACTION_UNACKNOWLEDGED"
    r.alert_checks[0][0].setChecked(True)
    r.v_override.setText("INR monitored by the prescriber; short course")
    term.fkey("F6")
    assert r.current_row()["state"] == "verified"  # type: ignore[index]

    # fill: scan-verify
    term.fkey("F7")
    assert r.mode == "fill"
    term.wedge_scan(datamatrix(term.gtin(IBU), "2027-01-31", "IB2701"))
    assert term.error_code == "DSCSA_PRODUCT_MISMATCH" and r.mode == "fill"
    term.win.tasks.db(term.win.counter.receive, [{"ndc": WARFARIN, "lot": "WF0",
                                                   "expiry": "2026-10-31", "qty": 50}])
    term.settle()
    term.wedge_scan(datamatrix(term.gtin(WARFARIN), "2026-10-31", "WF0"))
    assert term.error_code == "EXPIRED_LOT"
    term.wedge_scan(datamatrix(term.gtin(WARFARIN), "2027-08-31", "WF1", "S99"))
    assert r.mode == "details" and r.current_row()["state"] == "filled"  # type: ignore[index]
    assert r.current_row()["lot"] == "WF1"  # type: ignore[index]

    # label, will-call
    term.fkey("F8")
    term.wait_until(lambda: r.print_status == "done")
    label = term.label_backend.output
    assert b"Ana Nguyen" in label and b"Take 1 tablet by mouth daily" in label
    assert b"WF1" in label
    term.fkey("F9")
    r.w_bin.setText("b-7")
    term.fkey("F9")
    assert r.current_row()["bin"] == "B-7"  # type: ignore[index]

    # pickup by a cashier: pick-up essentials only, counselling acknowledged
    term.fkey("F11")
    term.sign_in("cashier")
    term.fkey("F3")
    r.tabs.setCurrentIndex(4)  # will-call
    term.settle()
    row = select_state(term, "will_call")
    assert "birth_date" not in row and "directions" not in row  # minimum necessary
    term.fkey("F10")
    assert r.mode == "pickup" and r.p_cash.text() == "6.00"
    term.fkey("F10")
    assert term.error_code == "COUNSELING_REQUIRED"
    r.p_accepted.setChecked(True)
    term.fkey("F10")
    assert term.error_code == "COUNSEL_NEEDS_PHARMACIST"
    r.p_declined.setChecked(True)
    r.p_cash.setText("10.00")
    term.fkey("F10")
    assert "Picked up. Change due 4.00." in term.error
    assert term.sql("SELECT method, change_cents FROM tenders") == [("cash", 400)]
    term.wait_until(lambda: b"TOTAL" in term.backend.output)  # the pickup's receipt
    events = term.sql("SELECT action FROM rx_events WHERE action IN ('fill.refused', 'fill', "
                      "'label', 'will_call', 'pickup') ORDER BY seq")
    assert [e[0] for e in events] == ["fill", "label", "will_call", "pickup"]


def test_history_is_for_pharmacy_staff(term: Term) -> None:
    r = term.win.rx
    term.sign_in("pharmacist")
    enter_rx(term, WARFARIN)
    term.fkey("Shift+F6")
    assert r.mode == "history" and "Ana Nguyen" in r.h_text.text()
    assert "Jantoven" in r.h_text.text()
    reads = term.sql("SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read'")[0][0]
    assert reads >= 2  # every look at the record is audited
    term.fkey("F11")
    term.sign_in("cashier")
    term.fkey("F3")
    assert not {a.key: a for a in r.fkey_actions()}["Shift+F6"].enabled


def test_scan_on_the_rx_queue_goes_to_the_sale(term: Term) -> None:
    term.sign_in("pharmacist")
    assert term.win.current is term.win.rx
    term.wedge_scan(datamatrix(term.gtin(IBU), "2027-01-31", "IB2701"))
    assert term.win.current is term.win.sale
    assert term.win.sale.cart_model.rowCount() == 1


def test_a_fill_never_picked_up_goes_back_to_stock(term: Term) -> None:
    """Will-call -> return to stock (a pharmacist, with a reason): the units go back to the
    lot, the fill is returned, and Shift+F7 starts it again under the same number."""
    r = term.win.rx
    term.sign_in("pharmacist")
    term.fkey("F3")
    enter_rx(term, WARFARIN)
    select_state(term, "intake")
    term.fkey("F6")
    term.fkey("F6")
    assert r.current_row()["state"] == "verified"  # type: ignore[index]
    on_hand = "SELECT SUM(p - n) FROM counters WHERE counter_id = 'stock:00832121510:WF1'"
    before = term.sql(on_hand)[0][0]
    term.fkey("F7")
    term.wedge_scan(datamatrix(term.gtin(WARFARIN), "2027-08-31", "WF1", "S7"))
    assert r.current_row()["state"] == "filled"  # type: ignore[index]
    assert term.sql(on_hand)[0][0] == before - 30
    term.fkey("F8")
    term.wait_until(lambda: r.print_status == "done")
    term.fkey("F9")
    r.w_bin.setText("c-3")
    term.fkey("F9")
    assert r.current_row()["state"] == "will_call"  # type: ignore[index]

    term.fkey("F11")
    term.sign_in("technician")  # not a technician's call
    term.fkey("F3")
    r.tabs.setCurrentIndex(4)
    term.settle()
    select_state(term, "will_call")
    assert not {a.key: a for a in r.fkey_actions()}["Shift+F9"].enabled
    term.fkey("F11")
    term.sign_in("pharmacist")
    term.fkey("F3")
    r.tabs.setCurrentIndex(4)
    term.settle()
    select_state(term, "will_call")
    term.fkey("Shift+F9")
    assert r.mode == "return"
    term.fkey("Shift+F9")  # no reason given
    assert term.error_code == "REASON_REQUIRED" and r.mode == "return"
    r.r_reason.setText("not picked up in 14 days")
    term.fkey("Shift+F9")
    assert "Returned to stock." in term.error
    assert term.sql(on_hand)[0][0] == before  # the 30 tablets are back on WF1
    assert term.sql("SELECT state FROM fills") == [("returned",)]
    assert term.sql("SELECT reason FROM sale_returns") == [("not picked up in 14 days",)]
    r.tabs.setCurrentIndex(r.tabs.count() - 1)  # Done
    term.settle()
    select_state(term, "returned")
    term.fkey("Shift+F7")  # the refill was not used up: the same fill starts again
    assert term.sql("SELECT state, refill_number, sale_id FROM fills") == [("intake", 0, None)]
