from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from pharmacy.errors import StoreError
from pharmacy.store import SCHEMA_VERSION, Store


def test_pragmas_and_schema(store: Store) -> None:
    c = store.conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert c.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_transactions_nest_and_roll_back(store: Store) -> None:
    with store.transaction() as c:
        c.execute("INSERT INTO settings VALUES ('a', '1')")
        with pytest.raises(RuntimeError), store.transaction():
            c.execute("INSERT INTO settings VALUES ('b', '2')")
            raise RuntimeError("inner fails")
    assert store.get_setting("a") == "1" and store.get_setting("b") is None
    with pytest.raises(RuntimeError), store.transaction() as c:
        c.execute("INSERT INTO settings VALUES ('c', '3')")
        raise RuntimeError
    assert store.get_setting("c") is None
    assert not store.conn.in_transaction


def test_begin_immediate_takes_the_write_lock(store: Store) -> None:
    other = sqlite3.connect(store.data_dir / "pharmos.db", timeout=0.05, isolation_level=None)
    with store.transaction(), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.close()


def test_init_twice_and_open_missing(tmp_path: Path, store: Store) -> None:
    with pytest.raises(StoreError) as e:
        Store.init(store.data_dir, "x")
    assert e.value.code == "STORE_EXISTS"
    with pytest.raises(StoreError) as e:
        Store.open(tmp_path / "nowhere")
    assert e.value.code == "NO_STORE"


def test_reopen_keeps_replica(store: Store) -> None:
    rid = store.replica_id
    store.close()
    with Store.open(store.data_dir) as again:
        assert again.replica_id == rid


def test_copied_data_dir_gets_new_replica(store: Store, tmp_path: Path) -> None:
    rid = store.replica_id
    store.close()
    copy = tmp_path / "copy"
    shutil.copytree(store.data_dir, copy)
    with Store.open(copy) as cloned:
        assert cloned.replica_id != rid
        assert cloned.identity.replica_reason == "copied"
    with Store.open(store.data_dir) as original:
        assert original.replica_id == rid


def test_restored_old_backup_gets_new_replica(stocked: Store, tmp_path: Path) -> None:
    rid = stocked.replica_id
    backup = tmp_path / "backup.db"
    stocked.checkpoint()
    shutil.copy(stocked.data_dir / "pharmos.db", backup)
    from pharmacy import inventory

    inventory.receive(stocked, [{"ndc": "0904-6728-60", "lot": "NEW", "expiry": "2028-01-01",
                                 "qty": 3}])
    stocked.close()
    for suffix in ("-wal", "-shm"):
        (stocked.data_dir / f"pharmos.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, stocked.data_dir / "pharmos.db")
    with Store.open(stocked.data_dir) as restored:
        assert restored.replica_id != rid
        assert restored.identity.replica_reason == "restored"


def test_missing_install_file_gets_new_replica(store: Store) -> None:
    rid = store.replica_id
    store.close()
    (store.data_dir / "install.json").unlink()
    with Store.open(store.data_dir) as s:
        assert s.replica_id != rid
        assert s.identity.replica_reason == "install-file-missing"


def test_a_migration_numbered_below_the_current_version_is_still_applied(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pharmacy import store as store_mod

    real = store_mod._migrations()
    late = (2, "0002_late.sql", "CREATE TABLE late_branch (x INTEGER);")
    without = [m for m in real if m[0] != 2]
    monkeypatch.setattr(store_mod, "_migrations", lambda: sorted([*without, late]))
    c = store.conn
    c.execute("DELETE FROM schema_migrations WHERE version = 2")
    store_mod.migrate(c)
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'late_branch'").fetchone()
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == sorted(v for v, _, _ in real)
    store_mod.migrate(c)  # idempotent
