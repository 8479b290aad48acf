"""Pure reorder and expiry-risk arithmetic (pharmacy/reorder.py)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy.reorder import (
    FALLBACK_VERSION,
    BatchRisk,
    BatchStock,
    DemandForecast,
    ReorderParams,
    expiry_action,
    expiry_risks,
    shortfall,
    suggest_order,
    z_for,
)

TODAY = date(2026, 11, 4)


def fc(mean: float, sigma: float = 0.0, basis: str = "model") -> DemandForecast:
    return DemandForecast("0904-6728-60", mean, sigma, "m1", basis)


def batch(qty: int, days: int, lot: str = "L1") -> BatchStock:
    return BatchStock(f"x:{lot}", lot, TODAY + timedelta(days=days), qty)


def test_order_up_to_worked_example() -> None:
    # 70/week, sigma 14, lead 2 + review 5 = 1 week; z(0.95) = 1.645
    params = ReorderParams(lead_time_days=2, review_days=5, service_level=0.95, pack_size=12)
    s = suggest_order(fc(70, 14), [batch(20, 365)], on_order=10, params=params, today=TODAY)
    assert s.demand_over_interval == pytest.approx(70)
    assert s.safety_stock == pytest.approx(1.6449 * 14, rel=1e-3)
    assert s.order_up_to == pytest.approx(70 + 23.03, rel=1e-3)
    # need 93.03 - 30 = 63.03 -> 6 packs of 12
    assert (s.order_packs, s.order_units) == (6, 72)
    assert s.model_version == "m1"
    assert s.to_json()["model_version"] == "m1"


def test_pack_rounding_and_minimum_order() -> None:
    params = ReorderParams(lead_time_days=7, review_days=0, pack_size=100, min_order_packs=2)
    s = suggest_order(fc(10), [], on_order=0, params=params, today=TODAY)
    assert s.order_units == 200 and s.order_packs == 2


def test_stock_and_orders_cover_the_interval() -> None:
    s = suggest_order(fc(10, 2), [batch(500, 400)], on_order=0, params=ReorderParams(),
                      today=TODAY)
    assert s.order_units == 0
    assert "cover" in s.reason


def test_stock_expiring_inside_the_interval_does_not_count() -> None:
    params = ReorderParams(lead_time_days=7, review_days=7)
    fresh = suggest_order(fc(10), [batch(100, 400)], 0, params, TODAY)
    expiring = suggest_order(fc(10), [batch(100, 3)], 0, params, TODAY)
    assert fresh.order_units == 0
    # 3 days of sales at 10/week: ~4 sold, ~96 expire unsold
    assert expiring.expiring_unsold == pytest.approx(100 - 40 / 7, abs=0.01)
    assert expiring.order_units > 0
    assert "expire unsold" in expiring.reason


def test_no_history_and_no_demand_order_nothing() -> None:
    none = suggest_order(DemandForecast("n", 0.0, 0.0, "none: no sales history", "no-history"),
                         [], 0, ReorderParams(), TODAY)
    assert none.order_units == 0 and "no sales history" in none.reason
    zero = suggest_order(fc(0.0), [], 0, ReorderParams(), TODAY)
    assert zero.order_units == 0 and zero.reason == "no demand expected"


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError):
        ReorderParams(service_level=1.0)
    with pytest.raises(ValueError):
        ReorderParams(pack_size=0)
    with pytest.raises(ValueError):
        ReorderParams(lead_time_days=0, review_days=0)


@settings(max_examples=200, deadline=None)
@given(mean=st.floats(0, 5000), sigma=st.floats(0, 2000), on_hand=st.integers(0, 10_000),
       on_order=st.integers(0, 10_000), pack=st.integers(1, 500), lead=st.integers(0, 30),
       review=st.integers(1, 30), sl=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
       days=st.integers(0, 800))
def test_order_laws(mean: float, sigma: float, on_hand: int, on_order: int, pack: int,
                    lead: int, review: int, sl: float, days: int) -> None:
    params = ReorderParams(lead, review, sl, pack)
    b = [batch(on_hand, days)] if on_hand else []
    s = suggest_order(fc(mean, sigma), b, on_order, params, TODAY)
    assert s.order_units >= 0 and s.order_units % pack == 0
    assert s.order_units == s.order_packs * pack
    assert 0 <= s.usable_on_hand <= on_hand + 1e-6
    if s.order_units > 0:
        assert s.position + s.order_units >= s.order_up_to - 1e-6
        assert s.position + s.order_units - pack < s.order_up_to or s.order_packs == 1
    more = suggest_order(fc(mean, sigma), [batch(on_hand + 50, days)], on_order, params, TODAY)
    assert more.order_units <= s.order_units


def test_shortfall_matches_definition() -> None:
    assert shortfall(10, 4, 0) == 6
    assert shortfall(2, 4, 0) == 0
    # E[max(0, 0 - D)] for D ~ N(0, 1) = 1/sqrt(2 pi)
    assert shortfall(0, 0, 1) == pytest.approx(1 / math.sqrt(2 * math.pi))
    assert z_for(0.5) == pytest.approx(0.0, abs=1e-12)


def test_expiry_risk_fefo() -> None:
    # 70/week = 10/day; batch A (50, 10 days) sells first, B (50, 8 days) even earlier
    risks = expiry_risks([batch(50, 9, "A"), batch(50, 7, "B")], 70, 0, TODAY)
    assert [r.lot for r in risks] == ["B", "A"]
    b, a = risks
    assert b.p_expire == 0.0 and b.expected_leftover == 0.0
    assert a.ahead == 50
    # by A's expiry (10 selling days): 100 sold, so A also sells out
    assert a.p_expire == 0.0
    slow = expiry_risks([batch(50, 9, "A")], 7, 0, TODAY)[0]
    assert slow.p_expire == 1.0 and slow.expected_leftover == pytest.approx(40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(-5, 400)), min_size=1, max_size=6),
       st.floats(0, 500), st.floats(0, 200))
def test_expiry_risk_laws(batches: list[tuple[int, int]], mean: float, sigma: float) -> None:
    bs = [batch(q, d, f"L{i}") for i, (q, d) in enumerate(batches)]
    risks = expiry_risks(bs, mean, sigma, TODAY)
    assert len(risks) == sum(1 for q, _ in batches if q > 0)
    for r in risks:
        assert 0.0 <= r.p_expire <= 1.0
        assert -1e-9 <= r.expected_leftover <= r.qty + 1e-9
        if r.days_left <= 0:
            assert r.p_expire == 1.0 and r.expected_leftover == r.qty
    assert [r.expiry for r in risks] == sorted(r.expiry for r in risks)


def _risk(days: int, p: float = 0.9, left: float = 10) -> BatchRisk:
    return BatchRisk("b", "L", TODAY + timedelta(days=days), 20, days, 0, p, left)


def test_expiry_actions() -> None:
    assert expiry_action(_risk(100, p=0.2), controlled=False, rx_only=False).action == "none"
    assert expiry_action(_risk(120), controlled=False, rx_only=False).action == "transfer"
    assert expiry_action(_risk(40), controlled=False, rx_only=False).action == "markdown"
    assert expiry_action(_risk(5), controlled=False, rx_only=False).action == \
        "return-to-supplier"
    assert expiry_action(_risk(60), controlled=False, rx_only=True).action == "transfer"
    assert expiry_action(_risk(20), controlled=False, rx_only=True).action == \
        "return-to-supplier"
    assert expiry_action(_risk(200), controlled=True, rx_only=True).action == \
        "return-to-supplier"
    assert FALLBACK_VERSION == "fallback: moving average"
