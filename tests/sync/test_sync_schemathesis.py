"""schemathesis against the server's OpenAPI spec, over HTTP to a real server process:
no 5xx, no response outside the spec, whatever the request.

Every check runs except "schema-valid data must be accepted": a request can match the schema
and still be refused with a documented 400 (an event body that is not a JSON object, a batch
event without its lot), 401, 403 or 409."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from tests.sync.conftest import ServerProcess, enroll_code, seed_store


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'server.db'}"
    srv = ServerProcess(db).start()
    try:
        seed_store(db, "fuzz", "s1")
        r = httpx.post(srv.url + "/v1/enroll",
                       json={"protocol": 1, "code": enroll_code(db, "fuzz", "s1")})
        yield srv, r.json()["token"]
    finally:
        srv.stop()


def operations(srv: ServerProcess) -> list[schemathesis.APIOperation]:  # type: ignore[name-defined]
    schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
    return [r.ok() for r in schema.get_all_operations()]


@pytest.mark.parametrize("path", ["/v1/health", "/v1/enroll", "/v1/push", "/v1/pull",
                                  "/v1/events/known", "/v1/blobs/{sha256}"])
def test_no_5xx_and_no_schema_violation(api: tuple[ServerProcess, str], path: str) -> None:
    srv, token = api
    ops = [op for op in operations(srv) if op.path == path]
    assert ops, f"{path} is not in the spec"
    for op in ops:
        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"},
                                   excluded_checks=[positive_data_acceptance])

        fuzz()
