"""Why a replica id must never be reused: two writers under one id lose sales under the
max-merge, so the store takes a new id when its database was cloned or restored."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from crdt_strategies import COUNTERS, counters_db, pn_states, settings_for
from hypothesis import given
from hypothesis import strategies as st

from crdt.pncounter import (
    SQL_LOCAL_ADD,
    SQL_MERGE_ROW,
    CounterRow,
    PNState,
    from_rows,
    local_add_params,
    owner_behind,
    pn_add,
    pn_merge,
    pn_value,
)
from pharmacy import inventory
from pharmacy.store import Store

sales = st.lists(st.integers(1, 50), min_size=1, max_size=10)


@settings_for(300)
@given(pn_states, sales, sales)
def test_two_writers_sharing_an_id_lose_sales(s: PNState, a: list[int], b: list[int]) -> None:
    # a terminal and its clone both start from s and both sell under the id "r0"
    one, two = dict(s), dict(s)
    for q in a:
        one = pn_add(one, "r0", -q)
    for q in b:
        two = pn_add(two, "r0", -q)
    merged = pn_merge(one, two)
    assert pn_merge(two, one) == merged  # still a perfectly good CRDT...
    lost = min(sum(a), sum(b))
    assert pn_value(merged) == pn_value(s) - sum(a) - sum(b) + lost  # ...that hides sales
    # the writer whose sales are hidden could tell: its own entry is behind the merge
    assert owner_behind("r0", one, merged) == (sum(b) > sum(a))
    assert owner_behind("r0", two, merged) == (sum(a) > sum(b))


@settings_for(300)
@given(pn_states, sales, sales)
def test_a_fresh_id_for_the_clone_keeps_every_sale(s: PNState, a: list[int],
                                                   b: list[int]) -> None:
    one, two = dict(s), dict(s)
    for q in a:
        one = pn_add(one, "r0", -q)
    for q in b:
        two = pn_add(two, "r0-clone", -q)
    assert pn_value(pn_merge(one, two)) == pn_value(s) - sum(a) - sum(b)


@settings_for(300)
@given(pn_states, sales, sales)
def test_owner_behind_spots_a_restored_backup(s: PNState, pushed: list[int],
                                              later: list[int]) -> None:
    backup = pn_add(s, "r0", 0)
    live = backup
    for q in pushed:
        live = pn_add(live, "r0", -q)
    server = pn_merge({"srv": (5, 0)}, live)        # the live terminal pushed its sales
    assert not owner_behind("r0", live, server)       # the live terminal sees nothing wrong
    assert owner_behind("r0", backup, server)         # the restored backup is behind itself
    for q in later:                                   # ...even after it sold again
        live = pn_add(live, "r0", -q)
        assert not owner_behind("r0", live, server)


def test_same_rows_in_sqlite_show_the_loss() -> None:
    cid = COUNTERS[0]
    one, two = counters_db(), counters_db()
    try:
        for c in (one, two):
            c.execute(SQL_LOCAL_ADD, local_add_params(cid, "r0", 100))  # restored copy
        one.execute(SQL_LOCAL_ADD, local_add_params(cid, "r0", -30))   # 30 sold here
        two.execute(SQL_LOCAL_ADD, local_add_params(cid, "r0", -20))   # 20 sold there
        for src, dst in ((one, two), (two, one)):
            for row in src.execute("SELECT counter_id, replica_id, p, n FROM counters"):
                dst.execute(SQL_MERGE_ROW, tuple(row))
        for c in (one, two):
            assert c.execute("SELECT SUM(p - n) FROM counters").fetchone()[0] == 70  # not 50
    finally:
        one.close()
        two.close()


def _counter_rows(store: Store) -> list[tuple[str, str, int, int]]:
    return [(str(c), str(r), int(p), int(n)) for c, r, p, n in store.conn.execute(
        "SELECT counter_id, replica_id, p, n FROM counters")]


def test_store_rekeys_a_copied_database_so_no_sale_is_lost(tmp_path: Path) -> None:
    cid = COUNTERS[0]
    original = Store.init(tmp_path / "a", "store-1")
    with original.transaction() as c:
        c.execute(SQL_LOCAL_ADD, local_add_params(cid, original.replica_id, 100))
    first_id = original.replica_id
    original.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # e.g. a disk image moved to a new PC

    a, b = Store.open(tmp_path / "a"), Store.open(tmp_path / "b")
    try:
        assert a.replica_id == first_id
        assert b.replica_id != first_id and b.identity.replica_reason == "copied"
        for store, sold in ((a, 30), (b, 20)):
            with store.transaction() as c:
                c.execute(SQL_LOCAL_ADD, local_add_params(cid, store.replica_id, -sold))
        rows_a, rows_b = _counter_rows(a), _counter_rows(b)
        for store, incoming in ((a, rows_b), (b, rows_a)):
            with store.transaction() as c:
                c.executemany(SQL_MERGE_ROW, incoming)
        for store in (a, b):
            assert store.conn.execute(
                "SELECT SUM(p - n) FROM counters WHERE counter_id = ?", (cid,)
            ).fetchone()[0] == 50
            rows = [CounterRow(*r) for r in _counter_rows(store)]
            assert set(from_rows(rows)[cid]) == {a.replica_id, b.replica_id}
    finally:
        a.close()
        b.close()


def test_store_rekeys_a_restored_backup_so_no_sale_is_lost(stocked: Store) -> None:
    """A terminal pushes its sales, then its disk is restored from last night's backup.
    Under the old id, the restored terminal's next sales would hide behind the entry the
    server already holds; the store takes a new id instead."""
    data_dir, old_id = stocked.data_dir, stocked.replica_id
    batch = inventory.batch_id_for("00904672860", "IB2701")
    cid = inventory.counter_id(batch)
    backup_path = data_dir.parent / "backup.db"
    dst = sqlite3.connect(backup_path)
    try:
        stocked.conn.backup(dst)                                   # last night's backup
    finally:
        dst.close()
    inventory.adjust(stocked, "0904-6728-60", "IB2701", -4, "DAMAGED")  # today's change
    stocked.mark_high_water()                                       # ...pushed to the server
    server = _counter_rows(stocked)
    stocked.close()

    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"pharmos.db{suffix}").unlink(missing_ok=True)
    shutil.copy(backup_path, data_dir / "pharmos.db")              # the restore
    restored = Store.open(data_dir)
    try:
        assert restored.identity.replica_reason == "restored"
        new_id = restored.replica_id
        assert new_id != old_id
        local = from_rows(CounterRow(*r) for r in _counter_rows(restored))[cid]
        pushed = from_rows(CounterRow(*r) for r in server)[cid]
        assert owner_behind(old_id, local, pushed)  # the old id is behind what it published
        inventory.adjust(restored, "0904-6728-60", "IB2701", -1, "DAMAGED")
        with restored.transaction() as c:
            c.executemany(SQL_MERGE_ROW, server)                   # pull from the server
        assert inventory.on_hand(restored.conn, batch) == 10 - 4 - 1
    finally:
        restored.close()
