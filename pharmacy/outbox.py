"""Append-only events for sync, written inside the same transaction as what they describe."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from pharmacy.ids import new_id

_BODY = json.JSONEncoder(separators=(",", ":"))  # compact, insertion order

EVENT_KINDS = ("sale", "decision", "register", "movement", "batch", "batch_status", "product")


def append_event(
    conn: sqlite3.Connection, replica_id: str, kind: str, created_at: str, body: dict[str, Any],
    event_id: str | None = None,
) -> str:
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind}")
    eid = event_id or new_id()
    conn.execute(
        "INSERT INTO events(event_id, replica_id, kind, created_at, body) VALUES (?, ?, ?, ?, ?)",
        (eid, replica_id, kind, created_at, _BODY.encode(body)),
    )
    return eid
