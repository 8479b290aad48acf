"""Append-only events for sync, written inside the same transaction as what they describe.

Most events carry their body. A sale and a register entry are already rows of their own that
never change once written, so their events refer to those rows instead (``append_refs``: the
body is ``@`` and the row's key) and ``with_bodies`` rebuilds the body, as compact JSON, when
the event is read for sync. Storing the same sale twice cost every sale a JSON encoding and
about a kilobyte and a half more to write and fsync.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from pharmacy.canonical import compact_json
from pharmacy.errors import IntegrityFailure
from pharmacy.ids import new_id

EVENT_KINDS = ("sale", "decision", "register", "movement", "batch", "batch_status", "product",
               "sale_return", "sale_refund", "tender")
REF = "@"  # a body that starts with this refers to the rows the event describes
_INSERT = ("INSERT INTO events(event_id, replica_id, kind, created_at, body) "
           "VALUES (?, ?, ?, ?, ?)")


def append_event(
    conn: sqlite3.Connection, replica_id: str, kind: str, created_at: str, body: dict[str, Any],
    event_id: str | None = None,
) -> str:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind}")
    eid = event_id or new_id()
    conn.execute(_INSERT, (eid, replica_id, kind, created_at, compact_json(body)))
    return eid


def append_refs(conn: sqlite3.Connection, replica_id: str, created_at: str,
                refs: Sequence[tuple[str, str]]) -> None:
    """Events whose bodies are rebuilt from the rows they describe, (kind, key) in order, in
    one statement (in the same transaction as the rows): a ``sale`` by its sale id, a
    ``register`` entry by its seq in this replica's chain."""
    for kind, _ in refs:
        if kind not in _REBUILD:
            raise ValueError(f"events of kind {kind} carry their body")
    conn.executemany(_INSERT, [(new_id(), replica_id, kind, created_at, REF + key)
                               for kind, key in refs])


def with_bodies(conn: sqlite3.Connection, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill in the body text of the events that refer to their rows (each a dict with at least
    ``kind``, ``replica_id`` and ``body``), in place; returns the same list."""
    refs: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["body"].startswith(REF):
            refs.setdefault(e["kind"], []).append(e)
    for kind, group in refs.items():
        texts = _REBUILD[kind](conn, [(e["replica_id"], e["body"][1:]) for e in group])
        for e in group:
            text = texts.get((e["replica_id"], e["body"][1:]))
            if text is None:
                raise IntegrityFailure(
                    f"outbox event {e.get('event_id')} refers to a {kind} that is not on file "
                    f"({e['body']}); the database was changed outside pharmos",
                    code="OUTBOX_REFERENCE_MISSING")
            e["body"] = text
    return events


_CHUNK = 400  # keys per query


def _chunks(keys: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    unique = list(dict.fromkeys(keys))
    return [unique[i:i + _CHUNK] for i in range(0, len(unique), _CHUNK)]


def _register_bodies(conn: sqlite3.Connection, keys: list[tuple[str, str]]
                     ) -> dict[tuple[str, str], str]:
    """A register event's body is the entry's stored row, exactly as it was hashed. An entry
    moved away by a rebase (``register_forked``) still has its row there."""
    out: dict[tuple[str, str], str] = {}
    for chunk in _chunks(keys):
        values = ", ".join("(?, ?)" for _ in chunk)
        params = [v for r, seq in chunk for v in (r, int(seq))]
        for table in ("register", "register_forked"):
            for row in conn.execute(
                    "SELECT replica_id, seq, entry_id, created_at, kind, ndc, qty, body, "
                    f"prev_hash, hash FROM {table} WHERE (replica_id, seq) IN "
                    f"(VALUES {values})", params):
                key = (row[0], str(row[1]))
                out.setdefault(key, compact_json({
                    "replica_id": row[0], "seq": row[1], "entry_id": row[2],
                    "created_at": row[3], "kind": row[4], "ndc": row[5], "qty": row[6],
                    "body": row[7], "prev_hash": row[8], "hash": row[9]}))
    return out


def _sale_bodies(conn: sqlite3.Connection, keys: list[tuple[str, str]]
                 ) -> dict[tuple[str, str], str]:
    """A sale event's body from the sale's row and lines: what was sold, from which lots, at
    what price, and the decision that allowed it (the request's Rx without its patient)."""
    texts: dict[str, str] = {}  # sale ids are unique across replicas
    for chunk in _chunks(keys):
        marks = ", ".join("?" for _ in chunk)
        ids = [sale_id for _, sale_id in chunk]
        lines: dict[str, list[tuple[Any, ...]]] = {}
        for ln in conn.execute(
                "SELECT sale_id, line_no, ndc, qty, unit_price_cents, allocations FROM "
                f"sale_lines WHERE sale_id IN ({marks}) ORDER BY sale_id, line_no", ids):
            lines.setdefault(ln[0], []).append(tuple(ln))
        for row in conn.execute(
                "SELECT sale_id, NULL, created_at, user_id, kind, jurisdiction, "
                "patient_id, decision_id, reasons, obligations, bundle_version, engine, "
                "decision_request, subtotal_cents, tax_cents, total_cents, rx FROM sales "
                f"WHERE sale_id IN ({marks})", ids):
            sale_lines = lines.get(row[0], [])
            rx = None if row[16] is None else {
                k: v for k, v in json.loads(row[16]).items() if k != "patient"}
            texts[row[0]] = compact_json({
                "sale_id": row[0], "created_at": row[2], "user_id": row[3], "kind": row[4],
                "jurisdiction": row[5], "patient_id": row[6], "decision_id": row[7],
                "decision": {"decision": "allow", "reasons": json.loads(row[8]),
                             "obligations": json.loads(row[9]), "bundle_version": row[10],
                             "engine": row[11],
                             "offline": json.loads(row[12]).get("offline", False)},
                "subtotal_cents": row[13], "tax_cents": row[14], "total_cents": row[15],
                "rx": rx,
                "lines": [{"line_no": ln[1], "ndc": ln[2], "qty": ln[3],
                           "unit_price_cents": ln[4]} for ln in sale_lines],
                "allocations": [{"line_no": ln[1], "batch_id": a[0], "lot": a[1],
                                 "expiry": a[2], "qty": a[3]}
                                for ln in sale_lines for a in json.loads(ln[5])],
            })
    return {key: texts[key[1]] for key in keys if key[1] in texts}


_REBUILD = {"register": _register_bodies, "sale": _sale_bodies}
