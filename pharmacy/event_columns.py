"""Columnar event pages: how sync protocol 2 sends a push's events.

A terminal's day is hundreds of events of a few kinds whose bodies share their keys. Sent as
a list of objects, every event repeats its keys, its replica id and the escaping of its body
text; gzip finds only part of that. Protocol 2 sends events of one kind, one replica and one
body layout (the same keys in the same order) as a group of columns: one list per event
field and one per body key, holding that key's value in each body as JSON text. Ids,
timestamps and amounts then sit next to their own kind: a day of sales compresses to about
half.

The server keeps an event's body text byte for byte and rebuilds it by joining the keys and
the value texts (``{"k1":v1,"k2":v2}``), without parsing the values: the push hot path stays
as cheap as protocol 1's. So a body goes into a group only when that join gives back exactly
the text the terminal recorded (compact JSON, as ``outbox.append_event`` writes it); any other
event is sent whole, as in protocol 1. ``seq`` is sent as differences from the previous event
of the group (the first one as is): within a page they grow by one, which costs nothing once
compressed.

Order: the events of a push are stored in ascending ``seq`` (a terminal's seq is the order it
recorded them in), whether they came in groups or whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, repeat
from typing import Any

from pydantic_core import from_json, to_json

from pharmacy.errors import BadInput

EVENT_FIELDS = frozenset({"event_id", "replica_id", "seq", "kind", "created_at", "body"})
MAX_BODY_CHARS = 1_000_000


def join(keys: Sequence[str], values: Sequence[str]) -> str:
    """A body's text from its keys and its values' JSON texts."""
    return _join_columns(keys, [[v] for v in values], 1)[0]


def _key_texts(keys: Sequence[str]) -> list[str]:
    return [to_json(k).decode("utf-8") + ":" for k in keys]


def _join_columns(keys: Sequence[str], values: Sequence[Sequence[str]], n: int) -> list[str]:
    """Each row's body text: ``join`` done a row at a time over the columns interleaved with
    the key texts (the push hot path)."""
    if not keys:
        return ["{}"] * n
    parts: list[Iterable[str]] = []
    for i, (k, col) in enumerate(zip(_key_texts(keys), values, strict=True)):
        parts.append(repeat(("{" if i == 0 else ",") + k))
        parts.append(col)
    parts.append(repeat("}"))
    return ["".join(row) for row in zip(*parts, strict=False)]  # repeat() never ends


def pack(events: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events (as ``replication.collect_push`` reads them) → (groups, events sent whole)."""
    groups: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    whole: list[dict[str, Any]] = []
    last_seq: dict[tuple[str, str, tuple[str, ...]], int] = {}
    for e in events:
        split = _split(e)
        if split is None:
            whole.append(dict(e))
            continue
        keys, values = split
        key = (str(e["kind"]), str(e["replica_id"]), keys)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"kind": key[0], "replica_id": key[1], "keys": list(keys),
                               "event_id": [], "seq": [], "created_at": [],
                               "values": [[] for _ in keys]}
        seq = int(e["seq"])
        g["seq"].append(seq - last_seq.get(key, 0))
        last_seq[key] = seq
        g["event_id"].append(e["event_id"])
        g["created_at"].append(e["created_at"])
        for col, v in zip(g["values"], values, strict=True):
            col.append(v)
    return list(groups.values()), whole


def _split(e: Mapping[str, Any]) -> tuple[tuple[str, ...], list[str]] | None:
    """(keys, value texts) of an event's body, or None when it must go whole."""
    if set(e) != EVENT_FIELDS or not isinstance(e["body"], str) or not isinstance(e["seq"], int):
        return None
    text = e["body"]
    try:
        body = from_json(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    keys = tuple(body)
    values = [to_json(v).decode("utf-8") for v in body.values()]
    return (keys, values) if join(keys, values) == text else None


def unpack(groups: Sequence[Mapping[str, Any]],
           defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Groups → events with their body text, in group order; each event also carries
    ``defaults`` (fields the groups do not send). Raises ``BadInput`` (``BAD_EVENT``) naming
    the group for columns that do not line up."""
    out: list[dict[str, Any]] = []
    extra = dict(defaults or {})
    for gi, g in enumerate(groups, 1):
        where = f"event group {gi} ({g.get('kind')})"
        ids, deltas, stamps = g["event_id"], g["seq"], g["created_at"]
        keys, values = g["keys"], g["values"]
        n = len(ids)
        if len(deltas) != n or len(stamps) != n:
            raise BadInput(f"{where}: event_id, seq and created_at must have the same length "
                           f"({n}, {len(deltas)}, {len(stamps)})", code="BAD_EVENT")
        if len(values) != len(keys):
            raise BadInput(f"{where}: {len(keys)} keys but {len(values)} value columns",
                           code="BAD_EVENT")
        if len(set(keys)) != len(keys):
            raise BadInput(f"{where}: a body key is named twice", code="BAD_EVENT")
        for k, col in zip(keys, values, strict=True):
            if len(col) != n:
                raise BadInput(f"{where}: column {k!r} has {len(col)} values for {n} events",
                               code="BAD_EVENT")
        texts = _join_columns(keys, values, n)
        seqs = list(accumulate(deltas))
        if seqs and not (min(seqs) >= 1 and max(seqs) <= 2**53):
            i = next(i for i, x in enumerate(seqs) if not 1 <= x <= 2**53)
            raise BadInput(f"{where}: event {i + 1} has seq {seqs[i]}, outside 1..2^53",
                           code="BAD_EVENT")
        if texts and max(map(len, texts)) > MAX_BODY_CHARS:
            i = next(i for i, t in enumerate(texts) if len(t) > MAX_BODY_CHARS)
            raise BadInput(f"{where}: event {i + 1} has a body over {MAX_BODY_CHARS} "
                           "characters", code="BAD_EVENT")
        kind, replica = g["kind"], g["replica_id"]
        out.extend({"event_id": eid, "replica_id": replica, "seq": seq, "kind": kind,
                    "created_at": at, "body": text, **extra}
                   for eid, seq, at, text in zip(ids, seqs, stamps, texts, strict=True))
    return out


def merge(whole: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]],
          defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A protocol 2 push's events, whole and grouped, in ascending seq (stable: a page
    already in order costs one pass); each starts from ``defaults`` (fields an event may
    leave out)."""
    base = dict(defaults or {})
    events = [{**base, **e} for e in whole] + unpack(groups, defaults)
    events.sort(key=lambda e: int(e["seq"]))
    return events
