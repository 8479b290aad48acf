"""G-counter and PN-counter: lattice laws, updates, value of the join, row encoding."""

from __future__ import annotations

import pytest
from crdt_strategies import (
    COUNTERS,
    deltas,
    g_join_value_property,
    g_law_property,
    g_states,
    pn_join_value_property,
    pn_law_property,
    pn_states,
    replica_ids,
    settings_for,
)
from hypothesis import given
from hypothesis import strategies as st

from crdt import laws
from crdt.pncounter import (
    CounterRow,
    PNState,
    from_rows,
    g_increment,
    g_leq,
    g_merge,
    g_value,
    pn_add,
    pn_leq,
    pn_merge,
    pn_value,
    to_rows,
)


def _nonzero(s: PNState) -> dict[str, tuple[int, int]]:
    return {r: v for r, v in s.items() if v != (0, 0)}


# ---- merge laws -----------------------------------------------------------------------------
def test_g_merge_is_a_join() -> None:
    g_law_property(g_merge, settings_for(300))()


def test_pn_merge_is_a_join() -> None:
    pn_law_property(pn_merge, settings_for(300))()


def test_g_join_of_all_replicas_reads_the_sum_of_increments() -> None:
    g_join_value_property(g_merge, settings_for(200))()


def test_pn_join_of_all_replicas_reads_the_sum_of_deltas() -> None:
    pn_join_value_property(pn_merge, settings_for(200))()


@settings_for(300)
@given(pn_states, pn_states)
def test_pn_leq_is_the_order_of_the_merge(a: PNState, b: PNState) -> None:
    # a ≤ b exactly when merging a into b adds nothing (zero entries are "nothing")
    assert pn_leq(a, b) == (_nonzero(pn_merge(a, b)) == _nonzero(b))


@settings_for(300)
@given(pn_states, pn_states, pn_states)
def test_pn_leq_is_a_partial_order(a: PNState, b: PNState, c: PNState) -> None:
    assert pn_leq(a, a)
    if pn_leq(a, b) and pn_leq(b, a):
        assert _nonzero(a) == _nonzero(b)
    if pn_leq(a, b) and pn_leq(b, c):
        assert pn_leq(a, c)


# ---- local updates --------------------------------------------------------------------------
@settings_for(300)
@given(g_states, replica_ids, st.integers(0, 1_000))
def test_g_increment_only_grows(s: dict[str, int], r: str, k: int) -> None:
    after = g_increment(s, r, k)
    laws.check_update_inflationary(g_leq, s, after)
    assert g_value(after) == g_value(s) + k
    assert {x: v for x, v in after.items() if x != r} == {x: v for x, v in s.items() if x != r}


def test_g_increment_refuses_a_decrement() -> None:
    with pytest.raises(ValueError, match="only grows"):
        g_increment({"r0": 3}, "r0", -1)


@settings_for(300)
@given(pn_states, replica_ids, deltas)
def test_pn_add_only_moves_up_and_changes_the_value_by_delta(
    s: PNState, r: str, d: int
) -> None:
    after = pn_add(s, r, d)
    laws.check_update_inflationary(pn_leq, s, after)
    assert pn_value(after) == pn_value(s) + d
    assert {x: v for x, v in after.items() if x != r} == {x: v for x, v in s.items() if x != r}
    p, n = after[r]
    assert p >= 0 and n >= 0  # the rows' CHECK (p >= 0), CHECK (n >= 0) always hold


@settings_for(200)
@given(pn_states, st.lists(st.tuples(replica_ids, deltas), max_size=20))
def test_updates_survive_any_later_merge(s: PNState, updates: list[tuple[str, int]]) -> None:
    # a stale copy merged back never undoes a local update
    now: PNState = s
    for r, d in updates:
        now = pn_add(now, r, d)
    assert pn_merge(now, s) == now
    assert pn_value(pn_merge(s, now)) == pn_value(s) + sum(d for _, d in updates)


# ---- row encoding ---------------------------------------------------------------------------
@settings_for(300)
@given(st.sampled_from(COUNTERS), pn_states)
def test_rows_round_trip(cid: str, s: PNState) -> None:
    rows = to_rows(cid, s)
    assert rows == sorted(rows)
    assert len({(r.counter_id, r.replica_id) for r in rows}) == len(rows) == len(s)
    # an empty state has no rows, so it comes back as no counter at all
    assert from_rows(rows) == ({cid: dict(s)} if s else {})


@settings_for(300)
@given(st.data(), st.dictionaries(st.sampled_from(COUNTERS), pn_states, max_size=3))
def test_from_rows_ignores_order_and_duplicates(
    data: st.DataObject, states: dict[str, PNState]
) -> None:
    rows = [row for cid, s in states.items() for row in to_rows(cid, s)]
    expected = {cid: dict(s) for cid, s in states.items() if s}
    shuffled = data.draw(st.permutations(rows))
    repeated = data.draw(st.lists(st.sampled_from(rows), max_size=10)) if rows else []
    assert from_rows(shuffled) == expected
    assert from_rows([*repeated, *shuffled, *repeated]) == expected


@settings_for(200)
@given(st.data(), st.sampled_from(COUNTERS), pn_states, pn_states)
def test_from_rows_of_two_replicas_rows_is_their_merge(
    data: st.DataObject, cid: str, a: PNState, b: PNState
) -> None:
    # rows of the same counter from two replicas, interleaved: from_rows merges them
    rows = data.draw(st.permutations([*to_rows(cid, a), *to_rows(cid, b)]))
    merged = pn_merge(a, b)
    assert from_rows(rows) == ({cid: merged} if merged else {})


def test_row_is_ordered_by_counter_then_replica() -> None:
    rows = [CounterRow("b", "r0", 1, 0), CounterRow("a", "r1", 0, 2), CounterRow("a", "r0", 5, 5)]
    assert [(r.counter_id, r.replica_id) for r in sorted(rows)] == [
        ("a", "r0"), ("a", "r1"), ("b", "r0")]
