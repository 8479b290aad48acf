"""Terminals against a real server process on 127.0.0.1: enrollment, first sync, convergence,
restored and cloned data dirs, a restored server, revocation, status, publications."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import shutil
import stat
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import keyring
import pytest

from crdt import shared_doc
from pharmacy import catalog, checkout, inventory, refunds, replication, sales
from pharmacy.clock import iso
from pharmacy.compliance import InterimGate
from pharmacy.errors import PharmosError
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from sync_server.storage import SqlServerStore, open_store
from terminal import sync_client
from tests.sync.conftest import ServerProcess, enroll_code, products, seed_store, unique
from tests.sync.faultproxy import FaultProxy
from tests.sync.helpers import Till, opening_ledger

TODAY = date.today()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = f"sqlite:///{tmp_path_factory.mktemp('srv') / 'server.db'}"
    srv = ServerProcess(db).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def shop(server: ServerProcess) -> tuple[str, str]:
    tenant, store = unique("t"), unique("s")
    seed_store(server.db, tenant, store)
    return tenant, store


@pytest.fixture
def hq(server: ServerProcess) -> Iterator[SqlServerStore]:
    s = open_store(server.db)
    try:
        yield s
    finally:
        s.close()


def till(tmp_path: Path, server: ServerProcess, shop: tuple[str, str], name: str,
         url: str | None = None) -> Till:
    return Till(tmp_path, name, url or server.url, enroll_code(server.db, *shop))


def server_stock(hq: SqlServerStore, shop: tuple[str, str]) -> list[dict[str, Any]]:
    return hq.stock(shop[0], shop[1], TODAY)


def assert_converged(hq: SqlServerStore, shop: tuple[str, str], tills: list[Till],
                     ledger: Counter[str]) -> None:
    srv = server_stock(hq, shop)
    for t in tills:
        assert t.stock() == srv, t.name
    want = {bid: q for bid, q in ledger.items()}
    got = {r["batch_id"]: r["on_hand"] for r in srv}
    assert {b: got.get(b, 0) for b in want} == want  # stock = receipts - sales, exactly
    assert all(got[b] == 0 for b in got if b not in want)
    def nonzero(rows: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int]]:
        return [r for r in rows if r[2] or r[3]]  # a (0, 0) row is the same as no row

    counters = nonzero(hq.store_counters(*shop))
    for t in tills:
        assert nonzero(t.counters()) == counters, t.name
    regs = [t.register_ids() for t in tills]
    assert all(r == regs[0] for r in regs)
    server_regs = {e["body"]["entry_id"] for e in hq.store_events(*shop, kinds=["register"])}
    assert regs[0] == server_regs


def test_first_sync_brings_catalog_stock_and_settings(tmp_path: Path, server: ServerProcess,
                                                      shop: tuple[str, str],
                                                      hq: SqlServerStore,
                                                      memory_keyring: Any) -> None:
    t = till(tmp_path, server, shop, "front")
    assert t.enrolled["token_storage"] == "keyring"
    assert memory_keyring.data  # the token went to the keyring, not to disk
    assert not (t.dir / sync_client.TOKEN_FILE).exists()
    res = t.sync()
    assert res.pushed == 0 and res.pulled > 0 and res.server_seq
    assert t.stock() == server_stock(hq, shop)
    assert {r["lot"]: r["on_hand"] for r in t.stock()} == {"IB1": 200, "AM1": 500, "SU1": 40}
    with t.store() as s:
        assert s.get_setting("jurisdiction") == "US-TX"
        assert s.conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 4
    st = t.status()
    assert st["last_success"] and st["offline_since"] is None
    assert st["pending"] == {"events": 0, "counters": 0, "docs": 0}
    assert st["token_storage"] == "keyring" and "warning" not in st


def test_two_tills_converge_and_stock_is_exact(tmp_path: Path, server: ServerProcess,
                                               shop: tuple[str, str],
                                               hq: SqlServerStore) -> None:
    rng = random.Random(11)
    a, b = till(tmp_path, server, shop, "aa"), till(tmp_path, server, shop, "bb")
    for t in (a, b):
        t.sync()
    for _ in range(40):
        rng.choice((a, b)).act(rng)
    for _ in range(2):
        for t in (a, b):
            t.sync()
    assert_converged(hq, shop, [a, b], opening_ledger() + a.ledger + b.ledger)
    rows = {r["terminal_id"]: r for r in hq.terminals(*shop)}
    assert rows[a.enrolled["terminal_id"]]["pending_events"] == 0
    assert rows[a.enrolled["terminal_id"]]["last_sync_at"]


def test_stock_of_a_product_imported_at_one_till_reaches_the_others(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        hq: SqlServerStore) -> None:
    """A product head office never sent (imported at one terminal) is announced with its
    first receipt: head office and the other terminals learn what the stock is, and can sell
    it; head office's definition of a product it does send always wins."""
    a, b = till(tmp_path, server, shop, "imp-a"), till(tmp_path, server, shop, "imp-b")
    for t in (a, b):
        t.sync()
    local = catalog.product_from_json({"ndc": "0002-1433-80", "name": "Local Tabs 10 mg",
                                       "price": "3.10", "strength": "10 mg"})
    ours = products()[0]  # head office's: a terminal's own copy of it must not spread
    hq.publish(shop[0], shop[1], "product", [{**ours.to_json(), "price": "9.99"}])
    with a.store() as s:
        catalog.upsert_products(s, [local, catalog.product_from_json(
            {**ours.to_json(), "name": "Stale name", "price": "1.00"})])
        inventory.receive(s, [{"ndc": local.ndc, "lot": "LOC1", "expiry": "2031-01-31",
                               "qty": 12}])
        # the batch event follows the announcement in the same push
        kinds = [r[0] for r in s.conn.execute(
            "SELECT kind FROM events WHERE replica_id = ? ORDER BY seq", (s.replica_id,))]
        assert kinds[-3:] == ["product", "batch", "movement"]
        s.conn.execute("UPDATE products SET announced_at = NULL WHERE ndc = ?", (ours.ndc,))
        inventory.receive(s, [{"ndc": ours.ndc, "lot": "OLD9", "expiry": "2031-01-31",
                               "qty": 1}])
    for _ in range(2):
        for t in (a, b):
            t.sync()
    srv = {r["lot"]: r for r in server_stock(hq, shop)}
    assert srv["LOC1"]["name"] == "Local Tabs 10 mg" and srv["LOC1"]["on_hand"] == 12
    assert srv["OLD9"]["name"] == ours.name  # not the terminal's stale copy
    assert a.stock() == b.stock() == server_stock(hq, shop)
    for t in (a, b):
        with t.store() as s:
            assert catalog.lookup(s.conn, ours.ndc).price_cents == 999, t.name
            assert catalog.lookup(s.conn, local.ndc).name == "Local Tabs 10 mg"
    with b.store() as s:  # the other till sells the stock it now knows
        sold = Dispenser(s, InterimGate()).sell({"lines": [{"ndc": local.ndc, "qty": 2}]})
        assert [a.lot for a in sold.lines[0].allocations] == ["LOC1"]


def test_head_office_sales_report(tmp_path: Path, server: ServerProcess,
                                  shop: tuple[str, str], hq: SqlServerStore,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Sales, money, refusals and controlled units of a day, from what two tills pushed."""
    from pharmacy.errors import ComplianceDenied
    from policy_cache.allowances import grant_allowances
    from terminal import wiring
    from terminal.cli import main as cli_main

    a, b = till(tmp_path, server, shop, "rep-a"), till(tmp_path, server, shop, "rep-b")
    for t in (a, b):
        t.sync()
    totals = []
    with a.store() as s:
        for qty in (1, 2):
            totals.append(Dispenser(s, InterimGate()).sell(
                {"lines": [{"ndc": "0904-6728-60", "qty": qty}]}).total_cents)
        with pytest.raises(ComplianceDenied):  # no policy bundle here: PSE is refused
            Dispenser(s, InterimGate()).sell({"lines": [{"ndc": "50580-451-01", "qty": 1}]})
        # a paid sale of 3, one pack brought back sealed: refunded and back on the shelf
        paid = checkout.checkout(Dispenser(s, InterimGate()), {
            "user": {"id": "u-ph", "role": "pharmacist"},
            "lines": [{"ndc": "0904-6728-60", "qty": 3}]},
            lambda total: checkout.tender_for("cash", total))
        totals.append(paid.sale.total_cents)
        back = refunds.refund(s, {"id": "u-ph", "role": "pharmacist"}, paid.sale.sale_id,
                              method="cash", reason="unopened",
                              lines=[{"line_no": 1, "qty": 1, "restock": True}])
    with b.store() as s:
        wiring.install_demo_policy(s)
        grant_allowances(s, {"per_day": {"CII": 100}})
        inventory.receive(s, [{"ndc": "0406-0552-01", "lot": "OXR", "expiry": "2031-01-31",
                               "qty": 50}])
        day = s.clock().date().isoformat()
        totals.append(wiring.dispenser(s).sell({
            "jurisdiction": "US-TX", "user": {"id": "u-ph", "role": "pharmacist"},
            "lines": [{"ndc": "0406-0552-01", "qty": 12}],
            "patient": {"id": "pt-r", "name": "Ana Reyes", "address": "1 Test Way, Austin TX "
                        "78701", "birth_date": "1970-01-02", "id_document": "TXDL1"},
            "rx": {"rx_number": "RXR1", "electronic": True, "written_on": day,
                   "refill_number": 0, "refills_authorized": 0, "days_supply": 3,
                   "quantity_prescribed": 12, "directions": "1 tab q6h prn", "daw": 0,
                   "pmp_checked": True, "prescriber": {
                       "name": "Dr. Maria Alvarez", "address": "1200 Main St, Austin TX 78701",
                       "dea": "BA1234563"}}}).total_cents)
        rx_sale = s.conn.execute("SELECT sale_id FROM sales WHERE rx_number = 'RXR1'"
                                 ).fetchone()[0]
        with s.transaction() as c:  # never picked up: back on the shelf
            sales.return_sale(c, s.replica_id, rx_sale, "u-ph", "not picked up",
                              iso(s.clock()))
    for t in (a, b):
        t.sync()
    today = TODAY
    rep = hq.sales_report(shop[0], shop[1], today, today)
    from pharmacy.money import fmt

    assert rep["sales"] == 4 and rep["total"] == fmt(sum(totals))
    assert rep["returned"] == {"sales": 1, "total": fmt(totals[3]),
                               "controlled_units": {"CII": 12}}
    assert back.total_cents == 749 + 62
    assert rep["refunded"] == {"refunds": 1, "total": "8.11", "tax": "0.62",
                               "units_restocked": 1, "by_method": {"cash": "8.11"}}
    # only the checkout was paid at the till (the others are sold, not yet paid)
    assert rep["payments"] == {"cash": {"count": 1, "amount": fmt(totals[2])}}
    assert rep["net_total"] == fmt(totals[0] + totals[1] + totals[2] - back.total_cents)
    assert [d["date"] for d in rep["by_day"]] == [today.isoformat()]
    assert sorted(t["sales"] for t in rep["by_terminal"]) == [1, 3]
    assert rep["refused"] == {"attempts": 1, "by_code": {"POLICY_ENGINE_MISSING": 1}}
    assert rep["controlled_dispensed"] == {"CII": 12}
    empty = hq.sales_report(shop[0], shop[1], today - timedelta(days=3),
                            today - timedelta(days=2))
    assert empty["sales"] == 0 and empty["refused"]["attempts"] == 0
    assert cli_main(["server", "report", "--db", server.db, "--store", shop[1], "--tenant",
                     shop[0], "--from", today.isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == rep["total"]
    assert cli_main(["server", "report", "--db", server.db, "--store", shop[1], "--tenant",
                     shop[0], "--from", "yesterday", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_DATE"


def test_head_office_users_sign_in_at_every_till(tmp_path: Path, server: ServerProcess,
                                                 shop: tuple[str, str], hq: SqlServerStore,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """An account head office publishes signs in at each till of the store once it synced;
    a new PIN and a disable reach them the same way; a till's own account of that name is
    never overwritten (the publication fails there with USER_EXISTS)."""
    from pharmacy import users
    from terminal.cli import main as cli_main

    def ho(*argv: str) -> dict[str, Any]:
        rc = cli_main(["server", "user", *argv, "--db", server.db, "--store", shop[1],
                       "--tenant", shop[0], "--json"])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0, out
        return out

    a, b = till(tmp_path, server, shop, "usr-a"), till(tmp_path, server, shop, "usr-b")
    with b.store() as s:
        users.add_user(s, "lena", "Lena (local)", "cashier", "5827")
    nora = ho("add", "--username", "nora", "--name", "Nora Diaz", "--role", "pharmacist",
              "--pin", "2468")
    ho("add", "--username", "lena", "--role", "technician", "--pin", "7391")
    assert nora["active"] and nora["stores"] == [shop[1]]
    for t in (a, b):
        t.sync()
        with t.store() as s:
            assert users.login(s, "nora", "2468").role == "pharmacist", t.name
    with a.store() as s:
        assert users.login(s, "lena", "7391").role == "technician"
    with b.store() as s:  # the local lena stays
        assert users.login(s, "lena", "5827").role == "cashier"
        failed = s.conn.execute("SELECT last_error FROM sync_publications WHERE kind = 'user' "
                                "AND state = 'failed'").fetchall()
        assert len(failed) == 1 and "USER_EXISTS" in failed[0][0]
    errs = b.status()["publication_errors"]  # what `pharmos sync status` shows
    assert [e["kind"] for e in errs] == ["user"] and errs[0]["error"].startswith("USER_EXISTS")
    ho("passwd", "--username", "nora", "--pin", "8642")
    a.sync()
    with a.store() as s:
        assert users.login(s, "nora", "8642").user_id == nora["user_id"]
        with pytest.raises(users.AuthFailed):
            users.login(s, "nora", "2468")
    assert not ho("disable", "--username", "nora")["active"]
    a.sync()
    with a.store() as s, pytest.raises(users.AuthFailed) as ei:
        users.login(s, "nora", "8642")
    assert "disabled" in ei.value.message
    rc = cli_main(["server", "user", "add", "--db", server.db, "--store", shop[1], "--tenant",
                   shop[0], "--username", "nora", "--role", "cashier", "--pin", "1357",
                   "--json"])
    assert rc == 1 and json.loads(capsys.readouterr().out)["error"]["code"] == "USER_EXISTS"
    rc = cli_main(["server", "user", "disable", "--db", server.db, "--store", shop[1],
                   "--tenant", shop[0], "--username", "ghost", "--json"])
    assert rc == 1 and json.loads(capsys.readouterr().out)["error"]["code"] == "UNKNOWN_USER"


def test_a_cut_connection_leaves_no_gap_and_no_duplicate(tmp_path: Path, server: ServerProcess,
                                                         shop: tuple[str, str],
                                                         hq: SqlServerStore) -> None:
    rng = random.Random(5)
    proxy = FaultProxy(server.port, seed=3, drop_request=0.25, drop_response=0.25,
                       duplicate=0.2, replay=0.2).start()
    try:
        a = till(tmp_path, server, shop, "aa")
        b = till(tmp_path, server, shop, "bb")
        for t in (a, b):
            t.sync()
        for _ in range(60):
            rng.choice((a, b)).act(rng)
            if rng.random() < 0.35:
                t = rng.choice((a, b))
                try:
                    t.sync(proxy.url, retries=1)
                except PharmosError:
                    pass  # offline for now; the next round repairs it
        proxy.set(drop_request=0, drop_response=0, duplicate=0, replay=0)
        for _ in range(2):
            for t in (a, b):
                t.sync(proxy.url)
    finally:
        proxy.stop()
    assert proxy.counts["drop_response"] and proxy.counts["replay"], proxy.counts
    assert_converged(hq, shop, [a, b], opening_ledger() + a.ledger + b.ledger)
    ids = [e["event_id"] for e in hq.store_events(*shop)]
    assert len(ids) == len(set(ids))
    assert len(hq.store_events(*shop, kinds=["sale"])) == a.sales + b.sales


def test_a_restored_data_dir_forks_and_is_rebased(tmp_path: Path, server: ServerProcess,
                                                  shop: tuple[str, str],
                                                  hq: SqlServerStore) -> None:
    rng = random.Random(7)
    a, b = till(tmp_path, server, shop, "aa"), till(tmp_path, server, shop, "bb")
    for t in (a, b):
        t.sync()
    for _ in range(10):
        a.act(rng)
    a.sync()
    backup = tmp_path / "backup"
    shutil.copytree(a.dir, backup)  # the whole data dir, install.json included
    lost_ledger = a.ledger.copy()
    for _ in range(15):
        a.sell(rng)
    a.receive(rng)
    a.sync()  # head office now has the later sales: they happened, they must stay counted
    pushed_ledger = a.ledger.copy()
    shutil.rmtree(a.dir)
    shutil.copytree(backup, a.dir)
    a.ledger = lost_ledger.copy()
    old_replica = a.status()["replica_id"]
    for _ in range(12):
        a.sell(rng)
    a.receive(rng, "0406-0552-01")  # a controlled receipt: a register entry
    res = a.sync()
    assert res.rebased and res.rebased[0]["replica_id"] == old_replica
    assert res.rebased[0]["moved_events"] > 0
    assert a.status()["replica_id"] != old_replica
    assert old_replica in a.status()["retired_replicas"]
    for _ in range(2):
        for t in (a, b):
            t.sync()
    # truth: everything the lost timeline did, plus what the restored one did after the backup
    total = opening_ledger()
    total.update(pushed_ledger)
    total.update(a.ledger)
    total.subtract(lost_ledger)
    total.update(b.ledger)
    assert_converged(hq, shop, [a, b], total)
    with a.store() as s:
        forked = s.conn.execute("SELECT COUNT(*) FROM register_forked").fetchone()[0]
    assert forked >= 1  # the receipt of the controlled lot after the restore


def test_a_restored_database_alone_takes_a_new_replica(tmp_path: Path, server: ServerProcess,
                                                       shop: tuple[str, str],
                                                       hq: SqlServerStore) -> None:
    rng = random.Random(8)
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    for _ in range(8):
        a.sell(rng)
    db = tmp_path / "pharmos.db.bak"
    with a.store() as s:
        s.conn.execute(f"VACUUM INTO '{db}'")  # a backup with unsynced sales in it
    kept = a.ledger.copy()
    before = a.status()["replica_id"]
    a.sync()
    for _ in range(8):
        a.sell(rng)
    a.sync()
    pushed = a.ledger.copy()
    for suffix in ("", "-wal", "-shm"):
        (a.dir / f"pharmos.db{suffix}").unlink(missing_ok=True)
    shutil.copy(db, a.dir / "pharmos.db")  # install.json stays: the store notices
    a.ledger = kept.copy()
    st = a.status()
    assert st["replica_id"] != before and st["retired_replicas"] == []
    for _ in range(5):
        a.sell(rng)
    res = a.sync()
    a.sync()
    # the old replica's rows in the backup are below head office's: retired, not rebased
    assert res.retired == [before] and not res.rebased
    total = opening_ledger()
    total.update(pushed)
    total.update(a.ledger)
    total.subtract(kept)
    assert_converged(hq, shop, [a], total)


def test_a_restored_dir_that_has_not_sold_since_retires_its_replica(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        hq: SqlServerStore) -> None:
    rng = random.Random(4)
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    for _ in range(6):
        a.sell(rng)
    backup = tmp_path / "backup"
    shutil.copytree(a.dir, backup)  # unsynced sales in the backup
    before = a.status()["replica_id"]
    a.sync()
    for _ in range(6):
        a.sell(rng)
    a.sync()
    pushed = a.ledger.copy()
    shutil.rmtree(a.dir)
    shutil.copytree(backup, a.dir)
    assert a.status()["replica_id"] == before  # nothing local can tell
    res = a.sync()
    assert res.retired == [before] and a.status()["replica_id"] != before
    a.ledger = pushed.copy()  # head office has all the lost timeline did
    while not a.sell(rng):
        pass
    a.sync()
    total = opening_ledger()
    total.update(a.ledger)
    assert_converged(hq, shop, [a], total)


def test_a_restored_server_gets_everything_again(tmp_path: Path, shop: tuple[str, str],
                                                 server: ServerProcess) -> None:
    rng = random.Random(9)
    db_path = tmp_path / "own.db"
    own = ServerProcess(f"sqlite:///{db_path}").start()
    try:
        tenant, store = unique("t"), unique("s")
        seed_store(own.db, tenant, store)
        a = Till(tmp_path, "aa", own.url, enroll_code(own.db, tenant, store))
        a.sync()
        own.stop()
        shutil.copy(db_path, tmp_path / "server-backup.db")
        own.start()
        for _ in range(10):
            a.act(rng)
        a.sync()
        own.stop()
        for suffix in ("-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        shutil.copy(tmp_path / "server-backup.db", db_path)
        own.start()
        a.receive(rng)
        a.sync()  # CURSOR_AHEAD: the terminal pushes everything again
        hq = open_store(own.db)
        try:
            assert_converged(hq, (tenant, store), [a], opening_ledger() + a.ledger)
        finally:
            hq.close()
    finally:
        own.stop()


def test_offline_and_revoked_are_reported(tmp_path: Path, server: ServerProcess,
                                          shop: tuple[str, str], hq: SqlServerStore) -> None:
    rng = random.Random(1)
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    a.sell(rng)
    dead = ServerProcess("sqlite:///unused.db")  # a port nobody listens on
    with pytest.raises(sync_client.SyncUnavailable):
        a.sync(dead.url, retries=1)
    st = a.status()
    assert st["offline_since"] and st["last_error"].startswith("SYNC_UNAVAILABLE")
    assert st["pending"]["events"] >= 1 and st["pending"]["counters"] == 1
    a.sync()
    assert a.status()["offline_since"] is None
    hq.revoke(a.enrolled["terminal_id"])
    with pytest.raises(sync_client.SyncRejected) as e:
        a.sync()
    assert e.value.code == "TOKEN_REVOKED"
    assert a.status()["last_error"].startswith("TOKEN_REVOKED")


def test_without_a_keyring_the_token_goes_to_a_private_file(tmp_path: Path,
                                                            server: ServerProcess,
                                                            shop: tuple[str, str]) -> None:
    from keyring.backends import null

    keyring.set_keyring(null.Keyring())
    a = till(tmp_path, server, shop, "kiosk")
    assert a.enrolled["token_storage"] == "file" and "0600" in a.enrolled["warning"]
    path = a.dir / sync_client.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    a.sync()
    assert "warning" in a.status()
    os.chmod(path, 0o644)
    with pytest.raises(PharmosError) as e:
        a.sync()
    assert e.value.code == "TOKEN_FILE_MODE"
    with pytest.raises(PharmosError) as e:
        sync_client.save_token(tmp_path, "x", "tok", "keyring")
    assert e.value.code == "NO_KEYRING"


def test_concurrent_offline_board_edits_merge(tmp_path: Path, server: ServerProcess,
                                              shop: tuple[str, str]) -> None:
    a, b = till(tmp_path, server, shop, "aa"), till(tmp_path, server, shop, "bb")
    with a.store() as s:
        replication.edit_doc(s, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-1", {"label": "J.D.", "bin": "A1"}, actor="aa", at="t1"))
    a.sync()
    b.sync()
    # both offline: a marks it ready, b moves it to another bin and adds an item
    with a.store() as s:
        replication.edit_doc(s, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-1", {"status": "ready"}, actor="aa", at="t2"))
        replication.edit_doc(s, "store_settings",
                             lambda st: shared_doc.settings_set(st, "receipt_footer", "Thanks"))
    with b.store() as s:
        replication.edit_doc(s, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-1", {"bin": "C3"}, actor="bb", at="t3"))
        replication.edit_doc(s, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-2", {"label": "M.K.", "bin": "B2"}, actor="bb", at="t3"))
        replication.edit_doc(s, "store_settings",
                             lambda st: shared_doc.settings_set(st, "open_hours", "8-20"))
    for t in (a, b, a):
        t.sync()
    views = []
    for t in (a, b):
        with t.store() as s:
            views.append((replication.doc_view(s.conn, "will_call"),
                          replication.doc_view(s.conn, "store_settings")))
    assert views[0] == views[1]
    board, settings = views[0]
    assert board["rx-1"]["status"] == "ready" and board["rx-1"]["bin"] == "C3"
    assert board["rx-2"]["label"] == "M.K."
    assert settings == {"open_hours": "8-20", "receipt_footer": "Thanks"}


def test_publications_are_downloaded_verified_and_installed(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str], hq: SqlServerStore,
        monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[tuple[str, Any]] = []

    def fake_models_bundle(store: Any, data: bytes) -> dict[str, Any]:
        installed.append(("model", data))
        return {"version": "m1"}

    hq.publish(shop[0], shop[1], "model", [{"kind": "demand", "version": "m1"}],
               b"model-bytes")
    hq.publish(shop[0], None, "allowances", [{"CII": 0, "CIV": 10}])
    a = till(tmp_path, server, shop, "aa")
    monkeypatch.setattr(sync_client, "_resolve", lambda module, name: None)
    a.sync()
    with a.store() as s:
        pubs = s.conn.execute("SELECT kind, state, last_error FROM sync_publications "
                              "ORDER BY server_seq").fetchall()
    assert [(k, st) for k, st, _ in pubs] == [("model", "pending"), ("allowances", "pending")]
    assert "not installed" in pubs[0][2]
    monkeypatch.setattr(sync_client, "_resolve", lambda module, name: (
        fake_models_bundle if module == "models.bundle" else
        (lambda store, grant: installed.append(("allowances", grant)))))
    res = a.sync()
    assert installed == [("model", b"model-bytes"), ("allowances", {"CII": 0, "CIV": 10})]
    assert [i["kind"] for i in res.installed] == ["model", "allowances"]
    assert all(i["ok"] for i in res.installed)
    a.sync()
    assert len(installed) == 2  # installed once


def test_policy_bundle_through_policy_cache(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        hq: SqlServerStore) -> None:
    from policy_cache.demo import build_demo_bundle

    assert sync_client._resolve("policy_cache.install", "install_bundle") is not None
    signed, public_pem = build_demo_bundle()
    hq.trust_key(shop[0], public_pem.decode() if isinstance(public_pem, bytes) else public_pem)
    hq.publish(shop[0], None, "allowances", [{"CII": 0, "CIV": 12}])  # before the bundle
    hq.publish(shop[0], shop[1], "policy_bundle", [{"name": "demo"}], signed)
    a = till(tmp_path, server, shop, "aa")
    assert a.enrolled["trusted_keys"] == 1
    res = a.sync()
    assert [(i["kind"], i["ok"]) for i in res.installed] == [("policy_bundle", True),
                                                             ("allowances", True)]
    from policy_cache.allowances import current_allowances

    with a.store() as s:
        assert current_allowances(s)["per_day"] == {"CII": 0, "CIV": 12}
    tampered = bytearray(signed)
    tampered[len(tampered) // 2] ^= 1
    hq.publish(shop[0], shop[1], "policy_bundle", [{"name": "evil"}], bytes(tampered))
    res = a.sync()
    assert [(i["kind"], i["ok"]) for i in res.installed] == [("policy_bundle", False)]
    assert res.installed[0]["error"]  # a clear code; the last good bundle stays


def test_head_office_rotates_its_signing_key(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        hq: SqlServerStore) -> None:
    """The current key endorses a new one and retires itself; a terminal that missed the
    rotation learns it on its next sync, installs bundles signed by the new key and refuses
    the old key's; a terminal enrolled afterwards gets only the new key."""
    from pharmacy.signing import SigningKey, endorse_key
    from policy_cache.demo import build_demo_bundle
    from policy_cache.trust import trusted_key_ids

    k1, k2, k3 = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    hq.trust_key(shop[0], k1.public_pem().decode())
    a = till(tmp_path, server, shop, "rot-a")
    a.sync()
    with a.store() as s:
        assert trusted_key_ids(s) == [k1.key_id]
    # two rotations while the till is away: k1 -> k2 -> k3, each retiring the old key
    with pytest.raises(PharmosError) as ei:  # only a trusted key may endorse
        hq.endorse_key(shop[0], endorse_key(k3, k2.public_pem(), issued_at="2026-11-27"))
    assert ei.value.code == "UNKNOWN_SIGNING_KEY"
    hq.endorse_key(shop[0], endorse_key(k1, k2.public_pem(), issued_at="2026-11-27",
                                        retire_signer=True))
    hq.endorse_key(shop[0], endorse_key(k2, k3.public_pem(), issued_at="2026-11-28",
                                        retire_signer=True))
    signed, _ = build_demo_bundle(key=k3, version="rot-3")
    hq.publish(shop[0], shop[1], "policy_bundle", [{"name": "rot-3"}], signed)
    res = a.sync()
    assert [(i["kind"], i["ok"]) for i in res.installed] == [
        ("key_endorsement", True), ("key_endorsement", True), ("policy_bundle", True)]
    with a.store() as s:
        assert trusted_key_ids(s) == [k3.key_id]
        from models.bundle import trust_for_store

        assert trust_for_store(s).key_ids() == [k3.key_id]
        from policy_cache.install import show

        shown = show(s)
        assert shown["active"]["bundle_version"] == "rot-3" and shown["status"] == "ok"
        assert shown["active"]["key_id"] == k3.key_id
    old, _ = build_demo_bundle(key=k1, version="rot-old")
    hq.publish(shop[0], shop[1], "policy_bundle", [{"name": "old"}], old)
    res = a.sync()
    assert [(i["kind"], i["ok"], i.get("error")) for i in res.installed] == [
        ("policy_bundle", False, "UNKNOWN_SIGNING_KEY")]  # the retired key is not trusted
    b = till(tmp_path, server, shop, "rot-b")
    assert b.enrolled["trusted_keys"] == 1
    b.sync()
    with b.store() as s:
        assert trusted_key_ids(s) == [k3.key_id]


def test_a_tampered_download_is_refused(tmp_path: Path, server: ServerProcess,
                                        shop: tuple[str, str], hq: SqlServerStore,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hq.publish(shop[0], shop[1], "model", [{"kind": "expiry", "version": "2"}], b"good")
    a = till(tmp_path, server, shop, "aa")
    with a.store() as s:
        pass
    monkeypatch.setattr(sync_client, "_resolve", lambda module, name: lambda store, d: {})
    monkeypatch.setattr(sync_client.SyncClient, "blob", lambda self, sha: b"evil")
    res = a.sync()
    assert res.installed == [{"kind": "model", "event_id": res.installed[0]["event_id"],
                              "ok": False, "error": "DOWNLOAD_MISMATCH"}]
    with a.store() as s:
        assert s.conn.execute("SELECT state FROM sync_publications").fetchone()[0] == "failed"
    assert json.loads(json.dumps(a.status()))["publications"] == {"failed": 1}


def test_days_offline_push_in_pages(tmp_path: Path, server: ServerProcess,
                                    shop: tuple[str, str], hq: SqlServerStore) -> None:
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    with a.store() as s:
        inventory.receive(s, [{"ndc": "0904-6728-60", "lot": "BIG1", "expiry": "2029-01-31",
                               "qty": 2200}])
        a.ledger["00904672860:BIG1"] += 2200
        disp = Dispenser(s, InterimGate())
        for _ in range(2100):  # one event a sale: more than one page of 2,000
            res = disp.sell({"lines": [{"ndc": "0904-6728-60", "lot": "BIG1", "qty": 1}]})
            for line in res.lines:
                for al in line.allocations:
                    a.ledger[al.batch_id] -= al.qty
    assert a.status()["pending"]["events"] > 2000
    res = a.sync()
    assert res.pushed > 2100
    assert a.status()["pending"] == {"events": 0, "counters": 0, "docs": 0}
    assert_converged(hq, shop, [a], opening_ledger() + a.ledger)


def _server_bodies(server: ServerProcess, shop: tuple[str, str]) -> dict[str, str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(server.db.removeprefix("sqlite:///"))) as c:
        return dict(c.execute("SELECT event_id, body FROM events WHERE tenant_id = ? AND "
                              "store_id = ? AND kind != 'doc_update'", shop).fetchall())


def _local_bodies(t: Till) -> dict[str, str]:
    from pharmacy import outbox

    with t.store() as s:  # as pushed: a sale's or register entry's body rebuilt from its rows
        rows = s.conn.execute("SELECT event_id, replica_id, kind, body FROM events").fetchall()
        events = outbox.with_bodies(s.conn, [dict(r) for r in rows])
        return {e["event_id"]: e["body"] for e in events}


def test_events_pushed_as_columns_arrive_byte_for_byte(tmp_path: Path, server: ServerProcess,
                                                       shop: tuple[str, str]) -> None:
    rng = random.Random(8)
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    for _ in range(30):
        a.act(rng)
    with a.store() as s:
        batch = replication.collect_push(s)
        payload = sync_client.push_payload(s, batch)
    assert payload["protocol"] == 2 and payload["event_groups"]
    assert len(payload["events"]) < len(batch.events)  # most went as columns
    a.sync()
    local = _local_bodies(a)
    assert {k: v for k, v in _server_bodies(server, shop).items() if k in local} == local


class _OnlyProtocol1(httpx.BaseTransport):
    """Head office before protocol 2: refuses a push that names it, as that server did."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.pushes: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/push":
            raw = request.read()
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            protocol = json.loads(raw)["protocol"]
            self.pushes.append(protocol)
            if protocol != 1:
                return httpx.Response(400, json={"error": {
                    "code": "PROTOCOL_VERSION", "message": f"sync protocol {protocol} is not "
                    "supported by this server (it speaks [1]); update pharmos",
                    "details": {"supported": [1]}}})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_server_speaking_only_protocol_1_gets_whole_events(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        hq: SqlServerStore) -> None:
    rng = random.Random(9)
    a = till(tmp_path, server, shop, "aa")
    a.sync()
    for _ in range(20):
        a.act(rng)
    transport = _OnlyProtocol1()
    with a.store() as s:
        c = sync_client.client_for(s, retries=1, backoff=0.005, transport=transport)
        with c:
            res = sync_client.sync(s, c)
    assert res.pushed > 0 and transport.pushes[:2] == [2, 1]
    assert set(transport.pushes[1:]) == {1}
    assert a.status()["pending"] == {"events": 0, "counters": 0, "docs": 0}
    local = _local_bodies(a)
    assert {k: v for k, v in _server_bodies(server, shop).items() if k in local} == local
    assert_converged(hq, shop, [a], opening_ledger() + a.ledger)


def test_server_report_matches_the_terminal_day_report(
        tmp_path: Path, server: ServerProcess, shop: tuple[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Checkout with change, a card sale, refunds by both methods on another day, across the
    New York fall-back day (25 hours): `pharmos sync`, then `pharmos server report` gives the
    same sales, payments by method and refunds by method as `pharmos report day` there."""
    from datetime import UTC, datetime

    from terminal.cli import main as cli_main
    from tests.conftest import FakeClock

    t = till(tmp_path, server, shop, "zrep")
    t.sync()
    ph = {"id": "u-ph", "role": "pharmacist"}
    clock = FakeClock(datetime(2026, 11, 1, 4, 30, tzinfo=UTC))  # 00:30 EDT, Nov 1
    with Store.open(t.dir, clock=clock) as s:
        d = Dispenser(s, InterimGate())

        def pay(ndc: str, qty: int, method: str, tendered: str | None = None
                ) -> checkout.CheckoutResult:
            return checkout.checkout(d, {"user": ph, "lines": [{"ndc": ndc, "qty": qty}]},
                                     lambda total: checkout.tender_for(method, total,
                                                                       tendered, "AP1"))

        cash = pay("0904-6728-60", 2, "cash", "50.00")  # change given
        assert cash.change_cents > 0
        clock.advance(hours=12)
        card = pay("0904-6728-60", 1, "card")
        d.sell({"user": ph, "lines": [{"ndc": "0093-0058-01", "qty": 3}]})  # never paid
        clock.advance(hours=12)  # 04:30 UTC Nov 2 = 23:30 EST, still Nov 1
        late = pay("0093-0058-01", 4, "cash", "20.00")
        clock.advance(hours=1, minutes=30)  # 01:00 EST Nov 2
        refunds.refund(s, ph, cash.sale.sale_id, method="cash", reason="unopened",
                       lines=[{"line_no": 1, "qty": 1, "restock": True}])
        refunds.refund(s, ph, card.sale.sale_id, method="card", reason="unopened")
        pay("0904-6728-60", 1, "cash")
    assert cli_main(["sync", "--data-dir", str(t.dir), "--json"]) == 0
    capsys.readouterr()
    for day in ("2026-11-01", "2026-11-02"):
        assert cli_main(["report", "day", "--data-dir", str(t.dir), "--date", day, "--tz",
                         "America/New_York", "--json"]) == 0
        mine = json.loads(capsys.readouterr().out)
        assert cli_main(["server", "report", "--db", server.db, "--store", shop[1],
                         "--tenant", shop[0], "--from", day, "--tz", "America/New_York",
                         "--json"]) == 0
        hq = json.loads(capsys.readouterr().out)
        assert hq["unreadable_events"] == 0
        assert (hq["sales"], hq["total"], hq["tax"]) == (
            mine["sales"]["count"], mine["sales"]["total"], mine["sales"]["tax"])
        assert {m: v for m, v in hq["payments"].items()} == {
            m: {"count": v["count"], "amount": v["amount"]}
            for m, v in mine["payments"].items() if v["count"]}
        assert (hq["refunded"]["refunds"], hq["refunded"]["total"], hq["refunded"]["tax"]) == (
            mine["refunds"]["count"], mine["refunds"]["total"], mine["refunds"]["tax"])
        assert hq["refunded"]["by_method"] == {
            m: mine["refunds"][m] for m in ("cash", "card") if mine["refunds"][m] != "0.00"}
    # the figures themselves: Nov 1 took two cash payments (less their change) and a card
    assert mine["refunds"]["count"] == 2 and mine["payments"]["cash"]["count"] == 1
    assert cli_main(["report", "day", "--data-dir", str(t.dir), "--date", "2026-11-01",
                     "--tz", "America/New_York", "--json"]) == 0
    nov1 = json.loads(capsys.readouterr().out)
    from pharmacy.money import fmt

    assert nov1["sales"]["count"] == 4 and nov1["unpaid"]["count"] == 1
    assert nov1["payments"]["cash"]["amount"] == fmt(cash.sale.total_cents
                                                     + late.sale.total_cents)
    assert nov1["cash_expected"] == nov1["payments"]["cash"]["amount"]
    assert nov1["payments"]["cash"]["tendered"] == "70.00"
