from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import inventory
from pharmacy.errors import BadInput, LotExpired, LotUnavailable, NotFound, OutOfStock
from pharmacy.store import Store

TODAY = date(2026, 11, 2)


def _stock(store: Store, ndc: str) -> dict[str, dict[str, Any]]:
    return {r["lot"]: r for r in inventory.stock(store.conn, TODAY, ndc)}


def test_fefo_skips_expired_and_takes_earliest(stocked: Store) -> None:
    from pharmacy import catalog

    p = catalog.lookup(stocked.conn, "0904-6728-60")
    allocs = inventory.allocate(stocked.conn, p, 8, TODAY)
    assert [(a.lot, a.qty) for a in allocs] == [("IB2606", 5), ("IB2701", 3)]
    rows = _stock(stocked, "0904-6728-60")
    assert rows["IB2510"]["status"] == "expired"


def test_quarantine_and_recall_are_never_sold(stocked: Store) -> None:
    from pharmacy import catalog

    p = catalog.lookup(stocked.conn, "0904-6728-60")
    inventory.set_status(stocked, "IB2606", "quarantined", reason="damaged carton")
    assert [a.lot for a in inventory.allocate(stocked.conn, p, 2, TODAY)] == ["IB2701"]
    with pytest.raises(LotUnavailable) as e:
        inventory.allocate(stocked.conn, p, 1, TODAY, lot="IB2606")
    assert e.value.code == "LOT_QUARANTINED"
    inventory.set_status(stocked, "IB2606", "active")
    inventory.set_status(stocked, "IB2701", "recalled", reason="FDA recall Z-1234")
    with pytest.raises(LotUnavailable):
        inventory.set_status(stocked, "IB2701", "active")
    with pytest.raises(OutOfStock) as oos:
        inventory.allocate(stocked.conn, p, 6, TODAY)
    assert oos.value.details["available"] == 5
    assert "IB2606" in oos.value.message


def test_expired_lot_named_is_refused(stocked: Store) -> None:
    from pharmacy import catalog

    p = catalog.lookup(stocked.conn, "0904-6728-60")
    with pytest.raises(LotExpired) as e:
        inventory.allocate(stocked.conn, p, 1, TODAY, lot="IB2510")
    assert e.value.code == "EXPIRED_LOT"


def test_adjust_and_stocktake_enter_as_deltas(stocked: Store) -> None:
    inventory.adjust(stocked, "0093-0058-01", "AM1", -20, "DAMAGED")
    assert _stock(stocked, "0093-0058-01")["AM1"]["on_hand"] == 480
    changed = inventory.stocktake(stocked, [{"ndc": "0093-0058-01", "lot": "AM1",
                                             "counted": 470}])
    assert changed.details["deltas"] == {"00093005801:AM1": -10}
    assert _stock(stocked, "0093-0058-01")["AM1"]["on_hand"] == 470
    kinds = [r[0] for r in stocked.conn.execute(
        "SELECT kind FROM movements WHERE batch_id = '00093005801:AM1' ORDER BY created_at")]
    assert kinds == ["receive", "adjust", "stocktake"]


def test_adjust_bad_reason_and_below_zero(stocked: Store) -> None:
    with pytest.raises(BadInput) as e:
        inventory.adjust(stocked, "0093-0058-01", "AM1", -1, "BECAUSE")
    assert e.value.code == "BAD_REASON"
    with pytest.raises(OutOfStock):
        inventory.adjust(stocked, "0093-0058-01", "AM1", -501, "LOSS")
    with pytest.raises(NotFound):
        inventory.adjust(stocked, "0093-0058-01", "NOPE", -1, "LOSS")


def test_controlled_receive_and_adjust_write_register(stocked: Store) -> None:
    before = stocked.conn.execute("SELECT COUNT(*) FROM register").fetchone()[0]
    inventory.adjust(stocked, "0406-0552-01", "OX1", -2, "THEFT")
    kinds = [r[0] for r in stocked.conn.execute("SELECT kind FROM register ORDER BY seq")]
    assert kinds[0] == "receive" and kinds[-1] == "adjust" and len(kinds) == before + 1


def test_receive_rejects_bad_input(store: Store) -> None:
    cases = [
        ({"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-13-01", "qty": 1}, "BAD_EXPIRY"),
        ({"ndc": "0904-6728-60", "lot": "", "expiry": "2027-01-01", "qty": 1}, "BAD_LOT"),
        ({"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-01-01", "qty": 0}, "BAD_QUANTITY"),
        ({"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-01-01", "qty": 1.5},
         "BAD_QUANTITY"),
        ({"ndc": "1111-2222-33", "lot": "L", "expiry": "2027-01-01", "qty": 1},
         "UNKNOWN_PRODUCT"),
        ({"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-01-01", "qty": 1,
          "unit_cost": "1.234"}, "BAD_MONEY"),
    ]
    for item, code in cases:
        with pytest.raises(BadInput) as e:
            inventory.receive(store, [item])
        assert e.value.code == code, item
    assert store.conn.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
    inventory.receive(store, [{"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-01-01",
                               "qty": 1}])
    with pytest.raises(BadInput) as e:
        inventory.receive(store, [{"ndc": "0904-6728-60", "lot": "L", "expiry": "2027-02-01",
                                   "qty": 1}])
    assert e.value.code == "LOT_EXPIRY_MISMATCH"


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=4),
                 st.booleans(), st.none()))
def test_parse_qty_rejects_non_positive_whole_numbers(value: Any) -> None:
    if isinstance(value, float) and value.is_integer() and value > 0:
        return
    with pytest.raises(BadInput):
        inventory.parse_qty(value)
