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


def _movement_effects(body: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(inventory.counter_id(body["batch_id"]), int(body["delta"]))]


# Event kinds whose writer also moved a counter of its own replica, and how. A kind that
# moves a counter must be listed here, or a forked replica's rebase cannot move its effect.
COUNTER_EFFECTS: dict[str, Callable[[Mapping[str, Any]], list[tuple[str, int]]]] = {
    "sale": _sale_effects,
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


def _apply_event(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any]) -> str | None:
    """Apply one foreign event; returns why it must wait, or None when applied."""
    kind = ev["kind"]
    body = ev["body"]
    if kind == "product":
        product = catalog.product_from_json(body)
        if ev["replica_id"].startswith(HQ_PREFIX) or c.execute(
                "SELECT 1 FROM products WHERE ndc = ?", (product.ndc,)).fetchone() is None:
            # head office's definition wins; a terminal's announcement only adds what is missing
            catalog.upsert_products(store, [product])
        c.execute("UPDATE products SET announced_at = ? WHERE ndc = ? AND announced_at IS NULL",
                  (ev["created_at"], product.ndc))
    elif kind == "batch":
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
        c.execute("INSERT OR IGNORE INTO doc_updates(update_id, doc, replica_id, data, "
                  "created_at, pushed) VALUES (?, ?, ?, ?, ?, 1)",
                  (body["update_id"], body["doc"], ev["replica_id"],
                   base64.b64decode(body["data"]), ev["created_at"]))
    elif kind in PUBLICATION_KINDS:
        c.execute("INSERT OR IGNORE INTO sync_publications(event_id, server_seq, kind, body, "
                  "updated_at) VALUES (?, ?, ?, ?, ?)",
                  (ev["event_id"], ev["server_seq"], kind, json.dumps(body, sort_keys=True),
                   iso(store.clock())))
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


def _try_apply(store: Store, c: sqlite3.Connection, ev: Mapping[str, Any]) -> str | None:
    try:
        with store.transaction():
            return _apply_event(store, c, ev)
    except (sqlite3.IntegrityError, KeyError, TypeError, ValueError, BadInput) as e:
        return f"{type(e).__name__}: {e}"


def apply_pull(store: Store, page: Mapping[str, Any]) -> ApplyResult:
    """Apply one pulled page and move the cursor, in one transaction."""
    current = store.replica_id
    events = [{**e, "body": json.loads(e["body"]) if isinstance(e["body"], str) else e["body"]}
              for e in sorted(page.get("events", ()), key=lambda e: int(e["server_seq"]))]
    counters = page.get("counters", ())
    applied_now = 0
    with store.transaction() as c:
        for ev in events:
            cur = c.execute(
                "INSERT OR IGNORE INTO sync_foreign_events(event_id, server_seq, replica_id, "
                "kind, created_at, body) VALUES (?, ?, ?, ?, ?, ?)",
                (ev["event_id"], ev["server_seq"], ev["replica_id"], ev["kind"],
                 ev["created_at"], json.dumps(ev["body"], sort_keys=True)))
            if cur.rowcount == 0:
                continue  # seen before (a page pulled twice)
            why = _try_apply(store, c, ev)
            applied_now += why is None
            c.execute("UPDATE sync_foreign_events SET applied = ?, error = ? WHERE event_id = ?",
                      (0 if why else 1, why, ev["event_id"]))
        merged = 0
        for r in counters:
            if r["replica_id"] == current:
                continue  # the server never sends our own rows; ours are the newest
            c.execute(SQL_MERGE_ROW, (r["counter_id"], r["replica_id"], int(r["p"]), int(r["n"])))
            merged += 1
        # a waiting event can only become applicable once another event has applied
        waiting = (_retry_waiting(store, c) if applied_now else int(c.execute(
            "SELECT COUNT(*) FROM sync_foreign_events WHERE applied = 0").fetchone()[0]))
        cursor = int(page["next_cursor"])
        if cursor > _int_state(c, "pull_cursor"):
            set_state(c, "pull_cursor", cursor)
        if page.get("server_seq") is not None:
            set_state(c, "server_seq", int(page["server_seq"]))
    return ApplyResult(len(events), merged, waiting)


def _retry_waiting(store: Store, c: sqlite3.Connection) -> int:
    while True:
        rows = c.execute("SELECT event_id, server_seq, replica_id, kind, created_at, body "
                         "FROM sync_foreign_events WHERE applied = 0 ORDER BY server_seq"
                         ).fetchall()
        progress = False
        for r in rows:
            ev = {"event_id": r[0], "server_seq": r[1], "replica_id": r[2], "kind": r[3],
                  "created_at": r[4], "body": json.loads(r[5])}
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


def pending_publications(conn: sqlite3.Connection) -> list[Publication]:
    """Pending publications, oldest first; of each kind (and model kind) only the newest
    counts, older ones are marked superseded."""
    rows = conn.execute("SELECT event_id, server_seq, kind, body FROM sync_publications "
                        "WHERE state = 'pending' ORDER BY server_seq").fetchall()
    latest: dict[tuple[str, str], Publication] = {}
    for r in rows:
        body = json.loads(r[3])
        key = (r[2], r[0] if r[2] in CUMULATIVE_KINDS else
               str(body.get("kind") or body.get("target") or ""))
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
            body = json.loads(row[2])
            target = str(body.get("kind") or body.get("target") or "")
            for old in c.execute("SELECT event_id, body FROM sync_publications WHERE kind = ? "
                                 "AND state = 'pending' AND server_seq < ?",
                                 (row[1], row[0])).fetchall():
                ob = json.loads(old[1])
                if str(ob.get("kind") or ob.get("target") or "") == target:
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
    except shared_doc.DocError as e:
        raise BadInput(str(e), code="BAD_DOC_EDIT") from None
    return shared_doc.view(doc, [*current, update])


def doc_view(conn: sqlite3.Connection, doc: str) -> dict[str, Any]:
    try:
        return shared_doc.view(doc, doc_updates(conn, doc))
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
