"""The day report: each fact on its own local day, cash the drawer took in net of cash
refunds, unpaid fills apart; `pharmos report day` prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pharmacy import checkout, daybook, refunds
from pharmacy.clock import iso
from pharmacy.errors import BadInput, ComplianceDenied
from pharmacy.sales import Dispenser, return_sale
from tests.conftest import ROOT, FakeClock

IBU, AMOX, SUDAFED = "0904-6728-60", "0093-0058-01", "50580-451-01"
CHICAGO = ZoneInfo("America/Chicago")
ME = {"id": "u-paula", "role": "pharmacist"}


def pay(d: Dispenser, lines: list[dict[str, Any]], method: str,
        user: dict[str, Any] = ME) -> checkout.CheckoutResult:
    return checkout.checkout(d, {"user": user, "lines": lines},
                             lambda total: checkout.tender_for(method, total, None, "A1"))


def test_day_report_places_each_fact_on_its_local_day(dispenser: Dispenser,
                                                      clock: FakeClock) -> None:
    store = dispenser.store
    # 2026-11-02 15:00 UTC is 09:00 in Chicago
    cash = pay(dispenser, [{"ndc": IBU, "qty": 2}], "cash")  # 14.98 + 1.24 = 16.22
    card = pay(dispenser, [{"ndc": AMOX, "qty": 10}], "card",
               {"id": "u-cara", "role": "cashier"})
    assert card.sale.total_cents == 120  # a prescription drug: no sales tax
    unpaid = dispenser.sell({"user": ME, "lines": [{"ndc": IBU, "qty": 1}]})  # 8.11
    try:
        dispenser.sell({"user": ME, "lines": [{"ndc": SUDAFED, "qty": 1}]})
    except ComplianceDenied:
        pass
    refunds.refund(store, ME, cash.sale.sale_id, method="cash", reason="unopened",
                   lines=[{"line_no": 1, "qty": 1, "restock": True}])  # 8.11 back in cash
    # 23:30 in Chicago is 05:30 UTC the next day: still the 2nd there
    clock.advance(hours=14, minutes=30)
    late = pay(dispenser, [{"ndc": IBU, "qty": 1}], "cash")
    # the next local day: the unpaid sale is returned to stock, another card sale
    clock.advance(hours=1)
    with store.transaction() as c:
        return_sale(c, store.replica_id, unpaid.sale_id, "u-paula", "not picked up",
                    iso(store.clock()))
    pay(dispenser, [{"ndc": AMOX, "qty": 5}], "card")

    day = daybook.day_report(store.conn, date(2026, 11, 2), CHICAGO)
    assert day["sales"] == {"count": 4, "subtotal": "31.16", "tax": "2.48", "total": "33.64"}
    assert day["payments"]["cash"] == {"count": 2, "amount": "24.33", "tendered": "24.33",
                                       "change": "0.00"}
    assert day["payments"]["card"] == {"count": 1, "amount": "1.20"}
    assert day["refunds"] == {"count": 1, "total": "8.11", "tax": "0.62", "cash": "8.11",
                              "card": "0.00"}
    assert day["unpaid"] == {"count": 1, "total": "8.11"}
    assert day["cash_expected"] == "16.22"  # 16.22 + 8.11 in, 8.11 back out
    assert day["net_taken"] == "17.42"
    assert day["refused"] == 1 and day["returned_to_stock"]["count"] == 0
    assert day["by_user"] == [{"user_id": "u-cara", "sales": 1, "total": "1.20"},
                              {"user_id": "u-paula", "sales": 3, "total": "32.44"}]
    assert late.sale.total_cents == 811
    # in UTC the late sale falls on the 3rd
    utc = daybook.day_report(store.conn, date(2026, 11, 2), ZoneInfo("UTC"))
    assert utc["sales"]["count"] == 3
    nxt = daybook.day_report(store.conn, date(2026, 11, 3), CHICAGO)
    assert nxt["sales"]["count"] == 1 and nxt["payments"]["card"]["amount"] == "0.60"
    assert nxt["returned_to_stock"] == {"count": 1, "total": "8.11"}
    assert nxt["unpaid"]["count"] == 0 and nxt["cash_expected"] == "0.00"
    text = daybook.report_text(day)
    assert "cash expected in the drawer (plus the float)  16.22" in text
    assert "not paid yet     1" in text and "refused attempts 1" in text


def test_report_day_cli(dispenser: Dispenser) -> None:
    store = dispenser.store
    pay(dispenser, [{"ndc": IBU, "qty": 1}], "cash")
    store.set_setting("timezone", "America/Chicago")
    d = str(store.data_dir)

    def run(*args: str, code: int = 0) -> Any:
        proc = subprocess.run([sys.executable, "-m", "terminal.cli", "report", "day",
                               "--data-dir", d, *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=60)
        assert "Traceback" not in proc.stderr and proc.returncode == code, proc.stderr
        return json.loads(proc.stdout) if "--json" in args else proc.stdout

    out = run("--date", "2026-11-02", "--json")
    assert out["tz"] == "America/Chicago" and out["sales"]["total"] == "8.11"
    assert out["cash_expected"] == "8.11" and out["store_id"] == "store-1"
    assert run("--date", "2026-11-01", "--tz", "UTC", "--json")["sales"]["count"] == 0
    assert "Day report 2026-11-02" in run("--date", "2026-11-02")
    assert run("--date", "yesterday", "--json", code=1)["error"]["code"] == "BAD_DATE"
    assert run("--tz", "Mars/Olympus", "--json", code=1)["error"]["code"] == "BAD_TIMEZONE"
    # the last day (any zone) and the first day east of UTC end or start outside the years
    # a stored time can hold: bad input, not an OverflowError traceback (exit 70)
    assert run("--date", "9999-12-31", "--json", code=1)["error"]["code"] == "BAD_DATE"
    assert run("--date", "0001-01-01", "--tz", "Asia/Tokyo", "--json",
               code=1)["error"]["code"] == "BAD_DATE"


def test_day_report_at_the_edges_of_the_calendar(dispenser: Dispenser) -> None:
    conn = dispenser.store.conn
    for day, tz in ((date(9999, 12, 31), ZoneInfo("UTC")), (date(9999, 12, 31), CHICAGO),
                    (date(1, 1, 1), ZoneInfo("Asia/Tokyo"))):
        with pytest.raises(BadInput) as e:
            daybook.day_report(conn, day, tz)
        assert e.value.code == "BAD_DATE"
    # the days just inside still report (nothing sold then)
    assert daybook.day_report(conn, date(1, 1, 1), CHICAGO)["sales"]["count"] == 0
    assert daybook.day_report(conn, date(9999, 12, 30), ZoneInfo("Pacific/Kiritimati")
                              )["sales"]["count"] == 0
