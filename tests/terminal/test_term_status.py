"""Status bar: online / offline, last sync, pending outbox, policy bundle version and hours
left until offline_until; sync now on the network pool, never behind the database worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from termtestlib import Term

pytestmark = pytest.mark.gui


def test_standalone_terminal_without_policy(term: Term) -> None:
    term.sign_in("cashier")
    term.wait_until(lambda: term.win.status is not None)
    strip = term.win.statusbar_strip
    assert strip.online.text() == "● Standalone (not enrolled)"
    pending = term.sql("SELECT COUNT(*) FROM events")[0][0]
    assert strip.outbox.text() == f"Outbox {pending} pending" and pending > 0
    assert strip.policy.text() == "Policy: none installed (interim rules)"
    assert strip.last_sync.text() == "Last sync never"
    assert strip.pmp.isHidden()  # nothing controlled dispensed, nothing to report


def test_unreported_pmp_dispensings_show_and_turn_red_when_due(qtbot: Any) -> None:
    from dataclasses import replace

    from terminal.counter import Status
    from terminal.screens.widgets import StatusStrip

    strip = StatusStrip()
    qtbot.addWidget(strip)
    base = Status(None, None, False, None, None, 0, "cedar", "b1", None, None, 0, "US-TX")
    strip.show_status(base)
    assert strip.pmp.isHidden()
    strip.show_status(replace(base, pmp_unreported=3))
    assert not strip.pmp.isHidden() and strip.pmp.text() == "PMP 3 unreported"
    assert strip.pmp.objectName() == ""
    due = "Texas PMP report for s-1 is unsent and due by ... [22 TAC 315.6]"
    strip.show_status(replace(base, pmp_unreported=3, pmp_alert=due))
    assert strip.pmp.text() == "PMP 3 unreported — DUE" and strip.pmp.toolTip() == due
    assert strip.pmp.objectName() == "offline"


def test_sync_now_without_enrollment_shows_the_code(term: Term) -> None:
    term.sign_in("cashier")
    term.fkey("F12")
    term.wait_until(lambda: term.error_code is not None)
    assert term.error_code == "NOT_ENROLLED"
    assert term.win.statusbar_strip.sync.isEnabled()


@pytest.fixture
def offline_term(qtbot: Any, term_dir: Path, clock: Any) -> Iterator[Term]:
    from pharmacy import replication
    from pharmacy.store import Store
    from terminal import wiring

    with Store.open(term_dir, clock=clock) as store:
        wiring.install_demo_policy(store)
        with store.transaction() as c:
            for k, v in (("terminal_id", "t-1"), ("server_url", "http://127.0.0.1:9"),
                         ("last_attempt", "2026-11-02T14:00:00Z"),
                         ("last_success", "2026-11-02T09:30:00Z"),
                         ("last_error", "SYNC_UNAVAILABLE: connection refused"),
                         ("offline_since", "2026-11-02T10:00:00Z")):
                replication.set_state(c, k, v)
    t = Term.start(qtbot, term_dir, clock, gate=wiring.compliance_gate)
    yield t
    t.stop()


def test_offline_with_hours_left_and_offline_decisions(offline_term: Term) -> None:
    t = offline_term
    t.sign_in("pharmacist")
    t.wait_until(lambda: t.win.status is not None)
    strip = t.win.statusbar_strip
    assert strip.online.text() == "● OFFLINE"
    assert strip.last_sync.text() == "Last sync 2026-11-02 09:30"
    assert strip.policy.text().startswith("Policy demo-20261102T150000 · 72 h offline left")
    t.clock.advance(hours=80)  # past offline_until
    t.win.refresh_status()
    t.settle()
    assert "OFFLINE ALLOWANCE EXPIRED" in strip.policy.text()
    assert t.counter_call("status").online is False
    req = t.counter_call("preview")  # an empty cart: the offline flag is set on requests
    assert req.lines == ()
    assert t.win.counter.counter.offline is True  # type: ignore[union-attr]
