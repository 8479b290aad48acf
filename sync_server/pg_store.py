"""PostgreSQL implementation of the server store: a chain.

A small pool of autocommit connections; each request is one explicit transaction. A push
locks its store's row (``SELECT ... FOR UPDATE``), so pushes to one store are serialised and
``server_seq`` commits in order, while different stores proceed in parallel. Events are
bulk-loaded with ``COPY``. Statements that do not depend on each other's results go out in
one pipeline (one round trip), ``BEGIN`` and ``COMMIT`` with the first and last of them.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from pydantic_core import to_json

from pharmacy.clock import Clock, utcnow
from sync_server.storage import _COUNTER_COLUMNS, _COUNTER_UPSERT, SqlServerStore, Tx


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def _counters_stmt(rows: Sequence[tuple[str, str, str, str, int, int, int]]
                   ) -> tuple[str, Sequence[Any]]:
    # one statement for all rows (a day touches dozens of counters), sent as one JSON text:
    # encoded in one call, where array parameters would be dumped element by element
    keys = ("tenant_id", "store_id", "counter_id", "replica_id", "p", "n", "server_seq")
    return (f"INSERT INTO counters({_COUNTER_COLUMNS}) SELECT {_COUNTER_COLUMNS} FROM "
            "json_to_recordset(%s::json) AS r(tenant_id text, store_id text, counter_id text, "
            f"replica_id text, p bigint, n bigint, server_seq bigint) {_COUNTER_UPSERT}",
            [to_json([dict(zip(keys, r, strict=True)) for r in rows]).decode()])


class _PgTx(Tx):
    """A transaction on an autocommit connection: ``BEGIN`` goes out with the first statement
    of a write and ``COMMIT`` with the last (:meth:`finish`), statements of a :meth:`batch`
    in one pipeline (one round trip)."""

    def __init__(self, conn: psycopg.Connection[Any], write: bool,
                 column_types: dict[tuple[str, tuple[str, ...]], list[int]]) -> None:
        self.conn = conn
        self.column_types = column_types
        self.cur = conn.cursor()
        self.begin = write  # BEGIN not sent yet
        self.open = False  # in a transaction this object began

    def _started(self) -> list[tuple[str, Sequence[Any]]]:
        if not self.begin:
            return []
        self.begin = False
        self.open = True
        return [("BEGIN", ())]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self.begin:
            self._pipeline([*self._started()])
        return self.cur.execute(_pg(sql), tuple(params))

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            if self.begin:
                self._pipeline([*self._started()])
            self.cur.executemany(_pg(sql), rows)

    def batch(self, stmts: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        head = self._started()
        return self._pipeline([*head, *stmts])[len(head):]

    def _pipeline(self, stmts: Sequence[tuple[str, Sequence[Any]]]
                  ) -> list[list[tuple[Any, ...]]]:
        if len(stmts) == 1:
            sql, params = stmts[0]
            cur = self.cur.execute(_pg(sql), tuple(params))
            return [cur.fetchall() if cur.description else []]
        curs = []
        with self.conn.pipeline():
            for sql, params in stmts:
                cur = self.conn.cursor()
                cur.execute(_pg(sql), tuple(params))
                curs.append(cur)
        return [c.fetchall() if c.description else [] for c in curs]

    def in_list(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return "= ANY(?)", [list(values)]

    def upsert_counters(self, rows: Sequence[tuple[str, str, str, str, int, int, int]]
                        ) -> None:
        if rows:
            self.batch([_counters_stmt(rows)])

    def finish(self, stmts: Sequence[tuple[str, Sequence[Any]]],
               counters: Sequence[tuple[str, str, str, str, int, int, int]] = ()) -> None:
        head = [*self._started(), *([_counters_stmt(counters)] if counters else [])]
        self._pipeline([*head, *stmts, ("COMMIT", ())] if self.open else [*head, *stmts])
        self.open = False

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.begin:
            self._pipeline([*self._started()])
        key = (table, tuple(columns))
        types = self.column_types.get(key)
        if types is None:  # once per table and column list: binary COPY needs exact types
            oids = dict(self.cur.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall())
            types = self.column_types[key] = [oids[c] for c in columns]
        # binary: psycopg writes each row in C and the server skips parsing text
        with self.cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
                           ) as cp:
            cp.set_types(types)
            for r in rows:
                cp.write_row(r)


class PgServerStore(SqlServerStore):
    kind = "postgresql"
    migrations_dir = "postgres"
    integrity_errors = (psycopg.IntegrityError,)

    def __init__(self, conninfo: str, clock: Clock = utcnow, pool_size: int = 16) -> None:
        super().__init__(clock)
        self.conninfo = conninfo
        self._pool: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._sem = threading.BoundedSemaphore(pool_size)
        self._closed = False
        self._column_types: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        # fail early with a clear error when the server is unreachable
        self._release(self._connect())

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)

    def _acquire(self) -> psycopg.Connection[Any]:
        self._sem.acquire()
        try:
            while True:
                try:
                    conn = self._pool.get_nowait()
                except queue.Empty:
                    return self._connect()
                if not conn.closed and not conn.broken:
                    return conn
        except BaseException:
            self._sem.release()
            raise

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        if self._closed or conn.closed or conn.broken:
            with contextlib.suppress(Exception):
                conn.close()
        else:
            self._pool.put(conn)

    @contextlib.contextmanager
    def _tx(self, write: bool) -> Iterator[Tx]:
        # reads run in autocommit: under READ COMMITTED a transaction would give each
        # statement its own snapshot anyway, and BEGIN/COMMIT cost two round trips
        conn = self._acquire()
        try:
            tx = _PgTx(conn, write, self._column_types)
            try:
                yield tx
            except BaseException:
                if tx.open:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
            if tx.open:
                conn.execute("COMMIT")
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(Exception):
                    conn.close()
            self._release(conn)
            self._sem.release()

    def _lock_store_sql(self) -> str:
        return " FOR UPDATE"

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            with contextlib.suppress(Exception):
                conn.close()
