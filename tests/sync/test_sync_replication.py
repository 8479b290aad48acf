"""pharmacy.replication without a network: what a terminal pushes, how it applies pulled
pages, and how a forked replica is rebased."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pharmacy import checkout, inventory, refunds, register, replication, sales
from pharmacy.clock import iso
from pharmacy.compliance import InterimGate
from pharmacy.errors import OutOfStock
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from tests.conftest import SMALL_CATALOG

IB = "00904672860:IB2701"


def page(events: list[dict[str, Any]] = (), counters: list[dict[str, Any]] = (),  # type: ignore
         cursor: int = 10) -> dict[str, Any]:
    return {"events": list(events), "counters": list(counters), "next_cursor": cursor,
            "more": False, "server_seq": cursor}


def fev(seq: int, kind: str, body: dict[str, Any], replica: str = "other") -> dict[str, Any]:
    return {"server_seq": seq, "event_id": str(uuid.uuid4()), "replica_id": replica,
            "kind": kind, "created_at": "2026-11-02T15:00:00Z", "body": json.dumps(body)}


def on_hand(store: Store) -> dict[str, int]:
    return {r["batch_id"]: r["on_hand"] for r in inventory.stock(store.conn,
                                                                   store.clock().date())}


def test_push_pages_carry_counters_on_the_last_page(stocked: Store) -> None:
    first = replication.collect_push(stocked, limit=4)
    assert len(first.events) == 4 and not first.final and first.counters == []
    assert isinstance(first.events[0]["body"], str)  # bodies travel as recorded
    replication.ack_push(stocked, first)
    rest = replication.collect_push(stocked, limit=10_000)
    assert rest.final and rest.events[0]["seq"] == first.max_seq + 1
    assert {c["replica_id"] for c in rest.counters} == {stocked.replica_id}
    Dispenser(stocked, InterimGate()).sell({"lines": [{"ndc": "0904-6728-60", "qty": 1}]})
    replication.ack_push(stocked, rest)  # a row that changed after it was read stays dirty
    after = replication.collect_push(stocked)
    assert [c["counter_id"] for c in after.counters] == [f"stock:{IB.split(':')[0]}:IB2606"] \
        or len(after.counters) == 1
    assert replication.pending(stocked.conn)["counters"] == 1


def test_apply_pull_merges_and_moves_the_cursor_once(stocked: Store) -> None:
    mine = stocked.replica_id
    pg = page(counters=[
        {"server_seq": 3, "counter_id": f"stock:{IB}", "replica_id": "other", "p": 4, "n": 1},
        {"server_seq": 4, "counter_id": f"stock:{IB}", "replica_id": mine, "p": 99, "n": 0},
    ], cursor=4)
    before = on_hand(stocked)[IB]
    res = replication.apply_pull(stocked, pg)
    assert res.counters == 1 and on_hand(stocked)[IB] == before + 3
    replication.apply_pull(stocked, pg)  # the same page again changes nothing
    assert on_hand(stocked)[IB] == before + 3
    assert replication.status(stocked.conn)["pull_cursor"] == 4
    replication.apply_pull(stocked, page(cursor=2))  # an old page never moves it back
    assert replication.status(stocked.conn)["pull_cursor"] == 4


def test_a_batch_waits_for_its_product(store: Store) -> None:
    new_product = {**SMALL_CATALOG[0], "ndc": "0904-7777-60", "name": "Naproxen 220 mg"}
    batch = {"batch_id": "00904777760:NX1", "ndc": "0904-7777-60", "lot": "NX1",
             "expiry": "2028-01-31", "received_at": "2026-11-01T00:00:00Z",
             "unit_cost_cents": 120}
    res = replication.apply_pull(store, page([fev(1, "batch", batch)], cursor=1))
    assert res.waiting == 1 and replication.status(store.conn)["waiting_events"] == 1
    res = replication.apply_pull(store, page([fev(2, "product", new_product)], cursor=2))
    assert res.waiting == 0
    rows = inventory.stock(store.conn, store.clock().date(), "0904-7777-60")
    assert rows[0]["lot"] == "NX1" and rows[0]["unit_cost"] == "1.20"


def test_batch_status_last_writer_wins_and_a_recall_is_final(stocked: Store) -> None:
    def status(seq: int, st: str, at: str) -> dict[str, Any]:
        return fev(seq, "batch_status", {"batch_id": IB, "status": st, "status_at": at})

    def current() -> str:
        return str(stocked.conn.execute("SELECT status FROM batches WHERE batch_id = ?",
                                        (IB,)).fetchone()[0])

    replication.apply_pull(stocked, page([status(1, "quarantined", "2030-01-02")]))
    assert current() == "quarantined"
    replication.apply_pull(stocked, page([status(2, "active", "2030-01-01")]))
    assert current() == "quarantined"  # older
    replication.apply_pull(stocked, page([status(3, "recalled", "2029-01-01")]))
    replication.apply_pull(stocked, page([status(4, "active", "2031-01-01")]))
    assert current() == "recalled"


def test_the_same_lot_with_two_expiries_converges_and_is_logged(stocked: Store) -> None:
    row = stocked.conn.execute("SELECT expiry, received_at FROM batches WHERE batch_id = ?",
                               (IB,)).fetchone()
    earlier = {"batch_id": IB, "ndc": "0904-6728-60", "lot": "IB2701", "expiry": "2027-02-28",
               "received_at": "2000-01-01T00:00:00Z"}
    later = {**earlier, "expiry": "2027-03-31", "received_at": "2099-01-01T00:00:00Z"}
    replication.apply_pull(stocked, page([fev(1, "batch", later)]))
    assert stocked.conn.execute("SELECT expiry FROM batches WHERE batch_id = ?",
                                (IB,)).fetchone()[0] == row[0]
    replication.apply_pull(stocked, page([fev(2, "batch", earlier)]))
    assert stocked.conn.execute("SELECT expiry FROM batches WHERE batch_id = ?",
                                (IB,)).fetchone()[0] == "2027-02-28"
    logged = stocked.conn.execute("SELECT COUNT(*) FROM audit_log WHERE action = "
                                  "'sync.lot_expiry_conflict'").fetchone()[0]
    assert logged == 2


def test_foreign_register_entries_keep_every_chain_valid(stocked: Store, tmp_path: Any,
                                                         clock: Any) -> None:
    other = Store.init(tmp_path / "other", "store-1", clock=clock)
    try:
        with other.transaction() as c:
            for i in range(3):
                register.append(c, other.replica_id, f"2026-11-02T1{i}:00:00Z", "dispense",
                                {"ndc": "0406-0552-01", "qty": 2})
        batch = replication.collect_push(other)
        regs = [e for e in batch.events if e["kind"] == "register"]
    finally:
        other.close()
    replication.apply_pull(stocked, page([{**e, "server_seq": i + 1} for i, e in
                                          enumerate(regs)]))
    result = register.verify(stocked.conn)
    assert result.ok and result.chains == 2


def test_publications_newest_of_a_kind_wins(store: Store) -> None:
    events = [fev(1, "policy_bundle", {"sha256": "a", "size": 1}, "hq:t"),
              fev(2, "model", {"kind": "demand", "version": "1", "sha256": "b"}, "hq:t"),
              fev(3, "policy_bundle", {"sha256": "c", "size": 1}, "hq:t"),
              fev(4, "model", {"kind": "expiry", "version": "1", "sha256": "d"}, "hq:t")]
    replication.apply_pull(store, page(events))
    pending = replication.pending_publications(store.conn)
    assert [(p.kind, p.body["sha256"]) for p in pending] == [
        ("model", "b"), ("policy_bundle", "c"), ("model", "d")]
    replication.mark_publication(store, pending[1].event_id, "installed")
    states = dict(store.conn.execute("SELECT body, state FROM sync_publications").fetchall())
    assert sorted(states.values()) == ["installed", "pending", "pending", "superseded"]


def test_a_shared_document_edit_is_pushed_once(store: Store) -> None:
    from crdt import shared_doc

    view = replication.edit_doc(store, "will_call", lambda st: shared_doc.will_call_put(
        st, "rx-1", {"label": "A.B.", "bin": "A1"}, actor="me", at="now"))
    assert view["rx-1"]["bin"] == "A1"
    batch = replication.collect_push(store)
    assert len(batch.docs) == 1 and batch.docs[0]["doc"] == "will_call"
    replication.ack_push(store, batch)
    assert replication.collect_push(store).docs == []
    with pytest.raises(Exception) as e:
        replication.edit_doc(store, "will_call", lambda st: shared_doc.will_call_put(
            st, "rx-1", {"status": "lost"}, actor="me", at="now"))
    assert getattr(e.value, "code", None) == "BAD_DOC_EDIT"


def fresh_store(root: Path) -> Store:
    from pharmacy import catalog

    s = Store.init(root / uuid.uuid4().hex, "store-1")
    catalog.upsert_products(s, [catalog.product_from_json(p) for p in SMALL_CATALOG])
    inventory.receive(s, [
        {"ndc": "0904-6728-60", "lot": "IB1", "expiry": "2030-01-31", "qty": 30},
        {"ndc": "0093-0058-01", "lot": "AM1", "expiry": "2030-06-30", "qty": 40},
        {"ndc": "0406-0552-01", "lot": "OX1", "expiry": "2030-03-31", "qty": 30}])
    return s


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(1, 25), st.randoms(use_true_random=False))
def test_rebasing_a_fork_never_changes_local_stock(tmp_path: Path, n: int,
                                                   rnd: random.Random) -> None:
    """Whatever the server already knew, moving the rest to a new replica keeps on-hand,
    keeps every register chain valid, and skips exactly the moved events."""
    with fresh_store(tmp_path) as stocked:
        check_rebase(stocked, n, rnd)


def check_rebase(stocked: Store, n: int, rnd: random.Random) -> None:
    disp = Dispenser(stocked, InterimGate())
    for _ in range(n):
        try:
            sale = disp.sell({"lines": [{"ndc": rnd.choice(["0904-6728-60", "0093-0058-01"]),
                                         "qty": rnd.randint(1, 3)}]})
        except OutOfStock:
            continue
        roll = rnd.random()
        if roll < 0.3:  # never handed over: back to stock
            with stocked.transaction() as c:
                sales.return_sale(c, stocked.replica_id, sale.sale_id, "u1", "not collected",
                                  iso(stocked.clock()))
        elif roll < 0.6:  # paid, then partly brought back sealed and refunded
            with stocked.transaction() as c:
                checkout.record_tender(c, sale.sale_id, sale.total_cents,
                                       checkout.tender_for("cash", sale.total_cents), "u1",
                                       iso(stocked.clock()), stocked.replica_id)
            refunds.refund(stocked, {"id": "u1", "role": "manager"}, sale.sale_id,
                           method="cash", reason="unopened",
                           lines=[{"line_no": 1, "qty": rnd.randint(1, sale.lines[0].qty),
                                   "restock": sale.lines[0].product.ndc == "0904-6728-60"}])
    if rnd.random() < 0.5:
        inventory.receive(stocked, [{"ndc": "0406-0552-01", "lot": f"OX{rnd.randint(2, 9)}",
                                     "expiry": "2028-01-31", "qty": 5}])
    before = on_hand(stocked)
    old = stocked.replica_id
    ids = replication.unacked_event_ids(stocked.conn, old)
    # the server holds a prefix of what this replica wrote (pushes go in seq order)
    known = set(ids[:rnd.randint(0, len(ids))])
    # what the server will keep of the old replica's counters: the effects of what it knew
    kept: dict[str, int] = {}
    for e in replication.collect_push(stocked, limit=100_000).events:
        if e["event_id"] in known:
            for cid, delta in replication.counter_effects(e["kind"], json.loads(e["body"])):
                kept[cid] = kept.get(cid, 0) + delta
    stocked.rekey("server-regression")
    res = replication.rebase_forked(stocked, old, known)
    assert res.moved_events == len(ids) - len(known)
    assert on_hand(stocked) == before
    old_rows = {r[0]: r[1] for r in stocked.conn.execute(
        "SELECT counter_id, p - n FROM counters WHERE replica_id = ?", (old,))}
    assert {k: v for k, v in old_rows.items() if v} == {k: v for k, v in kept.items() if v}
    assert register.verify(stocked.conn).ok
    pushed = {e["event_id"] for e in replication.collect_push(stocked, limit=100_000).events}
    assert not (set(ids) - known) & pushed  # the moved originals are never pushed
    assert old in replication.status(stocked.conn)["retired_replicas"]
    assert replication.status(stocked.conn)["pull_cursor"] == 0
