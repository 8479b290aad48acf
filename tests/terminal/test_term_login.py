"""Sign-in, lock, role checks from the core, F-key routing (REGULATIONS.md §5, #45-47)."""

from __future__ import annotations

import pytest
from termtestlib import Term

pytestmark = pytest.mark.gui


def test_first_paint_is_the_sign_in_screen(term: Term) -> None:
    w = term.win
    assert w.current is w.login and w.store_ready
    assert w.where.text() == "Test Pharmacy · store-1"
    assert w.session is None
    term.fkey("F2")  # screens need a person signed in
    assert w.current is w.login


def test_wrong_pin_is_shown_with_its_code_then_sign_in(term: Term) -> None:
    w = term.win
    w.login.user.setText("cara")
    w.login.secret.setText("0000")
    w.login.submit()
    term.settle()
    assert term.error_code == "LOGIN_FAILED" and w.session is None
    assert w.login.secret.text() == ""  # never left in the field
    term.sign_in("cashier")
    assert w.current is w.sale and w.who.text() == "Cara · cashier"
    rows = term.sql("SELECT action FROM audit_log WHERE action LIKE 'login%' ORDER BY seq")
    assert [r[0] for r in rows] == ["login.failed", "login"]


def test_idle_lock_and_same_person_resumes(term: Term) -> None:
    from datetime import timedelta

    from pharmacy.clock import utcnow
    from pharmacy.users import IdleLock

    w = term.win
    term.sign_in("cashier")
    term.wedge_scan(_ibuprofen(term))
    assert w.sale.cart_model.rowCount() == 1
    w.idle = IdleLock(30, utcnow() - timedelta(seconds=31))  # 31 s without a key or a click
    term.qtbot.waitUntil(lambda: w.session is None, timeout=3000)
    assert w.current is w.login and w.login.head.text() == "Locked — Cara"
    assert "164.312(a)(2)(iii)" in term.error
    term.wedge_scan(_ibuprofen(term))  # scans while locked are not used
    term.sign_in("cashier")
    assert w.current is w.sale and w.sale.cart_model.rowCount() == 1
    assert term.sql("SELECT COUNT(*) FROM audit_log WHERE action = 'idle_lock'")[0][0] == 1


def test_another_person_after_lock_starts_afresh(term: Term) -> None:
    w = term.win
    term.sign_in("cashier")
    term.wedge_scan(_ibuprofen(term))
    term.fkey("F11")
    assert w.session is None and w.current is w.login
    term.sign_in("pharmacist")
    assert w.current is w.rx  # a pharmacist starts on the prescription queue
    term.fkey("F2")
    assert w.sale.cart_model.rowCount() == 0


def test_role_checks_come_from_the_core(term: Term) -> None:
    w = term.win
    term.sign_in("cashier")
    term.fkey("F3")
    labels = {a.key: a for a in w.rx.fkey_actions()}
    assert not labels["F6"].enabled and not labels["Shift+F6"].enabled  # verify, history
    assert labels["F10"].label == "Pickup"
    # even when a screen asks, the core refuses a cashier the medication history
    term.win.tasks.db(w.counter.med_history, "no-such-fill")
    term.settle()
    assert term.error_code == "HIPAA_MIN_NECESSARY"
    assert "164.502(b)" in term.error
    term.fkey("F4")
    inv = {a.key: a for a in w.inventory.fkey_actions()}
    assert not inv["F5"].enabled  # a cashier does not receive stock
    term.win.tasks.db(w.counter.receive, [{"ndc": "0904-6728-60", "lot": "X1",
                                           "expiry": "2027-01-01", "qty": 1}])
    term.settle()
    assert term.error_code == "ROLE_NOT_PERMITTED"


def test_help_lists_every_shortcut(term: Term) -> None:
    w = term.win
    term.sign_in("technician")
    term.fkey("F1")
    assert w.stack.currentWidget() is w.help
    text = w.help_text.text()
    for key in ("F2", "F3", "F4", "F11", "F12", "F5", "F9", "Shift+F9"):
        assert f"<b>{key}</b>" in text
    term.fkey("F1")
    assert w.stack.currentWidget() is w.sale


def _ibuprofen(term: Term) -> str:
    from termtestlib import datamatrix

    return datamatrix(term.gtin("0904-6728-60"), "2027-01-31", "IB2701")


def test_emergency_access_opens_the_history_for_a_while_and_is_logged(term: Term) -> None:
    """45 CFR 164.312(a)(2)(ii): a cashier may open a medication history in an emergency,
    with a reason, for this session only; it is logged for review. A pharmacist has no
    such button (nothing to open)."""
    w = term.win
    term.sign_in("pharmacist")
    assert w.glass_button.isHidden()
    term.fkey("F11")
    term.sign_in("cashier")
    assert not w.glass_button.isHidden() and not w.session.can("read_med_history")
    w.glass_button.click()
    dlg = w.glass_dialog
    assert dlg is not None and dlg.what.currentData() == "read_med_history"
    dlg.why.setText("short")
    dlg.ok.click()
    term.settle()
    assert term.error_code == "BREAK_GLASS_REASON" and not w.session.can("read_med_history")
    dlg.why.setText("patient collapsed at the counter; allergies needed")
    dlg.ok.click()
    term.wait_until(lambda: w.glass_dialog is None)
    assert w.session.can("read_med_history") and not w.session.can("verify_rx")
    assert "Emergency access" in term.error and "164.312(a)(2)(ii)" in term.error
    rows = term.sql("SELECT user_id, subject, detail FROM audit_log "
                    "WHERE action = 'hipaa.break_glass'")
    assert len(rows) == 1 and rows[0][1] == "read_med_history"
    assert "allergies needed" in rows[0][2] and '"review": "pending"' in rows[0][2]
    term.fkey("F11")  # the grant ends with the session
    assert w.glass_button.isHidden()
    term.sign_in("cashier")
    assert not w.session.can("read_med_history")
