"""The push hot path validates with strict TypedDicts and falls back to PushRequest: both
must accept and refuse the same bodies and give the same dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sync_server import schemas


def _slow(raw: bytes) -> dict[str, Any]:
    return schemas.push_dict(schemas.PushRequest.model_validate_json(raw))


def _body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "protocol": 1, "idempotency_key": "k1", "store_id": "s1", "replica_id": "r1",
        "replica_seq": 7,
        "events": [{"event_id": "e1", "replica_id": "r1", "seq": 7, "kind": "sale",
                    "created_at": "2026-11-02T15:00:00Z", "body": "{\"a\":1}"},
                   {"event_id": "e2", "replica_id": "r1", "seq": 8, "kind": "sale",
                    "created_at": "2026-11-02T15:00:00Z", "body": "{}", "store_id": "s1",
                    "tenant_id": None}],
        "counters": [{"counter_id": "stock:x", "replica_id": "r1", "p": 3, "n": 0}],
        "docs": [{"update_id": "u1", "doc": "will_call", "data": "AAE="}],
        "status": {"pending_events": 2, "version": "0.1"},
    }
    body.update(over)
    return body


@pytest.mark.parametrize("body", [
    _body(),
    {"protocol": 1, "idempotency_key": "k", "store_id": "s", "replica_id": "r"},
    _body(status=None, replica_seq=None, docs=[]),
])
def test_fast_path_gives_what_push_request_gives(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    assert schemas.push_request(raw) == _slow(raw)


def test_integers_written_with_a_zero_fraction_take_the_slow_path() -> None:
    raw = json.dumps(_body(replica_seq=7.0)).encode()
    assert schemas.push_request(raw) == _slow(raw)
    assert schemas.push_request(raw)["replica_seq"] == 7


@pytest.mark.parametrize("over", [
    {"replica_seq": True}, {"replica_seq": "7"}, {"replica_seq": -1}, {"protocol": 3},
    {"extra": 1}, {"idempotency_key": ""}, {"events": [{"event_id": "e"}]},
    {"events": [{**_body()["events"][0], "kind": "Sale"}]},
    {"events": [{**_body()["events"][0], "seq": 0}]},
    {"events": [{**_body()["events"][0], "seq": 1.5}]},
    {"events": [{**_body()["events"][0], "body": {"a": 1}}]},
    {"counters": [{"counter_id": "c", "replica_id": "r", "p": -1, "n": 0}]},
    {"status": {"pending_events": False}},
])
def test_both_paths_refuse_the_same_bodies(over: dict[str, Any]) -> None:
    raw = json.dumps(_body(**over)).encode()
    with pytest.raises(ValidationError):
        _slow(raw)
    with pytest.raises(ValidationError):
        schemas.push_request(raw)


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**54),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3))


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["seq", "p", "replica_seq", "kind", "event_id", "store_id"]),
       value=_scalar)
def test_fast_and_slow_paths_agree_on_any_value(field: str, value: Any) -> None:
    body = _body()
    if field == "seq":
        body["events"][0]["seq"] = value
    elif field == "p":
        body["counters"][0]["p"] = value
    elif field in ("kind", "event_id"):
        body["events"][1][field] = value
    elif field == "store_id":
        body["counters"][0]["store_id"] = value
    else:
        body[field] = value
    raw = json.dumps(body).encode()
    try:
        want: dict[str, Any] | None = _slow(raw)
    except ValidationError:
        want = None
    if want is None:
        with pytest.raises(ValidationError):
            schemas.push_request(raw)
    else:
        assert schemas.push_request(raw) == want
