"""Push and pull are answered by BodyLimitMiddleware straight from the body it read; they
answer byte for byte as the FastAPI routes (the OpenAPI spec's) do: status, headers, body,
errors, gzip."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from sync_server.app import BodyLimitMiddleware, create_app
from sync_server.storage import SqlServerStore
from tests.sync.conftest import enroll_code, seed_store, unique

MAX_BODY = 64 * 1024


def _app(store: SqlServerStore, *, body_routes: bool) -> FastAPI:
    app = create_app(store=store, max_body=MAX_BODY)
    app.state.store = store  # what the lifespan sets
    if not body_routes:
        for m in app.user_middleware:
            if m.cls is BodyLimitMiddleware:
                m.kwargs["routes"] = {}
    return app


def call(app: FastAPI, method: str, path: str, content: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body as sent on the wire) of one request to the app in-process."""
    async def go() -> tuple[int, dict[str, str], bytes]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://pharmos.test") as client, \
                client.stream(method, path, content=content, headers=headers) as r:
            raw = b"".join([chunk async for chunk in r.aiter_raw()])
            return r.status_code, dict(r.headers), raw

    return asyncio.run(go())


Apps = tuple[FastAPI, FastAPI, str, str]


@pytest.fixture
def apps(db_url: str, server_store: SqlServerStore) -> Iterator[Apps]:
    tenant, store = unique("t"), unique("s")
    seed_store(db_url, tenant, store)
    fast = _app(server_store, body_routes=True)
    code = enroll_code(db_url, tenant, store)
    _, _, body = call(fast, "POST", "/v1/enroll", json.dumps({"protocol": 1, "code": code})
                      .encode(), {"Content-Type": "application/json"})
    yield fast, _app(server_store, body_routes=False), json.loads(body)["token"], store


def _push(store: str, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": 1, "idempotency_key": str(uuid.uuid4()), "store_id": store,
        "replica_id": "r1", "replica_seq": 1,
        "events": [{"event_id": str(uuid.uuid4()), "replica_id": "r1", "seq": 1,
                    "kind": "sale", "created_at": "2026-11-02T15:00:00Z",
                    "body": json.dumps({"allocations": [{"batch_id": "00904672860:IB1",
                                                         "qty": 2}]})}],
        "counters": [{"counter_id": "stock:00904672860:IB1", "replica_id": "r1", "p": 0,
                      "n": 2}],
    }
    body.update(over)
    return body


def _same(fast: FastAPI, routed: FastAPI, path: str, content: bytes,
          headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    answers = [call(app, "POST", path, content, headers) for app in (fast, routed)]
    assert answers[0] == answers[1]
    return answers[0]


def test_push_and_pull_answer_as_the_routes(
        apps: Apps) -> None:
    fast, routed, token, store = apps
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    gz = {**auth, "Accept-Encoding": "gzip"}
    plain = {**auth, "Accept-Encoding": "identity"}
    push = json.dumps(_push(store)).encode()
    status, headers, body = _same(fast, routed, "/v1/push", gzip.compress(push),
                                  {**gz, "Content-Encoding": "gzip"})
    assert status == 200 and json.loads(body)["accepted"] == 1  # the routed one: a replay
    assert headers["content-type"] == "application/json" and "vary" not in headers
    pull = json.dumps({"protocol": 1, "store_id": store, "replica_id": "r2"}).encode()
    status, headers, body = _same(fast, routed, "/v1/pull", pull, gz)
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert json.loads(gzip.decompress(body))["events"]
    status, headers, body = _same(fast, routed, "/v1/pull", pull, plain)
    assert status == 200 and "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding" and json.loads(body)["events"]


@pytest.mark.parametrize("path", ["/v1/push", "/v1/pull"])
def test_errors_answer_as_the_routes(apps: Apps,
                                     path: str) -> None:
    fast, routed, token, store = apps
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    ok = json.dumps(_push(store) if path == "/v1/push" else
                    {"protocol": 1, "store_id": store, "replica_id": "r2"}).encode()
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (ok, {}, 401, "NO_TOKEN"),
        (ok, {"Authorization": "Basic abc"}, 401, "NO_TOKEN"),
        (ok, {"Authorization": "Bearer   "}, 401, "NO_TOKEN"),
        (ok, {"Authorization": "bearer nope"}, 401, "BAD_TOKEN"),
        (b"{not json", auth, 400, "BAD_JSON"),
        (b"", auth, 422 if path == "/v1/pull" else 400,
         "BAD_REQUEST" if path == "/v1/pull" else "BAD_JSON"),
        (json.dumps({"protocol": 99}).encode(), auth, 400, "PROTOCOL_VERSION"),
        (json.dumps({"protocol": 1}).encode(), auth, 422, "BAD_REQUEST"),
        (ok.replace(store.encode(), b"elsewhere"), auth, 403, "SCOPE_VIOLATION"),
        (gzip.compress(b"x" * (MAX_BODY + 1)), {**auth, "Content-Encoding": "gzip"}, 413,
         "BODY_TOO_LARGE"),
        (ok, {**auth, "Content-Encoding": "br"}, 415, "UNSUPPORTED_ENCODING"),
    ]
    for content, headers, status, code in cases:
        got, _, body = _same(fast, routed, path, content,
                             {"Accept-Encoding": "identity", **headers})
        assert (got, json.loads(body)["error"]["code"]) == (status, code), (headers, body)
    # a long error (every field of a bad body) is compressed as other answers are
    bad = json.dumps({"protocol": 1, "store_id": store, "replica_id": "r1", "events": [
        {"event_id": i} for i in range(30)]}).encode()
    got, headers, body = _same(fast, routed, path, bad, {**auth, "Accept-Encoding": "gzip"})
    assert got == 422


def test_other_methods_and_paths_go_to_the_routes(
        apps: Apps) -> None:
    fast, _, _, _ = apps
    status, _, body = call(fast, "GET", "/v1/push")
    assert status == 405 and json.loads(body)["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert json.loads(call(fast, "GET", "/v1/health")[2])["ok"]


def test_push_and_pull_do_not_reach_the_routes(apps: Apps) -> None:
    fast, _, token, store = apps
    fast.router.routes[:] = [r for r in fast.router.routes
                             if getattr(r, "path", "") not in ("/v1/push", "/v1/pull")]
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert call(fast, "POST", "/v1/push", json.dumps(_push(store)).encode(), auth)[0] == 200
    assert call(fast, "POST", "/v1/pull", json.dumps(
        {"protocol": 1, "store_id": store, "replica_id": "r2"}).encode(), auth)[0] == 200
