"""Replication between a terminal store and the head-office server, without the network.

What to push: the outbox events after the last acknowledged ``events.seq`` (all replicas this
database has had, minus events re-recorded after a fork), the dirty PN-counter rows of this
database's replicas that are not retired, and local pycrdt document updates. What to do with
a pulled page: merge counter rows (``crdt.pncounter.SQL_MERGE_ROW``), add foreign products,
batches, batch status (last writer wins; a recall is final), register entries, document
updates and head-office publications, and move the pull cursor in the same transaction, so a
connection cut mid-pull leaves no gap and no duplicate.

When the server reports that one of this database's replicas has forked (the database was
restored from a backup and went on writing under the same replica id), :func:`rebase_forked`
re-records the events the server never saw under the current replica and moves their stock
effects with them, so no sale is lost or counted twice.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crdt import shared_doc
from crdt.pncounter import SQL_LOCAL_ADD, SQL_MERGE_ROW, local_add_params
from pharmacy import catalog, inventory, outbox, register
from pharmacy.canonical import is_utf8_text
from pharmacy.clock import iso
from pharmacy.errors import BadInput, PharmosError
from pharmacy.ids import new_id
from pharmacy.store import Store

SYNC_PROTOCOL = 1  # enroll, pull and known: the same in protocols 1 and 2
PUSH_PROTOCOL = 2  # a push's events as columns (pharmacy.event_columns)
PUSH_PAGE = 2000
HQ_PREFIX = "hq:"  # replica ids of head office; terminals never write them
PUBLICATION_KINDS = ("key_endorsement", "policy_bundle", "allowances", "model", "user")
# publications where every one counts (in order), not only the newest: a terminal that missed
# two key rotations needs the first to trust the second
CUMULATIVE_KINDS = frozenset({"key_endorsement"})
DOC_KIND = "doc_update"

_CHAIN_KEYS = ("entry_id", "replica_id", "seq", "created_at", "kind")


class ReplicationError(PharmosError):
    code = "REPLICATION_ERROR"


INT64_MAX = 2**63 - 1  # SQLite INTEGER
COUNT_MAX = 2**53  # a counter row's p and n, as head office bounds them (sync_server.schemas)


# ---- sync state -----------------------------------------------------------------------------
def get_state(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return default if row is None else str(row[0])


def set_state(conn: sqlite3.Connection, key: str, value: str | int | None) -> None:
    if value is None:
        conn.execute("DELETE FROM sync_state WHERE key = ?", (key,))
        return
    conn.execute(
        "INSERT INTO sync_state(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, str(value)))


def _int_state(conn: sqlite3.Connection, key: str) -> int:
    return int(get_state(conn, key, "0") or 0)


# ---- counter effects of events --------------------------------------------------------------


def _sale_effects(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(inventory.counter_id(a["batch_id"]), -int(a["qty"]))
            for a in body.get("allocations", ())]


def _return_effects(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    """A sale returned to stock: its allocations ([batch_id, lot, expiry, qty]) go back."""
    return [(inventory.counter_id(a[0]), int(a[3])) for a in body.get("allocations", ())]


def _refund_effects(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    """A refund: the units a cashier put back on the shelf ([batch_id, lot, expiry, qty])."""
    return [(inventory.counter_id(a[0]), int(a[3]))
            for ln in body.get("lines", ()) for a in ln.get("restocked", ())]


def _movement_effects(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(inventory.counter_id(body["batch_id"]), int(body["delta"]))]


# Event kinds whose writer also moved a counter of its own replica, and how. A kind that
# moves a counter must be listed here, or a forked replica's rebase cannot move its effect.
COUNTER_EFFECTS: dict[str, Callable[[Mapping[str, Any]], list[tuple[str, int]]]] = {
    "sale": _sale_effects,
    "sale_return": _return_effects,
    "sale_refund": _refund_effects,
    "movement": _movement_effects,
}


def counter_effects(kind: str, body: Mapping[str, Any]) -> list[tuple[str, int]]:
    fn = COUNTER_EFFECTS.get(kind)
    return [] if fn is None else fn(body)


# ---- push -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PushBatch:
    """One page of what to push. Counter rows and document updates ride on the last page."""

    events: list[dict[str, Any]]
    counters: list[dict[str, Any]]
    docs: list[dict[str, Any]]
    max_seq: int
    final: bool

    @property
    def empty(self) -> bool:
        return not (self.events or self.counters or self.docs)


def collect_push(store: Store, limit: int = PUSH_PAGE) -> PushBatch:
    """The next page to push, read in one transaction (a consistent snapshot)."""
    with store.transaction() as c:
        acked = _int_state(c, "acked_seq")
        rows = c.execute(
            "SELECT seq, event_id, replica_id, kind, created_at, body FROM events e "
            "WHERE seq > ? AND NOT EXISTS (SELECT 1 FROM sync_skipped_events s "
            "WHERE s.event_id = e.event_id) ORDER BY seq LIMIT ?", (acked, limit + 1)).fetchall()
        final = len(rows) <= limit
        rows = rows[:limit]
        events = outbox.with_bodies(c, [  # JSON text, as recorded or rebuilt from its rows
            {"event_id": r[1], "replica_id": r[2], "seq": r[0], "kind": r[3],
             "created_at": r[4], "body": r[5]} for r in rows])
        counters: list[dict[str, Any]] = []
        docs: list[dict[str, Any]] = []
        if final:
            counters = [
                {"counter_id": r[0], "replica_id": r[1], "p": r[2], "n": r[3]}
                for r in c.execute(
                    "SELECT counter_id, replica_id, p, n FROM counters WHERE dirty = 1 "
                    "AND replica_id IN (SELECT replica_id FROM replicas) AND replica_id NOT IN "
                    "(SELECT replica_id FROM sync_retired_replicas) "
                    "ORDER BY counter_id, replica_id")
            ]
            docs = [
                {"update_id": r[0], "doc": r[1], "data": base64.b64encode(r[2]).decode("ascii")}
                for r in c.execute(
                    "SELECT update_id, doc, data FROM doc_updates WHERE pushed = 0 "
                    "AND replica_id IN (SELECT replica_id FROM replicas) ORDER BY rowid")
            ]
    max_seq = max((e["seq"] for e in events), default=acked)
    return PushBatch(events, counters, docs, max_seq, final)


def ack_push(store: Store, batch: PushBatch) -> None:
    """The server stored this page: move the ack and clear what it made clean."""
    with store.transaction() as c:
        if batch.max_seq > _int_state(c, "acked_seq"):
            set_state(c, "acked_seq", batch.max_seq)
        # a row changed since it was read stays dirty
        c.executemany(
            "UPDATE counters SET dirty = 0 WHERE counter_id = ? AND replica_id = ? "
            "AND p = ? AND n = ?",
            [(r["counter_id"], r["replica_id"], r["p"], r["n"]) for r in batch.counters])
        c.executemany("UPDATE doc_updates SET pushed = 1 WHERE update_id = ?",
                      [(d["update_id"],) for d in batch.docs])


def replica_seq(conn: sqlite3.Connection, replica_id: str) -> int:
    """Highest local event seq written under ``replica_id`` (0 when none)."""
    # newest first along the rowid: stops at once when this replica wrote last
    row = conn.execute("SELECT seq FROM events WHERE replica_id = ? ORDER BY seq DESC LIMIT 1",
                       (replica_id,)).fetchone()
    return 0 if row is None else int(row[0])


def pending(conn: sqlite3.Connection) -> dict[str, int]:
    acked = _int_state(conn, "acked_seq")
    events = conn.execute(
        "SELECT COUNT(*) FROM events e WHERE seq > ? AND NOT EXISTS "
        "(SELECT 1 FROM sync_skipped_events s WHERE s.event_id = e.event_id)",
        (acked,)).fetchone()[0]
    counters = conn.execute(
        "SELECT COUNT(*) FROM counters WHERE dirty = 1 AND replica_id IN "
        "(SELECT replica_id FROM replicas) AND replica_id NOT IN "
        "(SELECT replica_id FROM sync_retired_replicas)").fetchone()[0]
    docs = conn.execute("SELECT COUNT(*) FROM doc_updates WHERE pushed = 0").fetchone()[0]
    return {"events": int(events), "counters": int(counters), "docs": int(docs)}


# ---- forks and regressions ------------------------------------------------------------------
def retire_replica(store: Store, replica_id: str, reason: str) -> None:
    """Stop pushing this replica's counter rows (the server holds a newer state of them)."""
    with store.transaction() as c:
        c.execute("INSERT OR IGNORE INTO sync_retired_replicas VALUES (?, ?, ?)",
                  (replica_id, iso(store.clock()), reason))
        # pull everything again: the server's rows of this replica must come back
        set_state(c, "pull_cursor", 0)


def resend_all(store: Store) -> None:
    """Head office is behind this terminal (its database was restored): push every own
    event, counter row and document update again, and pull from the start."""
    with store.transaction() as c:
        set_state(c, "pull_cursor", 0)
        set_state(c, "acked_seq", 0)
        c.execute("UPDATE counters SET dirty = 1 WHERE replica_id IN "
                  "(SELECT replica_id FROM replicas) AND replica_id NOT IN "
                  "(SELECT replica_id FROM sync_retired_replicas)")
        c.execute("UPDATE doc_updates SET pushed = 0 WHERE replica_id IN "
                  "(SELECT replica_id FROM replicas)")


def unacked_event_ids(conn: sqlite3.Connection, replica_id: str) -> list[str]:
    acked = _int_state(conn, "acked_seq")
    return [r[0] for r in conn.execute(
        "SELECT event_id FROM events e WHERE replica_id = ? AND seq > ? AND NOT EXISTS "
        "(SELECT 1 FROM sync_skipped_events s WHERE s.event_id = e.event_id) ORDER BY seq",
        (replica_id, acked))]


@dataclass(frozen=True)
class RebaseResult:
    replica_id: str
    moved_events: int
    moved_register_entries: int
    counter_deltas: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"replica_id": self.replica_id, "moved_events": self.moved_events,
                "moved_register_entries": self.moved_register_entries,
                "counter_deltas": self.counter_deltas}


def rebase_forked(store: Store, old_replica: str, known_event_ids: Iterable[str]) -> RebaseResult:
    """Re-record, under the current replica, what ``old_replica`` wrote that the server lacks.

    Call after :meth:`Store.rekey` when the server reported ``old_replica`` as forked, with the
    ids (among :func:`unacked_event_ids`) that the server already holds. Each unknown event is
    appended again under the current replica and the original is skipped; its stock effect
    moves from the old replica's counter rows to the current one's; an unknown register entry
    is moved to ``register_forked`` and appended to the current replica's chain with
    ``rebased_from``. The old replica is retired and the pull cursor reset, so the server's
    rows for it come back.
    """
    current = store.replica_id
    if current == old_replica:
        raise ReplicationError("rekey the store before rebasing its forked replica",
                               code="REBASE_NEEDS_REKEY")
    known = set(known_event_ids)
    now = iso(store.clock())
    moved = reg_moved = 0
    deltas: dict[str, int] = {}
    with store.transaction() as c:
        acked = _int_state(c, "acked_seq")
        rows = c.execute(
            "SELECT seq, event_id, kind, created_at, body FROM events e WHERE replica_id = ? "
            "AND seq > ? AND NOT EXISTS (SELECT 1 FROM sync_skipped_events s "
            "WHERE s.event_id = e.event_id) ORDER BY seq", (old_replica, acked)).fetchall()
        # bodies first: moving a register entry below deletes the row its event refers to
        raws = [e["body"] for e in outbox.with_bodies(c, [
            {"event_id": r[1], "replica_id": old_replica, "kind": r[2], "body": r[4]}
            for r in rows])]
        for (seq, event_id, kind, created_at, _), raw in zip(rows, raws, strict=True):
            if event_id in known:
                continue
            body = json.loads(raw)
            for cid, delta in counter_effects(kind, body):
                c.execute(SQL_LOCAL_ADD, local_add_params(cid, current, delta))
                p_sub, n_sub = (delta, 0) if delta >= 0 else (0, -delta)
                c.execute("UPDATE counters SET p = MAX(p - ?, 0), n = MAX(n - ?, 0) "
                          "WHERE counter_id = ? AND replica_id = ?",
                          (p_sub, n_sub, cid, old_replica))
                deltas[cid] = deltas.get(cid, 0) + delta
            if kind == "register":
                entry = json.loads(body["body"])
                fields = {k: v for k, v in entry.items() if k not in _CHAIN_KEYS}
                fields["rebased_from"] = {"replica_id": old_replica, "seq": entry["seq"],
                                          "entry_id": entry["entry_id"]}
                new_entry = register.append(c, current, entry["created_at"], entry["kind"],
                                            fields)
                c.execute(
                    "INSERT OR IGNORE INTO register_forked(replica_id, seq, entry_id, "
                    "created_at, kind, ndc, qty, body, prev_hash, hash, forked_at, "
                    "rebased_entry_id) SELECT replica_id, seq, entry_id, created_at, kind, ndc, "
                    "qty, body, prev_hash, hash, ?, ? FROM register WHERE entry_id = ?",
                    (now, new_entry["entry_id"], entry["entry_id"]))
                c.execute("DELETE FROM register WHERE entry_id = ?", (entry["entry_id"],))
                replaced_by = str(new_entry["entry_id"])
                reg_moved += 1
            else:
                replaced_by = outbox.append_event(c, current, kind, created_at, body)
            c.execute("INSERT OR IGNORE INTO sync_skipped_events VALUES (?, ?, ?, ?)",
                      (event_id, f"forked replica {old_replica} (seq {seq})", replaced_by, now))
            moved += 1
        c.execute("INSERT OR IGNORE INTO sync_retired_replicas VALUES (?, ?, ?)",
                  (old_replica, now, "forked"))
        set_state(c, "pull_cursor", 0)
    return RebaseResult(old_replica, moved, reg_moved, deltas)


# ---- pull -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApplyResult:
    events: int
    counters: int
    waiting: int

    @property
    def rows(self) -> int:
        return self.events + self.counters


def _need_text(kind: str, body: Mapping[str, Any], *keys: str, optional: bool = False
               ) -> None:
    for key in keys:
        value = body.get(key)
        if (value is None and optional) or isinstance(value, str):
            continue
        raise BadInput(f"a {kind} event's {key} must be text, got {value!r:.60}",
                       code="BAD_EVENT", kind=kind, field=key)


def check_batch(body: Mapping[str, Any]) -> None:
    """A pulled batch event holds what the batches table and the inventory screens read:
    text ids and timestamps, a lot as receiving accepts it, an expiry YYYY-MM-DD and a unit
    cost in whole cents that head office can store (0..2**31-1) or none."""
    _need_text("batch", body, "batch_id", "ndc", "received_at")
    _need_text("batch", body, "supplier", optional=True)
    lot = body.get("lot")
    if not isinstance(lot, str) or inventory.parse_lot(lot) != lot:
        raise BadInput(f"a batch event's lot {lot!r:.60} is not a lot number", code="BAD_LOT")
    expiry = body.get("expiry")
    if not isinstance(expiry, str) or inventory.parse_expiry(expiry).isoformat() != expiry:
        raise BadInput(f"a batch event's expiry {expiry!r:.60} is not a date YYYY-MM-DD",
                       code="BAD_EXPIRY")
    cost = body.get("unit_cost_cents")
    if cost is not None and not _is_whole(cost, 0, inventory.MAX_UNIT_COST_CENTS):
        raise BadInput(f"a batch event's unit_cost_cents {cost!r:.60} is not whole cents in "
                       f"0..{inventory.MAX_UNIT_COST_CENTS}", code="BAD_EVENT", kind="batch",
                       field="unit_cost_cents")


def check_batch_status(body: Mapping[str, Any]) -> None:
    _need_text("batch_status", body, "batch_id", "status_at")
    _need_text("batch_status", body, "reason", optional=True)
    if body.get("status") not in inventory.BATCH_STATUSES:
        raise BadInput(f"a batch_status event's status {body.get('status')!r:.60} is not one "
                       f"of {', '.join(inventory.BATCH_STATUSES)}", code="BAD_STATUS")


def _doc_update(body: Mapping[str, Any]) -> bytes:
    """The bytes of a pulled document update, checked to decode as a pycrdt update (stored
    garbage would break the document's view and edits for good)."""
    _need_text(DOC_KIND, body, "update_id", "doc", "data")
    try:
        data = base64.b64decode(body["data"], validate=True)
    except ValueError:  # binascii.Error
        raise BadInput("a doc_update event's data is not base64", code="BAD_DOC_UPDATE"
                       ) from None
    try:
        shared_doc.check_update(data)
    except shared_doc.DocDecodeError as e:
        raise BadInput(str(e), code=e.code) from None
    return data


def _store_publication(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any]) -> None:
    body = ev["body"]
    if isinstance(body, Mapping):
        c.execute("INSERT OR IGNORE INTO sync_publications(event_id, server_seq, kind, body, "
                  "updated_at) VALUES (?, ?, ?, ?, ?)",
                  (ev["event_id"], ev["server_seq"], ev["kind"], json.dumps(body, sort_keys=True),
                   iso(store.clock())))
        return
    # never pending: pending_publications and mark_publication read an object
    c.execute("INSERT OR IGNORE INTO sync_publications(event_id, server_seq, kind, body, state, "
              "attempts, last_error, updated_at) VALUES (?, ?, ?, '{}', 'failed', 0, ?, ?)",
              (ev["event_id"], ev["server_seq"], ev["kind"],
               f"BAD_PUBLICATION: the publication's body is not an object: {body!r:.60}",
               iso(store.clock())))


def _apply_event(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any]) -> str | None:
    """Apply one foreign event; returns why it must wait, or None when applied. Raises when
    the event is bad (see :func:`_try_apply`)."""
    kind = ev["kind"]
    body = ev["body"]
    if kind in PUBLICATION_KINDS:
        _store_publication(store, c, ev)
        return None
    if not isinstance(body, Mapping):
        raise BadInput(f"a {kind} event's body is not an object", code="BAD_EVENT", kind=kind)
    if kind == "product":
        product = catalog.product_from_json(body)
        if str(ev["replica_id"]).startswith(HQ_PREFIX) or c.execute(
                "SELECT 1 FROM products WHERE ndc = ?", (product.ndc,)).fetchone() is None:
            # head office's definition wins; a terminal's announcement only adds what is missing
            catalog.upsert_products(store, [product])
        c.execute("UPDATE products SET announced_at = ? WHERE ndc = ? AND announced_at IS NULL",
                  (ev["created_at"], product.ndc))
    elif kind == "batch":
        check_batch(body)
        if c.execute("SELECT 1 FROM products WHERE ndc = ?", (body["ndc"],)).fetchone() is None:
            return f"product {body['ndc']} not in the catalog yet"
        cur = c.execute(
            "INSERT OR IGNORE INTO batches(batch_id, ndc, lot, expiry, status, status_at, "
            "supplier, unit_cost_cents, received_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?)",
            (body["batch_id"], body["ndc"], body["lot"], body["expiry"], body["received_at"],
             body.get("supplier"), body.get("unit_cost_cents"), body["received_at"]))
        if cur.rowcount == 0:
            _merge_batch(store, c, ev, body)
    elif kind == "batch_status":
        check_batch_status(body)
        row = c.execute("SELECT status, status_at FROM batches WHERE batch_id = ?",
                        (body["batch_id"],)).fetchone()
        if row is None:
            return f"batch {body['batch_id']} not on file yet"
        if inventory.status_rank(body["status"], body["status_at"]) > inventory.status_rank(
                row[0], row[1]):
            c.execute("UPDATE batches SET status = ?, status_at = ?, status_reason = ? "
                      "WHERE batch_id = ?",
                      (body["status"], body["status_at"], body.get("reason"), body["batch_id"]))
    elif kind == "register":
        register.insert_foreign(c, body)
    elif kind == DOC_KIND:
        data = _doc_update(body)
        c.execute("INSERT OR IGNORE INTO doc_updates(update_id, doc, replica_id, data, "
                  "created_at, pushed) VALUES (?, ?, ?, ?, ?, 1)",
                  (body["update_id"], body["doc"], ev["replica_id"], data, ev["created_at"]))
    # other kinds (sales, decisions, movements of other terminals) are kept as received
    return None


def _merge_batch(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any],
                 body: Mapping[str, Any]) -> None:
    """The same lot recorded twice: the earliest receipt's facts win everywhere (the server
    applies the same rule), and a differing expiry is written to the audit log."""
    row = c.execute("SELECT expiry, received_at FROM batches WHERE batch_id = ?",
                    (body["batch_id"],)).fetchone()
    if row is None or (row[1], row[0]) <= (body["received_at"], body["expiry"]):
        if row is not None and row[0] != body["expiry"]:
            _expiry_conflict(store, c, ev, body, kept=row[0])
        return
    if row[0] != body["expiry"]:
        _expiry_conflict(store, c, ev, body, kept=body["expiry"])
    c.execute("UPDATE batches SET expiry = ?, received_at = ?, supplier = ?, "
              "unit_cost_cents = ? WHERE batch_id = ?",
              (body["expiry"], body["received_at"], body.get("supplier"),
               body.get("unit_cost_cents"), body["batch_id"]))


def _expiry_conflict(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any],
                     body: Mapping[str, Any], kept: str) -> None:
    c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
              "VALUES (?, NULL, 'sync.lot_expiry_conflict', ?, ?)",
              (iso(store.clock()), body["batch_id"],
               json.dumps({"reported_expiry": body["expiry"], "kept_expiry": kept,
                           "replica_id": ev.get("replica_id"),
                           "event_id": ev.get("event_id")}, sort_keys=True)))


def terminal_broken(e: BaseException) -> bool:
    """Whether an error raised while applying pulled data means this terminal's database
    cannot work right now (locked, disk full or failing, corrupt, closed), as opposed to the
    data being bad. Such an error must fail the sync, never mark the data as bad: the same
    data applies once the database works again.

    Of ``sqlite3`` errors, IntegrityError (a constraint refused a value), DataError (a value
    out of range or too big) and a ProgrammingError/InterfaceError that failed to bind a
    parameter (a value of a type SQLite cannot store) are about the data; every other one
    (OperationalError: locked, I/O, read-only, full; DatabaseError: not a database or
    malformed; a closed connection) is about the database."""
    if not isinstance(e, sqlite3.Error):
        return False
    if isinstance(e, sqlite3.IntegrityError | sqlite3.DataError):
        return False
    if isinstance(e, sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return not str(e).startswith("Error binding parameter")
    return True


# what a bad event raises while it is applied (it is parked with the reason, not applied);
# sqlite3.Error only when terminal_broken() says it is about the data
_BAD_EVENT_ERRORS = (PharmosError, KeyError, TypeError, ValueError, AttributeError,
                     IndexError, ArithmeticError, RecursionError, sqlite3.Error)


def _try_apply(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any]) -> str | None:
    try:
        with store.transaction():
            return _apply_event(store, c, ev)
    except _BAD_EVENT_ERRORS as e:
        if terminal_broken(e):
            raise
        if isinstance(e, PharmosError):
            return f"{e.code}: {e.message}"
        return f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class PulledPage:
    """A pull page whose shape was checked (:func:`check_page`)."""

    events: list[dict[str, Any]]  # server_seq order; body parsed, body_text as stored
    counters: list[tuple[str, str, int, int]]  # counter_id, replica_id, p, n
    next_cursor: int
    server_seq: int | None


def _bad_page(why: str, **details: Any) -> ReplicationError:
    return ReplicationError(f"head office sent a malformed pull page ({why}); nothing of it "
                            "was applied", code="BAD_PAGE", **details)


def _is_whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _page_list(page: Mapping[str, Any], key: str) -> list[Any]:
    value = page.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad_page(f"{key} is not a list", field=key)
    return value


def check_page(page: Any) -> PulledPage:
    """Check the shape of a pulled page before anything of it is applied, or raise
    :class:`ReplicationError` ``BAD_PAGE``: event ids, replica ids, kinds and timestamps are
    text; server_seq and the cursors whole numbers in 0..2**63-1; an event body JSON (its
    text, or the parsed value); a counter row's ids text and p, n whole numbers in 0..2**53.

    What an event's body holds is checked when the event is applied, so that one bad event
    does not hold up the events after it: a body that is not an object, or whose fields do
    not check out, parks the event with the reason (``sync_foreign_events.error``, never
    applied, counted in ``waiting_events``); a publication whose body is not an object is
    recorded as failed (``BAD_PUBLICATION``)."""
    if not isinstance(page, Mapping):
        raise _bad_page("the page is not an object")
    events: list[dict[str, Any]] = []
    for i, ev in enumerate(_page_list(page, "events")):
        if not isinstance(ev, Mapping):
            raise _bad_page(f"event {i + 1} is not an object", index=i)
        for key in ("event_id", "replica_id", "kind", "created_at"):
            if not is_utf8_text(ev.get(key)):
                raise _bad_page(f"event {i + 1}: {key} is not text", index=i, field=key)
        if not _is_whole(ev.get("server_seq"), 0, INT64_MAX):
            raise _bad_page(f"event {i + 1}: server_seq is not a whole number in "
                            "0..2**63-1", index=i, field="server_seq")
        if "body" not in ev:
            raise _bad_page(f"event {i + 1} has no body", index=i, field="body")
        body = ev["body"]
        try:
            if isinstance(body, str):
                body = json.loads(body)
            text = json.dumps(body, sort_keys=True)
        except (ValueError, TypeError, RecursionError):
            raise _bad_page(f"event {i + 1}: the body is not JSON", index=i,
                            field="body") from None
        events.append({"event_id": ev["event_id"], "server_seq": ev["server_seq"],
                       "replica_id": ev["replica_id"], "kind": ev["kind"],
                       "created_at": ev["created_at"], "body": body, "body_text": text})
    counters: list[tuple[str, str, int, int]] = []
    for i, r in enumerate(_page_list(page, "counters")):
        if not isinstance(r, Mapping):
            raise _bad_page(f"counter row {i + 1} is not an object", index=i)
        for key in ("counter_id", "replica_id"):
            if not is_utf8_text(r.get(key)):
                raise _bad_page(f"counter row {i + 1}: {key} is not text", index=i, field=key)
        for key in ("p", "n"):
            if not _is_whole(r.get(key), 0, COUNT_MAX):
                raise _bad_page(f"counter row {i + 1}: {key} is not a whole number in "
                                "0..2**53", index=i, field=key)
        counters.append((r["counter_id"], r["replica_id"], r["p"], r["n"]))
    cursor: Any = page.get("next_cursor")
    if not _is_whole(cursor, 0, INT64_MAX):
        raise _bad_page("next_cursor is not a whole number in 0..2**63-1", field="next_cursor")
    server_seq: Any = page.get("server_seq")
    if server_seq is not None and not _is_whole(server_seq, 0, INT64_MAX):
        raise _bad_page("server_seq is not a whole number in 0..2**63-1", field="server_seq")
    events.sort(key=lambda e: int(e["server_seq"]))
    return PulledPage(events, counters, int(cursor),
                      None if server_seq is None else int(server_seq))


def apply_pull(store: Store, page: Mapping[str, Any]) -> ApplyResult:
    """Apply one pulled page and move the cursor, in one transaction. A malformed page
    (:func:`check_page`) is refused whole with ``BAD_PAGE`` and the cursor stays; an event
    that cannot apply waits (parked with its reason) and the page goes on."""
    checked = check_page(page)
    current = store.replica_id
    applied_now = 0
    with store.transaction() as c:
        for ev in checked.events:
            cur = c.execute(
                "INSERT OR IGNORE INTO sync_foreign_events(event_id, server_seq, replica_id, "
                "kind, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                (ev["event_id"], ev["server_seq"], ev["replica_id"], ev["kind"],
                 ev["created_at"], ev["body_text"]))
            if cur.rowcount == 0:
                continue  # seen before (a page pulled twice)
            why = _try_apply(store, c, ev)
            applied_now += why is None
            c.execute("UPDATE sync_foreign_events SET applied = ?, error = ? WHERE event_id = ?",
                      (0 if why else 1, why, ev["event_id"]))
        merged = 0
        for counter_id, replica_id, p, n in checked.counters:
            if replica_id == current:
                continue  # the server never sends our own rows; ours are the newest
            c.execute(SQL_MERGE_ROW, (counter_id, replica_id, p, n))
            merged += 1
        # a waiting event can only become applicable once another event has applied
        waiting = (_retry_waiting(store, c) if applied_now else int(c.execute(
            "SELECT COUNT(*) FROM sync_foreign_events WHERE applied = 0").fetchone()[0]))
        if checked.next_cursor > _int_state(c, "pull_cursor"):
            set_state(c, "pull_cursor", checked.next_cursor)
        if checked.server_seq is not None:
            set_state(c, "server_seq", checked.server_seq)
    return ApplyResult(len(checked.events), merged, waiting)


def _retry_waiting(store: Store, c: sqlite3.Connection) -> int:
    while True:
        rows = c.execute("SELECT event_id, server_seq, replica_id, kind, created_at, body "
                         "FROM sync_foreign_events WHERE applied = 0 ORDER BY server_seq"
                         ).fetchall()
        progress = False
        for r in rows:
            try:
                body = json.loads(r[5])
            except (ValueError, RecursionError):  # stored as received by an older version
                body = None
            ev = {"event_id": r[0], "server_seq": r[1], "replica_id": r[2], "kind": r[3],
                  "created_at": r[4], "body": body}
            why = _try_apply(store, c, ev)
            if why is None:
                c.execute("UPDATE sync_foreign_events SET applied = 1, error = NULL "
                          "WHERE event_id = ?", (r[0],))
                progress = True
            else:
                c.execute("UPDATE sync_foreign_events SET error = ? WHERE event_id = ?",
                          (why, r[0]))
        if not progress:
            return len(rows)


# ---- publications (policy bundles, allowances, models) --------------------------------------
@dataclass(frozen=True)
class Publication:
    event_id: str
    server_seq: int
    kind: str
    body: dict[str, Any]


def _pub_body(text: Any) -> dict[str, Any] | None:
    """A stored publication body, or None when it is not a JSON object (an older version
    stored whatever head office sent)."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _pub_target(body: dict[str, Any] | None) -> str:
    return "" if body is None else str(body.get("kind") or body.get("target") or "")


def fail_unreadable_publications(store: Store) -> int:
    """Mark pending publications whose stored body is not an object as failed
    (``BAD_PUBLICATION``); returns how many. Only a database written before bodies were
    checked holds any."""
    failed = 0
    with store.transaction() as c:
        for event_id, text in c.execute("SELECT event_id, body FROM sync_publications "
                                        "WHERE state = 'pending'").fetchall():
            if _pub_body(text) is None:
                c.execute("UPDATE sync_publications SET state = 'failed', last_error = ?, "
                          "updated_at = ? WHERE event_id = ?",
                          ("BAD_PUBLICATION: the publication's body is not an object",
                           iso(store.clock()), event_id))
                failed += 1
    return failed


def pending_publications(conn: sqlite3.Connection) -> list[Publication]:
    """Pending publications, oldest first; of each kind (and model kind) only the newest
    counts, older ones are marked superseded. One whose body is not an object is left out
    (:func:`fail_unreadable_publications` marks it failed)."""
    rows = conn.execute("SELECT event_id, server_seq, kind, body FROM sync_publications "
                        "WHERE state = 'pending' ORDER BY server_seq").fetchall()
    latest: dict[tuple[str, str], Publication] = {}
    for r in rows:
        body = _pub_body(r[3])
        if body is None:
            continue
        key = (r[2], r[0] if r[2] in CUMULATIVE_KINDS else _pub_target(body))
        latest[key] = Publication(r[0], int(r[1]), r[2], body)
    return sorted(latest.values(), key=lambda p: p.server_seq)


def mark_publication(store: Store, event_id: str, state: str, error: str | None = None) -> None:
    with store.transaction() as c:
        row = c.execute("SELECT server_seq, kind, body FROM sync_publications "
                        "WHERE event_id = ?", (event_id,)).fetchone()
        c.execute("UPDATE sync_publications SET state = ?, attempts = attempts + 1, "
                  "last_error = ?, updated_at = ? WHERE event_id = ?",
                  (state, error, iso(store.clock()), event_id))
        if row is not None and state in ("installed", "failed") and \
                row[1] not in CUMULATIVE_KINDS:
            body = _pub_body(row[2])
            target = _pub_target(body)
            for old in c.execute("SELECT event_id, body FROM sync_publications WHERE kind = ? "
                                 "AND state = 'pending' AND server_seq < ?",
                                 (row[1], row[0])).fetchall():
                ob = _pub_body(old[1])
                if body is not None and ob is not None and _pub_target(ob) == target:
                    c.execute("UPDATE sync_publications SET state = 'superseded', "
                              "updated_at = ? WHERE event_id = ?",
                              (iso(store.clock()), old[0]))


def note_publication_error(store: Store, event_id: str, error: str) -> None:
    """A transient failure (download, module not installed yet): stays pending."""
    with store.transaction() as c:
        c.execute("UPDATE sync_publications SET attempts = attempts + 1, last_error = ?, "
                  "updated_at = ? WHERE event_id = ?", (error, iso(store.clock()), event_id))


# ---- shared documents -----------------------------------------------------------------------
def doc_updates(conn: sqlite3.Connection, doc: str) -> list[bytes]:
    return [bytes(r[0]) for r in conn.execute(
        "SELECT data FROM doc_updates WHERE doc = ? ORDER BY rowid", (doc,))]


def add_doc_update(store: Store, doc: str, data: bytes) -> str:
    """Record a local update of a shared document (pushed at the next sync)."""
    if doc not in shared_doc.DOCS:
        raise BadInput(f"unknown shared document {doc!r}", code="UNKNOWN_DOC")
    uid = new_id()
    with store.transaction() as c:
        c.execute("INSERT INTO doc_updates(update_id, doc, replica_id, data, created_at, pushed) "
                  "VALUES (?, ?, ?, ?, ?, 0)",
                  (uid, doc, store.replica_id, data, iso(store.clock())))
    return uid


def edit_doc(store: Store, doc: str, edit: Callable[[Sequence[bytes]], bytes]) -> dict[str, Any]:
    """Apply ``edit(current updates) -> update`` (a ``crdt.shared_doc`` function) and record
    the update; returns the document's new view."""
    try:
        with store.transaction() as c:
            current = doc_updates(c, doc)
            update = edit(current)
            add_doc_update(store, doc, update)
    except shared_doc.DocDecodeError as e:  # stored before pulled updates were checked
        raise BadInput(str(e), code=e.code) from None
    except shared_doc.DocError as e:
        raise BadInput(str(e), code="BAD_DOC_EDIT") from None
    return shared_doc.view(doc, [*current, update])


def doc_view(conn: sqlite3.Connection, doc: str) -> dict[str, Any]:
    try:
        return shared_doc.view(doc, doc_updates(conn, doc))
    except shared_doc.DocDecodeError as e:  # stored before pulled updates were checked
        raise BadInput(str(e), code=e.code) from None
    except shared_doc.DocError as e:
        raise BadInput(str(e), code="UNKNOWN_DOC") from None


# ---- status ---------------------------------------------------------------------------------
def record_attempt(store: Store, *, ok: bool, error: str | None = None,
                   server_seq: int | None = None) -> None:
    now = iso(store.clock())
    with store.transaction() as c:
        set_state(c, "last_attempt", now)
        if ok:
            set_state(c, "last_success", now)
            set_state(c, "last_error", None)
            set_state(c, "offline_since", None)
            if server_seq is not None:
                set_state(c, "server_seq", server_seq)
        else:
            set_state(c, "last_error", error or "unknown error")
            if get_state(c, "offline_since") is None:
                set_state(c, "offline_since", now)


def status(conn: sqlite3.Connection) -> dict[str, Any]:
    st = dict(conn.execute("SELECT key, value FROM sync_state").fetchall())
    pubs = {r[0]: r[1] for r in conn.execute(
        "SELECT state, COUNT(*) FROM sync_publications GROUP BY state")}
    waiting = conn.execute(
        "SELECT COUNT(*) FROM sync_foreign_events WHERE applied = 0").fetchone()[0]
    return {
        "last_success": st.get("last_success"),
        "last_attempt": st.get("last_attempt"),
        "last_error": st.get("last_error"),
        "offline_since": st.get("offline_since"),
        "pending": pending(conn),
        "pull_cursor": int(st.get("pull_cursor", 0)),
        "acked_seq": int(st.get("acked_seq", 0)),
        "server_seq": int(st["server_seq"]) if "server_seq" in st else None,
        "retired_replicas": [r[0] for r in conn.execute(
            "SELECT replica_id FROM sync_retired_replicas ORDER BY retired_at")],
        "waiting_events": int(waiting),
        "publications": pubs,
        # why the latest failed publications failed (a code an operator can act on)
        "publication_errors": [
            {"event_id": r[0], "kind": r[1], "error": r[2], "at": r[3]}
            for r in conn.execute(
                "SELECT event_id, kind, last_error, updated_at FROM sync_publications "
                "WHERE state = 'failed' ORDER BY server_seq DESC LIMIT 10")],
    }
