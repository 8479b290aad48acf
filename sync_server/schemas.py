"""The wire format of sync protocols 1 and 2 (request and response bodies), as pydantic models.

Protocol 2 adds ``event_groups`` to a push: events sent as columns (pharmacy.event_columns).
Everything else is the same in both.

The OpenAPI spec is generated from these; requests are validated against them before any
database work. Integers are JSON numbers without a fraction (``true`` and ``"1"`` are not
integers); unknown fields are refused.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

from pharmacy import event_columns
from sync_server.errors import BadRequest

PROTOCOL_VERSIONS = (1, 2)
MAX_EVENTS_PER_PUSH = 5000
MAX_COUNTERS_PER_PUSH = 200_000
MAX_DOCS_PER_PUSH = 2000
MAX_PULL_LIMIT = 5000


def _json_int(v: Any) -> Any:
    if isinstance(v, bool | str):
        raise ValueError("must be a JSON integer")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError("must be a JSON integer")
        return int(v)
    return v


# Text never holds a NUL character (\u0000): PostgreSQL cannot store one. The models refuse
# it field by field (documented in the OpenAPI spec); the push hot path, whose TypedDicts
# leave it out (a pattern on every id costs more than the whole body's bytes), checks the
# raw body instead and sends a body that may hold one through PushRequest.
NO_NUL = r"^[^\x00]*$"


def _text(min_length: int = 0, max_length: int | None = None, **kw: Any) -> Any:
    return Field(min_length=min_length or None, max_length=max_length, pattern=NO_NUL, **kw)


JsonInt = Annotated[int, BeforeValidator(_json_int)]
Count = Annotated[int, BeforeValidator(_json_int), Field(ge=0, le=2**53)]
Seq = Annotated[int, BeforeValidator(_json_int), Field(ge=0, le=2**53)]
Id = Annotated[str, _text(1, 128)]
Stamp = Annotated[str, _text(1, 64)]
Protocol = Annotated[int, BeforeValidator(_json_int),
                     Field(ge=min(PROTOCOL_VERSIONS), le=max(PROTOCOL_VERSIONS),
                           description="sync protocol version; this server speaks 1 and 2")]
ValueText = Annotated[str, _text(1, 1_000_000)]
Kind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    ok: bool
    protocols: list[int]
    server_time: str


class TerminalStatus(Strict):
    """What the terminal reports about itself (head office shows it per terminal)."""

    pending_events: Count = 0
    pending_counters: Count = 0
    pending_docs: Count = 0
    last_success: Stamp | None = None
    offline_since: Stamp | None = None
    version: Annotated[str, _text(0, 64)] | None = None


class EventIn(Strict):
    event_id: Id
    replica_id: Id
    seq: Annotated[int, BeforeValidator(_json_int), Field(ge=1, le=2**53)]
    kind: Kind
    created_at: Stamp
    body: Annotated[str, _text(0, 1_000_000, description=(
        "the event as recorded by the terminal: a JSON object, as JSON text (kept byte for "
        "byte)"))]
    store_id: Id | None = None
    tenant_id: Id | None = None


class CounterIn(Strict):
    counter_id: Annotated[str, _text(1, 256)]
    replica_id: Id
    p: Count
    n: Count
    store_id: Id | None = None
    tenant_id: Id | None = None


class DocIn(Strict):
    update_id: Id
    doc: Annotated[str, _text(1, 64)]
    data: Annotated[str, _text(0, 4_000_000, description="base64 pycrdt update")]


class EventGroup(Strict):
    """Events of one kind and replica whose bodies have the same keys, as columns."""

    kind: Kind
    replica_id: Id
    keys: Annotated[list[Annotated[str, _text(0, 256)]], Field(
        max_length=1000, description="the body's keys, in order")]
    event_id: Annotated[list[Id], Field(max_length=MAX_EVENTS_PER_PUSH)]
    seq: Annotated[list[JsonInt], Field(
        max_length=MAX_EVENTS_PER_PUSH,
        description="each event's seq minus the previous one's in this group (the first: "
        "its seq)")]
    created_at: Annotated[list[Stamp], Field(max_length=MAX_EVENTS_PER_PUSH)]
    values: Annotated[list[Annotated[list[ValueText], Field(max_length=MAX_EVENTS_PER_PUSH)]],
                      Field(max_length=1000, description="one column per key: that key's "
                            "value in each body, as JSON text; a body is rebuilt as "
                            "{\"key\":value,...} in the order of keys")]


class PushRequest(Strict):
    protocol: Protocol
    idempotency_key: Id
    store_id: Id
    replica_id: Id = Field(description="the terminal's current replica id")
    replica_seq: Seq | None = Field(
        default=None, description="highest local event seq of the current replica; a server "
        "holding more of that replica answers REPLICA_BEHIND (the database was restored)")
    events: Annotated[list[EventIn], Field(max_length=MAX_EVENTS_PER_PUSH)] = []
    event_groups: Annotated[list[EventGroup], Field(
        max_length=MAX_EVENTS_PER_PUSH, description="protocol 2: more events, as columns; "
        "a push's events are stored in ascending seq")] = []
    counters: Annotated[list[CounterIn], Field(max_length=MAX_COUNTERS_PER_PUSH)] = []
    docs: Annotated[list[DocIn], Field(max_length=MAX_DOCS_PER_PUSH)] = []
    status: TerminalStatus | None = None


class PushResponse(BaseModel):
    protocol: int
    accepted: int
    duplicates: int
    counters: int
    docs: int
    server_seq: int
    acked_seq: int


class PullRequest(Strict):
    protocol: Protocol
    store_id: Id
    replica_id: Id = Field(description="rows of this replica are not returned")
    replica_seq: Seq | None = Field(default=None, description="as in PushRequest")
    cursor: Seq = 0
    limit: Annotated[int, BeforeValidator(_json_int), Field(ge=1, le=MAX_PULL_LIMIT)] = 2000
    status: TerminalStatus | None = None


class PullEvent(BaseModel):
    server_seq: int
    event_id: str
    replica_id: str
    kind: str
    created_at: str
    body: str = Field(description="JSON text of a JSON object")


class PullCounter(BaseModel):
    server_seq: int
    counter_id: str
    replica_id: str
    p: int
    n: int


class PullResponse(BaseModel):
    protocol: int
    events: list[PullEvent]
    counters: list[PullCounter]
    next_cursor: int
    more: bool
    server_seq: int


class EnrollRequest(Strict):
    protocol: Protocol
    code: Annotated[str, _text(1, 64)]
    name: Annotated[str, _text(0, 128)] | None = None
    replica_id: Id | None = None


class EnrollResponse(BaseModel):
    protocol: int
    terminal_id: str
    token: str
    tenant_id: str
    store_id: str
    jurisdiction: str | None
    trusted_keys: list[str]
    server_time: str


class KnownRequest(Strict):
    protocol: Protocol
    event_ids: Annotated[list[Id], Field(max_length=MAX_EVENTS_PER_PUSH)]


class KnownResponse(BaseModel):
    protocol: int
    known: list[str]


# ---- the push hot path --------------------------------------------------------------------
# The same wire format as PushRequest, as TypedDicts with strict JSON integers: validated in
# Rust straight to plain dicts (no model objects for thousands of rows). It accepts a subset
# of what PushRequest accepts (an integer written ``1.0`` is refused here); the app falls back
# to PushRequest for anything this refuses, so answers and error messages are PushRequest's.
_Id = Annotated[str, Field(min_length=1, max_length=128)]
_Stamp = Annotated[str, Field(min_length=1, max_length=64)]
_ValueText = Annotated[str, Field(min_length=1, max_length=1_000_000)]
_StrictCount = Annotated[int, Field(strict=True, ge=0, le=2**53)]
_StrictSeq1 = Annotated[int, Field(strict=True, ge=1, le=2**53)]
_STRICT = ConfigDict(extra="forbid")


@with_config(_STRICT)
class _EventTD(TypedDict):
    event_id: _Id
    replica_id: _Id
    seq: _StrictSeq1
    kind: Kind
    created_at: _Stamp
    body: Annotated[str, Field(max_length=1_000_000)]
    store_id: NotRequired[_Id | None]
    tenant_id: NotRequired[_Id | None]


@with_config(_STRICT)
class _EventGroupTD(TypedDict):
    kind: Kind
    replica_id: _Id
    keys: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=1000)]
    event_id: Annotated[list[_Id], Field(max_length=MAX_EVENTS_PER_PUSH)]
    seq: Annotated[list[Annotated[int, Field(strict=True)]],
                   Field(max_length=MAX_EVENTS_PER_PUSH)]
    created_at: Annotated[list[_Stamp], Field(max_length=MAX_EVENTS_PER_PUSH)]
    values: Annotated[list[Annotated[list[_ValueText], Field(max_length=MAX_EVENTS_PER_PUSH)]],
                      Field(max_length=1000)]


@with_config(_STRICT)
class _CounterTD(TypedDict):
    counter_id: Annotated[str, Field(min_length=1, max_length=256)]
    replica_id: _Id
    p: _StrictCount
    n: _StrictCount
    store_id: NotRequired[_Id | None]
    tenant_id: NotRequired[_Id | None]


@with_config(_STRICT)
class _DocTD(TypedDict):
    update_id: _Id
    doc: Annotated[str, Field(min_length=1, max_length=64)]
    data: Annotated[str, Field(max_length=4_000_000)]


@with_config(_STRICT)
class _StatusTD(TypedDict):
    pending_events: NotRequired[_StrictCount]
    pending_counters: NotRequired[_StrictCount]
    pending_docs: NotRequired[_StrictCount]
    last_success: NotRequired[_Stamp | None]
    offline_since: NotRequired[_Stamp | None]
    version: NotRequired[Annotated[str, Field(max_length=64)] | None]


@with_config(_STRICT)
class _PushTD(TypedDict):
    protocol: Annotated[int, Field(strict=True, ge=min(PROTOCOL_VERSIONS),
                                   le=max(PROTOCOL_VERSIONS))]
    idempotency_key: _Id
    store_id: _Id
    replica_id: _Id
    replica_seq: NotRequired[_StrictCount | None]
    events: NotRequired[Annotated[list[_EventTD], Field(max_length=MAX_EVENTS_PER_PUSH)]]
    event_groups: NotRequired[Annotated[list[_EventGroupTD],
                                        Field(max_length=MAX_EVENTS_PER_PUSH)]]
    counters: NotRequired[Annotated[list[_CounterTD], Field(max_length=MAX_COUNTERS_PER_PUSH)]]
    docs: NotRequired[Annotated[list[_DocTD], Field(max_length=MAX_DOCS_PER_PUSH)]]
    status: NotRequired[_StatusTD | None]


_FAST_PUSH: TypeAdapter[_PushTD] = TypeAdapter(_PushTD)
_STATUS_DEFAULTS = TerminalStatus().model_dump()
_ROW_DEFAULTS = {"store_id": None, "tenant_id": None}


def push_request(raw: bytes) -> dict[str, Any]:
    """A push body as plain dicts, every optional field present (as PushRequest fills it).

    Raises pydantic's ValidationError (PushRequest's) for a body that does not match."""
    if b"\\u0000" in raw:  # may hold a NUL character: PushRequest refuses it
        return push_dict(PushRequest.model_validate_json(raw))
    try:
        d: dict[str, Any] = dict(_FAST_PUSH.validate_json(raw))
    except ValueError:
        return push_dict(PushRequest.model_validate_json(raw))
    d.setdefault("replica_seq", None)
    d["events"] = _events(d["protocol"], d.get("events", []), d.pop("event_groups", None))
    d["counters"] = [c if len(c) == 6 else {**_ROW_DEFAULTS, **c}
                     for c in d.get("counters", ())]
    d.setdefault("docs", [])
    status = d.get("status")
    d["status"] = None if status is None else {**_STATUS_DEFAULTS, **status}
    return d


def push_dict(req: PushRequest) -> dict[str, Any]:
    """The validated request as plain dicts, without deep-copying event bodies."""
    return {
        "protocol": req.protocol, "idempotency_key": req.idempotency_key,
        "store_id": req.store_id, "replica_id": req.replica_id, "replica_seq": req.replica_seq,
        "events": _events(req.protocol, [
            {"event_id": e.event_id, "replica_id": e.replica_id, "seq": e.seq,
             "kind": e.kind, "created_at": e.created_at, "body": e.body,
             "store_id": e.store_id, "tenant_id": e.tenant_id} for e in req.events],
            [g.model_dump() for g in req.event_groups]),
        "counters": [{"counter_id": c.counter_id, "replica_id": c.replica_id, "p": c.p,
                      "n": c.n, "store_id": c.store_id, "tenant_id": c.tenant_id}
                     for c in req.counters],
        "docs": [{"update_id": d.update_id, "doc": d.doc, "data": d.data} for d in req.docs],
        "status": None if req.status is None else req.status.model_dump(),
    }


def _events(protocol: int, events: list[dict[str, Any]],
            groups: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A push's events with every optional field present; protocol 2 groups unpacked and
    merged in (ascending seq)."""
    if groups:
        if protocol < 2:
            raise BadRequest("event_groups need sync protocol 2; send \"protocol\": 2",
                             code="PROTOCOL_VERSION", supported=list(PROTOCOL_VERSIONS))
        events = event_columns.merge(events, groups, _ROW_DEFAULTS)
        if len(events) > MAX_EVENTS_PER_PUSH:
            raise BadRequest(f"{len(events)} events in one push; at most "
                             f"{MAX_EVENTS_PER_PUSH}", code="BAD_EVENT")
        return events
    return [e if len(e) == 8 else {**_ROW_DEFAULTS, **e} for e in events]
