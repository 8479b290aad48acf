"""The suite catches broken merges.

Each mutant below is a plausible wrong merge: adding entries instead of taking the maximum
(sum), keeping the incoming state (last writer wins), overwriting entries one by one
(``UPDATE SET p = excluded.p``), raising p but forgetting n. The very properties the real
merge passes — the lattice laws and convergence under schedules — must fail for every one
of them, with the same deterministic settings under which the real merge passes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from crdt_strategies import (
    g_join_value_property,
    g_law_property,
    memory_convergence_property,
    mutant_settings,
    pn_join_value_property,
    pn_law_property,
    sqlite_convergence_property,
)

from crdt.laws import LawViolation
from crdt.pncounter import SQL_MERGE_ROW, GState, PNState, g_merge, pn_merge


# ---- mutants --------------------------------------------------------------------------------
def pn_sum_merge(a: PNState, b: PNState) -> dict[str, tuple[int, int]]:
    out = dict(a)
    for r, (p, n) in b.items():
        p0, n0 = out.get(r, (0, 0))
        out[r] = (p0 + p, n0 + n)
    return out


def pn_lww_merge(a: PNState, b: PNState) -> dict[str, tuple[int, int]]:
    """The later write wins: the incoming state replaces the local one."""
    return dict(b)


def pn_lww_entry_merge(a: PNState, b: PNState) -> dict[str, tuple[int, int]]:
    """Last writer wins per replica entry: incoming entries overwrite local ones."""
    return {**a, **b}


def pn_p_only_merge(a: PNState, b: PNState) -> dict[str, tuple[int, int]]:
    """Takes the maximum of p but keeps the local n: remote sales never arrive."""
    out = dict(a)
    for r, (p, n) in b.items():
        p0, n0 = out.get(r, (0, n))
        out[r] = (max(p0, p), n0)
    return out


def g_sum_merge(a: GState, b: GState) -> dict[str, int]:
    out = dict(a)
    for r, v in b.items():
        out[r] = out.get(r, 0) + v
    return out


def g_lww_merge(a: GState, b: GState) -> dict[str, int]:
    return dict(b)


def g_lww_entry_merge(a: GState, b: GState) -> dict[str, int]:
    return {**a, **b}


SQL_SUM_MERGE = (
    "INSERT INTO counters(counter_id, replica_id, p, n, dirty) VALUES (?, ?, ?, ?, 0) "
    "ON CONFLICT(counter_id, replica_id) DO UPDATE SET "
    "p = p + excluded.p, n = n + excluded.n"
)
SQL_LWW_MERGE = (
    "INSERT INTO counters(counter_id, replica_id, p, n, dirty) VALUES (?, ?, ?, ?, 0) "
    "ON CONFLICT(counter_id, replica_id) DO UPDATE SET "
    "p = excluded.p, n = excluded.n"
)
SQL_P_ONLY_MERGE = (
    "INSERT INTO counters(counter_id, replica_id, p, n, dirty) VALUES (?, ?, ?, ?, 0) "
    "ON CONFLICT(counter_id, replica_id) DO UPDATE SET "
    "p = MAX(p, excluded.p)"
)

PN_MUTANTS = {"sum": pn_sum_merge, "lww": pn_lww_merge, "lww-entry": pn_lww_entry_merge,
              "p-only": pn_p_only_merge}
G_MUTANTS = {"sum": g_sum_merge, "lww": g_lww_merge, "lww-entry": g_lww_entry_merge}
SQL_MUTANTS = {"sum": SQL_SUM_MERGE, "lww": SQL_LWW_MERGE, "p-only": SQL_P_ONLY_MERGE}

LAW_EXAMPLES = 200
SCHEDULE_EXAMPLES = 200


def _caught(prop: Callable[[], None]) -> LawViolation:
    with pytest.raises(LawViolation) as info:
        prop()
    return info.value


# ---- the real merge passes, under exactly the settings used below --------------------------
def test_real_merge_passes_the_checks_that_catch_the_mutants() -> None:
    pn_law_property(pn_merge, mutant_settings(LAW_EXAMPLES))()
    g_law_property(g_merge, mutant_settings(LAW_EXAMPLES))()
    pn_join_value_property(pn_merge, mutant_settings(LAW_EXAMPLES))()
    g_join_value_property(g_merge, mutant_settings(LAW_EXAMPLES))()
    memory_convergence_property(pn_merge, mutant_settings(SCHEDULE_EXAMPLES))()


def test_real_merge_sql_passes_the_check_that_catches_the_sql_mutants() -> None:
    sqlite_convergence_property(SQL_MERGE_ROW, mutant_settings(SCHEDULE_EXAMPLES))()


# ---- every mutant is caught -----------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PN_MUTANTS))
def test_pn_laws_catch_mutant(name: str) -> None:
    err = _caught(pn_law_property(PN_MUTANTS[name], mutant_settings(LAW_EXAMPLES)))
    expected = {"sum": {"idempotent"}, "lww": {"commutative"}, "lww-entry": {"commutative"},
                "p-only": {"commutative", "inflationary", "monotone"}}
    assert err.law in expected[name]


@pytest.mark.parametrize("name", sorted(G_MUTANTS))
def test_g_laws_catch_mutant(name: str) -> None:
    err = _caught(g_law_property(G_MUTANTS[name], mutant_settings(LAW_EXAMPLES)))
    expected = {"sum": "idempotent", "lww": "commutative", "lww-entry": "commutative"}
    assert err.law == expected[name]


@pytest.mark.parametrize("name", ["sum", "lww"])
def test_join_value_catches_mutant(name: str) -> None:
    # (lww-entry happens to read right when each replica's state holds only its own entry;
    # the laws and the schedules catch it)
    _caught(pn_join_value_property(PN_MUTANTS[name], mutant_settings(LAW_EXAMPLES)))
    _caught(g_join_value_property(G_MUTANTS[name], mutant_settings(LAW_EXAMPLES)))


@pytest.mark.parametrize("name", sorted(PN_MUTANTS))
def test_schedules_catch_mutant(name: str) -> None:
    err = _caught(memory_convergence_property(PN_MUTANTS[name],
                                              mutant_settings(SCHEDULE_EXAMPLES)))
    assert err.law in {"convergence", "value", "stable"}


@pytest.mark.parametrize("name", sorted(SQL_MUTANTS))
def test_schedules_catch_sql_mutant(name: str) -> None:
    err = _caught(sqlite_convergence_property(SQL_MUTANTS[name],
                                              mutant_settings(SCHEDULE_EXAMPLES)))
    assert err.law in {"convergence", "value", "stable"}
