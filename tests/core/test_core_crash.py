"""SIGKILL in the middle of a 1,000-sale loop, 20 times: no partial sale, no lost committed
sale, the register chain verifies, and stock equals receipts minus committed sales."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pharmacy import inventory, register
from pharmacy.store import Store

CHILD = Path(__file__).with_name("crash_child.py")


def _check_consistent(store: Store, acknowledged: set[str]) -> int:
    c = store.conn
    sales = {r[0] for r in c.execute("SELECT sale_id FROM sales")}
    missing = acknowledged - sales
    assert not missing, f"committed sales lost after SIGKILL: {sorted(missing)[:3]}"
    # no partial sale: every sale has both lines, their allocations and its decision
    partial = c.execute(
        "SELECT s.sale_id FROM sales s WHERE "
        "(SELECT COUNT(*) FROM sale_lines l WHERE l.sale_id = s.sale_id) != 2 "
        "OR (SELECT COALESCE(SUM(qty), 0) FROM allocations a WHERE a.sale_id = s.sale_id) "
        "   != (SELECT SUM(qty) FROM sale_lines l WHERE l.sale_id = s.sale_id) "
        "OR NOT EXISTS (SELECT 1 FROM decisions d WHERE d.decision_id = s.decision_id) "
        "OR (SELECT COUNT(*) FROM register r WHERE r.body LIKE '%' || s.sale_id || '%') != "
        "   (SELECT COUNT(*) FROM allocations a JOIN products p ON p.ndc = "
        "    (SELECT ndc FROM batches b WHERE b.batch_id = a.batch_id) "
        "    WHERE a.sale_id = s.sale_id AND p.dea_schedule IS NOT NULL)"
    ).fetchall()
    assert not partial, f"partial sales: {partial[:3]}"
    # stock = receipts − committed sales, batch by batch
    for (bid,) in c.execute("SELECT batch_id FROM batches").fetchall():
        received = c.execute("SELECT COALESCE(SUM(delta), 0) FROM movements WHERE batch_id = ?",
                             (bid,)).fetchone()[0]
        sold = c.execute("SELECT COALESCE(SUM(qty), 0) FROM allocations WHERE batch_id = ?",
                         (bid,)).fetchone()[0]
        assert inventory.on_hand(c, bid) == received - sold, bid
    result = register.verify(c)
    assert result.ok, result.broken
    return len(sales)


@pytest.mark.slow
def test_sigkill_during_sale_loop_twenty_times(stocked: Store) -> None:
    data_dir = stocked.data_dir
    inventory.receive(stocked, [
        {"ndc": "0904-6728-60", "lot": "BIG1", "expiry": "2028-01-31", "qty": 200_000},
        {"ndc": "0406-0552-01", "lot": "BIG2", "expiry": "2028-01-31", "qty": 200_000},
    ])
    stocked.close()
    rng = random.Random(20261127)
    acknowledged: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    kills = 0
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, str(CHILD), str(data_dir), "1000"],
                                stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        target = rng.randint(5, 120)
        seen = 0
        deadline = time.monotonic() + 30
        while seen < target and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("sold "):
                acknowledged.add(line.split()[1])
                seen += 1
        time.sleep(rng.random() * 0.01)  # land the kill at a random point inside a sale
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        out, _ = proc.communicate(timeout=30)
        acknowledged.update(ln.split()[1] for ln in out.splitlines() if ln.startswith("sold "))
        with Store.open(data_dir) as store:
            _check_consistent(store, acknowledged)
    assert kills >= 18, "the child finished before it could be killed; the test proves nothing"
    with Store.open(data_dir) as store:
        assert _check_consistent(store, acknowledged) >= len(acknowledged) > 100
