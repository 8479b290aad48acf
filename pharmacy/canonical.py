"""Canonical JSON: the byte form that is hashed and signed; and compact JSON, the form of
outbox event bodies.

Both reuse one C encoder each: ``json.JSONEncoder.encode`` builds a new one on every call,
which is most of the cost of encoding the small objects a sale writes. Neither checks for
reference cycles (they only ever encode what came from JSON or plain dicts and lists; a
cycle ends in ``RecursionError``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _json_encoder
from typing import Any


def _encoder(*, sort_keys: bool, ensure_ascii: bool) -> Callable[[Any], str]:
    std = json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"),
                           ensure_ascii=ensure_ascii, check_circular=False)
    make = getattr(_json_encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return std.encode
    chunks = make(None, std.default,
                  _json_encoder.encode_basestring_ascii if ensure_ascii
                  else _json_encoder.encode_basestring,
                  None, ":", ",", sort_keys, False, True)

    def encode(obj: Any) -> str:
        return "".join(chunks(obj, 0))

    return encode


canonical_json = _encoder(sort_keys=True, ensure_ascii=False)
"""Sorted keys, no spaces, UTF-8 text as is."""

compact_json = _encoder(sort_keys=False, ensure_ascii=True)
"""Keys in insertion order, no spaces, non-ASCII escaped (``json.dumps`` with compact
separators)."""


def is_utf8_text(value: Any) -> bool:
    """A str that SQLite can store and JSON can carry: UTF-8, no lone surrogate (as the
    undecodable bytes of a command line or a file become)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
