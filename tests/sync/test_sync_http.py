"""The HTTP surface of a real server process: bad input gets a 4xx with a clear code and
writes nothing; protocol versions; gzip both ways; size limits."""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_server.storage import SqlServerStore, open_store
from tests.sync.conftest import ServerProcess, enroll_code, seed_store, unique

MAX_BODY = 256 * 1024


@pytest.fixture(scope="module", params=[
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("postgres-2-workers", marks=pytest.mark.postgres)])
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path_factory.mktemp('http') / 'server.db'}"
    else:
        db = request.getfixturevalue("pg_url")
    workers = 2 if request.param.endswith("workers") else 1
    s = ServerProcess(db, max_body=MAX_BODY, workers=workers).start()
    try:
        yield s
    finally:
        s.stop()


class Shop:
    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.tenant, self.store = unique("t"), unique("s")
        seed_store(srv.db, self.tenant, self.store)
        r = httpx.post(srv.url + "/v1/enroll", json={
            "protocol": 1, "code": enroll_code(srv.db, self.tenant, self.store)})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        self.terminal_id = r.json()["terminal_id"]
        self.http = httpx.Client(base_url=srv.url, timeout=20,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def hq(self) -> SqlServerStore:
        return open_store(self.srv.db)

    def snapshot(self) -> tuple[Any, Any]:
        s = self.hq()
        try:
            return (s.store_events(self.tenant, self.store),
                    s.store_counters(self.tenant, self.store))
        finally:
            s.close()

    def push_body(self, **over: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "protocol": 1, "idempotency_key": str(uuid.uuid4()), "store_id": self.store,
            "replica_id": "r1",
            "events": [{"event_id": str(uuid.uuid4()), "replica_id": "r1", "seq": 1,
                        "kind": "sale", "created_at": "2026-11-02T15:00:00Z",
                        "body": json.dumps({"allocations": [{"batch_id": "00904672860:IB1",
                                                             "qty": 2}]})}],
            "counters": [{"counter_id": "stock:00904672860:IB1", "replica_id": "r1", "p": 0,
                          "n": 2}],
        }
        body.update(over)
        return body


@pytest.fixture
def shop(srv: ServerProcess) -> Iterator[Shop]:
    s = Shop(srv)
    try:
        yield s
    finally:
        s.http.close()


def error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return str(body["error"]["code"])


def test_health_and_openapi(srv: ServerProcess) -> None:
    h = httpx.get(srv.url + "/v1/health").json()
    assert h["ok"] and h["protocols"] == [1, 2]
    spec = httpx.get(srv.url + "/openapi.json").json()
    assert {"/v1/push", "/v1/pull", "/v1/enroll", "/v1/events/known"} <= set(spec["paths"])
    r = httpx.get(srv.url + "/v1/nope")
    assert r.status_code == 404 and error(r) == "NOT_FOUND"


def test_push_and_pull_with_gzip_both_ways(shop: Shop) -> None:
    raw = json.dumps(shop.push_body()).encode()
    r = shop.http.post("/v1/push", content=gzip.compress(raw),
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    r = shop.http.post("/v1/pull", json={"protocol": 1, "store_id": shop.store,
                                          "replica_id": "r2", "cursor": 0},
                       headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    page = r.json()
    assert {c["replica_id"] for c in page["counters"]} >= {"r1"}
    assert not page["more"] and page["next_cursor"] == page["server_seq"]


@pytest.mark.parametrize("path", ["/v1/push", "/v1/pull", "/v1/enroll", "/v1/events/known"])
def test_an_unknown_protocol_version_is_refused(shop: Shop, path: str) -> None:
    for body in ({"protocol": 3}, {"protocol": 99, "whatever": [1, 2]},
                 {"protocol": True, "store_id": shop.store}):
        r = shop.http.post(path, json=body)
        assert r.status_code == 400 and error(r) == "PROTOCOL_VERSION", r.text


def test_malformed_json_is_refused_and_writes_nothing(shop: Shop) -> None:
    before = shop.snapshot()
    r = shop.http.post("/v1/push", content=b'{"protocol": 1, "events": [',
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error(r) == "BAD_JSON"
    r = shop.http.post("/v1/push", json={"protocol": 1, "store_id": shop.store})
    assert r.status_code == 422 and error(r) == "BAD_REQUEST"
    body = shop.push_body()
    body["events"][0]["seq"] = "7"  # a string is not an integer
    r = shop.http.post("/v1/push", json=body)
    assert r.status_code == 422 and error(r) == "BAD_REQUEST"
    body = shop.push_body()
    body["counters"][0]["p"] = True  # nor is a boolean
    assert shop.http.post("/v1/push", json=body).status_code == 422
    body = shop.push_body(extra_field=1)
    assert shop.http.post("/v1/push", json=body).status_code == 422
    for bad_body in ("[1, 2]", "{not json", ""):
        body = shop.push_body()
        body["events"][0]["body"] = bad_body
        r = shop.http.post("/v1/push", json=body)
        assert r.status_code == 400 and error(r) == "BAD_EVENT", r.text
    assert shop.snapshot() == before


def test_oversized_bodies_are_refused(shop: Shop) -> None:
    before = shop.snapshot()
    big = shop.push_body()
    big["events"][0]["body"] = json.dumps({"pad": "x" * (MAX_BODY + 10)})
    raw = json.dumps(big).encode()
    r = shop.http.post("/v1/push", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and error(r) == "BODY_TOO_LARGE"
    # small on the wire, huge once decompressed: refused without inflating it all
    r = shop.http.post("/v1/push", content=gzip.compress(raw),
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 413 and error(r) == "BODY_TOO_LARGE"
    bomb = gzip.compress(b"{" + b" " * (50 * 1024 * 1024) + b"}")
    assert len(bomb) < MAX_BODY
    r = shop.http.post("/v1/push", content=bomb,
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 413
    r = shop.http.post("/v1/push", content=gzip.compress(raw)[:100],
                       headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 400 and error(r) == "BAD_GZIP"
    r = shop.http.post("/v1/push", content=zlib.compress(b"{}"),
                       headers={"Content-Encoding": "br", "Content-Type": "application/json"})
    assert r.status_code == 415 and error(r) == "UNSUPPORTED_ENCODING"
    assert shop.snapshot() == before


def test_wrong_missing_and_revoked_tokens(shop: Shop) -> None:
    before = shop.snapshot()
    body = shop.push_body()
    r = httpx.post(shop.srv.url + "/v1/push", json=body)
    assert r.status_code == 401 and error(r) == "NO_TOKEN"
    r = httpx.post(shop.srv.url + "/v1/push", json=body,
                   headers={"Authorization": "Bearer pmt_forged"})
    assert r.status_code == 401 and error(r) == "BAD_TOKEN"
    hq = shop.hq()
    try:
        hq.revoke(shop.terminal_id)
    finally:
        hq.close()
    for path, req in (("/v1/push", body), ("/v1/pull", {
            "protocol": 1, "store_id": shop.store, "replica_id": "r1"})):
        r = shop.http.post(path, json=req)
        assert r.status_code == 401 and error(r) == "TOKEN_REVOKED"
    assert shop.snapshot() == before
    r = httpx.post(shop.srv.url + "/v1/enroll", json={"protocol": 1, "code": "NOPE-NOPE"})
    assert r.status_code == 401 and error(r) == "BAD_ENROLL_CODE"


def test_a_counter_row_that_decreases_is_refused(shop: Shop) -> None:
    assert shop.http.post("/v1/push", json=shop.push_body()).status_code == 200
    before = shop.snapshot()
    body = shop.push_body()
    body["events"][0].update(seq=2, event_id=str(uuid.uuid4()))
    body["counters"][0]["n"] = 1
    r = shop.http.post("/v1/push", json=body)
    assert r.status_code == 409 and error(r) == "COUNTER_REGRESSION"
    assert r.json()["error"]["details"]["rows"][0]["server_n"] == 2
    assert shop.snapshot() == before


@pytest.mark.parametrize("where", ["request", "event", "body", "counter"])
def test_rows_naming_another_store_are_refused(shop: Shop, where: str) -> None:
    before = shop.snapshot()
    body = shop.push_body()
    if where == "body":
        inner = json.loads(body["events"][0]["body"])
        inner["store_id"] = "somebody-elses-store"
        body["events"][0]["body"] = json.dumps(inner)
    else:
        target = {"request": body, "event": body["events"][0],
                  "counter": body["counters"][0]}[where]
        target["store_id"] = "somebody-elses-store"
    r = shop.http.post("/v1/push", json=body)
    assert r.status_code == 403 and error(r) == "SCOPE_VIOLATION"
    r = shop.http.post("/v1/pull", json={"protocol": 1, "store_id": "somebody-elses-store",
                                          "replica_id": "r1"})
    assert r.status_code == 403 and error(r) == "SCOPE_VIOLATION"
    assert shop.snapshot() == before


def test_known_events_and_blobs_are_store_scoped(shop: Shop, srv: ServerProcess) -> None:
    other = Shop(srv)
    try:
        body = shop.push_body()
        assert shop.http.post("/v1/push", json=body).status_code == 200
        eid = body["events"][0]["event_id"]
        ask = {"protocol": 1, "event_ids": [eid, str(uuid.uuid4())]}
        assert shop.http.post("/v1/events/known", json=ask).json()["known"] == [eid]
        assert other.http.post("/v1/events/known", json=ask).json()["known"] == []
        hq = shop.hq()
        try:
            pub = hq.publish(shop.tenant, shop.store, "policy_bundle", [{"name": "b"}], b"BUNDLE")
        finally:
            hq.close()
        r = shop.http.get(f"/v1/blobs/{pub['sha256']}")
        assert r.status_code == 200 and r.content == b"BUNDLE"
        r = other.http.get(f"/v1/blobs/{pub['sha256']}")
        assert r.status_code == 404 and error(r) == "NO_BLOB"
    finally:
        other.http.close()


def test_replay_of_an_old_push_is_harmless(shop: Shop) -> None:
    first = shop.push_body()
    assert shop.http.post("/v1/push", json=first).status_code == 200
    second = shop.push_body()
    second["events"][0].update(seq=2, event_id=str(uuid.uuid4()))
    second["counters"][0]["n"] = 5
    assert shop.http.post("/v1/push", json=second).status_code == 200
    before = shop.snapshot()
    r = shop.http.post("/v1/push", json=first)  # the same request again, late
    assert r.status_code == 200 and r.json()["accepted"] == 1  # its original answer
    stale = dict(first, idempotency_key=str(uuid.uuid4()))  # or with a new key
    r = shop.http.post("/v1/push", json=stale)
    assert r.status_code == 409 and error(r) == "COUNTER_REGRESSION"
    reused = dict(second, idempotency_key=first["idempotency_key"])
    r = shop.http.post("/v1/push", json=reused)
    assert r.status_code == 409 and error(r) == "IDEMPOTENCY_KEY_REUSED"
    assert shop.snapshot() == before


def test_cli_server_process_starts_from_pharmos(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT
    from tests.sync.conftest import free_port

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "terminal.cli", "server", "--db", db,
                             "--port", str(port), "--migrate"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            pytest.fail("pharmos server did not come up")
    finally:
        proc.terminate()
        proc.wait(10)
