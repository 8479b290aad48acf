"""Terminals for sync tests: a data dir enrolled with a server, doing real sales, receipts and
stocktakes through the core, keeping a ledger of what each committed operation did."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from pharmacy import inventory, register
from pharmacy.compliance import InterimGate
from pharmacy.errors import DomainRefusal
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from terminal import sync_client
from tests.sync.conftest import OPENING, products

SELLABLE = ("0904-6728-60", "0093-0058-01")  # the interim gate allows these
NDC11 = {p.ndc: p.ndc11 for p in products()}


def opening_ledger() -> Counter[str]:
    return Counter({f"{NDC11[o['ndc']]}:{o['lot']}": int(o["qty"]) for o in OPENING})


class Till:
    """One terminal data directory. Opens its store per operation, as the CLI does."""

    def __init__(self, root: Path, name: str, server_url: str, code: str | None,
                 enrolled: dict[str, Any] | None = None) -> None:
        self.dir = root / name
        self.name = name
        self.url = server_url
        if enrolled is None:
            assert code is not None
            enrolled = sync_client.enroll(self.dir, server_url, code, name=name)
        self.enrolled = enrolled
        self.ledger: Counter[str] = Counter()  # batch_id -> units this till moved
        self.sales = 0

    def store(self) -> Store:
        return Store.open(self.dir)

    def client(self, url: str | None = None, retries: int = 4) -> sync_client.SyncClient:
        with self.store() as s:
            c = sync_client.client_for(s, retries=retries, backoff=0.005, max_backoff=0.05,
                                       timeout=20)
        if url is not None:
            c.close()
            c = sync_client.SyncClient(url, c.token, retries=retries, backoff=0.005,
                                       max_backoff=0.05, timeout=20)
        return c

    def sync(self, url: str | None = None, retries: int = 4) -> sync_client.SyncResult:
        with self.store() as s, self.client(url, retries) as c:
            return sync_client.sync(s, c)

    # ---- operations -------------------------------------------------------------------------
    def sell(self, rng: random.Random) -> bool:
        ndc = rng.choice(SELLABLE)
        qty = rng.randint(1, 3)
        with self.store() as s:
            try:
                res = Dispenser(s, InterimGate()).sell({"lines": [{"ndc": ndc, "qty": qty}]})
            except DomainRefusal:
                return False
        for line in res.lines:
            for a in line.allocations:
                self.ledger[a.batch_id] -= a.qty
        self.sales += 1
        return True

    def receive(self, rng: random.Random, ndc: str | None = None) -> None:
        ndc = ndc or rng.choice(("0904-6728-60", "0093-0058-01", "0406-0552-01"))
        lot = f"{self.name[:2].upper()}{rng.randint(1, 4)}"
        qty = rng.randint(5, 40)
        with self.store() as s:
            known = s.conn.execute("SELECT expiry FROM batches WHERE ndc = ? AND lot = ?",
                                   (ndc, lot)).fetchone()
            expiry = known[0] if known else f"2028-0{rng.randint(1, 9)}-28"
            changed = inventory.receive(s, [{"ndc": ndc, "lot": lot, "expiry": expiry,
                                             "qty": qty, "order_form": "222-1"}],
                                        supplier="McKesson")
        self.ledger[changed.batch_ids[0]] += qty

    def stocktake(self, rng: random.Random) -> None:
        with self.store() as s:
            rows = [r for r in inventory.stock(s.conn, s.clock().date()) if r["on_hand"] > 0]
            if not rows:
                return
            r = rng.choice(rows)
            counted = max(0, r["on_hand"] + rng.randint(-2, 2))
            changed = inventory.stocktake(s, [{"ndc": r["ndc"], "lot": r["lot"],
                                               "counted": counted}])
        for bid, delta in changed.details["deltas"].items():
            self.ledger[bid] += delta

    def act(self, rng: random.Random) -> None:
        x = rng.random()
        if x < 0.75:
            self.sell(rng)
        elif x < 0.92:
            self.receive(rng)
        else:
            self.stocktake(rng)

    # ---- views ------------------------------------------------------------------------------
    def stock(self) -> list[dict[str, Any]]:
        with self.store() as s:
            rows = inventory.stock(s.conn, s.clock().date())
        return sorted(rows, key=lambda r: (r["name"], r["expiry"], r["lot"]))

    def counters(self) -> list[tuple[str, str, int, int]]:
        with self.store() as s:
            return [tuple(r) for r in s.conn.execute(  # type: ignore[misc]
                "SELECT counter_id, replica_id, p, n FROM counters ORDER BY 1, 2")]

    def register_ids(self) -> set[str]:
        with self.store() as s:
            assert register.verify(s.conn).ok
            return {r[0] for r in s.conn.execute("SELECT entry_id FROM register")}

    def status(self) -> dict[str, Any]:
        with self.store() as s:
            return sync_client.status(s)
