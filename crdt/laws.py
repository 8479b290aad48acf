"""The laws a state-based CRDT must obey, as plain checks parameterised by its merge.

Every check takes the merge under test (and, where needed, its order ``leq`` or ``value``)
as an argument and raises :class:`LawViolation` with a witness when the law fails, so the
same checks run against the real merge, against the SQL the store uses, and against
deliberately broken merges that a good test suite must reject.

Two kinds of check:

* algebraic laws of a join-semilattice — commutative, associative, idempotent, inflationary,
  monotone, least upper bound — and "an update only moves a state up";
* convergence under a network schedule (:func:`check_convergence`): replicas apply signed
  deltas, gossip their rows through a network that duplicates, drops, delays, reorders and
  replays messages and splits into partitions that heal; after a final all-to-all exchange
  every replica holds the same state and each counter's value is the sum of the committed
  deltas. Two replica models run the same schedules: :class:`MemoryReplica` (the pure
  functions of :mod:`crdt.pncounter`) and :class:`SqliteReplica` (a ``counters`` table
  written with ``SQL_LOCAL_ADD`` and ``SQL_MERGE_ROW``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Protocol, TypeVar

from crdt.pncounter import (
    SQL_LOCAL_ADD,
    SQL_MERGE_ROW,
    CounterRow,
    PNState,
    from_rows,
    local_add_params,
    pn_add,
    pn_merge,
    pn_value,
)

S = TypeVar("S")
Merge = Callable[[S, S], S]
Leq = Callable[[S, S], bool]
Eq = Callable[[S, S], bool]
Counters = dict[str, dict[str, tuple[int, int]]]  # {counter_id: PN state}


class LawViolation(AssertionError):
    """A CRDT law failed; ``law`` names it and ``witness`` holds the values that show it."""

    def __init__(self, law: str, detail: str, **witness: object) -> None:
        self.law = law
        self.witness = witness
        shown = ", ".join(f"{k}={v!r}" for k, v in witness.items())
        super().__init__(f"{law}: {detail}" + (f" ({shown})" if shown else ""))


def _same(a: object, b: object) -> bool:
    return a == b


# ---- algebraic laws -------------------------------------------------------------------------
def check_commutative(merge: Merge[S], a: S, b: S, eq: Eq[S] = _same) -> None:
    ab, ba = merge(a, b), merge(b, a)
    if not eq(ab, ba):
        raise LawViolation("commutative", "merge(a, b) != merge(b, a)", a=a, b=b, ab=ab, ba=ba)


def check_associative(merge: Merge[S], a: S, b: S, c: S, eq: Eq[S] = _same) -> None:
    left, right = merge(merge(a, b), c), merge(a, merge(b, c))
    if not eq(left, right):
        raise LawViolation("associative", "merge(merge(a, b), c) != merge(a, merge(b, c))",
                           a=a, b=b, c=c, left=left, right=right)


def check_idempotent(merge: Merge[S], a: S, eq: Eq[S] = _same) -> None:
    aa = merge(a, a)
    if not eq(aa, a):
        raise LawViolation("idempotent", "merge(a, a) != a", a=a, aa=aa)


def check_inflationary(merge: Merge[S], leq: Leq[S], a: S, b: S) -> None:
    """Merging never loses information: a ≤ a ⊔ b and b ≤ a ⊔ b."""
    ab = merge(a, b)
    if not (leq(a, ab) and leq(b, ab)):
        raise LawViolation("inflationary", "an input is not ≤ the merge", a=a, b=b, ab=ab)


def check_monotone(merge: Merge[S], leq: Leq[S], a: S, a2: S, b: S) -> None:
    """A replica further ahead merges to a state further ahead: a ≤ a2 ⇒ a ⊔ b ≤ a2 ⊔ b."""
    if leq(a, a2):
        lo, hi = merge(a, b), merge(a2, b)
        if not leq(lo, hi):
            raise LawViolation("monotone", "a ≤ a2 but merge(a, b) is not ≤ merge(a2, b)",
                               a=a, a2=a2, b=b, lo=lo, hi=hi)


def check_least_upper_bound(merge: Merge[S], leq: Leq[S], a: S, b: S, upper: S) -> None:
    """The merge is the *least* upper bound: a ≤ u and b ≤ u ⇒ a ⊔ b ≤ u (u any state)."""
    if leq(a, upper) and leq(b, upper):
        ab = merge(a, b)
        if not leq(ab, upper):
            raise LawViolation("least upper bound", "merge(a, b) exceeds an upper bound",
                               a=a, b=b, upper=upper, ab=ab)


def check_update_inflationary(leq: Leq[S], before: S, after: S) -> None:
    """A local update only moves the state up the order (so merges never undo it)."""
    if not leq(before, after):
        raise LawViolation("update inflationary", "a local update moved the state down",
                           before=before, after=after)


def check_semilattice(merge: Merge[S], leq: Leq[S], a: S, b: S, c: S,
                      eq: Eq[S] = _same) -> None:
    """Commutative, associative, idempotent and inflationary, on three states.

    :func:`check_monotone` and :func:`check_least_upper_bound` need states known to be
    ordered; callers build those without the merge under test and call them separately.
    """
    check_commutative(merge, a, b, eq)
    check_associative(merge, a, b, c, eq)
    check_idempotent(merge, a, eq)
    check_inflationary(merge, leq, a, b)


def check_join_value(merge: Merge[S], value: Callable[[S], int], bottom: S,
                     states: Sequence[S], expected: int) -> None:
    """The value of the merge of all replica states (in the given order) is ``expected``."""
    joined = reduce(merge, states, bottom)
    got = value(joined)
    if got != expected:
        raise LawViolation("join value", f"value of the merged states is {got}, not {expected}",
                           states=list(states), joined=joined)


# ---- schedules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Add:
    """A local transaction at ``replica`` adding ``delta`` to ``counter``; rolled back unless
    ``commit``."""

    replica: int
    counter: str
    delta: int
    commit: bool = True


@dataclass(frozen=True)
class Send:
    """``src`` snapshots its rows and sends them to ``dst``.

    ``mask`` keeps only some rows (row i is kept when bit ``i % 16`` is set): a partial push.
    ``rotate``, ``reverse`` and ``twice`` reorder and duplicate the rows inside the message.
    A send across a partition is lost (it stays in the history, so it can be replayed).
    """

    src: int
    dst: int
    mask: int | None = None
    rotate: int = 0
    reverse: bool = False
    twice: bool = False


@dataclass(frozen=True)
class Deliver:
    """Deliver in-flight message ``index % len`` (any order: reordering and delay).
    Lost if a partition now separates its ends."""

    index: int


@dataclass(frozen=True)
class Duplicate:
    """The network duplicates in-flight message ``index % len``."""

    index: int


@dataclass(frozen=True)
class Drop:
    """The network loses in-flight message ``index % len``."""

    index: int


@dataclass(frozen=True)
class Replay:
    """A retry: a copy of the ``index % len``-th message ever sent goes back on the wire,
    however stale it is by now."""

    index: int


@dataclass(frozen=True)
class Partition:
    """Replica i is on side ``sides[i]`` (missing entries: side 0); equal sides = healed."""

    sides: tuple[int, ...]


Op = Add | Send | Deliver | Duplicate | Drop | Replay | Partition


class Replica(Protocol):
    replica_id: str

    def add(self, counter_id: str, delta: int, *, commit: bool = True) -> None: ...

    def rows(self) -> list[CounterRow]:
        """All rows, sorted by (counter_id, replica_id)."""
        ...

    def receive(self, rows: Sequence[CounterRow]) -> None: ...

    def counters(self) -> Counters: ...


class MemoryReplica:
    """A replica held as plain values and changed only through the pure functions."""

    def __init__(self, replica_id: str, merge: Merge[PNState] = pn_merge) -> None:
        self.replica_id = replica_id
        self.merge = merge
        self.state: Counters = {}

    def add(self, counter_id: str, delta: int, *, commit: bool = True) -> None:
        if commit:
            self.state[counter_id] = pn_add(self.state.get(counter_id, {}), self.replica_id,
                                            delta)

    def rows(self) -> list[CounterRow]:
        return [CounterRow(cid, r, p, n)
                for cid in sorted(self.state) for r, (p, n) in sorted(self.state[cid].items())]

    def receive(self, rows: Sequence[CounterRow]) -> None:
        incoming: Counters = {}
        for row in rows:  # plain assignment: duplicate rows in one message are identical
            incoming.setdefault(row.counter_id, {})[row.replica_id] = (row.p, row.n)
        for cid, state in incoming.items():
            self.state[cid] = dict(self.merge(self.state.get(cid, {}), state))

    def counters(self) -> Counters:
        return {cid: dict(s) for cid, s in self.state.items()}


class SqliteReplica:
    """A replica held in a ``counters(counter_id, replica_id, p, n, dirty)`` table.

    Local adds run ``add_sql`` (``SQL_LOCAL_ADD``) in a ``BEGIN IMMEDIATE`` transaction that
    commits or rolls back; received rows are applied one by one, in message order, with
    ``merge_sql`` (``SQL_MERGE_ROW``) inside one transaction.
    """

    def __init__(self, replica_id: str, conn: sqlite3.Connection, *,
                 merge_sql: str = SQL_MERGE_ROW, add_sql: str = SQL_LOCAL_ADD) -> None:
        if conn.isolation_level is not None:
            raise ValueError("SqliteReplica needs an autocommit connection (isolation_level=None)")
        self.replica_id = replica_id
        self.conn = conn
        self.merge_sql = merge_sql
        self.add_sql = add_sql

    def add(self, counter_id: str, delta: int, *, commit: bool = True) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(self.add_sql, local_add_params(counter_id, self.replica_id, delta))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT" if commit else "ROLLBACK")

    def rows(self) -> list[CounterRow]:
        cur = self.conn.execute(
            "SELECT counter_id, replica_id, p, n FROM counters ORDER BY counter_id, replica_id"
        )
        return [CounterRow(str(c), str(r), int(p), int(n)) for c, r, p, n in cur.fetchall()]

    def receive(self, rows: Sequence[CounterRow]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self.conn.execute(self.merge_sql, (row.counter_id, row.replica_id, row.p, row.n))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def counters(self) -> Counters:
        return from_rows(self.rows())


@dataclass(frozen=True)
class Message:
    src: int
    dst: int
    rows: tuple[CounterRow, ...]


def message_rows(snapshot: Sequence[CounterRow], send: Send) -> tuple[CounterRow, ...]:
    """The rows a :class:`Send` puts on the wire, from the sender's sorted snapshot."""
    rows = [r for i, r in enumerate(snapshot) if send.mask is None or send.mask >> (i % 16) & 1]
    if rows:
        k = send.rotate % len(rows)
        rows = rows[k:] + rows[:k]
    if send.reverse:
        rows.reverse()
    if send.twice:
        rows = rows + rows[::-1]
    return tuple(rows)


@dataclass
class Outcome:
    expected: dict[str, int]             # Σ committed deltas per counter
    final: list[Counters]                # every replica's counters after the final gossip
    late: list[Counters]                 # ... and after stale and delayed messages arrived
    trace: list[tuple[Counters, ...]] = field(default_factory=list)  # after every op


def run_schedule(replicas: Sequence[Replica], ops: Iterable[Op], *,
                 trace: bool = False) -> Outcome:
    """Play ``ops`` on ``replicas``, then heal and gossip all-to-all once.

    One sequential all-to-all pass suffices for a correct merge: the last sender has merged
    everyone else's state before it sends to all.
    """
    n = len(replicas)
    sides: tuple[int, ...] = (0,) * n
    in_flight: list[Message] = []
    history: list[Message] = []
    expected: dict[str, int] = {}
    out = Outcome(expected, [], [])
    for op in ops:
        if isinstance(op, Add):
            replicas[op.replica % n].add(op.counter, op.delta, commit=op.commit)
            if op.commit:
                expected[op.counter] = expected.get(op.counter, 0) + op.delta
        elif isinstance(op, Send):
            src, dst = op.src % n, op.dst % n
            msg = Message(src, dst, message_rows(replicas[src].rows(), op))
            history.append(msg)
            if sides[src] == sides[dst]:
                in_flight.append(msg)
        elif isinstance(op, Deliver):
            if in_flight:
                msg = in_flight.pop(op.index % len(in_flight))
                if sides[msg.src] == sides[msg.dst]:
                    replicas[msg.dst].receive(msg.rows)
        elif isinstance(op, Duplicate):
            if in_flight:
                in_flight.append(in_flight[op.index % len(in_flight)])
        elif isinstance(op, Drop):
            if in_flight:
                in_flight.pop(op.index % len(in_flight))
        elif isinstance(op, Replay):
            if history:
                in_flight.append(history[op.index % len(history)])
        else:
            sides = tuple(op.sides[i] if i < len(op.sides) else 0 for i in range(n))
        if trace:
            out.trace.append(tuple(r.counters() for r in replicas))
    for src in range(n):  # healed: final all-to-all gossip of full states
        rows = replicas[src].rows()
        for dst in range(n):
            if dst != src:
                replicas[dst].receive(rows)
    out.final = [r.counters() for r in replicas]
    # Late arrivals after convergence: everything still in flight, and every old message
    # retried once more. A correct merge ignores them.
    for msg in [*in_flight, *history]:
        replicas[msg.dst].receive(msg.rows)
    out.late = [r.counters() for r in replicas]
    return out


def check_converged(outcome: Outcome) -> None:
    """Every replica holds the same state, every counter's value is Σ committed deltas, and
    stale or delayed messages arriving afterwards change nothing."""
    final = outcome.final
    for i, state in enumerate(final[1:], start=1):
        if state != final[0]:
            raise LawViolation("convergence", f"replica {i} differs from replica 0",
                               replica0=final[0], other=state)
    for i, state in enumerate(final):
        for cid in sorted(set(state) | set(outcome.expected)):
            got, want = pn_value(state.get(cid, {})), outcome.expected.get(cid, 0)
            if got != want:
                raise LawViolation("value", f"replica {i} reads {cid} as {got}, "
                                   f"Σ committed deltas is {want}", state=state.get(cid, {}))
    if outcome.late != final:
        raise LawViolation("stable", "stale or delayed messages changed a converged state",
                           converged=final, after=outcome.late)


def check_convergence(replicas: Sequence[Replica], ops: Iterable[Op]) -> Outcome:
    outcome = run_schedule(replicas, ops)
    check_converged(outcome)
    return outcome
