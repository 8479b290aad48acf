"""The controlled-substance register: a hash chain per replica.

Each entry stores its canonical JSON body, the previous entry's hash and its own hash,
``sha256(prev_hash || body)``. ``verify`` recomputes the whole chain and names the first
entry that does not check out.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pharmacy import outbox
from pharmacy.canonical import canonical_json
from pharmacy.errors import BadInput
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


INT64_MAX = 2**63 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
# columns that are also fields of the hashed body, and must equal them
_COLUMNS_IN_BODY = ("entry_id", "replica_id", "seq", "created_at", "kind", "ndc", "qty")
_TEXT_COLUMNS = ("replica_id", "entry_id", "created_at", "kind", "ndc", "body", "prev_hash",
                 "hash")


class BadRegisterEntry(BadInput):
    """A register entry received by sync that is not a well-formed, correctly hashed entry."""

    code = "BAD_REGISTER_ENTRY"


def _int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= INT64_MAX


def check_foreign(entry: Any) -> dict[str, Any]:
    """The entry as a dict, or :class:`BadRegisterEntry`: text columns are text, ``seq`` a
    whole number from 1, ``qty`` a whole number, ``body`` the canonical JSON object whose
    fields are the columns, and ``hash`` = ``sha256(prev_hash || body)``."""
    if not isinstance(entry, Mapping):
        raise BadRegisterEntry(f"a register entry must be an object, got {entry!r:.60}")
    for col in _TEXT_COLUMNS:
        if not isinstance(entry.get(col), str):
            raise BadRegisterEntry(f"register entry field {col!r} must be text, got "
                                   f"{entry.get(col)!r:.60}", field=col)
    if not _int(entry.get("seq"), 1):
        raise BadRegisterEntry(f"register entry seq must be a whole number from 1, got "
                               f"{entry.get('seq')!r:.60}", field="seq")
    if not _int(entry.get("qty"), -INT64_MAX):
        raise BadRegisterEntry(f"register entry qty must be a whole number, got "
                               f"{entry.get('qty')!r:.60}", field="qty")
    for col in ("prev_hash", "hash"):
        if not _HEX64.fullmatch(entry[col]):
            raise BadRegisterEntry(f"register entry {col} is not a sha256 hex digest",
                                   field=col)
    try:
        body = json.loads(entry["body"])
    except (ValueError, RecursionError):
        raise BadRegisterEntry("register entry body is not JSON", field="body") from None
    if not isinstance(body, dict):
        raise BadRegisterEntry("register entry body is not a JSON object", field="body")
    try:
        digest = entry_hash(entry["prev_hash"], entry["body"])
    except UnicodeError:  # a lone surrogate cannot be hashed (nor stored)
        raise BadRegisterEntry("register entry body is not UTF-8 text", field="body") from None
    if digest != entry["hash"]:
        raise BadRegisterEntry("register entry hash does not match its body", field="hash")
    for col in _COLUMNS_IN_BODY:
        if body.get(col) != entry[col]:
            raise BadRegisterEntry(f"register entry column {col} differs from its hashed body",
                                   field=col)
    return dict(entry)


def insert_foreign(conn: sqlite3.Connection, entry: Any) -> bool:
    """Store another replica's entry received by sync, exactly as it was hashed. An entry that
    does not check out (:func:`check_foreign`) is refused with :class:`BadRegisterEntry`."""
    e = check_foreign(entry)
    cur = conn.execute(
        "INSERT OR IGNORE INTO register(replica_id, seq, entry_id, created_at, kind, ndc, qty, "
        "body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e["replica_id"], e["seq"], e["entry_id"], e["created_at"], e["kind"], e["ndc"],
         e["qty"], e["body"], e["prev_hash"], e["hash"]),
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
        if not (isinstance(row["prev_hash"], str) and isinstance(row["body"], str)
                and row["prev_hash"].isascii()):
            return broken("entry body or previous hash is not text")
        try:
            digest = entry_hash(row["prev_hash"], row["body"])
        except UnicodeError:
            return broken("entry body is not UTF-8 text")
        if digest != row["hash"]:
            return broken("entry hash does not match its content")
        try:
            body = json.loads(row["body"])
        except (ValueError, RecursionError):
            return broken("entry body is not valid JSON")
        if not isinstance(body, dict):
            return broken("entry body is not a JSON object")
        for col in _COLUMNS_IN_BODY:
            if body.get(col) != row[col]:
                return broken(f"column {col} differs from the hashed entry")
        prev = row["hash"]
        expect_seq += 1
    return VerifyResult(True, count, chains)
