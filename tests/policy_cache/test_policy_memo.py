"""Remembered Cedar answers: a request seen before is not sent to Cedar again, and the answer
is the one Cedar (and the full uncompiled policy set) gives."""

from __future__ import annotations

from typing import Any

import pytest

from policy_cache import engine
from policy_cache.engine import _memo_key, cedar_request
from tests.policy_cache.policy_support import NDC, Checker, codes, rx, sale


@pytest.fixture
def cedar_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts Cedar calls (one entry per call: how many requests it carried)."""
    calls: list[int] = []
    real = engine.cedarpy.is_authorized_batch

    def counting(requests: list[dict[str, Any]], *a: Any, **kw: Any) -> Any:
        calls.append(len(requests))
        return real(requests, *a, **kw)

    monkeypatch.setattr(engine.cedarpy, "is_authorized_batch", counting)
    return calls


def test_a_repeated_request_does_not_call_cedar_again(checker: Checker,
                                                      cedar_calls: list[int]) -> None:
    req = sale(NDC["oxycodone"], 10, rx=rx(quantity=20))
    first = checker.dispenser.check(req)
    assert cedar_calls, "the C-II line has conditional rules: Cedar must be asked once"
    n = len(cedar_calls)
    again = checker.dispenser.check(req)
    assert len(cedar_calls) == n
    assert again == first
    checker.check(req)  # and the remembered answer is the full policy set's


def test_a_different_number_is_a_different_question(checker: Checker) -> None:
    within = sale(NDC["oxycodone"], 10, rx=rx(quantity=20))
    over = sale(NDC["oxycodone"], 30, rx=rx(quantity=20))
    a1 = checker.check(within)
    b = checker.check(over)
    a2 = checker.check(within)
    assert a1 == a2
    assert (b.decision, codes(b)) != (a1.decision, codes(a1))


def test_two_restricted_lines_in_one_cart_agree_with_the_full_set(checker: Checker) -> None:
    req = sale(NDC["oxycodone"], 10, rx=rx(quantity=20))
    req["lines"].append({"ndc": NDC["alprazolam"], "qty": 5})
    req["lines"].append({"ndc": NDC["ibuprofen"], "qty": 1})
    for _ in range(3):
        d = checker.check(req)
        assert {r.line_no for r in d.reasons} <= {1, 2, 3, None}


def test_memo_keys_tell_types_apart_and_ignore_set_order() -> None:
    def key(ctx: dict[str, Any], user: str = "u", line: int = 1) -> Any:
        return _memo_key(7, cedar_request(user, line, ctx))

    assert key({"x": 1}) != key({"x": True})
    assert key({"x": 1}) != key({"x": "1"})
    assert key({"x": 1}) == key({"x": 1})
    assert key({"f": ["a", "b"]}) == key({"f": ["b", "a"]})
    assert key({"f": ["a"]}) != key({"f": ["a", "b"]})
    assert key({"x": 1}) != key({"x": 1}, user="v")
    assert key({"x": 1}) != key({"x": 1}, line=2)
    assert _memo_key(7, cedar_request("u", 1, {"x": 1})) != _memo_key(
        8, cedar_request("u", 1, {"x": 1}))
    assert key({"r": {"a": 1}}) is None  # records are not remembered
    assert key({"f": [1, 2]}) is None
    assert _memo_key(7, {"principal": 'User::"u"', "action": engine.ACTION,
                         "resource": 'Line::"1"', "context": {}}) is None


def test_memo_is_bounded(checker: Checker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "MAX_MEMO", 3)
    bg = checker.gate.bundle_gate
    assert bg is not None
    for qty in range(1, 9):
        checker.check(sale(NDC["oxycodone"], qty, rx=rx(quantity=20)))
    assert len(bg.policies._memo) <= 3


def test_the_same_line_for_another_cashier_or_position_is_remembered(
        checker: Checker, cedar_calls: list[int]) -> None:
    bg = checker.gate.bundle_gate
    assert bg is not None
    bg.policies.clear_memo()
    req = sale(NDC["oxycodone"], 10, rx=rx(quantity=20))
    first = checker.dispenser.check(req)
    assert cedar_calls == [1]
    other = dict(req, user={"id": "ph-zoe", "role": "pharmacist"},
                 lines=[{"ndc": NDC["ibuprofen"], "qty": 1}, *req["lines"]])
    d = checker.dispenser.check(other)
    assert cedar_calls == [1]  # the demo rules never look at the principal or the line
    assert [(r.code, r.line_no) for r in d.reasons] == [(r.code, 2) for r in first.reasons]
    checker.check(other)  # and the full, uncompiled policy set agrees


def test_partitions_whose_rules_look_at_the_principal_keep_it_in_the_key() -> None:
    est = {"policy0": {"effect": "permit", "principal": {"op": "All"},
                       "action": {"op": "All"}, "resource": {"op": "All"}, "annotations": {},
                       "conditions": [{"kind": "when", "body": {"==": {
                           "left": {"Var": "principal"},
                           "right": {"Value": {"__entity": {"type": "User", "id": "u"}}}}}}]}}
    assert engine._uses_var(est["policy0"]["conditions"], ("principal", "resource"))
    assert not engine._uses_var([{"kind": "when", "body": {"Value": True}}],
                                ("principal", "resource"))
    r = cedar_request("u", 1, {"x": 1})
    assert _memo_key(1, r, True) == _memo_key(1, cedar_request("v", 2, {"x": 1}), True)
    assert _memo_key(1, r) != _memo_key(1, cedar_request("v", 2, {"x": 1}))
