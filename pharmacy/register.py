"""The controlled-substance register: a hash chain per replica.

Each entry stores its canonical JSON body, the previous entry's hash and its own hash,
``sha256(prev_hash || body)``. ``verify`` recomputes the whole chain and names the first
entry that does not check out.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pharmacy import outbox
from pharmacy.canonical import canonical_json
from pharmacy.ids import new_id

GENESIS = "0" * 64


def entry_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body.encode("utf-8")).hexdigest()


def append(
    conn: sqlite3.Connection, replica_id: str, created_at: str, kind: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """Append one entry at the end of this replica's chain, and its outbox event (call inside
    a transaction)."""
    last = conn.execute(
        "SELECT seq, hash FROM register WHERE replica_id = ? ORDER BY seq DESC LIMIT 1",
        (replica_id,),
    ).fetchone()
    seq = 1 if last is None else int(last[0]) + 1
    prev = GENESIS if last is None else str(last[1])
    entry = {
        **fields,
        "entry_id": new_id(),
        "replica_id": replica_id,
        "seq": seq,
        "created_at": created_at,
        "kind": kind,
    }
    body = canonical_json(entry)
    h = entry_hash(prev, body)
    conn.execute(
        "INSERT INTO register(replica_id, seq, entry_id, created_at, kind, ndc, qty, body, "
        "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (replica_id, seq, entry["entry_id"], created_at, kind, fields["ndc"], fields["qty"],
         body, prev, h),
    )
    outbox.append_refs(conn, replica_id, created_at, [("register", str(seq))])  # row is body
    return {**entry, "prev_hash": prev, "hash": h}


def insert_foreign(conn: sqlite3.Connection, entry: dict[str, Any]) -> bool:
    """Store another replica's entry received by sync, exactly as it was hashed."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO register(replica_id, seq, entry_id, created_at, kind, ndc, qty, "
        "body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (entry["replica_id"], entry["seq"], entry["entry_id"], entry["created_at"],
         entry["kind"], entry["ndc"], entry["qty"], entry["body"], entry["prev_hash"],
         entry["hash"]),
    )
    return cur.rowcount == 1


def entries(conn: sqlite3.Connection, keys: Sequence[tuple[str, int]]
            ) -> dict[tuple[str, int], dict[str, Any]]:
    """Stored entries by (replica_id, seq), body parsed, with the product's current name."""
    if not keys:
        return {}
    values = ", ".join("(?, ?)" for _ in keys)
    rows = conn.execute(
        "SELECT r.replica_id, r.seq, r.created_at, r.kind, r.ndc, r.qty, r.body, r.hash, "
        "p.name FROM register r LEFT JOIN products p ON p.ndc = r.ndc "
        f"WHERE (r.replica_id, r.seq) IN (VALUES {values})",
        [v for key in keys for v in key]).fetchall()
    return {(r["replica_id"], r["seq"]): {**dict(r), "body": json.loads(r["body"])}
            for r in rows}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int
    chains: int
    broken: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "entries": self.entries, "chains": self.chains}
        if self.broken is not None:
            out["broken"] = self.broken
        return out


_COLUMNS_IN_BODY = ("entry_id", "replica_id", "seq", "created_at", "kind", "ndc", "qty")


def verify(conn: sqlite3.Connection) -> VerifyResult:
    count = 0
    chains = 0
    replica = None
    prev = GENESIS
    expect_seq = 1
    rows = conn.execute(
        "SELECT replica_id, seq, entry_id, created_at, kind, ndc, qty, body, prev_hash, hash "
        "FROM register ORDER BY replica_id, seq"
    )
    for row in rows:
        if row["replica_id"] != replica:
            replica, prev, expect_seq = row["replica_id"], GENESIS, 1
            chains += 1
        count += 1

        def broken(why: str, row: sqlite3.Row = row, count: int = count,
                   chains: int = chains) -> VerifyResult:
            return VerifyResult(False, count, chains, {
                "replica_id": row["replica_id"], "seq": row["seq"],
                "entry_id": row["entry_id"], "reason": why,
            })

        if row["seq"] != expect_seq:
            return broken(f"sequence gap: expected entry {expect_seq}")
        if row["prev_hash"] != prev:
            return broken("previous-hash link does not match the entry before it")
        if entry_hash(row["prev_hash"], row["body"]) != row["hash"]:
            return broken("entry hash does not match its content")
        try:
            body = json.loads(row["body"])
        except ValueError:
            return broken("entry body is not valid JSON")
        for col in _COLUMNS_IN_BODY:
            if body.get(col) != row[col]:
                return broken(f"column {col} differs from the hashed entry")
        prev = row["hash"]
        expect_seq += 1
    return VerifyResult(True, count, chains)
