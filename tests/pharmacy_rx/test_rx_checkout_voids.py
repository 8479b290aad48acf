"""Voids at the counter are audited: they feed the diversion detector."""

from __future__ import annotations

import json

import pytest

from pharmacy.checkout import Cart
from pharmacy.errors import BadInput
from pharmacy.store import Store


def test_void_line_and_cart_are_audited(stocked: Store) -> None:
    cart = Cart()
    a = cart.add_product("0904-6728-60", 2)
    cart.add_product("0093-0058-01", 30)
    assert cart.void(stocked, "u-cara", a.line_id) == 1
    assert [ln.ndc for ln in cart.lines] == ["0093-0058-01"]
    assert cart.void(stocked, "u-cara") == 1 and cart.lines == []
    rows = stocked.conn.execute(
        "SELECT user_id, action, subject, detail FROM audit_log WHERE action LIKE 'cart.%' "
        "ORDER BY seq").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("u-cara", "cart.void_line", "0904-6728-60"), ("u-cara", "cart.void", "0093-0058-01")]
    assert json.loads(rows[0][3])["qty"] == 2
    with pytest.raises(BadInput):
        cart.void(stocked, "u-cara", 99)
    assert cart.void(stocked, "u-cara") == 0  # an empty cart voids nothing


def test_diversion_features_count_the_voids(stocked: Store) -> None:
    from models import diversion

    cart = Cart()
    for _ in range(3):
        line = cart.add_product("0904-6728-60", 1)
        cart.void(stocked, "u-tom", line.line_id)
    now = stocked.clock()
    acts = diversion.store_activities(stocked, now.replace(hour=0), now.replace(hour=23))
    assert sum(1 for a in acts if a.user_id == "u-tom" and a.kind == "void") == 3
