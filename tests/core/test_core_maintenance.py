"""Checkpoints run in idle time, on their own thread and connection, never on the sale path:
after a pause, or after ``max_wait`` on a store that never pauses."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from pharmacy.maintenance import IdleCheckpointer
from pharmacy.store import DB_NAME, Store


def _wal_frames(store: Store) -> tuple[int, int]:
    """(frames in the WAL, frames already copied to the database) without checkpointing."""
    conn = sqlite3.connect(store.data_dir / DB_NAME)
    try:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        conn.close()
    return int(row[1]), int(row[2])


def _write(store: Store, key: str) -> None:
    with store.transaction() as c:
        c.execute("INSERT INTO settings(key, value) VALUES (?, 'x') "
                  "ON CONFLICT(key) DO UPDATE SET value = value || 'x'", (key,))


def test_a_pause_after_commits_checkpoints_the_wal(store: Store) -> None:
    ckpt = IdleCheckpointer(store.data_dir / DB_NAME, idle=0.05).start()
    store.on_commit.append(ckpt.touch)
    try:
        for i in range(20):
            _write(store, f"k{i}")
        assert ckpt.checkpoints == 0  # nothing while commits keep coming
        assert ckpt.wait_quiet(timeout=5)
        assert ckpt.checkpoints == 1
        store.on_commit.clear()
        log, done = _wal_frames(store)
        assert log > 0 and done == log  # everything committed is in the database file
    finally:
        ckpt.stop()


def test_a_store_that_never_pauses_is_checkpointed_after_max_wait(store: Store) -> None:
    ckpt = IdleCheckpointer(store.data_dir / DB_NAME, idle=10.0, max_wait=0.2).start()
    store.on_commit.append(ckpt.touch)
    try:
        deadline = time.monotonic() + 5
        while ckpt.checkpoints == 0 and time.monotonic() < deadline:
            _write(store, "busy")
            time.sleep(0.01)
        assert ckpt.checkpoints >= 1
    finally:
        ckpt.stop()


def test_stop_is_prompt_and_idle_without_commits(store: Store) -> None:
    ckpt = IdleCheckpointer(store.data_dir / DB_NAME, idle=60.0).start()
    assert ckpt.wait_quiet(timeout=1)  # nothing committed: nothing to wait for
    ckpt.touch()
    t = time.monotonic()
    ckpt.stop()
    assert time.monotonic() - t < 2 and ckpt.checkpoints == 0


def test_the_counter_checkpoints_in_idle_time(tmp_path: Path) -> None:
    from terminal.counter import Counter

    Store.init(tmp_path / "t", "s1").close()
    counter = Counter.open(str(tmp_path / "t"))
    try:
        assert counter.checkpointer is not None
        assert counter.checkpointer.touch in counter.store.on_commit
        counter.checkpointer.idle = 0.05
        _write(counter.store, "k")
        assert counter.checkpointer.wait_quiet(timeout=5)
        assert counter.checkpointer.checkpoints == 1
    finally:
        counter.close()
    assert not counter.checkpointer._thread.is_alive()
