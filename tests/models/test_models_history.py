"""Weekly demand history from the store's own sales (store time zone, complete weeks)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np

from models.suggest import weekly_history
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from tests.models.conftest import AllowAll

IBU = "0904-6728-60"


def test_weeks_follow_the_store_time_zone(stocked: Store) -> None:
    stocked.set_setting("timezone", "America/Chicago")     # UTC-6 in November
    disp = Dispenser(stocked, AllowAll())
    for at, qty in [("2026-10-26T03:00:00+00:00", 2),   # Sunday 25 Oct, 22:00 local
                    ("2026-10-27T15:00:00+00:00", 3),   # Tuesday 27 Oct
                    ("2026-11-02T14:00:00+00:00", 4)]:  # Monday 2 Nov: the current week
        disp.sell({"lines": [{"ndc": IBU, "qty": qty}], "at": at})
    h = weekly_history(stocked, [IBU, "0093-0058-01"])
    assert stocked.clock() == datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    assert h.target_week_end == date(2026, 11, 8)
    assert h.last_complete_week_end == date(2026, 11, 1)
    row = h.weekly[0]
    assert row[-1] == 3 and row[-2] == 2          # the current week is not counted
    assert np.isnan(row[:-2]).all()               # before the first sale: unknown
    # amoxicillin was received (this week) but never sold: all unknown
    assert np.isnan(h.weekly[1]).all()


def test_units_a_refund_put_back_are_not_demand(stocked: Store) -> None:
    from pharmacy import checkout, refunds

    disp = Dispenser(stocked, AllowAll())
    paid = checkout.checkout(disp, {"lines": [{"ndc": IBU, "qty": 5}],
                                    "at": "2026-10-27T15:00:00+00:00",
                                    "user": {"id": "u1", "role": "manager"}},
                             lambda total: checkout.tender_for("cash", total))
    before = weekly_history(stocked, [IBU]).weekly[0][-1]
    manager = {"id": "u1", "role": "manager"}
    refunds.refund(stocked, manager, paid.sale.sale_id, method="cash", reason="sealed",
                   lines=[{"line_no": 1, "qty": 2, "restock": True}])
    refunds.refund(stocked, manager, paid.sale.sale_id, method="cash", reason="opened",
                   lines=[{"line_no": 1, "qty": 1}])  # money back, the pack was used
    assert before == 5 and weekly_history(stocked, [IBU]).weekly[0][-1] == 3
