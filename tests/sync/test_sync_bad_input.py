"""Input the server's columns cannot hold is refused with a stable code, never a 500 or a
traceback: a batch cost beyond PostgreSQL's INTEGER, a NUL character (PostgreSQL text holds
none) anywhere a request carries text, report dates at the calendar's edges, enrollment code
lifetimes that are not a number of hours, and a database that cannot be reached or read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from pharmacy.errors import PharmosError
from pharmacy.inventory import MAX_UNIT_COST_CENTS as INT4_MAX
from sync_server import schemas
from sync_server.app import error_response
from sync_server.errors import SyncError
from sync_server.storage import SqlServerStore, open_store
from terminal.cli import main
from tests.sync.conftest import enroll_code, seed_store, unique
from tests.sync.test_sync_body_routes import _app, call

JSON = {"Content-Type": "application/json"}
Env = tuple[FastAPI, FastAPI, dict[str, str], str]


@pytest.fixture
def env(db_url: str, server_store: SqlServerStore) -> Iterator[Env]:
    """(app answering push and pull from the middleware, app answering them by its FastAPI
    routes, headers with an enrolled terminal's token, store id), on SQLite and PostgreSQL."""
    tenant, store = unique("t"), unique("s")
    seed_store(db_url, tenant, store)
    fast = _app(server_store, body_routes=True)
    _, _, body = call(fast, "POST", "/v1/enroll", json.dumps(
        {"protocol": 1, "code": enroll_code(db_url, tenant, store)}).encode(), JSON)
    yield (fast, _app(server_store, body_routes=False),
           {"Authorization": f"Bearer {json.loads(body)['token']}", **JSON}, store)


def _push(store: str, events: list[dict[str, Any]], **over: Any) -> bytes:
    body = {"protocol": 1, "idempotency_key": str(uuid.uuid4()), "store_id": store,
            "replica_id": "r9", "events": events}
    body.update(over)
    return json.dumps(body).encode()


def _event(kind: str, body: dict[str, Any] | str, **over: Any) -> dict[str, Any]:
    e = {"event_id": str(uuid.uuid4()), "replica_id": "r9", "seq": 1, "kind": kind,
         "created_at": "2026-11-02T15:00:00Z",
         "body": body if isinstance(body, str) else json.dumps(body)}
    e.update(over)
    return e


def _batch(**over: Any) -> dict[str, Any]:
    return {"batch_id": "00904672860:BIG", "ndc": "0904-6728-60", "lot": "BIG",
            "expiry": "2027-06-30", "received_at": "2026-11-02T15:00:00Z", **over}


def _both(env: Env, method: str, path: str, content: bytes) -> tuple[int, dict[str, Any]]:
    """The answer of both apps (middleware route and FastAPI route), which must agree."""
    fast, routed, headers, _ = env
    answers = [call(app, method, path, content, headers) for app in (fast, routed)]
    assert (answers[0][0], answers[0][2]) == (answers[1][0], answers[1][2])
    return answers[0][0], json.loads(answers[0][2])


# ---- a batch's unit cost beyond the srv_batches column ------------------------------------
@pytest.mark.parametrize("cost", [INT4_MAX + 1, 2**63, -1])
def test_push_batch_unit_cost_outside_integer_column_is_bad_event(env: Env, cost: int) -> None:
    status, out = _both(env, "POST", "/v1/push",
                        _push(env[3], [_event("batch", _batch(unit_cost_cents=cost))]))
    assert status == 400, out
    assert out["error"]["code"] == "BAD_EVENT"
    assert out["error"]["details"] == {"kind": "batch", "field": "unit_cost_cents"}


def test_push_batch_unit_cost_at_integer_column_limit_is_stored(env: Env,
                                                                server_store: SqlServerStore
                                                                ) -> None:
    fast, _, headers, store = env
    status, _, out = call(fast, "POST", "/v1/push",
                          _push(store, [_event("batch", _batch(unit_cost_cents=INT4_MAX))]),
                          headers)
    assert status == 200, out
    tenant, sid = server_store.resolve_store(store)
    row = next(b for b in server_store.stock(tenant, sid, date(2026, 11, 2))
               if b["batch_id"] == "00904672860:BIG")
    assert row["unit_cost"] == "21474836.47"


def test_database_data_error_is_bad_value_not_500() -> None:
    """The backstop for a value validation let through and PostgreSQL refuses."""
    for err in (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),
                psycopg.errors.NumericValueOutOfRange("integer out of range")):
        resp = error_response(err)
        assert resp.status_code == 400
        assert json.loads(bytes(resp.body))["error"]["code"] == "BAD_VALUE"


# ---- NUL characters -----------------------------------------------------------------------
def _nul_push(store: str, where: str) -> bytes:
    ev = _event("sale", {"note": "x"})
    events = [ev]
    over: dict[str, Any] = {}
    if where == "idempotency_key":
        over["idempotency_key"] = "key\x00"
    elif where == "event_id":
        ev["event_id"] = "ev\x00" + uuid.uuid4().hex
    elif where == "body":
        ev["body"] = '{"note":"a\x00b"}'
    elif where == "created_at":
        ev["created_at"] = "2026-11-02T15:00:00Z\x00"
    elif where == "counter_id":
        over["counters"] = [{"counter_id": "stock:\x00", "replica_id": "r9", "p": 1, "n": 0}]
    elif where == "replica_id":
        over["replica_id"] = "r9\x00"
    elif where == "status":
        over["status"] = {"version": "1.0\x00"}
    elif where == "event_groups":
        events = []
        over.update(protocol=2, event_groups=[{
            "kind": "sale", "replica_id": "r9", "keys": ["note"], "event_id": ["g1"],
            "seq": [1], "created_at": ["2026-11-02T15:00:00Z"], "values": [['"a\x00"']]}])
    return _push(store, events, **over)


@pytest.mark.parametrize("where", ["idempotency_key", "event_id", "body", "created_at",
                                   "counter_id", "replica_id", "status", "event_groups"])
def test_push_with_nul_character_is_refused(env: Env, where: str) -> None:
    status, out = _both(env, "POST", "/v1/push", _nul_push(env[3], where))
    assert status == 422, out
    assert out["error"]["code"] == "BAD_REQUEST"
    assert out["error"]["details"]["errors"][0]["type"] == "string_pattern_mismatch"


def test_push_batch_body_with_nul_character_is_bad_event(env: Env) -> None:
    """A body the server reads: its text is JSON with a \\u0000 escape, the value a NUL."""
    status, out = _both(env, "POST", "/v1/push",
                        _push(env[3], [_event("batch", _batch(lot="B\x00"))]))
    assert status == 400, out
    assert out["error"]["code"] == "BAD_EVENT"


def test_push_body_with_escaped_nul_text_is_stored_as_sent(env: Env) -> None:
    """A body whose JSON text spells a NUL escape (no NUL character in the text itself) is
    stored byte for byte; only the fast path's shortcut is skipped."""
    fast, _, headers, store = env
    text = json.dumps({"note": "a\x00b"})  # the six characters \u0000
    assert "\x00" not in text
    status, _, out = call(fast, "POST", "/v1/push", _push(store, [_event("sale", text)]),
                          headers)
    assert status == 200, out
    assert json.loads(out)["accepted"] == 1
    raw = _push("s1", [_event("sale", text)])
    assert b"\\u0000" in raw
    assert schemas.push_request(raw) == schemas.push_dict(
        schemas.PushRequest.model_validate_json(raw))


def test_pull_and_known_with_nul_character_are_refused(env: Env) -> None:
    status, out = _both(env, "POST", "/v1/pull", json.dumps(
        {"protocol": 1, "store_id": env[3], "replica_id": "r\x00"}).encode())
    assert (status, out["error"]["code"]) == (422, "BAD_REQUEST"), out
    status, out = _both(env, "POST", "/v1/events/known",
                        json.dumps({"protocol": 1, "event_ids": ["e\x00"]}).encode())
    assert (status, out["error"]["code"]) == (422, "BAD_REQUEST"), out


def test_blob_name_with_nul_character_is_no_blob(env: Env) -> None:
    status, out = _both(env, "GET", "/v1/blobs/ab%00cd", b"")
    assert (status, out["error"]["code"]) == (404, "NO_BLOB"), out


@pytest.mark.parametrize("field", ["name", "code", "replica_id"])
def test_enroll_with_nul_character_is_refused(db_url: str, server_store: SqlServerStore,
                                              field: str) -> None:
    tenant, store = unique("t"), unique("s")
    seed_store(db_url, tenant, store)
    app = _app(server_store, body_routes=True)
    req = {"protocol": 1, "code": enroll_code(db_url, tenant, store), "name": "till"}
    req[field] = f"{req.get(field, 'r')}\x00"
    status, _, out = call(app, "POST", "/v1/enroll", json.dumps(req).encode(), JSON)
    assert status == 422, out
    assert json.loads(out)["error"]["code"] == "BAD_REQUEST"


# ---- report dates and enrollment code lifetimes -------------------------------------------
def test_sales_report_dates_at_calendar_edges(db_url: str,
                                              server_store: SqlServerStore) -> None:
    from pharmacy.clock import zone_named

    tenant, store = unique("t"), unique("s")
    seed_store(db_url, tenant, store)
    for start, end, tz in ((date(9999, 12, 31), date(9999, 12, 31), "UTC"),
                           (date(1, 1, 1), date(1, 1, 1), "America/New_York"),
                           (date(1899, 12, 31), date(2026, 1, 1), "UTC")):
        with pytest.raises(SyncError) as e:
            server_store.sales_report(tenant, store, start, end, zone_named(tz))
        assert e.value.code == "BAD_DATE"
    # the last and first days a report covers, in zones far either side of UTC
    out = server_store.sales_report(tenant, store, date(9998, 12, 31), date(9998, 12, 31),
                                    zone_named("Pacific/Kiritimati"))
    assert out["sales"] == 0
    out = server_store.sales_report(tenant, store, date(1900, 1, 1), date(1900, 1, 1),
                                    zone_named("America/Adak"))
    assert out["sales"] == 0


@pytest.mark.parametrize("hours", [float("nan"), float("inf"), 1e30, -1e30, 24 * 365 + 1])
def test_enroll_code_lifetime_out_of_range_is_bad_args(db_url: str,
                                                       server_store: SqlServerStore,
                                                       hours: float) -> None:
    tenant, store = unique("t"), unique("s")
    seed_store(db_url, tenant, store, opening=False)
    with pytest.raises(SyncError) as e:
        server_store.create_enroll_code(tenant, store, hours)
    assert e.value.code == "BAD_ARGS"
    assert server_store.create_enroll_code(tenant, store, 24 * 365)["expires_at"]


# ---- the CLI ------------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    rc = main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


@pytest.fixture
def hq_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    db = f"sqlite:///{tmp_path / 'hq.db'}"
    assert main(["server", "migrate", "--db", db]) == 0
    assert main(["server", "admin", "create-store", "--db", db, "--tenant", "t1", "--store",
                 "s1", "--demo"]) == 0
    return db


@pytest.mark.parametrize(("args", "code"), [
    (["admin", "enroll-code", "--store", "s1", "--ttl-hours", "nan"], "BAD_ARGS"),
    (["admin", "enroll-code", "--store", "s1", "--ttl-hours", "1e30"], "BAD_ARGS"),
    (["admin", "enroll-code", "--store", "s1", "--ttl-hours", "-1"], "BAD_ARGS"),
    (["admin", "enroll-code", "--store", "s1", "--ttl-hours", "0"], "BAD_ARGS"),
    (["admin", "enroll-code", "--store", "s1", "--ttl-hours", "8761"], "BAD_ARGS"),
    (["stock", "--store", "s1", "--today", "bad"], "BAD_DATE"),
    (["report", "--store", "s1", "--from", "9999-12-31"], "BAD_DATE"),
    (["report", "--store", "s1", "--from", "0001-01-01", "--tz", "America/New_York"],
     "BAD_DATE"),
])
def test_cli_server_bad_dates_and_durations(capsys: pytest.CaptureFixture[str], hq_db: str,
                                            args: list[str], code: str) -> None:
    rc, out = run_cli(capsys, "server", *args, "--db", hq_db)
    assert (rc, out["error"]["code"]) == (1, code), out


def test_cli_server_edge_dates_that_fit_work(capsys: pytest.CaptureFixture[str],
                                             hq_db: str) -> None:
    rc, out = run_cli(capsys, "server", "stock", "--store", "s1", "--today", "9999-12-31",
                      "--db", hq_db)
    assert rc == 0 and out["batches"] and {b["status"] for b in out["batches"]} == {"expired"}
    rc, out = run_cli(capsys, "server", "report", "--store", "s1", "--from", "9998-12-31",
                      "--db", hq_db)
    assert rc == 0 and out["sales"] == 0
    rc, out = run_cli(capsys, "server", "admin", "enroll-code", "--store", "s1", "--ttl-hours",
                      "8760", "--db", hq_db)
    assert rc == 0 and out["code"]


@pytest.fixture
def not_a_database(tmp_path: Path) -> str:
    f = tmp_path / "bin.dat"
    f.write_bytes(b"\xff\xfe\x00\x81 not a database" * 64)
    return f"sqlite:///{f}"


@pytest.mark.parametrize(("db", "code"), [("postgresql://nobody@127.0.0.1:1/x", "DB_UNAVAILABLE"),
                                          ("NOT_A_DATABASE", "BAD_DB")])
@pytest.mark.parametrize("cmd", [["stock", "--store", "s1"], ["migrate"]])
def test_cli_server_database_unavailable_or_unreadable(capsys: pytest.CaptureFixture[str],
                                                       not_a_database: str, db: str, code: str,
                                                       cmd: list[str]) -> None:
    url = not_a_database if db == "NOT_A_DATABASE" else db
    rc, out = run_cli(capsys, "server", *cmd, "--db", url)
    assert (rc, out["error"]["code"]) == (1, code), out


def test_open_store_errors_are_domain_errors(not_a_database: str, tmp_path: Path) -> None:
    for url, code in (("postgresql://nobody@127.0.0.1:1/x", "DB_UNAVAILABLE"),
                      (not_a_database, "BAD_DB"),
                      (f"sqlite:///{tmp_path / 'bin.dat' / 'sub' / 'x.db'}", "DB_UNAVAILABLE")):
        with pytest.raises(PharmosError) as e:
            open_store(url)
        assert e.value.code == code, url
        assert isinstance(e.value, SyncError) and e.value.status == 503


def _reg(body: str) -> dict[str, Any]:
    """A register event the push takes (its fields are there) whose entry body is ``body``."""
    return {"replica_id": "r9", "entry_id": str(uuid.uuid4()), "created_at":
            "2026-11-02T15:00:00Z", "kind": "dispense", "ndc": "0406-0552-01", "body": body,
            "prev_hash": "0" * 64, "hash": "1" * 64, "seq": 1, "qty": 1}


def test_sales_report_leaves_out_event_bodies_it_cannot_read(env: Env,
                                                             server_store: SqlServerStore
                                                             ) -> None:
    """A terminal may push any body; the head-office report counts what it can read and
    says how many it could not, instead of failing (exit 70) for the whole store."""
    _, _, _, store = env
    at = "2026-11-02T15:00:00Z"
    good = [
        _event("sale", {"created_at": at, "total_cents": 811, "subtotal_cents": 749,
                        "tax_cents": 62}),
        _event("tender", {"method": "cash", "amount_cents": 811}),
        _event("sale_refund", {"total_cents": 811, "tax_cents": 62, "method": "cash",
                               "lines": [{"restocked": [["b", "L", "2027-01-01", 1]]}]}),
    ]
    bad = [
        _event("sale", {"created_at": at, "total_cents": "lots"}),
        _event("tender", {"method": "cash", "amount_cents": 1e300}),
        _event("tender", {"method": "cash", "amount_cents": True}),
        _event("sale_refund", {"total_cents": 5, "lines": [{"restocked": [["b"]]}]}),
        _event("sale_refund", {"total_cents": 5, "lines": "x"}),
        _event("sale_return", {"total_cents": {"a": 1}}),
        _event("decision", {"decision": "deny", "reasons": ["not an object"]}),
        _event("register", _reg("{not json")),
        _event("register", _reg("[1, 2]")),
    ]
    for seq, e in enumerate(good + bad, 1):
        e["seq"] = seq
    status, out = _both(env, "POST", "/v1/push", _push(store, good + bad))
    assert status == 200, out
    tenant = server_store.resolve_store(store, None)[0]
    rep = server_store.sales_report(tenant, store, date(2026, 11, 2), date(2026, 11, 2))
    assert rep["sales"] == 1 and rep["total"] == "8.11"
    assert rep["payments"] == {"cash": {"count": 1, "amount": "8.11"}}
    assert rep["refunded"]["refunds"] == 1 and rep["refunded"]["units_restocked"] == 1
    assert rep["net_total"] == "0.00" and rep["unreadable_events"] == len(bad)


def test_sales_report_survives_deeply_nested_bodies(env: Env,
                                                    server_store: SqlServerStore) -> None:
    """JSON nested thousands deep (in a register entry's body text, or anywhere in a body the
    push takes as it is) is an unreadable event, not a RecursionError for the whole report."""
    _, _, _, store = env
    deep = "[" * 10_000 + "]" * 10_000
    events = [
        _event("tender", {"method": "cash", "amount_cents": 811}),
        _event("register", _reg(deep)),
        _event("register", _reg('{"schedule": ' + deep + "}")),
    ]
    for seq, e in enumerate(events, 1):
        e["seq"] = seq
    status, out = _both(env, "POST", "/v1/push", _push(store, events))
    assert status == 200, out
    # a body as deep as the push accepts, taken as it is
    status, out = _both(env, "POST", "/v1/push", _push(store, [
        _event("tender", '{"method": "card", "amount_cents": 5, "reference": '
               + "[" * 2_000 + "]" * 2_000 + "}", seq=len(events) + 1)]))
    tenant = server_store.resolve_store(store, None)[0]
    rep = server_store.sales_report(tenant, store, date(2026, 11, 2), date(2026, 11, 2))
    assert rep["payments"]["cash"] == {"count": 1, "amount": "8.11"}
    assert status == 200, out  # the push takes it as it is
    assert rep["unreadable_events"] == 3
