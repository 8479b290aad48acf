"""SQLite implementation of the server store: one pharmacy or a demo.

WAL, ``synchronous=FULL``; one connection per thread; writers take ``BEGIN IMMEDIATE`` (SQLite
has one writer, which is also what serialises ``server_seq`` per store).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pharmacy.clock import Clock, utcnow
from sync_server.storage import SqlServerStore, Tx


class _SqliteTx(Tx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, tuple(params))

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def in_list(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return "IN (" + ", ".join("?" for _ in values) + ")", list(values)


class SqliteServerStore(SqlServerStore):
    kind = "sqlite"
    migrations_dir = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: str | Path, clock: Clock = utcnow) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # fail early with a clear error when the file cannot be opened or is not a database
        self._conn()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=60)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=60000")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _tx(self, write: bool) -> Iterator[Tx]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SqliteTx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _lock_store_sql(self) -> str:
        return ""

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        self._local = threading.local()
