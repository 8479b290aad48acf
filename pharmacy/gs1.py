"""GS1 element strings from package barcodes (DSCSA product identifier, REGULATIONS.md §6.3).

Parsing is identifier logic, not device IO, so it lives in the core: biip does the GS1
grammar; this module checks what biip reports but does not raise (bad check digits, dates)
and returns the four DSCSA fields. The GS (ASCII 29) separator that keyboard-wedge scanners
may drop can be replaced by a configurable substitute character.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from typing import Any

import biip
from biip.gs1_messages import GS1Message

from pharmacy.errors import BadInput

GS = "\x1d"


@dataclass(frozen=True)
class ScanData:
    raw: str
    gtin: str | None
    lot: str | None = None
    expiry: date | None = None
    serial: str | None = None
    symbology: str | None = None

    @property
    def ndc_digits(self) -> str | None:
        if self.gtin and len(self.gtin) == 14 and self.gtin[1:3] == "03":
            return self.gtin[3:13]
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "gtin": self.gtin, "ndc": self.ndc_digits, "lot": self.lot,
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
            "serial": self.serial, "symbology": self.symbology,
        }


_SYMBOLOGIES = {"]d2": "gs1-datamatrix", "]C1": "gs1-128", "]Q3": "gs1-qr", "]E0": "ean-13",
                "]e0": "gs1-databar", "]d1": "datamatrix"}


def _yymmdd(text: str) -> date:
    """AI 17: YYMMDD, DD=00 meaning the last day of the month; years per GS1 sliding window."""
    yy, mm, dd = int(text[0:2]), int(text[2:4]), int(text[4:6])
    year = 2000 + yy if yy < 51 else 1900 + yy
    if dd == 0:
        dd = calendar.monthrange(year, mm)[1]
    return date(year, mm, dd)


def parse_scan(text: str, *, gs_substitute: str | None = None) -> ScanData:
    """Parse what a scanner sent: a GS1 element string (with or without AIM prefix),
    HRI text with parentheses, or a bare GTIN/UPC. Raises BadInput with a stable code."""
    raw = text
    t = text.strip("\r\n")
    if not t:
        raise BadInput("the scan is empty", code="SCAN_EMPTY")
    if gs_substitute:
        t = t.replace(gs_substitute, GS)
    if any((ord(ch) < 32 and ch != GS) or ord(ch) > 126 for ch in t):
        raise BadInput("the scan contains characters no barcode carries; scan again",
                       code="SCAN_GARBLED")
    symbology = None
    if t.startswith("]") and len(t) >= 3:
        symbology = _SYMBOLOGIES.get(t[:3], t[:3])
    try:
        if t.startswith("("):
            msg = GS1Message.parse_hri(t)
            result_gtin_error = None
            return _from_message(raw, msg, symbology, result_gtin_error)
        result = biip.parse(t)
    except Exception as e:  # biip raises ParseError subclasses and ValueError on junk
        raise BadInput(f"this barcode could not be read: {e}", code="SCAN_UNREADABLE") from None
    if result.gs1_message is not None:
        return _from_message(raw, result.gs1_message, symbology, result.gtin_error)
    if result.gtin is not None:
        return ScanData(raw, result.gtin.as_gtin_14(), symbology=symbology)
    errors = [e for e in (result.gtin_error, result.gs1_message_error, result.sscc_error) if e]
    if result.gtin_error and "check digit" in result.gtin_error.lower():
        raise BadInput(f"bad check digit: {result.gtin_error}", code="GTIN_CHECK_DIGIT")
    raise BadInput("this barcode is not a GTIN or a GS1 product code: " + "; ".join(errors),
                   code="SCAN_UNREADABLE")


def _from_message(raw: str, msg: GS1Message, symbology: str | None,
                  gtin_error: str | None) -> ScanData:
    gtin_es = msg.element_strings.get(ai="01")
    if gtin_es is None:
        raise BadInput("the barcode carries no GTIN (AI 01)", code="SCAN_NO_GTIN")
    if gtin_es.gtin is None:
        raise BadInput(f"bad GTIN in the barcode: {gtin_error or 'check digit'}",
                       code="GTIN_CHECK_DIGIT")
    lot_es = msg.element_strings.get(ai="10")
    exp_es = msg.element_strings.get(ai="17")
    ser_es = msg.element_strings.get(ai="21")
    expiry = None
    if exp_es is not None:
        try:
            expiry = _yymmdd(exp_es.value)
        except ValueError:
            raise BadInput(f"expiry {exp_es.value} in the barcode is not a date",
                           code="SCAN_BAD_EXPIRY") from None
    return ScanData(
        raw=raw, gtin=gtin_es.gtin.as_gtin_14(),
        lot=None if lot_es is None else lot_es.value,
        expiry=expiry,
        serial=None if ser_es is None else ser_es.value,
        symbology=symbology,
    )
