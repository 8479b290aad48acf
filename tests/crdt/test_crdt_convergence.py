"""Replicas converge to Σ committed deltas under partitions, duplication, loss, delay and
reordering — both as pure values and as the SQLite rows the store writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from crdt_strategies import (
    COUNTERS,
    counters_db,
    memory_convergence_property,
    memory_replicas,
    schedules,
    settings_for,
    sqlite_convergence_property,
    sqlite_replicas,
)
from hypothesis import given

from crdt import laws
from crdt.laws import Add, Deliver, Duplicate, Partition, Replay, Send
from crdt.pncounter import SQL_LOCAL_ADD, SQL_MERGE_ROW, local_add_params, pn_merge


def test_pure_replicas_converge_to_the_sum_of_committed_deltas() -> None:
    memory_convergence_property(pn_merge, settings_for(250))()


def test_sqlite_rows_converge_to_the_sum_of_committed_deltas() -> None:
    sqlite_convergence_property(SQL_MERGE_ROW, settings_for(120))()


@settings_for(80)
@given(schedules(max_ops=40))
def test_sqlite_rows_track_the_pure_model_step_by_step(
    schedule: tuple[int, list[laws.Op]],
) -> None:
    # the row encoding is the same CRDT as the pure functions: identical state after every op
    n, ops = schedule
    pure = laws.run_schedule(memory_replicas(n, pn_merge), ops, trace=True)
    with sqlite_replicas(n) as replicas:
        rows = laws.run_schedule(replicas, ops, trace=True)
    assert rows.trace == pure.trace
    assert rows.final == pure.final
    assert rows.expected == pure.expected


def test_a_day_apart_then_healed(tmp_path: Path) -> None:
    """Two terminals and the server; the shop's link is down all day; retries and duplicates
    follow. Each replica is a real SQLite file."""
    ibu, amox = COUNTERS[0], COUNTERS[1]
    conns = [counters_db(str(tmp_path / f"{name}.db")) for name in ("t1", "t2", "srv")]
    try:
        t1, t2, srv = (laws.SqliteReplica(name, c) for name, c in zip(
            ("t1", "t2", "srv"), conns, strict=True))
        ops: list[laws.Op] = [
            Add(2, ibu, 100), Add(2, amox, 500),          # head office receives stock
            Send(2, 0), Send(2, 1), Deliver(0), Deliver(0),
            Partition((0, 0, 1)),                          # the shop loses its link
            Add(0, ibu, -3), Add(1, ibu, -2), Add(1, amox, -30),
            Add(0, ibu, -1, commit=False),                 # a sale rolled back
            Send(0, 2),                                    # lost: partitioned
            Send(0, 1), Send(1, 0), Duplicate(0), Deliver(2), Deliver(0), Deliver(0),
            Add(2, ibu, 10),                               # server-side adjustment
            Partition((0, 0, 0)),                          # healed
            Replay(2), Replay(2), Send(1, 2, reverse=True, twice=True),
            Deliver(1), Deliver(0), Deliver(0),
        ]
        outcome = laws.check_convergence([t1, t2, srv], ops)
        assert outcome.expected == {ibu: 100 - 3 - 2 + 10, amox: 500 - 30}
        for c in conns:
            got = dict(c.execute(
                "SELECT counter_id, SUM(p - n) FROM counters GROUP BY counter_id").fetchall())
            assert got == {ibu: 105, amox: 470}
    finally:
        for c in conns:
            c.close()


def test_merging_a_row_keeps_a_pending_local_change_dirty() -> None:
    """``dirty`` marks rows to push. A local add sets it; merging received rows never
    clears it (the push would miss a sale) and never sets it for rows learnt from others."""
    conn = counters_db()
    try:
        cid = COUNTERS[0]
        conn.execute(SQL_LOCAL_ADD, local_add_params(cid, "me", -4))
        conn.execute(SQL_MERGE_ROW, (cid, "me", 0, 2))     # a stale copy of my own row
        conn.execute(SQL_MERGE_ROW, (cid, "other", 9, 1))  # someone else's row, new here
        conn.execute(SQL_MERGE_ROW, (cid, "other", 7, 3))  # ... raised and lowered
        rows = conn.execute(
            "SELECT replica_id, p, n, dirty FROM counters ORDER BY replica_id").fetchall()
        assert rows == [("me", 0, 4, 1), ("other", 9, 3, 0)]
    finally:
        conn.close()


def test_negative_entries_are_refused_by_the_table() -> None:
    conn = counters_db()
    try:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(SQL_MERGE_ROW, (COUNTERS[0], "x", -1, 0))
    finally:
        conn.close()
