"""Protocol 2 sends a push's events as columns: every event comes back byte for byte, in
seq order, and columns that do not line up are refused before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pharmacy import event_columns
from pharmacy.errors import BadInput, PharmosError
from sync_server import schemas

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8)
_bodies = st.one_of(
    # what terminals record: compact json.dumps of a few layouts
    st.builds(lambda keys, vals: json.dumps(dict(zip(keys, vals, strict=False)),
                                            separators=(",", ":")),
              st.sampled_from([("sale_id", "lines"), ("entry_id", "qty", "hash")]),
              st.lists(_json, min_size=2, max_size=2)),
    # anything else a body may be: spaced, escaped, duplicate keys, not canonical
    st.dictionaries(st.text(max_size=4), _json, max_size=4).map(json.dumps),
    st.just('{"a":1,"a":2}'), st.just('{"b": 1.0}'), st.just('{"c":1e16}'),
    st.just('{"ü":"ü"}'), st.just('{"ü":"\\u00fc"}'))


@st.composite
def _events(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(0, 25))
    seqs = sorted(draw(st.sets(st.integers(1, 10_000), min_size=n, max_size=n)))
    return [{"event_id": f"e{s}", "replica_id": draw(st.sampled_from(["r1", "r2"])),
             "seq": s, "kind": draw(st.sampled_from(["sale", "register", "batch"])),
             "created_at": f"2026-11-27T10:{s % 60:02d}:00Z", "body": draw(_bodies)}
            for s in seqs]


@settings(max_examples=300, deadline=None)
@given(events=_events())
def test_every_event_comes_back_byte_for_byte_in_seq_order(events: list[dict[str, Any]]) -> None:
    groups, whole = event_columns.pack(events)
    wire = json.loads(json.dumps({"g": groups, "w": whole}))  # as it travels
    assert event_columns.merge(wire["w"], wire["g"]) == events


def test_a_day_of_sales_packs_into_one_group() -> None:
    events = [{"event_id": f"e{i}", "replica_id": "r1", "seq": 100 + i, "kind": "sale",
               "created_at": "2026-11-27T10:00:00Z",
               "body": json.dumps({"sale_id": f"s{i}", "total_cents": i},
                                  separators=(",", ":"))} for i in range(50)]
    groups, whole = event_columns.pack(events)
    assert whole == [] and len(groups) == 1
    assert groups[0]["seq"] == [100] + [1] * 49
    assert groups[0]["values"][1] == [str(i) for i in range(50)]


def _group(**over: Any) -> dict[str, Any]:
    g: dict[str, Any] = {"kind": "sale", "replica_id": "r1", "keys": ["a", "b"],
                         "event_id": ["e1", "e2"], "seq": [7, 1],
                         "created_at": ["2026-11-02T15:00:00Z"] * 2,
                         "values": [["1", "2"], ["\"x\"", "\"y\""]]}
    g.update(over)
    return g


def _push(protocol: int = 2, **over: Any) -> bytes:
    body = {"protocol": protocol, "idempotency_key": "k1", "store_id": "s1",
            "replica_id": "r1", "event_groups": [_group(**over)]}
    return json.dumps(body).encode()


def test_both_schema_paths_unpack_groups_alike() -> None:
    fast = schemas.push_request(_push())
    slow = schemas.push_dict(schemas.PushRequest.model_validate_json(_push()))
    assert fast == slow
    assert [(e["event_id"], e["seq"], e["body"]) for e in fast["events"]] == [
        ("e1", 7, '{"a":1,"b":"x"}'), ("e2", 8, '{"a":2,"b":"y"}')]


@pytest.mark.parametrize(("over", "says"), [
    ({"seq": [7]}, "same length"),
    ({"values": [["1", "2"]]}, "value columns"),
    ({"values": [["1", "2"], ["\"x\""]]}, "column 'b'"),
    ({"keys": ["a", "a"]}, "named twice"),
    ({"seq": [0, 1]}, "outside"),
    ({"seq": [5, -5]}, "outside"),
])
def test_columns_that_do_not_line_up_are_refused(over: dict[str, Any], says: str) -> None:
    with pytest.raises(BadInput, match=says) as e:
        schemas.push_request(_push(**over))
    assert e.value.code == "BAD_EVENT"


def test_groups_need_protocol_2() -> None:
    with pytest.raises(PharmosError) as e:
        schemas.push_request(_push(protocol=1))
    assert e.value.code == "PROTOCOL_VERSION"


def test_merged_events_start_from_the_defaults() -> None:
    whole = [{"event_id": "w", "replica_id": "r1", "seq": 8, "kind": "sale",
              "created_at": "2026-11-02T15:00:00Z", "body": "{}", "store_id": "s1"}]
    defaults = {"store_id": None, "tenant_id": None}
    events = event_columns.merge(whole, [_group()], defaults)
    assert [(e["event_id"], e["seq"], e["store_id"], e["tenant_id"]) for e in events] == [
        ("e1", 7, None, None), ("w", 8, "s1", None), ("e2", 8, None, None)]
    assert event_columns.merge([], [_group(seq=[9, -2])], defaults)[0]["event_id"] == "e2"
    assert "store_id" not in event_columns.merge([], [_group()])[0]
