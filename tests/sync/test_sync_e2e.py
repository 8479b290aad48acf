"""End to end: a server process and three terminal data dirs selling, receiving and counting
offline; syncs in random order through a network that drops, duplicates and replays requests;
the server SIGKILLed mid-push and restarted; a terminal restored from an old backup of its
whole data dir. After everyone syncs twice, all terminals and the server agree, and stock is
exactly opening + receipts - sales (+ stocktake deltas)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pharmacy.errors import PharmosError
from sync_server.storage import open_store
from tests.conftest import ROOT, SMALL_CATALOG
from tests.sync.conftest import ServerProcess, enroll_code
from tests.sync.faultproxy import FaultProxy
from tests.sync.helpers import Till
from tests.sync.test_sync_terminal import TODAY, assert_converged

pytestmark = pytest.mark.slow


def pharmos(*args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "terminal.cli", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("seed", [1, 2])
def test_three_terminals_faults_kill_and_restore(db_url: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    srv = ServerProcess(db_url)
    pharmos("server", "migrate", "--db", db_url, "--json")
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps({"products": SMALL_CATALOG}))
    tenant, store = "acme", f"austin{seed}"
    pharmos("server", "admin", "--db", db_url, "create-store", "--tenant", tenant, "--store",
            store, "--demo", "--catalog", str(catalog_file), "--jurisdiction", "US-TX", "--json")
    hq = open_store(db_url)
    shop = (tenant, store)
    opening = Counter({r["batch_id"]: r["on_hand"] for r in hq.stock(tenant, store, TODAY)})
    assert sum(opening.values()) > 0
    srv.start()
    proxy = FaultProxy(srv.port, seed=seed, kill=srv.kill).start()
    try:
        tills = [Till(tmp_path, name, proxy.url, enroll_code(db_url, *shop))
                 for name in ("t1", "t2")]
        code = enroll_code(db_url, *shop)
        t3_dir = tmp_path / "t3"
        out = pharmos("enroll", "--data-dir", str(t3_dir), "--server", proxy.url, "--code", code,
                      "--name", "t3", "--json")
        assert out["token_storage"] == "file"  # the subprocess has no keyring
        t3 = Till(tmp_path, "t3", proxy.url, None, enrolled=out)  # enrolled by the CLI
        tills.append(t3)
        for t in tills:
            t.sync()
        t2 = tills[1]
        backup = tmp_path / "t2-backup"
        at_backup: Counter[str] = Counter()
        pushed_t2: Counter[str] = Counter()
        restored = killed = False

        def attempt(t: Till) -> None:
            try:
                if t is t3 and rng.random() < 0.3:
                    pharmos("sync", "--data-dir", str(t.dir), "--retries", "1", "--json")
                else:
                    t.sync(retries=1)
            except (PharmosError, AssertionError):
                pass  # offline this time; the next round repairs it

        for rnd in range(8):
            proxy.set(drop_request=0.15, drop_response=0.15, duplicate=0.15, replay=0.15)
            for t in tills:
                for _ in range(rng.randint(5, 15)):
                    t.act(rng)
            order = [rng.choice(tills) for _ in range(5)]
            if rnd == 2:
                proxy.set(drop_request=0, drop_response=0, duplicate=0, replay=0)
                t2.sync()
                for _ in range(6):
                    t2.sell(rng)  # unsynced sales in the backup
                shutil.copytree(t2.dir, backup)
                at_backup = t2.ledger.copy()
            if rnd == 4:
                # a big push, and the server dies while handling it
                for _ in range(40):
                    tills[0].sell(rng)
                proxy.set(drop_request=0, drop_response=0, duplicate=0, replay=0)
                proxy.kill_next_push = True
                with pytest.raises(PharmosError):
                    tills[0].sync(retries=1)
                assert proxy.killed.is_set()
                srv.start()
                killed = True
            if rnd == 6:
                proxy.set(drop_request=0, drop_response=0, duplicate=0, replay=0)
                t2.sync()  # head office holds all the lost timeline did
                pushed_t2 = t2.ledger.copy()
                shutil.rmtree(t2.dir)
                shutil.copytree(backup, t2.dir)
                t2.ledger = at_backup.copy()
                restored = True
            for t in order:
                attempt(t)
        proxy.set(drop_request=0, drop_response=0, duplicate=0, replay=0)
        for _ in range(2):
            for t in tills:
                t.sync()
        assert restored and killed
        assert proxy.counts["replay"] and proxy.counts["drop_response"]
        assert proxy.counts["duplicate"] and proxy.counts["drop_request"]
        truth = Counter(opening)
        truth.update(tills[0].ledger)
        truth.update(t3.ledger)
        truth.update(pushed_t2)
        truth.update(t2.ledger)
        truth.subtract(at_backup)
        assert_converged(hq, shop, tills, truth)
        sales = hq.store_events(*shop, kinds=["sale"])
        assert len(sales) == len({e["event_id"] for e in sales}) == sum(t.sales for t in tills)
        st = pharmos("server", "stock", "--db", db_url, "--store", store, "--json")
        assert st["batches"] == tills[0].stock()
        terms = pharmos("server", "admin", "--db", db_url, "terminals", "--store", store,
                        "--json")["terminals"]
        assert len(terms) == 3 and all(r["pending_events"] == 0 for r in terms)
        t2_status = t2.status()
        assert t2_status["retired_replicas"]  # the restored timeline took a new replica id
    finally:
        proxy.stop()
        srv.stop()
        hq.close()
