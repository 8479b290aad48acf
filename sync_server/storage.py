"""Server storage: one interface (:class:`ServerStore`), SQLite and PostgreSQL implementations.

All merge logic lives in :class:`SqlServerStore`; the two backends differ only in how they
connect, lock a store, bulk-insert and spell an ``IN`` list. Every statement names its tenant
and store. Writes to one store are serialised (a row lock on ``stores`` in PostgreSQL, the
single writer in SQLite), so ``server_seq`` values become visible in order and a pull cursor
never skips a row that commits late.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import math
import re
import secrets
import sqlite3
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from pydantic_core import from_json, to_json

from crdt.shared_doc import DOCS
from pharmacy.canonical import canonical_json, is_utf8_text
from pharmacy.catalog import Product, product_from_json
from pharmacy.clock import Clock, iso, parse_iso, utcnow
from pharmacy.errors import BadInput
from pharmacy.ids import new_id
from pharmacy.inventory import (
    BATCH_STATUSES,
    MAX_UNIT_COST_CENTS,
    batch_id_for,
    batch_row,
    counter_id,
    status_rank,
)
from pharmacy.money import fmt, to_cents
from pharmacy.replication import HQ_PREFIX
from pharmacy.sales import JURISDICTIONS
from sync_server.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFoundError,
    SyncError,
    Unauthorized,
)

# kinds only head office writes
HQ_KINDS = frozenset({"policy_bundle", "allowances", "model", "doc_update",
                      "key_endorsement", "user"})
# kinds every terminal of the store pulls
SHARED_KINDS = frozenset({"product", "batch", "batch_status", "register", "doc_update",
                          "policy_bundle", "allowances", "model", "key_endorsement",
                          "user"})
# kinds whose bodies the server reads (views, pulls); other bodies are stored as sent
READ_KINDS = frozenset({"product", "batch", "batch_status", "register"})
PUBLISH_KINDS = frozenset({"product", "policy_bundle", "allowances", "model",
                           "key_endorsement", "user"})
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_IN_CHUNK = 500
IDEMPOTENCY_TTL = timedelta(days=7)
# an enrollment code lives at most a year (a negative lifetime makes one already expired)
MAX_ENROLL_TTL_HOURS = 24 * 365
# report periods: years whose days (and a day either side, in any time zone) a datetime holds
REPORT_YEARS = (1900, 9998)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_code(code: str) -> str:
    return re.sub(r"[\s-]", "", code).upper()


def check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadRequest(f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-'",
                         code="BAD_NAME")
    return value


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    tenant_id: str
    store_id: str
    name: str | None


class ServerStore(Protocol):
    """What the HTTP app and the admin commands need from a database."""

    kind: str

    def migrate(self) -> int: ...
    def close(self) -> None: ...
    def schema_version(self) -> int: ...
    def resolve_store(self, store_id: str, tenant_id: str | None = None) -> tuple[str, str]: ...
    def create_store(self, tenant_id: str, store_id: str, *, jurisdiction: str | None = None,
                     products: Sequence[Product] = (),
                     opening: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]: ...
    def trust_key(self, tenant_id: str, public_pem: str) -> dict[str, Any]: ...
    def endorse_key(self, tenant_id: str, doc: Mapping[str, Any]) -> dict[str, Any]: ...
    def published_user(self, tenant_id: str, store_id: str | None, username: str
                       ) -> dict[str, Any]: ...
    def publish_user(self, tenant_id: str, store_id: str | None, username: str, *,
                     role: str | None = ..., display_name: str | None = ...,
                     secret: str | None = ..., kind: str = ...,
                     active: bool | None = ...) -> dict[str, Any]: ...
    def create_enroll_code(self, tenant_id: str, store_id: str,
                           ttl_hours: float = 72) -> dict[str, Any]: ...
    def enroll(self, code: str, name: str | None, replica_id: str | None) -> dict[str, Any]: ...
    def authenticate(self, token: str) -> Terminal: ...
    def revoke(self, terminal_id: str) -> dict[str, Any]: ...
    def terminals(self, tenant_id: str, store_id: str) -> list[dict[str, Any]]: ...
    def push(self, term: Terminal, req: Mapping[str, Any]) -> dict[str, Any]: ...
    def pull(self, term: Terminal, req: Mapping[str, Any]) -> dict[str, Any]: ...
    def known_events(self, term: Terminal, event_ids: Sequence[str]) -> list[str]: ...
    def blob(self, term: Terminal, sha256: str) -> bytes: ...
    def publish(self, tenant_id: str, store_id: str | None, kind: str,
                bodies: Sequence[Mapping[str, Any]], blob: bytes | None = None
                ) -> dict[str, Any]: ...
    def check_bundle(self, tenant_id: str, blob: bytes) -> None: ...
    def stock(self, tenant_id: str, store_id: str, today: date) -> list[dict[str, Any]]: ...
    def store_events(self, tenant_id: str, store_id: str,
                     kinds: Sequence[str] | None = None) -> list[dict[str, Any]]: ...
    def store_counters(self, tenant_id: str, store_id: str) -> list[tuple[str, str, int, int]]: ...
    def sales_report(self, tenant_id: str, store_id: str, start: date, end: date,
                     tz: tzinfo = ...) -> dict[str, Any]: ...


_COUNTER_COLUMNS = "tenant_id, store_id, counter_id, replica_id, p, n, server_seq"
_COUNTER_UPSERT = ("ON CONFLICT (tenant_id, store_id, counter_id, replica_id) DO UPDATE SET "
                   "p = excluded.p, n = excluded.n, server_seq = excluded.server_seq")


class Tx(ABC):
    """One open transaction; SQL is written with ``?`` placeholders."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def in_list(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """An ``IN``-list test for a column: ('IN (?, ?)', values) or ('= ANY(?)', [values])."""

    def batch(self, stmts: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        """Run statements in order (one round trip where the engine allows); the rows of
        each (empty for a statement that returns none)."""
        out: list[list[tuple[Any, ...]]] = []
        for sql, params in stmts:
            cur = self.execute(sql, params)
            out.append([tuple(r) for r in cur.fetchall()] if cur.description else [])
        return out

    def finish(self, stmts: Sequence[tuple[str, Sequence[Any]]],
               counters: Sequence[tuple[str, str, str, str, int, int, int]] = ()) -> None:
        """Upsert ``counters`` (as :meth:`upsert_counters`) and run the last statements of a
        write transaction; the engine may send the commit with them."""
        self.upsert_counters(counters)
        self.batch(stmts)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            marks = ", ".join("?" for _ in columns)
            self.many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def upsert_counters(self, rows: Sequence[tuple[str, str, str, str, int, int, int]]
                        ) -> None:
        """Insert or replace counter rows (tenant, store, counter, replica, p, n, server_seq);
        each (counter, replica) at most once."""
        if rows:
            self.many(f"INSERT INTO counters({_COUNTER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                      f"{_COUNTER_UPSERT}", rows)

    def select_in_stmts(self, sql: str, head: Sequence[Any], column: str,
                        values: Sequence[Any], tail: str = ""
                        ) -> list[tuple[str, list[Any]]]:
        """The statements ``sql + ' AND ' + column IN (...) + tail`` over chunks of
        ``values`` (for :meth:`batch`)."""
        out: list[tuple[str, list[Any]]] = []
        vals = list(values)
        for i in range(0, len(vals), _IN_CHUNK):
            frag, params = self.in_list(vals[i:i + _IN_CHUNK])
            out.append((f"{sql} AND {column} {frag}{tail}", [*head, *params]))
        return out

    def select_in(self, sql: str, head: Sequence[Any], column: str,
                  values: Sequence[Any], tail: str = "") -> list[tuple[Any, ...]]:
        """Run ``sql + ' AND ' + column IN (...) + tail`` over chunks of ``values``."""
        return [r for rows in self.batch(self.select_in_stmts(sql, head, column, values, tail))
                for r in rows]


_EVENT_COLUMNS = ("tenant_id", "store_id", "event_id", "replica_id", "local_seq", "kind",
                  "created_at", "body", "server_seq", "shared", "terminal_id", "blob_sha256",
                  "received_at")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _has_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds a NUL character in any string (key or value)."""
    return any("\x00" in s for s in _strings(value))


def _not_storable_text(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored as text (a NUL, which PostgreSQL text cannot
    hold; a lone surrogate, which is not UTF-8), or None."""
    for s in _strings(value):
        if "\x00" in s:
            return "holds a NUL character (\\u0000)"
        if not is_utf8_text(s):
            return "holds text that is not UTF-8 (a lone surrogate escape such as \\ud800)"
    return None


def _validate_body(kind: str, body: Mapping[str, Any], where: str) -> None:
    """Bodies the server reads (materialised views, stock effects) must have their fields,
    each within what the views' columns hold."""
    def need(key: str, typ: type | tuple[type, ...]) -> Any:
        v = body.get(key)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise BadRequest(f"{where}: a {kind} event needs {key!r}", code="BAD_EVENT",
                             kind=kind, field=key)
        return v

    if _has_nul(body):  # PostgreSQL text holds no NUL character
        raise BadRequest(f"{where}: a {kind} event's text holds a NUL character (\\u0000)",
                         code="BAD_EVENT", kind=kind)
    if kind == "batch":
        for k in ("batch_id", "ndc", "lot", "expiry", "received_at"):
            need(k, str)
        cost = body.get("unit_cost_cents")
        if cost is not None and (not isinstance(cost, int) or isinstance(cost, bool)):
            raise BadRequest(f"{where}: unit_cost_cents must be an integer", code="BAD_EVENT",
                             kind=kind, field="unit_cost_cents")
        if cost is not None and not 0 <= cost <= MAX_UNIT_COST_CENTS:
            raise BadRequest(f"{where}: unit_cost_cents {cost} is outside 0..{MAX_UNIT_COST_CENTS}",
                             code="BAD_EVENT", kind=kind, field="unit_cost_cents")
    elif kind == "batch_status":
        need("batch_id", str)
        need("status_at", str)
        if body.get("status") not in BATCH_STATUSES:
            raise BadRequest(f"{where}: batch status must be one of {BATCH_STATUSES}",
                             code="BAD_EVENT")
    elif kind == "product":
        try:
            product_from_json(body)
        except (BadInput, ValueError, TypeError) as e:
            raise BadRequest(f"{where}: product: {e}", code="BAD_EVENT") from None
    elif kind == "register":
        for k in ("replica_id", "entry_id", "created_at", "kind", "ndc", "body", "prev_hash",
                  "hash"):
            need(k, str)
        need("seq", int)
        need("qty", int)


# the body of an event the server does not read: opaque, stored byte for byte
_OPAQUE: Mapping[str, Any] = MappingProxyType({})


def _may_name_scope(text: str) -> bool:
    """Whether JSON text may hold a ``store_id`` or ``tenant_id`` key: it names one, or it
    has a ``\\u`` escape that could spell one (such a body is parsed, not taken as opaque)."""
    # a single-character search first: most pages hold no backslash at all, and the
    # two-character one scans far slower
    return ('"store_id"' in text or '"tenant_id"' in text
            or ("\\" in text and "\\u" in text))


def _json_text(body: Mapping[str, Any]) -> str:
    """Compact JSON of an event body (Rust encoder: the push hot path)."""
    return to_json(body).decode("utf-8")


class SqlServerStore(ABC):
    """The shared implementation; subclasses supply connections and a few dialect bits."""

    kind = "sql"
    migrations_dir = ""
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock

    # ---- backend hooks ------------------------------------------------------------------------
    @abstractmethod
    def _tx(self, write: bool) -> contextlib.AbstractContextManager[Tx]: ...

    @abstractmethod
    def _lock_store_sql(self) -> str: ...

    @abstractmethod
    def close(self) -> None: ...

    def _bootstrap(self, tx: Tx) -> None:
        """Create the migrations table if missing (the same SQL on both engines)."""
        tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                   "name TEXT NOT NULL, applied_at TEXT NOT NULL)")

    # ---- migrations ---------------------------------------------------------------------------
    def _migrations(self) -> list[tuple[int, str, str]]:
        pkg = resources.files("sync_server.migrations").joinpath(self.migrations_dir)
        out = []
        for entry in pkg.iterdir():
            if entry.name.endswith(".sql") and entry.name[:4].isdigit():
                out.append((int(entry.name[:4]), entry.name, entry.read_text("utf-8")))
        return sorted(out)

    def schema_version(self) -> int:
        with self._tx(False) as tx:
            self._bootstrap(tx)
            row = tx.one("SELECT MAX(version) FROM schema_migrations")
        return int(row[0] or 0) if row else 0

    def migrate(self) -> int:
        with self._tx(True) as tx:
            self._bootstrap(tx)
        version = self.schema_version()
        latest = max((v for v, _, _ in self._migrations()), default=0)
        if version > latest:
            raise Conflict(f"the database has schema {version}, newer than this server "
                           f"({latest}); upgrade pharmos", code="SCHEMA_TOO_NEW")
        for v, name, sql in self._migrations():
            if v <= version:
                continue
            with self._tx(True) as tx:
                for stmt in _split(sql):
                    tx.execute(stmt)
                tx.execute("INSERT INTO schema_migrations(version, name, applied_at) "
                           "VALUES (?, ?, ?)", (v, name, iso(self.clock())))
            version = v
        return version

    def check_schema(self) -> None:
        latest = max((v for v, _, _ in self._migrations()), default=0)
        have = self.schema_version()
        if have != latest:
            raise Conflict(f"the database schema is {have}, this server needs {latest}; "
                           "run 'pharmos server migrate --db URL'", code="SCHEMA_MISMATCH")

    # ---- stores and tenants -------------------------------------------------------------------
    def resolve_store(self, store_id: str, tenant_id: str | None = None) -> tuple[str, str]:
        with self._tx(False) as tx:
            if tenant_id is not None:
                rows = tx.all("SELECT tenant_id, store_id FROM stores WHERE tenant_id = ? "
                              "AND store_id = ?", (tenant_id, store_id))
            else:
                rows = tx.all("SELECT tenant_id, store_id FROM stores WHERE store_id = ?",
                              (store_id,))
        if not rows:
            raise NotFoundError(f"no store {store_id!r}"
                                + (f" in tenant {tenant_id!r}" if tenant_id else ""),
                                code="UNKNOWN_STORE")
        if len(rows) > 1:
            raise BadRequest(f"store {store_id!r} exists in several tenants; give --tenant",
                             code="AMBIGUOUS_STORE")
        return str(rows[0][0]), str(rows[0][1])

    def tenant_stores(self, tenant_id: str) -> list[str]:
        with self._tx(False) as tx:
            rows = tx.all("SELECT store_id FROM stores WHERE tenant_id = ? ORDER BY store_id",
                          (tenant_id,))
        if not rows and not self._tenant_exists(tenant_id):
            raise NotFoundError(f"no tenant {tenant_id!r}", code="UNKNOWN_TENANT")
        return [str(r[0]) for r in rows]

    def _tenant_exists(self, tenant_id: str) -> bool:
        with self._tx(False) as tx:
            return tx.one("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,)) is not None

    def create_store(self, tenant_id: str, store_id: str, *, jurisdiction: str | None = None,
                     products: Sequence[Product] = (),
                     opening: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        check_name("tenant", tenant_id)
        check_name("store", store_id)
        if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
            raise BadRequest(f"jurisdiction {jurisdiction!r} is not one of "
                             f"{', '.join(JURISDICTIONS)}", code="BAD_JURISDICTION")
        now = iso(self.clock())
        by_ndc: dict[str, Product] = {p.ndc: p for p in products}
        hq = f"{HQ_PREFIX}{tenant_id}:{store_id}"
        with self._tx(True) as tx:
            tx.execute("INSERT INTO tenants(tenant_id, created_at) VALUES (?, ?) "
                       "ON CONFLICT DO NOTHING", (tenant_id, now))
            if tx.one("SELECT 1 FROM stores WHERE tenant_id = ? AND store_id = ?",
                      (tenant_id, store_id)):
                raise Conflict(f"store {store_id!r} already exists in tenant {tenant_id!r}",
                               code="STORE_EXISTS")
            tx.execute("INSERT INTO stores(tenant_id, store_id, created_at, jurisdiction, "
                       "next_seq) VALUES (?, ?, ?, ?, 0)", (tenant_id, store_id, now, jurisdiction))
            seq = self._lock_store(tx, tenant_id, store_id)
            rows: list[tuple[Any, ...]] = []
            # tenant-wide publications made before this store existed
            for pub_id, kind, body, sha in tx.all(
                    "SELECT pub_id, kind, body, blob_sha256 FROM tenant_publications "
                    "WHERE tenant_id = ? ORDER BY created_at, pub_id", (tenant_id,)):
                seq += 1
                rows.append(self._hq_row(tenant_id, store_id, pub_id, kind, now, body, seq, sha))
            for p in products:
                seq += 1
                rows.append(self._hq_row(tenant_id, store_id, new_id(), "product", now,
                                         canonical_json(p.to_json()), seq, None))
            counters: list[tuple[Any, ...]] = []
            units = 0
            for item in opening:
                product = by_ndc.get(str(item["ndc"]))
                if product is None:
                    raise BadRequest(f"opening stock names {item['ndc']}, not in the catalog",
                                     code="UNKNOWN_PRODUCT")
                qty = int(item["qty"])
                bid = batch_id_for(product.ndc11, str(item["lot"]))
                cost = item.get("unit_cost")
                batch = {"batch_id": bid, "ndc": product.ndc, "lot": str(item["lot"]),
                         "expiry": str(item["expiry"]), "supplier": item.get("supplier"),
                         "unit_cost_cents": None if cost is None else to_cents(cost),
                         "received_at": now}
                seq += 1
                rows.append(self._hq_row(tenant_id, store_id, new_id(), "batch", now,
                                         canonical_json(batch), seq, None))
                seq += 1
                rows.append(self._hq_row(tenant_id, store_id, new_id(), "movement", now,
                                         canonical_json({"batch_id": bid, "kind": "receive",
                                                         "delta": qty, "reason": None,
                                                         "reference": "opening stock",
                                                         "movement_id": new_id(),
                                                         "user_id": None}), seq, None))
                seq += 1
                counters.append((tenant_id, store_id, counter_id(bid), hq, qty, 0, seq))
                units += qty
            tx.insert_rows("events", _EVENT_COLUMNS, rows)
            self._materialize(tx, tenant_id, store_id, [(r[5], json.loads(r[7])) for r in rows])
            tx.insert_rows("counters", ("tenant_id", "store_id", "counter_id", "replica_id",
                                        "p", "n", "server_seq"), counters)
            self._set_seq(tx, tenant_id, store_id, seq)
        return {"tenant_id": tenant_id, "store_id": store_id, "jurisdiction": jurisdiction,
                "products": len(products), "batches": len(opening), "units": units,
                "server_seq": seq}

    def _hq_row(self, tenant: str, store: str, event_id: str, kind: str, now: str, body: str,
                seq: int, sha: str | None) -> tuple[Any, ...]:
        return (tenant, store, event_id, f"{HQ_PREFIX}{tenant}", None, kind, now, body, seq,
                int(kind in SHARED_KINDS), None, sha, now)

    def _lock_store(self, tx: Tx, tenant_id: str, store_id: str, *,
                    for_update: bool = True) -> int:
        """The store's next server_seq; locks the store row for the transaction unless
        ``for_update`` is False (a read)."""
        (rows,) = tx.batch([self._lock_store_stmt(tenant_id, store_id, for_update=for_update)])
        return self._store_seq(rows, tenant_id, store_id)

    def _lock_store_stmt(self, tenant_id: str, store_id: str, *,
                         for_update: bool = True) -> tuple[str, Sequence[Any]]:
        return ("SELECT next_seq FROM stores WHERE tenant_id = ? AND store_id = ?"
                + (self._lock_store_sql() if for_update else ""), (tenant_id, store_id))

    @staticmethod
    def _store_seq(rows: Sequence[tuple[Any, ...]], tenant_id: str, store_id: str) -> int:
        """The result of :meth:`_lock_store_stmt`."""
        if not rows:
            raise NotFoundError(f"no store {store_id!r} in tenant {tenant_id!r}",
                                code="UNKNOWN_STORE")
        return int(rows[0][0])

    def _set_seq(self, tx: Tx, tenant_id: str, store_id: str, seq: int) -> None:
        tx.execute(*self._set_seq_stmt(tenant_id, store_id, seq))

    @staticmethod
    def _set_seq_stmt(tenant_id: str, store_id: str, seq: int) -> tuple[str, Sequence[Any]]:
        return ("UPDATE stores SET next_seq = ? WHERE tenant_id = ? AND store_id = ?",
                (seq, tenant_id, store_id))

    def trust_key(self, tenant_id: str, public_pem: str) -> dict[str, Any]:
        if "BEGIN PUBLIC KEY" not in public_pem:
            raise BadRequest("the trusted key must be a PEM public key", code="BAD_KEY")
        with self._tx(True) as tx:
            row = tx.one("SELECT trusted_keys FROM tenants WHERE tenant_id = ?", (tenant_id,))
            if row is None:
                raise NotFoundError(f"no tenant {tenant_id!r}", code="UNKNOWN_TENANT")
            keys = list(json.loads(row[0]))
            if public_pem not in keys:
                keys.append(public_pem)
            tx.execute("UPDATE tenants SET trusted_keys = ? WHERE tenant_id = ?",
                       (json.dumps(keys), tenant_id))
        return {"tenant_id": tenant_id, "trusted_keys": len(keys)}

    def endorse_key(self, tenant_id: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """Rotate the tenant's signing key: ``doc`` (``pharmacy.signing.endorse_key``) must be
        signed by a key the tenant trusts. The endorsed key is trusted from now on (new
        terminals get it at enrollment), a key it retires is dropped, and ``doc`` is
        published to every store so enrolled terminals learn it on their next sync."""
        from pharmacy.signing import (
            SignatureInvalid,
            TrustStore,
            UnknownSigningKey,
            endorsed_pems,
            verify_endorsement,
        )

        with self._tx(False) as tx:
            row = tx.one("SELECT trusted_keys FROM tenants WHERE tenant_id = ?", (tenant_id,))
        if row is None:
            raise NotFoundError(f"no tenant {tenant_id!r}", code="UNKNOWN_TENANT")
        pems = [str(p) for p in json.loads(row[0])]
        try:
            statement = verify_endorsement(
                TrustStore.from_pems(p.encode("ascii") for p in pems), doc)
        except (SignatureInvalid, UnknownSigningKey) as e:
            raise BadRequest(f"the endorsement does not check out ({e.code}): it must be "
                             f"signed by a key tenant {tenant_id} trusts", code=e.code) from None
        keep = endorsed_pems(pems, statement)
        with self._tx(True) as tx:
            tx.execute("UPDATE tenants SET trusted_keys = ? WHERE tenant_id = ?",
                       (json.dumps(keep), tenant_id))
        pub = self.publish(tenant_id, None, "key_endorsement", [dict(doc)])
        return {"tenant_id": tenant_id, "trusted": statement["key_id"],
                "retired": list(statement["retire"]), "trusted_keys": len(keep),
                "stores": pub["stores"]}

    # ---- enrollment and auth ------------------------------------------------------------------
    def create_enroll_code(self, tenant_id: str, store_id: str,
                           ttl_hours: float = 72) -> dict[str, Any]:
        try:
            hours = float(ttl_hours)
        except (TypeError, ValueError):
            hours = math.nan
        if not abs(hours) <= MAX_ENROLL_TTL_HOURS:  # NaN too
            raise BadRequest(f"an enrollment code lives at most {MAX_ENROLL_TTL_HOURS} hours, "
                             f"not {ttl_hours!r}", code="BAD_ARGS", field="ttl_hours")
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
        code = "-".join(raw[i:i + 4] for i in range(0, 16, 4))
        now = self.clock()
        expires = now + timedelta(hours=hours)
        with self._tx(True) as tx:
            self._lock_store(tx, tenant_id, store_id)
            tx.execute("INSERT INTO enroll_codes(code_hash, tenant_id, store_id, created_at, "
                       "expires_at) VALUES (?, ?, ?, ?, ?)",
                       (_sha(raw), tenant_id, store_id, iso(now), iso(expires)))
        return {"code": code, "tenant_id": tenant_id, "store_id": store_id,
                "expires_at": iso(expires)}

    def enroll(self, code: str, name: str | None, replica_id: str | None) -> dict[str, Any]:
        h = _sha(normalize_code(code))
        now = self.clock()
        with self._tx(True) as tx:
            row = tx.one("SELECT tenant_id, store_id, expires_at, used_at FROM enroll_codes "
                         "WHERE code_hash = ?", (h,))
            if row is None:
                raise Unauthorized("this enrollment code is not known; ask head office for a "
                                   "new one", code="BAD_ENROLL_CODE")
            tenant_id, store_id, expires_at, used_at = row
            if used_at is not None:
                raise Unauthorized("this enrollment code was already used; ask head office "
                                   "for a new one", code="ENROLL_CODE_USED")
            if str(expires_at) < iso(now):
                raise Unauthorized("this enrollment code has expired; ask head office for a "
                                   "new one", code="ENROLL_CODE_EXPIRED")
            terminal_id = new_id()
            token = "pmt_" + secrets.token_urlsafe(32)
            tx.execute("UPDATE enroll_codes SET used_at = ?, terminal_id = ? "
                       "WHERE code_hash = ?", (iso(now), terminal_id, h))
            tx.execute("INSERT INTO terminals(terminal_id, tenant_id, store_id, token_hash, "
                       "name, enrolled_at, replica_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (terminal_id, tenant_id, store_id, _sha(token), name, iso(now),
                        replica_id))
            store = tx.one("SELECT jurisdiction FROM stores WHERE tenant_id = ? AND "
                           "store_id = ?", (tenant_id, store_id))
            keys = tx.one("SELECT trusted_keys FROM tenants WHERE tenant_id = ?", (tenant_id,))
        return {"terminal_id": terminal_id, "token": token, "tenant_id": tenant_id,
                "store_id": store_id, "jurisdiction": store[0] if store else None,
                "trusted_keys": json.loads(keys[0]) if keys else [],
                "server_time": iso(now)}

    def authenticate(self, token: str) -> Terminal:
        if not token:
            raise Unauthorized("no terminal token; enroll this terminal first",
                               code="NO_TOKEN")
        with self._tx(False) as tx:
            row = tx.one("SELECT terminal_id, tenant_id, store_id, name, revoked_at "
                         "FROM terminals WHERE token_hash = ?", (_sha(token),))
        if row is None:
            raise Unauthorized("the terminal token is not known; enroll this terminal again",
                               code="BAD_TOKEN")
        if row[4] is not None:
            raise Unauthorized("this terminal was revoked by head office on " + str(row[4]),
                               code="TOKEN_REVOKED")
        return Terminal(str(row[0]), str(row[1]), str(row[2]), row[3])

    def revoke(self, terminal_id: str) -> dict[str, Any]:
        now = iso(self.clock())
        with self._tx(True) as tx:
            row = tx.one("SELECT revoked_at, tenant_id, store_id FROM terminals "
                         "WHERE terminal_id = ?", (terminal_id,))
            if row is None:
                raise NotFoundError(f"no terminal {terminal_id}", code="UNKNOWN_TERMINAL")
            if row[0] is None:
                tx.execute("UPDATE terminals SET revoked_at = ? WHERE terminal_id = ?",
                           (now, terminal_id))
        return {"terminal_id": terminal_id, "tenant_id": row[1], "store_id": row[2],
                "revoked_at": row[0] or now}

    def terminals(self, tenant_id: str, store_id: str) -> list[dict[str, Any]]:
        with self._tx(False) as tx:
            top = self._lock_store(tx, tenant_id, store_id, for_update=False)
            rows = tx.all(
                "SELECT terminal_id, name, enrolled_at, revoked_at, replica_id, last_push_at, "
                "last_pull_at, pull_cursor, status FROM terminals WHERE tenant_id = ? AND "
                "store_id = ? ORDER BY enrolled_at, terminal_id", (tenant_id, store_id))
        out = []
        for r in rows:
            st = json.loads(r[8] or "{}")
            last = max((x for x in (r[5], r[6]) if x), default=None)
            out.append({
                "terminal_id": r[0], "name": r[1], "enrolled_at": r[2], "revoked_at": r[3],
                "replica_id": r[4], "last_push_at": r[5], "last_pull_at": r[6],
                "last_sync_at": last, "pull_cursor": r[7],
                "behind": None if r[7] is None else max(0, top - int(r[7])),
                "pending_events": st.get("pending_events"),
                "pending_counters": st.get("pending_counters"),
                "pending_docs": st.get("pending_docs"),
                "offline_since": st.get("offline_since"),
                "reported_last_success": st.get("last_success"),
            })
        return out

    # ---- push ---------------------------------------------------------------------------------
    def _check_scope(self, term: Terminal, req: Mapping[str, Any],
                     bodies: Sequence[Mapping[str, Any]]) -> None:
        """The request, its rows and its events' bodies (``bodies``, parsed as far as the
        server reads them) name no other store or tenant."""
        if req.get("store_id") != term.store_id:
            raise Forbidden(f"this terminal belongs to store {term.store_id!r}, not "
                            f"{req.get('store_id')!r}", code="SCOPE_VIOLATION")
        ok_store, ok_tenant = (None, term.store_id), (None, term.tenant_id)
        for section in ("events", "counters"):
            for i, row in enumerate(req.get(section) or ()):
                body = bodies[i] if section == "events" else None
                if row.get("store_id") in ok_store and row.get("tenant_id") in ok_tenant and (
                        not body or (body.get("store_id") in ok_store
                                     and body.get("tenant_id") in ok_tenant)):
                    continue  # the common case: nothing names another store
                holders = (row, body or {}) if section == "events" else (row,)
                for holder in holders:
                    if holder.get("store_id") not in ok_store or \
                            holder.get("tenant_id") not in ok_tenant:
                        key = "store_id" if holder.get("store_id") not in ok_store \
                            else "tenant_id"
                        raise Forbidden(
                            f"{section[:-1]} {i + 1} names {key} {holder.get(key)!r}; "
                            f"this terminal may write only its own store",
                            code="SCOPE_VIOLATION", section=section, index=i)

    @staticmethod
    def _behind_stmt(tenant: str, store: str, replica: str, replica_seq: int | None
                     ) -> list[tuple[str, Sequence[Any]]]:
        """The statement :meth:`_check_behind` reads (none when the terminal sent no
        ``replica_seq``)."""
        if replica_seq is None:
            return []
        return [("SELECT MAX(local_seq) FROM events WHERE tenant_id = ? AND store_id = ? "
                 "AND replica_id = ?", (tenant, store, replica))]

    @staticmethod
    def _check_behind(rows: Sequence[tuple[Any, ...]], replica: str,
                      replica_seq: int | None) -> None:
        """The replica's events held here (the rows of :meth:`_behind_stmt`) go no further
        than the terminal's database."""
        if replica_seq is None:
            return
        have = None if not rows or rows[0][0] is None else int(rows[0][0])
        if have is not None and have > int(replica_seq):
            raise Conflict(
                f"head office holds events up to seq {have} of replica {replica}, this "
                f"database only up to {replica_seq}: it was restored from a backup; take a new "
                "replica id", code="REPLICA_BEHIND", replica_id=replica, server_seq=have,
                local_seq=int(replica_seq))

    @staticmethod
    def _fingerprint(req: Mapping[str, Any]) -> str:
        parts = [f"{e['event_id']}|{e['replica_id']}|{e['seq']};" for e in req.get("events") or ()]
        parts += [f"{c['counter_id']}|{c['replica_id']}|{c['p']}|{c['n']};"
                  for c in req.get("counters") or ()]
        parts += [f"{d['update_id']};" for d in req.get("docs") or ()]
        return hashlib.sha256("".join(parts).encode()).hexdigest()

    @staticmethod
    def _parse_bodies(events: Sequence[Mapping[str, Any]]
                      ) -> tuple[list[str], list[Mapping[str, Any]]]:
        """(text to store, body as the server reads it) of each event. Bodies arrive as JSON
        text (stored byte for byte) or, from Python callers, as dicts. Each must be a JSON
        object; one the server does not read is not parsed (read as empty)."""
        texts = [e["body"] for e in events]
        if (set(map(type, texts)) == {str} and not {e["kind"] for e in events} & READ_KINDS
                and {t[:1] for t in texts} == {"{"} and {t[-1:] for t in texts} == {"}"}):
            # the common case, checked for the whole page at once: text bodies of kinds the
            # server does not read, none naming a store or tenant (not even with an escape)
            joined = "\n".join(texts)
            if not _may_name_scope(joined):
                return texts, [_OPAQUE] * len(texts)
        texts = []
        parsed_bodies: list[Mapping[str, Any]] = []
        for i, e in enumerate(events):
            body = e["body"]
            if isinstance(body, str):
                text = body
                if e["kind"] in READ_KINDS or _may_name_scope(text):
                    try:
                        parsed = from_json(text)
                    except ValueError:
                        parsed = None
                elif text[:1] == "{" and (text[-1:] == "}" or text.rstrip()[-1:] == "}"):
                    parsed = _OPAQUE  # stored byte for byte
                else:
                    parsed = None
            else:
                parsed, text = body, None
            if parsed is not _OPAQUE and not isinstance(parsed, dict):
                raise BadRequest(f"event {i + 1} ({e.get('event_id')}): the body must be a "
                                 "JSON object", code="BAD_EVENT")
            texts.append(text if text is not None else _json_text(parsed))
            parsed_bodies.append(parsed)
        return texts, parsed_bodies

    def push(self, term: Terminal, req: Mapping[str, Any]) -> dict[str, Any]:
        evs: Sequence[Mapping[str, Any]] = req.get("events") or ()
        texts, bodies = self._parse_bodies(evs)
        self._check_scope(term, req, bodies)
        tenant, store = term.tenant_id, term.store_id
        now = iso(self.clock())
        # ---- validate everything before touching the database
        events: dict[str, int] = {}  # event id -> index of its first occurrence
        by_replica: dict[str, dict[int, str]] = {}  # replica -> local seq -> event id
        slots: dict[tuple[str, int], str] = {}
        kinds_ok: set[str] = set()
        replicas_ok: set[str] = set()
        acked = 0
        hq_kinds, hq, kind_ok, read_kinds = HQ_KINDS, HQ_PREFIX, _KIND.match, READ_KINDS
        for i, e in enumerate(evs):
            kind, eid, replica = e["kind"], e["event_id"], e["replica_id"]
            if kind not in kinds_ok:
                if not kind_ok(kind):
                    raise BadRequest(f"event {i + 1} ({eid}): kind {kind!r} is not an event "
                                     "kind", code="BAD_EVENT_KIND")
                if kind in hq_kinds:
                    raise Forbidden(f"event {i + 1} ({eid}): only head office writes {kind} "
                                    "events", code="FORBIDDEN_KIND")
                kinds_ok.add(kind)
            if replica not in replicas_ok:
                if replica.startswith(hq):
                    raise Forbidden(f"event {i + 1} ({eid}): replica ids starting with {hq!r} "
                                    "belong to head office", code="RESERVED_REPLICA")
                replicas_ok.add(replica)
            if kind in read_kinds:  # the only bodies _validate_body looks into
                _validate_body(kind, bodies[i], f"event {i + 1} ({eid})")
            seq = int(e["seq"])
            if slots.setdefault((replica, seq), eid) != eid:
                raise BadRequest(f"event {i + 1} ({eid}): two events claim seq {seq} of "
                                 f"replica {replica}", code="BAD_EVENT")
            if eid not in events:
                events[eid] = i
                by_replica.setdefault(replica, {})[seq] = eid
                if seq > acked:
                    acked = seq
        counters: dict[tuple[str, str], tuple[int, int]] = {}
        for i, c in enumerate(req.get("counters") or ()):
            key = (c["counter_id"], c["replica_id"])
            if c["replica_id"].startswith(HQ_PREFIX):
                raise Forbidden(f"counter row {i + 1}: replica ids starting with "
                                f"{HQ_PREFIX!r} belong to head office", code="RESERVED_REPLICA")
            p0, n0 = counters.get(key, (0, 0))
            counters[key] = (max(p0, int(c["p"])), max(n0, int(c["n"])))
        docs: dict[str, tuple[str, str]] = {}
        for i, d in enumerate(req.get("docs") or ()):
            if d["doc"] not in DOCS:
                raise BadRequest(f"doc update {i + 1}: unknown document {d['doc']!r}",
                                 code="UNKNOWN_DOC")
            try:
                base64.b64decode(d["data"], validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"doc update {i + 1}: data is not base64",
                                 code="BAD_DOC_UPDATE") from None
            docs.setdefault(d["update_id"], (d["doc"], d["data"]))
        idem = str(req["idempotency_key"])
        fingerprint = self._fingerprint(req)
        replica_id = str(req["replica_id"])
        by_rep: dict[str, list[str]] = {}
        for cid, rep in counters:
            by_rep.setdefault(rep, []).append(cid)
        with self._tx(True) as tx:
            # every read of the push in one batch (one round trip where the engine allows):
            # the store lock, the idempotency key, one range scan per replica (the events
            # already stored, same slot and id, and a fork, same slot and another id), the
            # doc updates already stored, how far the pushing replica got, the counters held
            reads: list[tuple[str, Sequence[Any]]] = [
                self._lock_store_stmt(tenant, store),
                ("SELECT terminal_id, response FROM idempotency WHERE tenant_id = ? AND "
                 "store_id = ? AND key = ?", (tenant, store, idem))]
            for replica, seqs in by_replica.items():
                reads.append(("SELECT local_seq, event_id FROM events WHERE tenant_id = ? AND "
                              "store_id = ? AND replica_id = ? AND local_seq >= ? AND "
                              "local_seq <= ? ORDER BY local_seq",
                              (tenant, store, replica, min(seqs), max(seqs))))
            behind = self._behind_stmt(tenant, store, replica_id, req.get("replica_seq"))
            reads.extend(behind)
            doc_reads = tx.select_in_stmts(
                "SELECT event_id FROM events WHERE tenant_id = ? AND store_id = ?",
                (tenant, store), "event_id", list(docs)) if docs else []
            reads.extend(doc_reads)
            for rep, cids in by_rep.items():
                reads.extend(tx.select_in_stmts(
                    "SELECT counter_id, replica_id, p, n FROM counters WHERE tenant_id = ? AND "
                    "store_id = ? AND replica_id = ?", (tenant, store, rep), "counter_id", cids))
            results = iter(tx.batch(reads))
            seq = self._store_seq(next(results), tenant, store)
            cached = next(results)
            if cached:
                saved = json.loads(cached[0][1])
                if cached[0][0] != term.terminal_id or saved.pop("_fp", None) != fingerprint:
                    raise Conflict("this idempotency key was already used for another request",
                                   code="IDEMPOTENCY_KEY_REUSED")
                return dict(saved)
            known: set[str] = set()
            for replica, seqs in by_replica.items():
                clash: list[tuple[int, str]] = []
                for s, theirs in next(results):
                    mine = seqs.get(int(s))
                    if mine == theirs:
                        known.add(theirs)
                    elif mine is not None:
                        clash.append((int(s), str(theirs)))
                if clash:
                    s, theirs = clash[0]
                    raise Conflict(
                        f"replica {replica} already wrote a different event at seq {s}: this "
                        "database was restored or copied and went on writing under the same "
                        "replica id; take a new replica id and rebase", code="REPLICA_FORKED",
                        replica_id=replica, seq=int(s), server_event_id=theirs,
                        pushed_event_id=seqs[int(s)])
            new = [i for eid, i in events.items() if eid not in known] if known \
                else list(events.values())
            if behind:
                self._check_behind(next(results), replica_id, req.get("replica_seq"))
            for _ in doc_reads:
                known.update(r[0] for r in next(results))
            existing: dict[tuple[str, str], tuple[int, int]] = {
                (cid, rep): (int(p), int(n)) for rows in results for cid, rep, p, n in rows}
            regress = [
                {"counter_id": k[0], "replica_id": k[1], "p": v[0], "n": v[1],
                 "server_p": existing[k][0], "server_n": existing[k][1]}
                for k, v in counters.items()
                if k in existing and (v[0] < existing[k][0] or v[1] < existing[k][1])
            ]
            if regress:
                raise Conflict(
                    f"{len(regress)} counter row(s) went down (e.g. {regress[0]['counter_id']} "
                    f"of replica {regress[0]['replica_id']}): a replica's totals never "
                    "decrease; this database was restored or copied", code="COUNTER_REGRESSION",
                    rows=regress[:50], replicas=sorted({r["replica_id"] for r in regress}))
            # ---- write
            rows: list[tuple[Any, ...]] = []
            terminal_id, shared_kinds = term.terminal_id, SHARED_KINDS
            for i in new:  # in the terminal's order (its local seq: causal)
                e = evs[i]
                seq += 1
                rows.append((tenant, store, e["event_id"], e["replica_id"], int(e["seq"]),
                             e["kind"], e["created_at"], texts[i], seq,
                             int(e["kind"] in shared_kinds), terminal_id, None, now))
            new_docs = 0
            for uid, (doc, data) in docs.items():
                if uid in known:
                    continue
                seq += 1
                new_docs += 1
                rows.append((tenant, store, uid, replica_id, None, "doc_update",
                             now, canonical_json({"doc": doc, "update_id": uid, "data": data}),
                             seq, 1, term.terminal_id, None, now))
            try:
                tx.insert_rows("events", _EVENT_COLUMNS, rows)
            except self.integrity_errors:
                raise Conflict("an event id in this push is already stored with another "
                               "replica or seq", code="EVENT_ID_REUSED") from None
            self._materialize(tx, tenant, store, [(evs[i]["kind"], bodies[i]) for i in new
                                                  if evs[i]["kind"] in read_kinds],
                              from_terminal=True)
            changed = []
            for (cid, rep), (p, n) in counters.items():
                if existing.get((cid, rep)) == (p, n):
                    continue
                seq += 1
                changed.append((tenant, store, cid, rep, p, n, seq))
            resp = {"protocol": int(req.get("protocol", 1)), "accepted": len(new),
                    "duplicates": len(events) - len(new), "counters": len(changed),
                    "docs": new_docs, "server_seq": seq, "acked_seq": acked}
            # answers to replays are kept for a week (a terminal retries within minutes)
            tx.finish([
                self._set_seq_stmt(tenant, store, seq),
                ("UPDATE terminals SET last_push_at = ?, replica_id = ?, status = ? "
                 "WHERE terminal_id = ?",
                 (now, replica_id, json.dumps(req.get("status") or {}), term.terminal_id)),
                ("DELETE FROM idempotency WHERE tenant_id = ? AND store_id = ? AND "
                 "created_at < ?", (tenant, store, iso(self.clock() - IDEMPOTENCY_TTL))),
                ("INSERT INTO idempotency(tenant_id, store_id, key, terminal_id, response, "
                 "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                 (tenant, store, idem, term.terminal_id,
                  json.dumps({**resp, "_fp": fingerprint}), now))], counters=changed)
        return resp

    def _materialize(self, tx: Tx, tenant: str, store: str,
                     items: Iterable[tuple[str, Mapping[str, Any]]], *,
                     from_terminal: bool = False) -> None:
        """Head office's views of the events (products, batches); ``from_terminal``: pushed
        by a terminal, whose product announcements only add a product the store lacks."""
        on_conflict = "DO NOTHING" if from_terminal else (
            "DO UPDATE SET name = excluded.name, dea_schedule = excluded.dea_schedule, "
            "india_schedule = excluded.india_schedule, cmea = excluded.cmea, "
            "body = excluded.body")
        for kind, body in items:
            if kind == "product":
                p = product_from_json(body)
                tx.execute(
                    "INSERT INTO srv_products(tenant_id, store_id, ndc, name, dea_schedule, "
                    "india_schedule, cmea, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    f"ON CONFLICT (tenant_id, store_id, ndc) {on_conflict}",
                    (tenant, store, p.ndc, p.name, p.dea_schedule, p.india_schedule,
                     int(p.cmea), canonical_json(body)))
            elif kind == "batch":
                # the same lot recorded twice: the earliest receipt's facts win (as on terminals)
                row = tx.one("SELECT expiry, received_at FROM srv_batches WHERE tenant_id = ? "
                             "AND store_id = ? AND batch_id = ?",
                             (tenant, store, body["batch_id"]))
                if row is None:
                    tx.execute(
                        "INSERT INTO srv_batches(tenant_id, store_id, batch_id, ndc, lot, "
                        "expiry, status, status_at, unit_cost_cents, received_at) VALUES "
                        "(?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                        (tenant, store, body["batch_id"], body["ndc"], body["lot"],
                         body["expiry"], body["received_at"], body.get("unit_cost_cents"),
                         body["received_at"]))
                elif (body["received_at"], body["expiry"]) < (row[1], row[0]):
                    tx.execute(
                        "UPDATE srv_batches SET expiry = ?, received_at = ?, unit_cost_cents = ? "
                        "WHERE tenant_id = ? AND store_id = ? AND batch_id = ?",
                        (body["expiry"], body["received_at"], body.get("unit_cost_cents"),
                         tenant, store, body["batch_id"]))
            elif kind == "batch_status":
                row = tx.one("SELECT status, status_at FROM srv_batches WHERE tenant_id = ? "
                             "AND store_id = ? AND batch_id = ?",
                             (tenant, store, body["batch_id"]))
                if row is not None and status_rank(body["status"], body["status_at"]) > \
                        status_rank(row[0], row[1]):
                    tx.execute("UPDATE srv_batches SET status = ?, status_at = ?, "
                               "status_reason = ? WHERE tenant_id = ? AND store_id = ? AND "
                               "batch_id = ?", (body["status"], body["status_at"],
                                                body.get("reason"), tenant, store,
                                                body["batch_id"]))

    # ---- pull ---------------------------------------------------------------------------------
    def pull(self, term: Terminal, req: Mapping[str, Any]) -> dict[str, Any]:
        if req.get("store_id") != term.store_id:
            raise Forbidden(f"this terminal belongs to store {term.store_id!r}, not "
                            f"{req.get('store_id')!r}", code="SCOPE_VIOLATION")
        tenant, store = term.tenant_id, term.store_id
        cursor = int(req.get("cursor", 0))
        limit = int(req.get("limit", 2000))
        replica = str(req["replica_id"])
        behind = self._behind_stmt(tenant, store, replica, req.get("replica_seq"))
        # the rows go no further than the store's seq as read by the first statement; a
        # statement that sees a later seq sees every row below it too (a store's rows commit
        # in server_seq order), so the rows above are cut off here
        top_sql = "(SELECT next_seq FROM stores WHERE tenant_id = ? AND store_id = ?)"
        with self._tx(False) as tx:
            results = iter(tx.batch([
                self._lock_store_stmt(tenant, store, for_update=False), *behind,
                ("SELECT server_seq, event_id, replica_id, kind, created_at, body "
                 "FROM events WHERE tenant_id = ? AND store_id = ? AND shared = 1 AND "
                 f"server_seq > ? AND server_seq <= {top_sql} AND replica_id <> ? "
                 "ORDER BY server_seq LIMIT ?",
                 (tenant, store, cursor, tenant, store, replica, limit)),
                ("SELECT server_seq, counter_id, replica_id, p, n FROM counters WHERE "
                 f"tenant_id = ? AND store_id = ? AND server_seq > ? AND server_seq <= {top_sql} "
                 "AND replica_id <> ? ORDER BY server_seq LIMIT ?",
                 (tenant, store, cursor, tenant, store, replica, limit))]))
        top = self._store_seq(next(results), tenant, store)
        if behind:
            self._check_behind(next(results), replica, req.get("replica_seq"))
        if cursor > top:
            raise Conflict(f"cursor {cursor} is ahead of this server ({top}): the server "
                           "database was restored; pull and push everything again",
                           code="CURSOR_AHEAD", server_seq=top)
        evs, cs = next(results), next(results)
        upper = top
        if len(evs) == limit:
            upper = min(upper, int(evs[-1][0]))
        if len(cs) == limit:
            upper = min(upper, int(cs[-1][0]))
        resp = {
            "protocol": 1,
            "events": [{"server_seq": int(r[0]), "event_id": r[1], "replica_id": r[2],
                        "kind": r[3], "created_at": r[4], "body": r[5]}
                       for r in evs if int(r[0]) <= upper],
            "counters": [{"server_seq": int(r[0]), "counter_id": r[1], "replica_id": r[2],
                          "p": int(r[3]), "n": int(r[4])} for r in cs if int(r[0]) <= upper],
            "next_cursor": upper, "more": upper < top, "server_seq": top,
        }
        sets = "last_pull_at = ?, pull_cursor = ?, replica_id = ?"
        params: list[Any] = [iso(self.clock()), upper, replica]
        if req.get("status") is not None:
            sets += ", status = ?"
            params.append(json.dumps(req["status"]))
        with self._tx(True) as tx:
            tx.finish([(f"UPDATE terminals SET {sets} WHERE terminal_id = ?",
                        (*params, term.terminal_id))])
        return resp

    def known_events(self, term: Terminal, event_ids: Sequence[str]) -> list[str]:
        with self._tx(False) as tx:
            rows = tx.select_in("SELECT event_id FROM events WHERE tenant_id = ? AND "
                                "store_id = ?", (term.tenant_id, term.store_id), "event_id",
                                list(dict.fromkeys(event_ids)))
        return sorted(str(r[0]) for r in rows)

    def blob(self, term: Terminal, sha256: str) -> bytes:
        if "\x00" in sha256:  # names no file (and PostgreSQL text holds no NUL)
            raise NotFoundError(f"no published file {sha256!r} for this store", code="NO_BLOB")
        with self._tx(False) as tx:
            ok = tx.one("SELECT 1 FROM events WHERE tenant_id = ? AND store_id = ? AND "
                        "blob_sha256 = ?", (term.tenant_id, term.store_id, sha256))
            row = tx.one("SELECT data FROM blobs WHERE tenant_id = ? AND sha256 = ?",
                         (term.tenant_id, sha256)) if ok else None
        if row is None:
            raise NotFoundError(f"no published file {sha256} for this store", code="NO_BLOB")
        return bytes(row[0])

    # ---- publishing ---------------------------------------------------------------------------
    def check_bundle(self, tenant_id: str, blob: bytes) -> None:
        """Check a policy bundle as a terminal will before publishing it (signed by a key the
        chain trusts, intact, valid policies, not expired), so head office never reports
        published a bundle every terminal would refuse. (``publish`` itself stores what it is
        given: terminals check again, whatever the server sends.)"""
        from pharmacy.errors import PharmosError
        from pharmacy.signing import TrustStore
        from policy_cache.bundle import verify_bundle

        with self._tx(False) as tx:
            row = tx.one("SELECT trusted_keys FROM tenants WHERE tenant_id = ?", (tenant_id,))
        if row is None:
            raise NotFoundError(f"no tenant {tenant_id!r}", code="UNKNOWN_TENANT")
        pems = [str(p).encode() for p in json.loads(row[0])]
        if not pems:
            raise BadRequest(f"tenant {tenant_id} trusts no signing key yet: 'pharmos server "
                             "admin trust-key' first, or terminals could never install the "
                             "bundle", code="NO_TRUSTED_KEY")
        try:
            verify_bundle(blob, TrustStore.from_pems(pems), now=self.clock())
        except PharmosError as e:
            raise BadRequest(f"terminals would refuse this bundle: {e.message}",
                             code=e.code) from None

    def publish(self, tenant_id: str, store_id: str | None, kind: str,
                bodies: Sequence[Mapping[str, Any]], blob: bytes | None = None
                ) -> dict[str, Any]:
        if kind not in PUBLISH_KINDS:
            raise BadRequest(f"cannot publish {kind!r}; one of {sorted(PUBLISH_KINDS)}",
                             code="BAD_PUBLICATION")
        items = [dict(b) for b in bodies]
        for i, b in enumerate(items):
            if kind == "product":
                _validate_body(kind, b, f"product {i + 1}")
            elif kind == "allowances":  # what every terminal would refuse on install
                from policy_cache.allowances import check_grant

                try:
                    check_grant(b)
                except BadInput as e:
                    raise BadRequest(e.message, code=e.code) from None
            why = _not_storable_text(b)
            if why:
                raise BadRequest(f"the {kind} publication {why}", code="BAD_PUBLICATION",
                                 kind=kind)
        now = iso(self.clock())
        sha: str | None = None
        if blob is not None:
            sha = hashlib.sha256(blob).hexdigest()
            for b in items:
                b.update({"sha256": sha, "size": len(blob), "url": f"/v1/blobs/{sha}"})
        stores = [store_id] if store_id is not None else self.tenant_stores(tenant_id)
        pubs = [(new_id(), canonical_json(b)) for b in items]
        with self._tx(True) as tx:
            if blob is not None:
                tx.execute("INSERT INTO blobs(tenant_id, sha256, size, data, created_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           (tenant_id, sha, len(blob), blob, now))
            if store_id is None:
                tx.insert_rows("tenant_publications", ("pub_id", "tenant_id", "kind", "body",
                                                       "blob_sha256", "created_at"),
                               [(pid, tenant_id, kind, body, sha, now) for pid, body in pubs])
            last = 0
            for s in stores:
                seq = self._lock_store(tx, tenant_id, s)
                rows = []
                for pid, body in pubs:
                    seq += 1
                    rows.append(self._hq_row(tenant_id, s, pid, kind, now, body, seq, sha))
                tx.insert_rows("events", _EVENT_COLUMNS, rows)
                self._materialize(tx, tenant_id, s, [(kind, json.loads(b)) for _, b in pubs])
                self._set_seq(tx, tenant_id, s, seq)
                last = seq
        return {"tenant_id": tenant_id, "stores": stores, "kind": kind, "items": len(pubs),
                "sha256": sha, "server_seq": last if store_id is not None else None}

    def published_user(self, tenant_id: str, store_id: str | None, username: str
                       ) -> dict[str, Any]:
        """The newest user publication named ``username`` for the chain (``store_id`` None)
        or for one store (its own or the chain's)."""
        with self._tx(False) as tx:
            rows = tx.all("SELECT body FROM tenant_publications WHERE tenant_id = ? AND "
                          "kind = 'user'", (tenant_id,))
            if store_id is not None:
                rows += tx.all("SELECT body FROM events WHERE tenant_id = ? AND store_id = ? "
                               "AND kind = 'user'", (tenant_id, store_id))
        bodies: list[dict[str, Any]] = [json.loads(r[0]) for r in rows]
        mine = [b for b in bodies if b.get("username") == username.strip().lower()]
        if not mine:
            raise NotFoundError(f"head office has not published a user {username!r}",
                                code="UNKNOWN_USER")
        newest: dict[str, Any] = max(mine, key=lambda b: str(b.get("updated_at")))
        return newest

    def publish_user(self, tenant_id: str, store_id: str | None, username: str, *,
                     role: str | None = None, display_name: str | None = None,
                     secret: str | None = None, kind: str = "pin",
                     active: bool | None = None) -> dict[str, Any]:
        """Publish an account: a new one when ``role`` is given (``USER_EXISTS`` if head
        office already publishes that username), else the newest published state of
        ``username`` with a new secret and/or ``active``."""
        from pharmacy import users

        now = self.clock()
        if role is not None:
            try:
                self.published_user(tenant_id, store_id, username)
            except NotFoundError:
                pass
            else:
                raise BadRequest(f"head office already publishes user {username}; use "
                                 "'pharmos server user passwd' or 'enable'", code="USER_EXISTS")
            body = users.user_publication(username, display_name or username, role,
                                          secret or "", kind=kind, now=now)
        else:
            body = self.published_user(tenant_id, store_id, username)
            if secret is not None:
                users.check_secret_policy(kind, secret)
                body.update(secret_kind=kind, secret_hash=users.hash_secret(secret))
            if active is not None:
                body["active"] = active
            body["updated_at"] = iso(now)
        out = self.publish(tenant_id, store_id, "user", [body])
        return {"user_id": body["user_id"], "username": body["username"],
                "role": body["role"], "active": body["active"], "stores": out["stores"]}

    # ---- head-office views --------------------------------------------------------------------
    def stock(self, tenant_id: str, store_id: str, today: date) -> list[dict[str, Any]]:
        """Same shape as ``pharmos stock --json``'s batches."""
        with self._tx(False) as tx:
            self._lock_store(tx, tenant_id, store_id, for_update=False)
            batches = tx.all(
                "SELECT b.batch_id, b.ndc, p.name, b.lot, b.expiry, b.status, p.dea_schedule, "
                "p.india_schedule, p.cmea, b.unit_cost_cents FROM srv_batches b LEFT JOIN "
                "srv_products p ON p.tenant_id = b.tenant_id AND p.store_id = b.store_id AND "
                "p.ndc = b.ndc WHERE b.tenant_id = ? AND b.store_id = ?", (tenant_id, store_id))
            sums = dict(tx.all(
                "SELECT counter_id, SUM(p - n) FROM counters WHERE tenant_id = ? AND "
                "store_id = ? GROUP BY counter_id", (tenant_id, store_id)))
        out = [batch_row(r[0], r[1], r[2] or "", r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                         int(sums.get(counter_id(r[0]), 0) or 0), today) for r in batches]
        out.sort(key=lambda b: (b["name"], b["expiry"], b["lot"]))
        return out

    def store_events(self, tenant_id: str, store_id: str,
                     kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        with self._tx(False) as tx:
            rows = tx.all("SELECT server_seq, event_id, replica_id, local_seq, kind, created_at, "
                          "body FROM events WHERE tenant_id = ? AND store_id = ? "
                          "ORDER BY server_seq", (tenant_id, store_id))
        return [{"server_seq": int(r[0]), "event_id": r[1], "replica_id": r[2],
                 "local_seq": r[3], "kind": r[4], "created_at": r[5], "body": json.loads(r[6])}
                for r in rows if kinds is None or r[4] in kinds]

    def sales_report(self, tenant_id: str, store_id: str, start: date, end: date,
                     tz: tzinfo = UTC) -> dict[str, Any]:
        """A store's trading from ``start`` to ``end`` (local dates in ``tz``) as its terminals
        pushed it: sales and money by day and by terminal, refused attempts by code,
        controlled-substance units dispensed by schedule, and the sales returned to stock in
        the period (by when they were returned) with the total net of them."""
        lo_year, hi_year = REPORT_YEARS
        for d in (start, end):
            if not lo_year <= d.year <= hi_year:
                raise BadRequest(f"{d} is outside the years {lo_year}-{hi_year} a report "
                                 "covers", code="BAD_DATE")
        if end < start:
            raise BadRequest(f"the period ends ({end}) before it starts ({start})",
                             code="BAD_PERIOD")
        lo = datetime.combine(start, time(0), tz).astimezone(UTC)
        hi = datetime.combine(end + timedelta(days=1), time(0), tz).astimezone(UTC)
        with self._tx(False) as tx:
            self._lock_store(tx, tenant_id, store_id, for_update=False)
            # events are stamped when their terminal committed them; a day's margin either
            # side, then each is placed by its own time
            rows = tx.all(
                "SELECT kind, body, terminal_id, created_at FROM events WHERE tenant_id = ? AND "
                "store_id = ? AND kind IN ('sale', 'decision', 'register', 'sale_return', "
                "'sale_refund', 'tender') AND "
                "created_at >= ? AND created_at < ?",
                (tenant_id, store_id, iso(lo - timedelta(days=1)), iso(hi + timedelta(days=1))))
        days: dict[str, list[int]] = {}
        terminals: dict[str, list[int]] = {}
        money = [0, 0, 0]  # subtotal, tax, total (cents)
        refused: dict[str, int] = {}
        controlled: dict[str, int] = {}
        controlled_returned: dict[str, int] = {}
        returned = [0, 0]  # sales, total (cents)
        refunded = [0, 0, 0, 0]  # refunds, total, tax, units put back on the shelf (cents)
        refunded_by: dict[str, int] = {}  # method -> cents paid back
        taken: dict[str, list[int]] = {}  # method -> [payments, cents]
        unreadable = 0  # events a terminal sent that the report cannot read: left out
        for kind, text, terminal, stamped in rows:
            try:
                item = _report_item(kind, json.loads(text), stamped)
            except (TypeError, ValueError, KeyError, AttributeError, IndexError,
                    OverflowError, RecursionError):  # JSON nested thousands deep
                unreadable += 1
                continue
            if item is None:
                continue
            at, v = item
            if not lo <= at < hi:
                continue
            if kind == "sale":
                day = at.astimezone(tz).date().isoformat()
                for bucket, key in ((days, day), (terminals, str(terminal or "-"))):
                    b = bucket.setdefault(key, [0, 0])
                    b[0] += 1
                    b[1] += v["total"]
                money[0] += v["subtotal"]
                money[1] += v["tax"]
                money[2] += v["total"]
            elif kind == "decision":
                refused[v["code"]] = refused.get(v["code"], 0) + 1
            elif kind == "register":
                units = controlled if v["kind"] == "dispense" else controlled_returned
                units[v["schedule"]] = units.get(v["schedule"], 0) + v["qty"]
            elif kind == "sale_return":
                returned[0] += 1
                returned[1] += v["total"]
            elif kind == "tender":
                t = taken.setdefault(v["method"], [0, 0])
                t[0] += 1
                t[1] += v["amount"]
            elif kind == "sale_refund":
                refunded[0] += 1
                refunded[1] += v["total"]
                refunded[2] += v["tax"]
                refunded[3] += v["units"]
                refunded_by[v["method"]] = refunded_by.get(v["method"], 0) + v["total"]
        return {
            "tenant_id": tenant_id, "store_id": store_id,
            "period": {"from": start.isoformat(), "to": end.isoformat()}, "tz": str(tz),
            "sales": sum(v[0] for v in days.values()), "subtotal": fmt(money[0]),
            "tax": fmt(money[1]), "total": fmt(money[2]),
            "by_day": [{"date": d, "sales": v[0], "total": fmt(v[1])}
                       for d, v in sorted(days.items())],
            "by_terminal": [{"terminal_id": t, "sales": v[0], "total": fmt(v[1])}
                            for t, v in sorted(terminals.items())],
            "refused": {"attempts": sum(refused.values()), "by_code": dict(sorted(
                refused.items()))},
            "controlled_dispensed": dict(sorted(controlled.items())),
            "returned": {"sales": returned[0], "total": fmt(returned[1]),
                         "controlled_units": dict(sorted(controlled_returned.items()))},
            "refunded": {"refunds": refunded[0], "total": fmt(refunded[1]),
                         "tax": fmt(refunded[2]), "units_restocked": refunded[3],
                         "by_method": {m: fmt(v) for m, v in sorted(refunded_by.items())}},
            # money taken, by how it was paid, on the day it was paid
            "payments": {m: {"count": v[0], "amount": fmt(v[1])}
                         for m, v in sorted(taken.items())},
            "net_total": fmt(money[2] - returned[1] - refunded[1]),
            "unreadable_events": unreadable,
        }

    def store_counters(self, tenant_id: str, store_id: str) -> list[tuple[str, str, int, int]]:
        with self._tx(False) as tx:
            rows = tx.all("SELECT counter_id, replica_id, p, n FROM counters WHERE "
                          "tenant_id = ? AND store_id = ? ORDER BY counter_id, replica_id",
                          (tenant_id, store_id))
        return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def _report_item(kind: str, body: Any, stamped: str
                 ) -> tuple[datetime, dict[str, Any]] | None:
    """What the sales report reads of one pushed event, checked (a terminal's body may be
    anything): its time and values, None when it does not count; raises TypeError,
    ValueError, KeyError, ... for a body it cannot read."""
    if not isinstance(body, dict):
        raise TypeError("not an object")

    def cents(key: str) -> int:
        value = body.get(key) or 0
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 10**15:
            raise ValueError(f"{key} is not a whole number of cents")
        return value

    if kind == "sale":  # a sale at its own time; the rest when they were recorded
        return parse_iso(str(body["created_at"])), {
            "total": cents("total_cents"), "subtotal": cents("subtotal_cents"),
            "tax": cents("tax_cents")}
    at = parse_iso(stamped)
    if kind == "decision":
        if body.get("decision") not in ("deny", "hold"):
            return None
        reasons = body.get("reasons") or [{}]
        return at, {"code": str(reasons[0].get("code") or "COMPLIANCE_DENIED")[:64]}
    if kind == "register":
        if body.get("kind") not in ("dispense", "return"):
            return None
        entry = json.loads(body.get("body") or "{}")
        return at, {"kind": body["kind"], "schedule": str(entry.get("schedule") or "?")[:8],
                    "qty": cents("qty")}
    if kind == "sale_return":
        return at, {"total": cents("total_cents")}
    if kind == "tender":
        return at, {"method": str(body.get("method") or "?")[:16], "amount": cents("amount_cents")}
    if kind == "sale_refund":
        units = 0
        for ln in body.get("lines") or ():
            for a in ln.get("restocked") or ():
                q = a[3]
                if isinstance(q, bool) or not isinstance(q, int) or abs(q) > 10**9:
                    raise ValueError("restocked units are not a whole number")
                units += q
        return at, {"total": cents("total_cents"), "tax": cents("tax_cents"), "units": units,
                    "method": str(body.get("method") or "?")[:16]}
    return None


def _split(sql: str) -> list[str]:
    """Split a migration file on ';' at line ends (no procedural code in our migrations)."""
    out: list[str] = []
    buf: list[str] = []
    for line in sql.splitlines():
        if line.strip().startswith("--") and not buf:
            continue
        buf.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


# ---- database URLs --------------------------------------------------------------------------
@dataclass(frozen=True)
class DbUrl:
    kind: str  # sqlite | postgresql
    target: str  # a file path or a libpq conninfo URL

    def redacted(self) -> str:
        return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", self.target) \
            if self.kind == "postgresql" else f"sqlite:///{self.target}"


def parse_db_url(url: str) -> DbUrl:
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise BadRequest("sqlite URL needs a path: sqlite:///PATH", code="BAD_DB_URL")
        # sqlite:////abs/path and sqlite:///rel/path both work
        return DbUrl("sqlite", path)
    if url.startswith(("postgresql://", "postgres://")):
        return DbUrl("postgresql", url)
    raise BadRequest(f"database URL {url!r} must be sqlite:///PATH or postgresql://...",
                     code="BAD_DB_URL")


def database_error(err: BaseException, url: str | None = None) -> SyncError | None:
    """The domain error for a database that cannot be reached (``DB_UNAVAILABLE``) or a
    SQLite file that is not a database (``BAD_DB``); None for any other error."""
    where = ""
    if url is not None:
        with contextlib.suppress(BadRequest):
            where = f" ({parse_db_url(url).redacted()})"
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    # psycopg is imported only by a PostgreSQL store: an error of it means one was opened
    psycopg = sys.modules.get("psycopg")
    if isinstance(err, sqlite3.OperationalError) or (
            psycopg is not None and isinstance(err, psycopg.OperationalError)):
        return SyncError(f"the database{where} is unavailable: {first}",
                         code="DB_UNAVAILABLE", status=503)
    if type(err) is sqlite3.DatabaseError:  # "file is not a database", a corrupt file
        return SyncError(f"the database{where} cannot be read: {first}", code="BAD_DB",
                         status=503)
    return None


def _check_conninfo(db: DbUrl) -> None:
    """A PostgreSQL URL libpq cannot parse (``postgresql://[::1/x``, an unknown ``?option``, a
    bad %-escape) is BAD_DB_URL, before any connection is tried."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(db.target)
    except psycopg.ProgrammingError as e:
        why = re.sub(r'\s+in URI: ".*$', "", str(e).strip().splitlines()[0] if str(e).strip()
                     else type(e).__name__)  # the URI may hold a password
        raise BadRequest(f"database URL {db.redacted()} is not a PostgreSQL URL libpq can "
                         f"read: {why}", code="BAD_DB_URL") from None


def open_store(url: str, clock: Clock = utcnow, *, create: bool = True) -> SqlServerStore:
    """The store at ``url``, connected: ``DB_UNAVAILABLE`` when it cannot be reached,
    ``BAD_DB`` when a SQLite URL names a file that is not a database, ``NO_DATABASE`` when
    ``create`` is false and a SQLite URL names no file (nothing is created)."""
    db = parse_db_url(url)
    try:
        if db.kind == "sqlite":
            from sync_server.sqlite_store import SqliteServerStore

            if not create and not Path(db.target).is_file():
                raise BadRequest(f"there is no head-office database at {db.target}: create "
                                 f"it with 'pharmos server migrate --db {db.redacted()}'",
                                 code="NO_DATABASE")

            return SqliteServerStore(db.target, clock=clock)
        _check_conninfo(db)
        from sync_server.pg_store import PgServerStore

        return PgServerStore(db.target, clock=clock)
    except OSError as e:  # the SQLite file's folder cannot be made
        raise SyncError(f"the database ({db.redacted()}) is unavailable: {e}",
                        code="DB_UNAVAILABLE", status=503) from None
    except Exception as e:
        mapped = database_error(e, url)
        if mapped is None:
            raise
        raise mapped from None


@contextlib.contextmanager
def opened(url: str, clock: Clock = utcnow) -> Iterator[SqlServerStore]:
    store = open_store(url, clock)
    try:
        yield store
    finally:
        store.close()

