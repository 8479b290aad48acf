"""Typed identifiers and the NDC / GTIN-14 arithmetic (REGULATIONS.md §6.1–6.2)."""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import NewType

from pharmacy.errors import BadInput

Ndc = NewType("Ndc", str)  # hyphenated NDC-10, e.g. "0093-0058-01"
Ndc11 = NewType("Ndc11", str)  # 11 digits, 5-4-2 billing form without hyphens
Gtin = NewType("Gtin", str)  # 14 digits
BatchId = NewType("BatchId", str)
ReplicaId = NewType("ReplicaId", str)
SaleId = NewType("SaleId", str)
EventId = NewType("EventId", str)


class IdClock:
    """Time-ordered UUIDs (RFC 9562 version 7 layout): 48-bit Unix milliseconds, a 12-bit
    counter that keeps ids from one process strictly increasing, and 62 random bits drawn
    once per process.

    Time order keeps inserts at the right edge of each B-tree, so a sale dirties few pages;
    the per-process random part makes a terminal's ids compress well in sync payloads while
    ids from different processes and terminals stay distinct (62 random bits apart).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._node = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        self._last_ms = 0
        self._seq = 0
        low = 0x2 << 62 | self._node  # variant and random bits: the same for every id here
        self._tail = f"{low >> 48:04x}-{low & 0xFFFF_FFFF_FFFF:012x}"
        self._head_ms, self._head = -1, ""  # the time part of the last millisecond's ids

    def new(self) -> str:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                self._seq += 1
                if self._seq > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                    self._last_ms += 1
                    self._seq = 0
                ms = self._last_ms
            else:
                self._last_ms, self._seq = ms, 0
            seq = self._seq
            if ms != self._head_ms:
                t = ms & 0xFFFF_FFFF_FFFF
                self._head_ms, self._head = ms, f"{t >> 16:08x}-{t & 0xFFFF:04x}-7"
            head = self._head
        # the canonical 8-4-4-4-12 form, as str(uuid.UUID(int=...)) of the 128-bit value
        return head + _SEQ_TEXT[seq] + self._tail


_SEQ_TEXT = tuple(f"{seq:03x}-" for seq in range(0x1000))  # cheaper than formatting each id's


_IDS = IdClock()


def new_id() -> str:
    """A new time-ordered, globally unique id (see IdClock)."""
    return _IDS.new()


_HYPHENATED = re.compile(r"^(\d{4,5})-(\d{3,4})-(\d{1,2})$")
_PATTERNS = {(4, 4, 2), (5, 3, 2), (5, 4, 1)}


@dataclass(frozen=True)
class NdcParts:
    labeler: str
    product: str
    package: str

    @property
    def ndc10(self) -> Ndc:
        return Ndc(f"{self.labeler}-{self.product}-{self.package}")

    @property
    def digits10(self) -> str:
        return self.labeler + self.product + self.package

    @property
    def ndc11(self) -> Ndc11:
        return Ndc11(self.labeler.zfill(5) + self.product.zfill(4) + self.package.zfill(2))


def parse_hyphenated_ndc(text: str) -> NdcParts:
    """Parse a hyphenated NDC-10 in one of the three legal configurations."""
    m = _HYPHENATED.match(text.strip())
    if not m or tuple(len(g) for g in m.groups()) not in _PATTERNS:
        raise BadInput(
            f"'{text}' is not an NDC-10 in 4-4-2, 5-3-2 or 5-4-1 form",
            code="BAD_NDC",
        )
    return NdcParts(*m.groups())


def gs1_check_digit(body: str) -> int:
    """GS1 mod-10 check digit for the digits before the check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def dea_check_digit(digits6: str) -> int:
    """DEA registration numbers: the 7th digit is the last digit of
    (d1 + d3 + d5) + 2 * (d2 + d4 + d6)."""
    d = [int(ch) for ch in digits6]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10


def gtin_from_ndc(parts: NdcParts, indicator: int = 0) -> Gtin:
    body = f"{indicator}03{parts.digits10}"
    return Gtin(body + str(gs1_check_digit(body)))


def validate_gtin14(text: str) -> Gtin:
    t = text.strip()
    if not re.fullmatch(r"\d{14}", t):
        raise BadInput(f"'{text}' is not a 14-digit GTIN", code="BAD_GTIN")
    if gs1_check_digit(t[:13]) != int(t[13]):
        raise BadInput(
            f"GTIN {t} has a bad check digit (expected {gs1_check_digit(t[:13])})",
            code="GTIN_CHECK_DIGIT",
        )
    return Gtin(t)


def ndc_digits_from_gtin(gtin: Gtin) -> str | None:
    """The 10 NDC digits embedded in a US pharmaceutical GTIN-14 (indicator + '03' + NDC)."""
    if gtin[1:3] != "03":
        return None
    return gtin[3:13]


@functools.lru_cache(maxsize=4096)  # every line of every sale: a pure function of the text
def classify_identifier(text: str) -> tuple[str, str]:
    """Return (kind, normalized) for an NDC or GTIN typed or scanned at the counter.

    kinds: "ndc10" (hyphenated), "ndc11" (11 digits), "digits10" (unhyphenated NDC-10,
    pattern unknown), "gtin" (14 digits, check digit verified).
    """
    t = text.strip()
    if "-" in t:
        parts = t.split("-")
        if len(parts) == 3 and tuple(len(p) for p in parts) == (5, 4, 2) and t.replace(
            "-", ""
        ).isdigit():
            return "ndc11", t.replace("-", "")
        return "ndc10", parse_hyphenated_ndc(t).ndc10
    if t.isdigit():
        if len(t) == 14:
            return "gtin", validate_gtin14(t)
        if len(t) == 11:
            return "ndc11", t
        if len(t) == 10:
            return "digits10", t
        if len(t) == 12:  # UPC-A: pad to GTIN-14
            return "gtin", validate_gtin14("00" + t)
    raise BadInput(
        f"'{text}' is neither an NDC (10 or 11 digits) nor a GTIN-14", code="BAD_IDENTIFIER"
    )
