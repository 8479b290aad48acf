"""Multi-writer store documents as pycrdt (Yjs) updates: the will-call board and store settings.

Several terminals edit these offline; their updates merge in any order, any number of times,
to the same document (pycrdt is a CRDT). Everything here is a pure function over bytes:
a document's state is the merge of its updates, an edit returns the update it produced, and
views return plain dicts. Nothing is kept between calls, so callers store updates where they
like (a terminal keeps them in ``doc_updates``; the sync server relays them as events).

Will-call board: ``items[item_id] = {label, bin, status, note, rx_number, updated_at,
updated_by}``; each item is its own nested map, so two terminals that change different fields
of one item offline both keep their change; the same field changed at two terminals ends as
one of the two values at every terminal. No patient data goes on the board: a label is what
the counter shows (initials, a ticket number).

Store settings: ``settings[key] = value`` (JSON scalars), last writer wins per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc, Map, merge_updates

WILL_CALL = "will_call"
STORE_SETTINGS = "store_settings"
DOCS = (WILL_CALL, STORE_SETTINGS)

WILL_CALL_STATUSES = ("waiting", "ready", "picked_up", "returned")
WILL_CALL_FIELDS = ("label", "bin", "status", "note", "rx_number")
_ROOT = {WILL_CALL: "items", STORE_SETTINGS: "settings"}

Scalar = str | int | float | bool | None


class DocError(ValueError):
    """An edit that the document refuses (unknown document, field or status)."""


class DocDecodeError(DocError):
    """Bytes that are not a pycrdt update (a corrupt or hostile update)."""

    code = "BAD_DOC_UPDATE"


def _root(doc: Doc[Any], name: str) -> Map[Any]:
    if name not in _ROOT:
        raise DocError(f"unknown shared document {name!r}; known: {', '.join(DOCS)}")
    root: Map[Any] = doc.get(_ROOT[name], type=Map)
    return root


def load(updates: Iterable[bytes]) -> Doc[Any]:
    """A document holding the merge of ``updates`` (any order, duplicates allowed)."""
    doc: Doc[Any] = Doc()
    for u in updates:
        if u:
            try:
                doc.apply_update(u)
            except ValueError as e:  # pycrdt: "Cannot decode update: ..."
                raise DocDecodeError(f"a document update cannot be decoded: {e}") from None
    return doc


def check_update(data: bytes) -> None:
    """Raise :class:`DocDecodeError` unless ``data`` decodes as a pycrdt update."""
    load([data])


def merge(updates: Iterable[bytes]) -> bytes:
    """One update equivalent to all of ``updates`` (compaction)."""
    parts = [u for u in updates if u]
    if not parts:
        return Doc().get_update()
    try:
        return bytes(merge_updates(*parts))
    except ValueError as e:  # pycrdt: "Cannot merge updates"
        raise DocDecodeError(f"document updates cannot be merged: {e}") from None


def state_of(updates: Iterable[bytes]) -> bytes:
    return bytes(load(updates).get_update())


def _edit(state: Iterable[bytes], name: str, fn: Any) -> bytes:
    doc = load(state)
    root = _root(doc, name)
    before = doc.get_state()
    with doc.transaction():
        fn(root)
    return bytes(doc.get_update(before))


def _text(what: str, value: str) -> str:
    """Text pycrdt can hold: UTF-8 (bytes that were not text arrive as lone surrogates, which
    pycrdt cannot encode and answers with a panic that no ``except Exception`` catches)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocError(f"{what} is not text (bytes in another encoding than UTF-8?)") from None
    return value


def _scalar(key: str, value: Any) -> Scalar:
    if isinstance(value, str):
        return _text(key, value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if not -2**63 <= value < 2**63:  # pycrdt holds 64-bit integers
            raise DocError(f"{key} {value} is too large a number")
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise DocError(f"{key} must be a finite number, not {value}")
        return value
    raise DocError(f"{key} must be a string, number, boolean or null")


def _plain(value: Any) -> Any:
    """Yjs numbers are doubles: give whole numbers back as ints; sort keys."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    return value


# ---- will-call board ------------------------------------------------------------------------
def will_call_put(state: Iterable[bytes], item_id: str, fields: Mapping[str, Any], *,
                  actor: str, at: str) -> bytes:
    """Create or change one will-call item; returns the update to store and sync."""
    if not item_id or not isinstance(item_id, str):
        raise DocError("a will-call item needs an id")
    _text("the will-call item id", item_id)
    clean: dict[str, Scalar] = {}
    for k, v in fields.items():
        if k not in WILL_CALL_FIELDS:
            raise DocError(f"will-call field {k!r} is not one of {', '.join(WILL_CALL_FIELDS)}")
        clean[k] = _scalar(k, v)
    status = clean.get("status")
    if status is not None and status not in WILL_CALL_STATUSES:
        raise DocError(f"will-call status {status!r} is not one of "
                       f"{', '.join(WILL_CALL_STATUSES)}")

    def apply(items: Map) -> None:  # type: ignore[type-arg]
        if item_id not in items or not isinstance(items[item_id], Map):
            items[item_id] = Map({"status": "waiting"})  # new, or a plain value replaced
        item = items[item_id]
        for k, v in clean.items():
            item[k] = v
        item["updated_at"] = at
        item["updated_by"] = actor

    return _edit(state, WILL_CALL, apply)


def will_call_remove(state: Iterable[bytes], item_id: str) -> bytes:
    _text("the will-call item id", item_id)

    def apply(items: Map) -> None:  # type: ignore[type-arg]
        if item_id in items:
            del items[item_id]

    return _edit(state, WILL_CALL, apply)


def will_call_view(state: Iterable[bytes]) -> dict[str, dict[str, Any]]:
    items = _root(load(state), WILL_CALL).to_py() or {}
    # an item is a nested map; a plain value under the board (another writer's bug or a
    # hostile update) is not an item and is left out rather than breaking the board
    return {k: _plain(dict(v)) for k, v in sorted(items.items()) if isinstance(v, dict)}


# ---- store settings -------------------------------------------------------------------------
def settings_set(state: Iterable[bytes], key: str, value: Any) -> bytes:
    if not key or not isinstance(key, str):
        raise DocError("a setting needs a name")
    _text("the setting name", key)
    v = _scalar(key, value)

    def apply(settings: Map) -> None:  # type: ignore[type-arg]
        settings[key] = v

    return _edit(state, STORE_SETTINGS, apply)


def settings_view(state: Iterable[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = _plain(dict(_root(load(state), STORE_SETTINGS).to_py() or {}))
    return out


def view(name: str, state: Iterable[bytes]) -> dict[str, Any]:
    if name == WILL_CALL:
        return will_call_view(state)
    if name == STORE_SETTINGS:
        return settings_view(state)
    raise DocError(f"unknown shared document {name!r}; known: {', '.join(DOCS)}")
