"""The server store interface: one suite, run against SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import date
from typing import Any

import pytest

from sync_server.errors import SyncError
from sync_server.storage import SqlServerStore, Terminal, normalize_code, parse_db_url
from tests.sync.conftest import OPENING, products, unique

TODAY = date(2026, 11, 2)


def ev(replica: str, seq: int, kind: str = "sale", body: dict[str, Any] | None = None,
       **extra: Any) -> dict[str, Any]:
    if body is None:
        body = {"sale_id": str(uuid.uuid4()),
                "allocations": [{"batch_id": "00904672860:IB1", "qty": 1}]}
    return {"event_id": str(uuid.uuid4()), "replica_id": replica, "seq": seq, "kind": kind,
            "created_at": "2026-11-02T15:00:00Z", "body": body, **extra}


def push_req(term: Terminal, replica: str, events: list[dict[str, Any]] = (),  # type: ignore
             counters: list[dict[str, Any]] = (), key: str | None = None,  # type: ignore
             **extra: Any) -> dict[str, Any]:
    return {"protocol": 1, "idempotency_key": key or str(uuid.uuid4()),
            "store_id": term.store_id, "replica_id": replica, "events": list(events),
            "counters": list(counters), "docs": [], **extra}


def pull_all(s: SqlServerStore, term: Terminal, replica: str, cursor: int = 0,
             limit: int = 2000) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    events: list[dict[str, Any]] = []
    counters: list[dict[str, Any]] = []
    while True:
        page = s.pull(term, {"store_id": term.store_id, "replica_id": replica,
                             "cursor": cursor, "limit": limit})
        events += page["events"]
        counters += page["counters"]
        cursor = page["next_cursor"]
        if not page["more"]:
            return events, counters, cursor


def new_store(s: SqlServerStore, opening: bool = True) -> tuple[str, str]:
    tenant, store = unique("t"), unique("s")
    s.create_store(tenant, store, jurisdiction="US-TX", products=products(),
                   opening=OPENING if opening else ())
    return tenant, store


def terminal(s: SqlServerStore, tenant: str, store: str) -> Terminal:
    code = s.create_enroll_code(tenant, store)["code"]
    return s.authenticate(s.enroll(code, "till", None)["token"])


def code_of(e: pytest.ExceptionInfo[SyncError]) -> str:
    return e.value.code


def test_migrate_is_idempotent_and_versioned(server_store: SqlServerStore) -> None:
    v = server_store.schema_version()
    assert v >= 1
    assert server_store.migrate() == v
    server_store.check_schema()


def test_create_store_seeds_catalog_and_opening_stock(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    rows = server_store.stock(tenant, store, TODAY)
    assert {(r["lot"], r["on_hand"]) for r in rows} == {("IB1", 200), ("AM1", 500),
                                                        ("SU1", 40)}
    assert rows == sorted(rows, key=lambda r: (r["name"], r["expiry"], r["lot"]))
    assert set(rows[0]) == {"batch_id", "ndc", "name", "lot", "expiry", "status", "on_hand",
                            "dea_schedule", "india_schedule", "cmea", "unit_cost"}
    with pytest.raises(SyncError) as e:
        server_store.create_store(tenant, store)
    assert code_of(e) == "STORE_EXISTS"
    with pytest.raises(SyncError) as e:
        server_store.create_store(tenant, "bad store!")
    assert code_of(e) == "BAD_NAME"


def test_enrollment_codes_are_one_time_and_expire(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store, opening=False)
    code = server_store.create_enroll_code(tenant, store)["code"]
    out = server_store.enroll(code.lower().replace("-", " "), "till-1", "r1")
    assert out["store_id"] == store and out["tenant_id"] == tenant
    assert out["jurisdiction"] == "US-TX" and out["token"].startswith("pmt_")
    for bad, want in ((code, "ENROLL_CODE_USED"), ("AAAA-BBBB-CCCC-DDDD", "BAD_ENROLL_CODE")):
        with pytest.raises(SyncError) as e:
            server_store.enroll(bad, None, None)
        assert code_of(e) == want and e.value.status == 401
    expired = server_store.create_enroll_code(tenant, store, ttl_hours=-1)["code"]
    with pytest.raises(SyncError) as e:
        server_store.enroll(expired, None, None)
    assert code_of(e) == "ENROLL_CODE_EXPIRED"
    assert normalize_code("abcd-efgh ijkl") == "ABCDEFGHIJKL"


def test_tokens_wrong_and_revoked(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store, opening=False)
    code = server_store.create_enroll_code(tenant, store)["code"]
    out = server_store.enroll(code, None, None)
    term = server_store.authenticate(out["token"])
    for token, want in (("pmt_nope", "BAD_TOKEN"), ("", "NO_TOKEN")):
        with pytest.raises(SyncError) as e:
            server_store.authenticate(token)
        assert code_of(e) == want
    server_store.revoke(term.terminal_id)
    with pytest.raises(SyncError) as e:
        server_store.authenticate(out["token"])
    assert code_of(e) == "TOKEN_REVOKED"
    rows = server_store.terminals(tenant, store)
    assert rows[0]["revoked_at"] is not None


def test_push_is_idempotent_and_pull_skips_own_replica(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    t1, t2 = terminal(server_store, tenant, store), terminal(server_store, tenant, store)
    events = [ev("r1", 1), ev("r1", 2, "batch", {
        "batch_id": "00904672860:NEW", "ndc": "0904-6728-60", "lot": "NEW",
        "expiry": "2028-01-31", "received_at": "2026-11-02T15:00:00Z"})]
    counters = [{"counter_id": "stock:00904672860:IB1", "replica_id": "r1", "p": 0, "n": 1}]
    req = push_req(t1, "r1", events, counters, key="k-1")
    first = server_store.push(t1, req)
    assert (first["accepted"], first["duplicates"], first["counters"]) == (2, 0, 1)
    assert server_store.push(t1, req) == first  # the same request: the same answer
    again = server_store.push(t1, push_req(t1, "r1", events, counters))  # a new key
    assert (again["accepted"], again["duplicates"], again["counters"]) == (0, 2, 0)
    assert {r["on_hand"] for r in server_store.stock(tenant, store, TODAY)
            if r["lot"] == "IB1"} == {199}
    mine, my_counters, _ = pull_all(server_store, t1, "r1")
    assert all(e["replica_id"] != "r1" for e in mine)
    assert all(c["replica_id"] != "r1" for c in my_counters)
    theirs, their_counters, cursor = pull_all(server_store, t2, "r2")
    kinds = {e["kind"] for e in theirs}
    assert "sale" not in kinds and {"product", "batch"} <= kinds  # sales stay at head office
    assert any(e["replica_id"] == "r1" and e["kind"] == "batch" for e in theirs)
    assert {("r1", 0, 1)} <= {(c["replica_id"], c["p"], c["n"]) for c in their_counters}
    assert pull_all(server_store, t2, "r2", cursor) == ([], [], cursor)
    other = terminal(server_store, tenant, store)
    with pytest.raises(SyncError) as e:
        server_store.push(other, req)  # an idempotency key is per terminal
    assert code_of(e) == "IDEMPOTENCY_KEY_REUSED"


def test_counter_regression_is_refused_and_writes_nothing(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    row = {"counter_id": "stock:00904672860:IB1", "replica_id": "r1", "p": 5, "n": 3}
    server_store.push(t1, push_req(t1, "r1", [ev("r1", 1)], [row]))
    before = server_store.store_counters(tenant, store), server_store.store_events(tenant, store)
    bad = push_req(t1, "r1", [ev("r1", 2)], [{**row, "p": 6, "n": 2}])
    with pytest.raises(SyncError) as e:
        server_store.push(t1, bad)
    assert code_of(e) == "COUNTER_REGRESSION" and e.value.status == 409
    assert e.value.details["replicas"] == ["r1"]
    assert e.value.details["rows"][0]["server_n"] == 3
    assert (server_store.store_counters(tenant, store),
            server_store.store_events(tenant, store)) == before


def test_a_forked_replica_is_refused(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    server_store.push(t1, push_req(t1, "r1", [ev("r1", 1), ev("r1", 2)]))
    with pytest.raises(SyncError) as e:
        server_store.push(t1, push_req(t1, "r1", [ev("r1", 2), ev("r1", 3)]))
    assert code_of(e) == "REPLICA_FORKED"
    assert (e.value.details["replica_id"], e.value.details["seq"]) == ("r1", 2)
    assert len(server_store.store_events(tenant, store, ["sale"])) == 2
    reused = ev("r1", 9)
    reused["event_id"] = server_store.store_events(tenant, store, ["sale"])[0]["event_id"]
    with pytest.raises(SyncError) as e:
        server_store.push(t1, push_req(t1, "r1", [reused]))
    assert code_of(e) == "EVENT_ID_REUSED"
    assert len(server_store.store_events(tenant, store, ["sale"])) == 2
    server_store.push(t1, push_req(t1, "r1", [ev("r1", 3)]))  # the store still works


def test_a_database_behind_the_server_is_told(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    server_store.push(t1, push_req(t1, "r1", [ev("r1", 1), ev("r1", 2)], replica_seq=2))
    for call in (lambda: server_store.push(t1, push_req(t1, "r1", [], replica_seq=1)),
                 lambda: server_store.pull(t1, {"store_id": store, "replica_id": "r1",
                                                "replica_seq": 1})):
        with pytest.raises(SyncError) as e:
            call()
        assert code_of(e) == "REPLICA_BEHIND" and e.value.details["server_seq"] == 2
    server_store.pull(t1, {"store_id": store, "replica_id": "r1", "replica_seq": 2})


@pytest.mark.parametrize("mutate,want", [
    (lambda r: r.update(store_id="elsewhere"), "SCOPE_VIOLATION"),
    (lambda r: r["events"][0].update(store_id="elsewhere"), "SCOPE_VIOLATION"),
    (lambda r: r["events"][0]["body"].update(tenant_id="other-chain"), "SCOPE_VIOLATION"),
    (lambda r: r["counters"][0].update(store_id="elsewhere"), "SCOPE_VIOLATION"),
    (lambda r: r["events"][0].update(kind="policy_bundle"), "FORBIDDEN_KIND"),
    (lambda r: r["events"][0].update(kind="Bad Kind"), "BAD_EVENT_KIND"),
    (lambda r: r["events"][0].update(replica_id="hq:x"), "RESERVED_REPLICA"),
    (lambda r: r["counters"][0].update(replica_id="hq:x"), "RESERVED_REPLICA"),
    (lambda r: r["events"][0].update(kind="batch"), "BAD_EVENT"),
    (lambda r: r["events"][0].update(kind="register"), "BAD_EVENT"),
    (lambda r: r["events"][0].update(body="[1]"), "BAD_EVENT"),
    (lambda r: r["events"][0].update(body='{"store_id": "x"'), "BAD_EVENT"),
    (lambda r: r["events"][0].update(body='{"a": 1, "store_id": "x"}'), "SCOPE_VIOLATION"),
])
def test_bad_rows_are_refused_and_nothing_is_written(server_store: SqlServerStore,
                                                     mutate: Any, want: str) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    req = push_req(t1, "r1", [ev("r1", 1)], [{"counter_id": "stock:x", "replica_id": "r1",
                                              "p": 1, "n": 0}])
    mutate(req)
    before = server_store.store_counters(tenant, store), server_store.store_events(tenant, store)
    with pytest.raises(SyncError) as e:
        server_store.push(t1, req)
    assert code_of(e) == want and 400 <= e.value.status < 500
    assert (server_store.store_counters(tenant, store),
            server_store.store_events(tenant, store)) == before


def test_tenants_and_stores_are_isolated(server_store: SqlServerStore) -> None:
    store = unique("s")
    for tenant in ("chain-a", "chain-b"):
        try:
            server_store.create_store(f"{tenant}-{store}", store, products=products(),
                                      opening=OPENING)
        except SyncError:
            pass
    ta = terminal(server_store, f"chain-a-{store}", store)
    tb = terminal(server_store, f"chain-b-{store}", store)
    e1 = ev("ra", 1)
    server_store.push(ta, push_req(ta, "ra", [e1], [{"counter_id": "stock:00904672860:IB1",
                                                      "replica_id": "ra", "p": 0, "n": 7}]))
    assert server_store.known_events(ta, [e1["event_id"]]) == [e1["event_id"]]
    assert server_store.known_events(tb, [e1["event_id"]]) == []
    _, counters, _ = pull_all(server_store, tb, "rb")
    assert all(c["replica_id"] != "ra" for c in counters)
    ib1 = [r for r in server_store.stock(f"chain-b-{store}", store, TODAY) if r["lot"] == "IB1"]
    assert ib1[0]["on_hand"] == 200
    with pytest.raises(SyncError) as e:
        server_store.resolve_store(store)
    assert code_of(e) == "AMBIGUOUS_STORE"
    pub = server_store.publish(f"chain-a-{store}", store, "policy_bundle", [{"name": "b"}],
                               b"signed-bytes")
    assert server_store.blob(ta, pub["sha256"]) == b"signed-bytes"
    with pytest.raises(SyncError) as e:
        server_store.blob(tb, pub["sha256"])
    assert code_of(e) == "NO_BLOB"


def test_tenant_publications_reach_existing_and_later_stores(
        server_store: SqlServerStore) -> None:
    tenant, s1 = new_store(server_store, opening=False)
    server_store.publish(tenant, None, "allowances", [{"CII": 0, "CIII": 5}])
    server_store.publish(tenant, None, "product", [{**products()[0].to_json(), "price": "9.99"}])
    s2 = unique("s")
    server_store.create_store(tenant, s2)
    for store in (s1, s2):
        term = terminal(server_store, tenant, store)
        events, _, _ = pull_all(server_store, term, "r")
        assert {"allowances", "product"} <= {e["kind"] for e in events}
        bodies = [json.loads(e["body"]) for e in events if e["kind"] == "product"]
        prices = [b["price"] for b in bodies if b["ndc"] == products()[0].ndc]
        assert prices[-1] == "9.99"
    with pytest.raises(SyncError) as e:
        server_store.publish(tenant, None, "sale", [{}])
    assert code_of(e) == "BAD_PUBLICATION"


def test_batch_status_merges_last_writer_and_recall_is_final(
        server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    bid = "00904672860:IB1"

    def status(replica: str, seq: int, st: str, at: str) -> dict[str, Any]:
        return ev(replica, seq, "batch_status", {"batch_id": bid, "status": st, "status_at": at})

    server_store.push(t1, push_req(t1, "r1", [status("r1", 1, "quarantined", "2030-11-03")]))
    server_store.push(t1, push_req(t1, "r2", [status("r2", 1, "active", "2030-11-02")]))
    got = {r["lot"]: r["status"] for r in server_store.stock(tenant, store, TODAY)}
    assert got["IB1"] == "quarantined"
    server_store.push(t1, push_req(t1, "r2", [status("r2", 2, "recalled", "2030-11-01")]))
    server_store.push(t1, push_req(t1, "r1", [status("r1", 2, "active", "2030-11-09")]))
    got = {r["lot"]: r["status"] for r in server_store.stock(tenant, store, TODAY)}
    assert got["IB1"] == "recalled"


def test_cursor_ahead_of_the_server_is_reported(server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store, opening=False)
    t1 = terminal(server_store, tenant, store)
    with pytest.raises(SyncError) as e:
        server_store.pull(t1, {"store_id": store, "replica_id": "r", "cursor": 10**6})
    assert code_of(e) == "CURSOR_AHEAD"
    with pytest.raises(SyncError) as e:
        server_store.pull(t1, {"store_id": "other", "replica_id": "r", "cursor": 0})
    assert code_of(e) == "SCOPE_VIOLATION"


def test_concurrent_pushes_never_leave_a_gap_behind_a_pull_cursor(
        server_store: SqlServerStore) -> None:
    tenant, store = new_store(server_store, opening=False)
    writers = [terminal(server_store, tenant, store) for _ in range(4)]
    reader = terminal(server_store, tenant, store)
    per_writer, per_push = 15, 3
    done = threading.Event()
    errors: list[BaseException] = []

    def write(i: int, term: Terminal) -> None:
        try:
            seq = 0
            for _ in range(per_writer):
                events = []
                for _ in range(per_push):
                    seq += 1
                    events.append(ev(f"w{i}", seq, "register", {
                        "replica_id": f"w{i}", "seq": seq, "entry_id": str(uuid.uuid4()),
                        "created_at": "x", "kind": "dispense", "ndc": "0406-0552-01",
                        "qty": 1, "body": "{}", "prev_hash": "0", "hash": "1"}))
                server_store.push(term, push_req(term, f"w{i}", events))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    seen: list[int] = []
    cursor = 0

    def read() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            page = server_store.pull(reader, {"store_id": store, "replica_id": "reader",
                                              "cursor": cursor, "limit": 7})
            seen.extend(e["server_seq"] for e in page["events"] if e["kind"] == "register")
            cursor = page["next_cursor"]
            if finished and not page["more"]:
                return

    threads = [threading.Thread(target=write, args=(i, t)) for i, t in enumerate(writers)]
    r = threading.Thread(target=read)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    assert not errors
    total = len(writers) * per_writer * per_push
    assert len(seen) == total and len(set(seen)) == total
    everything = [e["server_seq"] for e in server_store.store_events(tenant, store, ["register"])]
    assert sorted(seen) == everything
    assert everything == list(range(everything[0], everything[0] + total))


def test_database_urls() -> None:
    assert parse_db_url("sqlite:////tmp/x.db").target == "/tmp/x.db"
    assert parse_db_url("sqlite:///rel.db").target == "rel.db"
    pg = parse_db_url("postgresql://u:secret@h:5432/db")
    assert pg.kind == "postgresql" and "secret" not in pg.redacted()
    for bad in ("mysql://x", "sqlite://", "sqlite:///"):
        with pytest.raises(SyncError):
            parse_db_url(bad)


@pytest.mark.parametrize("odd,want", [
    ('{"a":1,"store_id":"elsewhere"}', "SCOPE_VIOLATION"),
    ('{"a":1,"\\u0073tore_id":"elsewhere"}', "SCOPE_VIOLATION"),
    ('{"a":"caf\\u00e9"}', None),
    ('{"a":{"tenant_id":"x"},"tenant_id":"other-chain"}', "SCOPE_VIOLATION"),
    ("[1]", "BAD_EVENT"),
    ("", "BAD_EVENT"),
    ('{"a":1} ', None),
    ('{"a":{"store_id":"elsewhere"}}', None),
])
def test_a_page_of_text_bodies_is_checked_body_by_body(server_store: SqlServerStore, odd: str,
                                                        want: str | None) -> None:
    tenant, store = new_store(server_store)
    t1 = terminal(server_store, tenant, store)
    events = [{**ev("r1", s), "body": json.dumps({"sale_id": f"s{s}"}, separators=(",", ":"))}
              for s in range(1, 31)]
    events[16]["body"] = odd
    req = push_req(t1, "r1", events)
    if want is not None:
        with pytest.raises(SyncError) as e:
            server_store.push(t1, req)
        assert code_of(e) == want
        assert want == "BAD_EVENT" or e.value.details["index"] == 16
        assert server_store.store_events(tenant, store, ["sale"]) == []
        return
    assert server_store.push(t1, req)["accepted"] == 30
    with server_store._tx(False) as tx:
        stored = dict(tx.all("SELECT event_id, body FROM events WHERE tenant_id = ? AND "
                             "store_id = ? AND kind = 'sale'", (tenant, store)))
    assert stored == {e["event_id"]: e["body"] for e in events}


def test_sales_report_places_events_by_their_own_time(server_store: SqlServerStore) -> None:
    """Both engines: a sale counts on its own local day; refusals by their first code;
    dispensed controlled units by schedule; other days and kinds stay out."""
    from datetime import date
    from zoneinfo import ZoneInfo

    tenant, store = new_store(server_store)
    term = terminal(server_store, tenant, store)
    r = "rep-replica"

    def sale(seq: int, at: str, total: int) -> dict[str, Any]:
        return ev(r, seq, body={"sale_id": f"s{seq}", "created_at": at, "subtotal_cents": total,
                                "tax_cents": 0, "total_cents": total}, created_at=at)

    reg_body = json.dumps({"schedule": "CIV", "kind": "dispense"})
    events = [
        sale(1, "2026-11-02T15:00:00Z", 500),
        sale(2, "2026-11-03T04:30:00Z", 250),  # 2026-11-02 in Chicago (UTC-6)
        sale(3, "2026-11-04T15:00:00Z", 999),  # another day
        ev(r, 4, "decision", {"decision": "deny", "reasons": [{"code": "CMEA_ID_REQUIRED"}]},
           created_at="2026-11-02T16:00:00Z"),
        ev(r, 5, "register", {"kind": "dispense", "qty": 30, "created_at":
                              "2026-11-02T17:00:00Z", "body": reg_body, "ndc": "x",
                              "replica_id": r, "entry_id": "e1", "seq": 1,
                              "prev_hash": "0" * 64, "hash": "1" * 64},
           created_at="2026-11-02T17:00:00Z"),
    ]
    server_store.push(term, push_req(term, r, events))
    chicago = server_store.sales_report(tenant, store, date(2026, 11, 2), date(2026, 11, 2),
                                        ZoneInfo("America/Chicago"))
    assert chicago["sales"] == 2 and chicago["total"] == "7.50"
    assert chicago["refused"] == {"attempts": 1, "by_code": {"CMEA_ID_REQUIRED": 1}}
    assert chicago["controlled_dispensed"] == {"CIV": 30}
    utc = server_store.sales_report(tenant, store, date(2026, 11, 2), date(2026, 11, 4))
    assert [(d["date"], d["sales"]) for d in utc["by_day"]] == [
        ("2026-11-02", 1), ("2026-11-03", 1), ("2026-11-04", 1)]
    with pytest.raises(SyncError) as e:
        server_store.sales_report(tenant, store, date(2026, 11, 3), date(2026, 11, 2))
    assert code_of(e) == "BAD_PERIOD"
