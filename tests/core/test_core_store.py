from __future__ import annotations

import json
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


def test_a_schema_7_database_keeps_its_decisions_when_upgraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0008 moves an allowed sale's decision onto its sale row and a refused attempt's into
    `refusals`; the view `decisions` reads exactly the rows the table held."""
    from crdt.pncounter import SQL_LOCAL_ADD, local_add_params
    from pharmacy import catalog, inventory
    from pharmacy import store as store_mod
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser

    real = store_mod._migrations()
    with monkeypatch.context() as m:
        m.setattr(store_mod, "_migrations", lambda: [x for x in real if x[0] <= 7])
        old = Store.init(tmp_path / "term", "store-1")
    assert old.conn.execute("PRAGMA user_version").fetchone()[0] == 7
    catalog.upsert_products(old, [catalog.product_from_json(
        {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "price": "7.49"})])
    rid = old.replica_id
    with old.transaction() as c:  # a receipt as pharmos recorded it at schema 7
        c.execute("INSERT INTO batches(batch_id, ndc, lot, expiry, status, status_at, "
                  "received_at) VALUES ('00904672860:L1', '0904-6728-60', 'L1', '2030-01-31', "
                  "'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')")
        c.execute(SQL_LOCAL_ADD, local_add_params(inventory.counter_id("00904672860:L1"), rid,
                                                  10))
    override = json.dumps([{"code": "RULE_X", "message": "m", "citation": None,
                            "severity": "info", "overridable": True, "rule_id": "r-x",
                            "line_no": 1, "overridden_by": "ph-ana"}])
    request = '{"at":"2026-11-02T15:00:00+00:00","extra":{},"offline":true,"user":{"id":"u-1"}}'
    c = old.conn
    with old.transaction():  # as pharmos wrote a sale and a refused attempt before 0008
        c.execute("INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  ("d-1", "s-1", "2026-11-02T15:00:01.000000Z", rid, "u-1", "allow", override,
                   '["register_entry"]', "b1", request))
        c.execute("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                  ("s-1", "2026-11-02T15:00:00.000000Z", rid, "u-1", "rx", "US", "pt-1",
                   '{"rx_number":"RX1"}', "RX1", 749, 62, 811, "d-1"))
        c.execute("INSERT INTO sale_lines VALUES ('s-1', 1, '0904-6728-60', 1, 749, 749)")
        c.execute("INSERT INTO allocations VALUES "
                  "('s-1', 1, '00904672860:L1', 'L1', '2030-01-31', 1)")
        c.execute("INSERT INTO tenders VALUES "
                  "('t-1', 's-1', '2026-11-02T15:00:02Z', 'u-1', 'cash', 811, 1000, 189, NULL)")
        c.execute("INSERT INTO decisions VALUES (?, NULL, ?, ?, ?, 'deny', '[]', '[]', ?, ?)",
                  ("d-2", "2026-11-02T15:01:00.000000Z", rid, "u-1", "b1",
                   '{"lines":[{"ndc":"0904-6728-60"}]}'))
    before = [tuple(r) for r in c.execute("SELECT * FROM decisions ORDER BY decision_id")]
    audit = [tuple(r) for r in c.execute("SELECT * FROM audit_log")]
    usage = [tuple(r) for r in c.execute("SELECT * FROM offline_usage")]
    assert len(audit) == 1 and usage == [("2026-11-02", "0904-6728-60", 1)]
    old.close()

    with Store.open(tmp_path / "term") as new:
        c = new.conn
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert [tuple(r) for r in c.execute("SELECT * FROM decisions ORDER BY decision_id")
                ] == before
        assert tuple(c.execute("SELECT decision_id, decided_at, bundle_version, rx_number, "
                               "total_cents FROM sales").fetchone()) == (
            "d-1", "2026-11-02T15:00:01.000000Z", "b1", "RX1", 811)
        assert [r[0] for r in c.execute("SELECT decision_id FROM refusals")] == ["d-2"]
        assert [tuple(r) for r in c.execute("SELECT * FROM audit_log")] == audit
        assert [tuple(r) for r in c.execute("SELECT * FROM offline_usage")] == usage
        assert {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE tbl_name = "
                                        "'sales' AND type = 'index' AND sql IS NOT NULL")} == {
            "sales_patient", "sales_rx"}
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            c.execute("INSERT INTO sale_lines VALUES ('nope', 1, '0904-6728-60', 1, 1, 1, '[]', 0)")
        # its allocation now lives on its line (0011), read back through the allocations view
        assert [tuple(r) for r in c.execute("SELECT * FROM allocations")] == [
            ("s-1", 1, "00904672860:L1", "L1", "2030-01-31", 1)]
        sold = Dispenser(new, InterimGate()).sell(
            {"lines": [{"ndc": "0904-6728-60", "qty": 1}], "user": {"id": "u-1"}})
        assert c.execute("SELECT decision FROM decisions WHERE sale_id = ?",
                         (sold.sale_id,)).fetchone()[0] == "allow"


def test_a_migration_that_breaks_a_foreign_key_is_rolled_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pharmacy import store as store_mod

    real = store_mod._migrations()
    bad = (99, "0099_bad.sql",
           "CREATE TABLE bad_branch (x INTEGER);\n"
           "INSERT INTO sale_lines VALUES ('no-such-sale', 1, '0904-6728-60', 1, 1, 1, '[]', 0);")
    monkeypatch.setattr(store_mod, "_migrations", lambda: [*real, bad])
    c = store.conn
    with pytest.raises(StoreError) as e:
        store_mod.migrate(c)
    assert e.value.code == "MIGRATION_FOREIGN_KEY"
    assert not c.in_transaction
    assert c.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert c.execute("SELECT name FROM sqlite_master WHERE name = 'bad_branch'").fetchone() is None
    assert c.execute("SELECT COUNT(*) FROM sale_lines").fetchone()[0] == 0


def test_products_on_file_before_0009_are_not_announced(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """0009: a product already on file counts as known to the store; one imported after it is
    announced (a `product` event) with its first receipt, and only then."""
    from pharmacy import catalog, inventory
    from pharmacy import store as store_mod

    real = store_mod._migrations()
    with monkeypatch.context() as m:
        m.setattr(store_mod, "_migrations", lambda: [x for x in real if x[0] <= 8])
        old = Store.init(tmp_path / "term", "store-1")
    catalog.upsert_products(old, [catalog.product_from_json(
        {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "price": "7.49"})])
    old.close()
    with Store.open(tmp_path / "term") as new:
        catalog.upsert_products(new, [catalog.product_from_json(
            {"ndc": "0002-1433-80", "name": "Local Tabs 10 mg", "price": "3.10"})])
        for lot in ("A1", "A2"):
            inventory.receive(new, [{"ndc": n, "lot": lot, "expiry": "2031-01-31", "qty": 5}
                                    for n in ("0904-6728-60", "0002-1433-80")])
        bodies = [json.loads(r[0]) for r in new.conn.execute(
            "SELECT body FROM events WHERE kind = 'product'")]
        assert [b["ndc"] for b in bodies] == ["0002-1433-80"]
