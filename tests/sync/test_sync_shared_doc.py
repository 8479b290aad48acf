"""crdt.shared_doc: multi-writer pycrdt documents merge the same whatever the order,
duplication or grouping of their updates."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import shared_doc as sd

ITEMS = st.sampled_from(["rx-1", "rx-2", "rx-3"])
FIELDS = st.fixed_dictionaries({}, optional={
    "label": st.sampled_from(["A.B.", "C.D.", "E.F."]),
    "bin": st.sampled_from(["A1", "B2", "C3"]),
    "status": st.sampled_from(sd.WILL_CALL_STATUSES),
    "note": st.text(max_size=8),
})
EDIT = st.tuples(st.integers(0, 2), ITEMS, FIELDS)


def run_offline(edits: list[tuple[int, str, dict[str, object]]]) -> list[list[bytes]]:
    """Three terminals editing offline: each sees only its own updates."""
    logs: list[list[bytes]] = [[], [], []]
    for t, item, fields in edits:
        logs[t].append(sd.will_call_put(logs[t], item, fields, actor=f"t{t}", at="x"))
    return logs


@settings(max_examples=60, deadline=None)
@given(st.lists(EDIT, max_size=12), st.randoms(use_true_random=False))
def test_any_delivery_order_with_duplicates_converges(
        edits: list[tuple[int, str, dict[str, object]]], rnd: random.Random) -> None:
    logs = run_offline(edits)
    everything = [u for log in logs for u in log]
    reference = sd.will_call_view(everything)
    shuffled = everything + rnd.sample(everything, k=len(everything) // 2)
    rnd.shuffle(shuffled)
    assert sd.will_call_view(shuffled) == reference
    assert sd.will_call_view([sd.merge(everything)]) == reference
    assert sd.will_call_view([sd.merge(logs[0]), sd.state_of(logs[1] + logs[2])]) == reference
    # every item any terminal created is on the board
    assert set(reference) == {item for _, item, _ in edits}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["a", "b"]),
                          st.one_of(st.integers(-5, 5), st.text(max_size=4), st.booleans())),
                max_size=8))
def test_settings_are_last_writer_per_key_and_order_free(
        sets: list[tuple[int, str, object]]) -> None:
    logs: list[list[bytes]] = [[], []]
    for t, key, value in sets:
        logs[t].append(sd.settings_set(logs[t], key, value))
    a = sd.settings_view(logs[0] + logs[1])
    b = sd.settings_view(logs[1][::-1] + logs[0][::-1])
    assert a == b
    for key, value in a.items():
        assert any(k == key and (v == value or (isinstance(v, bool) and v == value))
                   for _, k, v in sets)


def test_concurrent_edits_of_one_item_keep_both_fields() -> None:
    base = sd.will_call_put([], "rx-9", {"label": "Z.Z.", "bin": "A1"}, actor="t1", at="1")
    a = sd.will_call_put([base], "rx-9", {"status": "ready"}, actor="t1", at="2")
    b = sd.will_call_put([base], "rx-9", {"bin": "D4", "note": "fridge"}, actor="t2", at="3")
    item = sd.will_call_view([base, a, b])["rx-9"]
    assert (item["status"], item["bin"], item["note"], item["label"]) == \
        ("ready", "D4", "fridge", "Z.Z.")
    gone = sd.will_call_remove([base, a, b], "rx-9")
    assert sd.will_call_view([base, a, b, gone]) == {}


@pytest.mark.parametrize("call", [
    lambda: sd.will_call_put([], "x", {"colour": "red"}, actor="t", at="1"),
    lambda: sd.will_call_put([], "x", {"status": "lost"}, actor="t", at="1"),
    lambda: sd.will_call_put([], "", {}, actor="t", at="1"),
    lambda: sd.will_call_put([], "x", {"note": {"nested": 1}}, actor="t", at="1"),
    lambda: sd.settings_set([], "", 1),
    lambda: sd.view("nope", []),
])
def test_bad_edits_are_refused(call: object) -> None:
    with pytest.raises(sd.DocError):
        call()  # type: ignore[operator]


def test_numbers_come_back_as_written() -> None:
    u = sd.settings_set([], "max_pse_per_day", 2)
    v = sd.settings_set([u], "ratio", 0.5)
    assert sd.settings_view([u, v]) == {"max_pse_per_day": 2, "ratio": 0.5}
