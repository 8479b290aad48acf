"""WAL checkpoints in idle time, never on the sale path.

Automatic checkpoints are off (``Store._connect``): a checkpoint inside a commit makes that
sale wait for the database file's writes and fsync, and one running beside a sale competes
with its WAL fsync for the disk. ``IdleCheckpointer`` is what a long-running terminal uses
instead: its own thread and connection run a passive checkpoint once the store has gone
``idle`` seconds without a commit (a counter is idle most of the time between customers),
or after ``max_wait`` seconds of commits without such a pause, so the WAL stays bounded on a
counter that is never idle. A passive checkpoint takes no lock a sale needs; short-lived
processes (the CLI) checkpoint when they close the store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class IdleCheckpointer:
    def __init__(self, db_path: Path, *, idle: float = 1.0, max_wait: float = 60.0) -> None:
        self.db_path = db_path
        self.idle, self.max_wait = idle, max_wait
        self.checkpoints = 0
        self._last_commit = 0.0
        self._first_pending = 0.0
        self._cond = threading.Condition()
        self._pending = False
        self._running = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="pharmos-checkpoint",
                                        daemon=True)

    def start(self) -> IdleCheckpointer:
        self._thread.start()
        return self

    def touch(self) -> None:
        """A commit happened: checkpoint after the next idle pause."""
        now = time.monotonic()
        with self._cond:
            self._last_commit = now
            if not self._pending:
                self._pending, self._first_pending = True, now
                self._cond.notify_all()

    def wait_quiet(self, timeout: float = 30.0) -> bool:
        """Block until what was committed so far has been checkpointed (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop:
                    return False
                self._cond.wait(left)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _due(self) -> float:
        """Seconds until the pending checkpoint may run (0: now)."""
        now = time.monotonic()
        return max(0.0, min(self._last_commit + self.idle, self._first_pending + self.max_wait)
                   - now)

    def _run(self) -> None:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while True:
                with self._cond:
                    while not self._stop and (not self._pending or self._due() > 0):
                        self._cond.wait(self._due() if self._pending else None)
                    if self._stop:
                        return
                    self._pending, self._running = False, True
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error:
                    with self._cond:
                        self._pending = True  # try again after the next pause
                        self._last_commit = self._first_pending = time.monotonic()
                finally:
                    with self._cond:
                        self._running = False
                        self._cond.notify_all()
        finally:
            conn.close()
