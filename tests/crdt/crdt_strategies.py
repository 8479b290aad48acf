"""Hypothesis strategies and property builders shared by the crdt tests.

The properties are built by functions that take the merge (or the merge SQL) under test, so
the mutant tests run exactly the properties the real merge passes.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from crdt import laws
from crdt.pncounter import (
    SQL_LOCAL_ADD,
    SQL_MERGE_ROW,
    GState,
    PNState,
    g_leq,
    g_value,
    pn_leq,
    pn_value,
)

REPLICAS = ("r0", "r1", "r2", "r3", "r4")
COUNTERS = ("stock:00904672860:IB2701", "stock:00093005801:AM1", "stock:50580045101:SU1")

replica_ids = st.sampled_from(REPLICAS)
counts = st.integers(0, 1_000)
deltas = st.integers(-1_000, 1_000)
g_states = st.dictionaries(replica_ids, counts, max_size=len(REPLICAS))
pn_states = st.dictionaries(replica_ids, st.tuples(counts, counts), max_size=len(REPLICAS))


def settings_for(max_examples: int, **kw: Any) -> settings:
    """No example database (the working tree is shared) and no deadline (2 busy cores)."""
    return settings(max_examples=max_examples, deadline=None, database=None, **kw)


def mutant_settings(max_examples: int) -> settings:
    """For "this mutant must be caught": deterministic, stops at the first failing example
    (no shrinking: the witness only has to exist, and shrinking a schedule is slow)."""
    return settings_for(max_examples, derandomize=True, report_multiple_bugs=False,
                        print_blob=False,
                        phases=(Phase.explicit, Phase.reuse, Phase.generate))


# ---- states above other states, built without any merge ----------------------------------
@st.composite
def g_above(draw: st.DrawFn, *below: GState) -> dict[str, int]:
    """A G-state ≥ every state in ``below`` (entrywise max, then random raises)."""
    out: dict[str, int] = {}
    for s in below:
        for r, v in s.items():
            out[r] = v if r not in out or v > out[r] else out[r]
    extra = draw(g_states)
    for r, v in extra.items():
        out[r] = out.get(r, 0) + v
    return out


@st.composite
def pn_above(draw: st.DrawFn, *below: PNState) -> dict[str, tuple[int, int]]:
    """A PN-state ≥ every state in ``below`` (entrywise max, then random raises)."""
    out: dict[str, tuple[int, int]] = {}
    for s in below:
        for r, (p, n) in s.items():
            p0, n0 = out.get(r, (p, n))
            out[r] = (p if p > p0 else p0, n if n > n0 else n0)
    extra = draw(pn_states)
    for r, (p, n) in extra.items():
        p0, n0 = out.get(r, (0, 0))
        out[r] = (p0 + p, n0 + n)
    return out


# ---- schedules --------------------------------------------------------------------------------
@st.composite
def schedules(draw: st.DrawFn, max_replicas: int = 5, min_ops: int = 8,
              max_ops: int = 60) -> tuple[int, list[laws.Op]]:
    """A replica count and a list of operations: local adds (some rolled back), sends of
    full or partial, reordered, self-duplicated rows, deliveries in any order, network
    duplicates, losses, replays of old messages, partitions and heals."""
    n = draw(st.integers(2, max_replicas))
    rep = st.integers(0, n - 1)
    anywhere = st.integers(0, 63)
    kinds: dict[str, st.SearchStrategy[laws.Op]] = {
        "add": st.builds(laws.Add, rep, st.sampled_from(COUNTERS), deltas,
                         st.sampled_from([True, True, True, False])),
        "send": st.builds(laws.Send, rep, rep, st.none() | st.integers(0, 2**16 - 1),
                          st.integers(0, 7), st.booleans(), st.booleans()),
        "deliver": st.builds(laws.Deliver, anywhere),
        "duplicate": st.builds(laws.Duplicate, anywhere),
        "drop": st.builds(laws.Drop, anywhere),
        "replay": st.builds(laws.Replay, anywhere),
        "split": st.builds(laws.Partition,
                           st.lists(st.integers(0, 1), min_size=n, max_size=n).map(tuple)),
        "heal": st.just(laws.Partition((0,) * n)),
    }
    weights = {"add": 6, "send": 5, "deliver": 6, "duplicate": 1, "drop": 1, "replay": 1,
               "split": 1, "heal": 1}
    op = st.sampled_from([k for k, w in weights.items() for _ in range(w)]).flatmap(
        kinds.__getitem__)
    size = draw(st.integers(min_ops, max_ops))
    return n, draw(st.lists(op, min_size=size, max_size=size))


# ---- replicas ---------------------------------------------------------------------------------
_COUNTERS_STMT = re.compile(r"\b(?:TABLE|ON)\s+counters\b", re.IGNORECASE)


@cache
def counters_ddl() -> tuple[str, ...]:
    """The statements of the store's migrations that create or change the ``counters`` table,
    in migration order: the table exactly as the store has it, without the other tables."""
    from pharmacy.store import _migrations, _split_sql

    stmts = tuple(stmt for _, _, sql in _migrations() for stmt in _split_sql(sql)
                  if _COUNTERS_STMT.search(_strip_comments(stmt)))
    assert stmts, "the migrations no longer create a counters table"
    return stmts


def _strip_comments(stmt: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in stmt.splitlines())


def counters_db(path: str = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for stmt in counters_ddl():
        conn.execute(stmt)
    return conn


@contextmanager
def sqlite_replicas(n: int, *, merge_sql: str = SQL_MERGE_ROW,
                    add_sql: str = SQL_LOCAL_ADD) -> Iterator[list[laws.SqliteReplica]]:
    conns = [counters_db() for _ in range(n)]
    try:
        yield [laws.SqliteReplica(REPLICAS[i], c, merge_sql=merge_sql, add_sql=add_sql)
               for i, c in enumerate(conns)]
    finally:
        for c in conns:
            c.close()


def memory_replicas(n: int, merge: laws.Merge[PNState]) -> list[laws.MemoryReplica]:
    return [laws.MemoryReplica(REPLICAS[i], merge) for i in range(n)]


# ---- properties, parameterised by the merge under test ---------------------------------------
Property = Callable[[], None]


def g_law_property(merge: laws.Merge[GState], s: settings) -> Property:
    @s
    @given(st.data(), g_states, g_states, g_states)
    def prop(data: st.DataObject, a: GState, b: GState, c: GState) -> None:
        laws.check_semilattice(merge, g_leq, a, b, c)
        laws.check_monotone(merge, g_leq, a, data.draw(g_above(a)), b)
        laws.check_least_upper_bound(merge, g_leq, a, b, data.draw(g_above(a, b)))

    return prop


def pn_law_property(merge: laws.Merge[PNState], s: settings) -> Property:
    @s
    @given(st.data(), pn_states, pn_states, pn_states)
    def prop(data: st.DataObject, a: PNState, b: PNState, c: PNState) -> None:
        laws.check_semilattice(merge, pn_leq, a, b, c)
        laws.check_monotone(merge, pn_leq, a, data.draw(pn_above(a)), b)
        laws.check_least_upper_bound(merge, pn_leq, a, b, data.draw(pn_above(a, b)))

    return prop


def _local_states(updates: list[tuple[int, int]], n: int,
                  apply: Callable[[Any, str, int], Any]) -> list[Any]:
    states: list[Any] = [{} for _ in range(n)]
    for r, k in updates:
        states[r % n] = apply(states[r % n], REPLICAS[r % n], k)
    return states


def g_join_value_property(merge: laws.Merge[GState], s: settings) -> Property:
    """Each replica increments locally; the merge of all of them, in any order and with
    repeats, reads Σ increments."""
    from crdt.pncounter import g_increment

    @s
    @given(st.data(), st.integers(1, 5),
           st.lists(st.tuples(st.integers(0, 4), st.integers(0, 100)), max_size=30))
    def prop(data: st.DataObject, n: int, updates: list[tuple[int, int]]) -> None:
        states: list[Mapping[str, int]] = _local_states(updates, n, g_increment)
        order = data.draw(st.permutations(states))
        repeats = data.draw(st.lists(st.sampled_from(states), max_size=4))
        laws.check_join_value(merge, g_value, {}, [*order, *repeats],
                              sum(k for _, k in updates))

    return prop


def pn_join_value_property(merge: laws.Merge[PNState], s: settings) -> Property:
    from crdt.pncounter import pn_add

    @s
    @given(st.data(), st.integers(1, 5),
           st.lists(st.tuples(st.integers(0, 4), deltas), max_size=30))
    def prop(data: st.DataObject, n: int, updates: list[tuple[int, int]]) -> None:
        states: list[PNState] = _local_states(updates, n, pn_add)
        order = data.draw(st.permutations(states))
        repeats = data.draw(st.lists(st.sampled_from(states), max_size=4))
        laws.check_join_value(merge, pn_value, {}, [*order, *repeats],
                              sum(d for _, d in updates))

    return prop


def memory_convergence_property(merge: laws.Merge[PNState], s: settings) -> Property:
    @s
    @given(schedules())
    def prop(schedule: tuple[int, list[laws.Op]]) -> None:
        n, ops = schedule
        laws.check_convergence(memory_replicas(n, merge), ops)

    return prop


def sqlite_convergence_property(merge_sql: str, s: settings,
                                add_sql: str = SQL_LOCAL_ADD) -> Property:
    @s
    @given(schedules())
    def prop(schedule: tuple[int, list[laws.Op]]) -> None:
        n, ops = schedule
        with sqlite_replicas(n, merge_sql=merge_sql, add_sql=add_sql) as replicas:
            laws.check_convergence(replicas, ops)

    return prop
