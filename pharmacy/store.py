"""The local SQLite store of a terminal.

WAL, ``synchronous=FULL``, explicit ``BEGIN IMMEDIATE`` transactions (nestable through
savepoints), ordered migrations recorded in ``PRAGMA user_version``, automatic checkpoints
off (``checkpoint()`` runs off the sale path), and a replica identity that changes whenever
the database file was restored from a backup or copied to another place or machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import Any

from pharmacy.clock import Clock, iso, local_zone, utcnow, zone_named
from pharmacy.errors import StoreError
from pharmacy.ids import ReplicaId, new_id

DB_NAME = "pharmos.db"
INSTALL_FILE = "install.json"


def _migrations() -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []
    for entry in resources.files("pharmacy.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(set(versions)) != len(versions):
        raise StoreError(f"two migrations share a number: {versions}", code="MIGRATION_ORDER")
    return out


SCHEMA_VERSION = max((v for v, _, _ in _migrations()), default=0)


def machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            text = Path(p).read_text().strip()
            if text:
                return text
    return socket.gethostname()


@dataclass(frozen=True)
class Identity:
    store_id: str
    replica_id: ReplicaId
    install_id: str
    replica_reason: str  # why the current replica id was created


class Store:
    """One open terminal database. Not shared across threads: one worker owns it."""

    def __init__(self, data_dir: Path, conn: sqlite3.Connection, clock: Clock) -> None:
        self.data_dir = data_dir
        self.conn = conn
        self.clock = clock
        self._depth = 0
        self._lock = threading.RLock()
        self.on_commit: list[Callable[[], None]] = []  # called after each outermost COMMIT
        self.identity = self._load_identity()

    # ---- opening -------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run off the sale path
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @classmethod
    def init(cls, data_dir: Path | str, store_id: str, clock: Clock = utcnow) -> Store:
        d = Path(data_dir)
        d.mkdir(parents=True, exist_ok=True)
        db = d / DB_NAME
        if db.exists():
            raise StoreError(
                f"a store already exists in {d}; use another --data-dir", code="STORE_EXISTS"
            )
        conn = cls._connect(db)
        migrate(conn)
        install_id = new_id()
        replica_id = new_id()
        now = iso(clock())
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO settings(key, value) VALUES (?, ?)",
            [("store_id", store_id), ("install_id", install_id), ("replica_id", replica_id),
             ("created_at", now)],
        )
        conn.execute(
            "INSERT INTO replicas VALUES (?, ?, ?, 'init')", (replica_id, install_id, now)
        )
        conn.execute("COMMIT")
        _write_install_file(d, install_id, 0)
        return cls(d, conn, clock)

    @classmethod
    def open(cls, data_dir: Path | str, clock: Clock = utcnow) -> Store:
        d = Path(data_dir)
        db = d / DB_NAME
        if not db.exists():
            raise StoreError(
                f"no store in {d}; run 'pharmos init --data-dir {d} --store-id ...' first",
                code="NO_STORE",
            )
        conn = cls._connect(db)
        migrate(conn)
        store = cls(d, conn, clock)
        store._check_replica()
        return store

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.mark_high_water()
            self.checkpoint()
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transactions ----------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` at the outermost level, a savepoint when nested."""
        with self._lock:
            depth = self._depth
            if depth == 0:
                self.conn.execute("BEGIN IMMEDIATE")
            else:
                self.conn.execute(f"SAVEPOINT sp{depth}")
            self._depth += 1
            try:
                yield self.conn
            except BaseException:
                self._depth -= 1
                if depth == 0:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO sp{depth}")
                    self.conn.execute(f"RELEASE sp{depth}")
                raise
            self._depth -= 1
            if depth == 0:
                self.conn.execute("COMMIT")
                for hook in self.on_commit:
                    hook()
            else:
                self.conn.execute(f"RELEASE sp{depth}")

    def checkpoint(self) -> tuple[int, int, int]:
        """Passive WAL checkpoint; call from idle time or a maintenance thread, never a sale."""
        row = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return (int(row[0]), int(row[1]), int(row[2]))

    # ---- settings ------------------------------------------------------------------------
    def time_zone(self, name: str | None = None) -> tzinfo:
        """The zone ``name`` when given (it must exist: ``BAD_TIMEZONE``), else the store's
        ``timezone`` setting, else UTC."""
        return zone_named(name) if name else local_zone(self.get_setting("timezone"))

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO settings(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_json_setting(self, key: str) -> Any:
        raw = self.get_setting(key)
        return None if raw is None else json.loads(raw)

    def set_json_setting(self, key: str, value: Any) -> None:
        self.set_setting(key, json.dumps(value, sort_keys=True))

    # ---- identity ------------------------------------------------------------------------
    def _load_identity(self) -> Identity:
        rows = dict(self.conn.execute("SELECT key, value FROM settings").fetchall())
        replica = rows["replica_id"]
        reason = self.conn.execute(
            "SELECT reason FROM replicas WHERE replica_id = ?", (replica,)
        ).fetchone()
        return Identity(rows["store_id"], ReplicaId(replica), rows["install_id"],
                        reason[0] if reason else "init")

    @property
    def replica_id(self) -> ReplicaId:
        return self.identity.replica_id

    @property
    def store_id(self) -> str:
        return self.identity.store_id

    def high_water(self) -> int:
        row = self.conn.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def mark_high_water(self) -> None:
        """Record, outside the database, how far this database has got.

        Call before pushing to the server: a database later found below this mark was
        restored from an older backup and must not reuse its replica id.
        """
        _write_install_file(self.data_dir, self.identity.install_id, self.high_water())

    def _check_replica(self) -> None:
        info = _read_install_file(self.data_dir)
        reason: str | None = None
        if info is None:
            reason = "install-file-missing"
        elif info.get("install_id") != self.identity.install_id:
            reason = "restored"
        elif info.get("machine") != machine_id() or info.get("path") != str(
            self.data_dir.resolve()
        ):
            reason = "copied"
        elif int(info.get("high_water", 0)) > self.high_water():
            reason = "restored"
        if reason is not None:
            self.rekey(reason)
        else:
            self.mark_high_water()

    def rekey(self, reason: str) -> ReplicaId:
        """Give this database a new replica id (and install id)."""
        install_id, replica_id = new_id(), new_id()
        with self.transaction() as c:
            c.execute("UPDATE settings SET value = ? WHERE key = 'install_id'", (install_id,))
            c.execute("UPDATE settings SET value = ? WHERE key = 'replica_id'", (replica_id,))
            c.execute(
                "INSERT INTO replicas VALUES (?, ?, ?, ?)",
                (replica_id, install_id, iso(self.clock()), reason),
            )
        self.identity = self._load_identity()
        _write_install_file(self.data_dir, install_id, self.high_water())
        return ReplicaId(replica_id)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration not yet applied, in order, each in its own transaction.

    Applied migrations are recorded in ``schema_migrations``; ``PRAGMA user_version`` holds
    the highest applied number. A migration numbered below one already applied (merged
    from a parallel branch) is still applied. Returns the schema version.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    migrations = _migrations()
    latest = max((v for v, _, _ in migrations), default=0)
    if current > latest:
        raise StoreError(
            f"this database has schema {current}, newer than this pharmos ({latest}); "
            "upgrade pharmos",
            code="SCHEMA_TOO_NEW",
        )
    applied = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
    if current and not applied:  # a database from before the ledger: all up to current ran
        applied = {v for v, _, _ in migrations if v <= current}
        conn.executemany(
            "INSERT INTO schema_migrations VALUES (?, ?, 'before-ledger')",
            [(v, n) for v, n, _ in migrations if v in applied],
        )
    foreign_keys = int(conn.execute("PRAGMA foreign_keys").fetchone()[0])
    for version, name, sql in migrations:
        if version in applied:
            continue
        # Enforcement is off while a migration runs, so that a table can be rebuilt under the
        # tables that reference it (https://sqlite.org/lang_altertable.html#otheralter); the
        # keys are checked before the migration commits.
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _split_sql(sql):
                    conn.execute(stmt)
                broken = conn.execute("PRAGMA foreign_key_check").fetchmany(3)
                if broken:
                    raise StoreError(
                        f"migration {name} leaves rows whose foreign keys do not match: "
                        f"{[tuple(r) for r in broken]}",
                        code="MIGRATION_FOREIGN_KEY",
                    )
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, datetime('now'))",
                    (version, name),
                )
                conn.execute(f"PRAGMA user_version = {max(version, current)}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.execute(f"PRAGMA foreign_keys={foreign_keys}")
        current = max(version, current)
    return current


def _split_sql(sql: str) -> list[str]:
    stmts, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                stmts.append(buf)
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        stmts.append(buf)
    return stmts


def _read_install_file(d: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((d / INSTALL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_install_file(d: Path, install_id: str, high_water: int) -> None:
    tmp = d / (INSTALL_FILE + ".tmp")
    body = json.dumps({"install_id": install_id, "machine": machine_id(),
                       "path": str(d.resolve()), "high_water": high_water})
    with open(tmp, "w") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, d / INSTALL_FILE)
