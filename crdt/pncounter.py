"""G-counter and PN-counter as pure functions over plain values, plus their row encoding.

State of a G-counter: ``{replica_id: count}``. State of a PN-counter: ``{replica_id: (p, n)}``.
A replica only ever raises its own entries; merge takes the maximum per replica, which makes
it commutative, associative and idempotent, and the value is the sum over replicas.
Rows: ``(counter_id, replica_id, p, n)`` — one row per counter and replica.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GState = Mapping[str, int]
PNState = Mapping[str, tuple[int, int]]


# ---- G-counter ------------------------------------------------------------------------------
def g_value(state: GState) -> int:
    return sum(state.values())


def g_increment(state: GState, replica: str, k: int = 1) -> dict[str, int]:
    if k < 0:
        raise ValueError("a G-counter only grows")
    out = dict(state)
    out[replica] = out.get(replica, 0) + k
    return out


def g_merge(a: GState, b: GState) -> dict[str, int]:
    out = dict(a)
    for r, v in b.items():
        out[r] = max(out.get(r, 0), v)
    return out


def g_leq(a: GState, b: GState) -> bool:
    """Partial order of the lattice: a ≤ b when every entry of a is ≤ b's."""
    return all(v <= b.get(r, 0) for r, v in a.items())


# ---- PN-counter -----------------------------------------------------------------------------
def pn_value(state: PNState) -> int:
    return sum(p - n for p, n in state.values())


def pn_add(state: PNState, replica: str, delta: int) -> dict[str, tuple[int, int]]:
    """Apply a signed delta at ``replica``: positive raises p, negative raises n."""
    out = dict(state)
    p, n = out.get(replica, (0, 0))
    out[replica] = (p + delta, n) if delta >= 0 else (p, n - delta)
    return out


def pn_merge(a: PNState, b: PNState) -> dict[str, tuple[int, int]]:
    out = dict(a)
    for r, (p, n) in b.items():
        p0, n0 = out.get(r, (0, 0))
        out[r] = (max(p0, p), max(n0, n))
    return out


def pn_leq(a: PNState, b: PNState) -> bool:
    for r, (p, n) in a.items():
        p1, n1 = b.get(r, (0, 0))
        if p > p1 or n > n1:
            return False
    return True


def owner_behind(replica: str, local: PNState, incoming: PNState) -> bool:
    """True when ``incoming`` holds a larger p or n for ``replica`` than ``local`` does.

    Only ``replica`` itself ever raises its entry, so when ``local`` is that replica's own
    state this cannot happen unless the id was reused: the database was restored from an
    older backup, or cloned and both copies wrote. Such a replica must take a new id
    before it writes again, or its next local adds are hidden by the higher entry.
    """
    p, n = local.get(replica, (0, 0))
    p1, n1 = incoming.get(replica, (0, 0))
    return p1 > p or n1 > n


# ---- row encoding ---------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class CounterRow:
    counter_id: str
    replica_id: str
    p: int
    n: int


def to_rows(counter_id: str, state: PNState) -> list[CounterRow]:
    return [CounterRow(counter_id, r, p, n) for r, (p, n) in sorted(state.items())]


def from_rows(rows: Iterable[CounterRow]) -> dict[str, dict[str, tuple[int, int]]]:
    """Rows (any order, duplicates allowed) → ``{counter_id: PN state}``, merging as it goes."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for row in rows:
        out[row.counter_id] = pn_merge(out.get(row.counter_id, {}),
                                       {row.replica_id: (row.p, row.n)})
    return out


# SQL for a table counters(counter_id, replica_id, p, n, dirty) with that primary key.
SQL_LOCAL_ADD = (
    "INSERT INTO counters(counter_id, replica_id, p, n, dirty) VALUES (?, ?, ?, ?, 1) "
    "ON CONFLICT(counter_id, replica_id) DO UPDATE SET "
    "p = p + excluded.p, n = n + excluded.n, dirty = 1"
)
SQL_MERGE_ROW = (
    "INSERT INTO counters(counter_id, replica_id, p, n, dirty) VALUES (?, ?, ?, ?, 0) "
    "ON CONFLICT(counter_id, replica_id) DO UPDATE SET "
    "p = MAX(p, excluded.p), n = MAX(n, excluded.n)"
)


def local_add_params(counter_id: str, replica: str, delta: int) -> tuple[str, str, int, int]:
    """Parameters of SQL_LOCAL_ADD for a signed delta at the local replica."""
    return (counter_id, replica, delta, 0) if delta >= 0 else (counter_id, replica, 0, -delta)
