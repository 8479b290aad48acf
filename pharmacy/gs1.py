"""GS1 element strings from package barcodes (DSCSA product identifier, REGULATIONS.md §6.3).

Parsing is identifier logic, not device IO, so it lives in the core: biip does the GS1
grammar; this module checks what biip reports but does not raise (bad check digits, dates,
``gtin_error`` and friends) and returns the four DSCSA fields. The GS (ASCII 29) separator
that keyboard-wedge scanners may drop can be replaced by a configurable substitute character,
and a scan that looks like it lost its GS is refused rather than silently merging lot and
serial.

Every failure is a :class:`BadInput` (or :class:`LotExpired`) with a stable code:

==========================  =========================================================
SCAN_EMPTY                  nothing but the scanner's prefix/suffix arrived
SCAN_GARBLED                control or non-ASCII characters (line noise, wrong baud)
SCAN_TOO_LONG               longer than any product barcode
SCAN_TRUNCATED              a valid start that was cut short
SCAN_UNREADABLE             not a GTIN, GS1 element string, HRI or Digital Link
SCAN_NO_GTIN                GS1 data without AI (01), e.g. a shipping label (SSCC)
GTIN_CHECK_DIGIT            the GTIN's check digit is wrong
SCAN_BAD_EXPIRY             AI (17) is not a date
SCAN_MISSING_GS             a variable-length field swallowed the next AI (lost GS)
BAD_GS_SUBSTITUTE           the configured substitute could appear in GS1 data
DSCSA_PRODUCT_MISMATCH      the package's embedded NDC is not the selected NDC
EXPIRED_LOT                 AI (17) expiry is before today
UNKNOWN_PRODUCT             the GTIN is not in this store's catalog
==========================  =========================================================
"""

from __future__ import annotations

import calendar
import sqlite3
import string
from dataclasses import dataclass
from datetime import date
from typing import Any

from pharmacy import catalog
from pharmacy.errors import BadInput, LotExpired
from pharmacy.ids import parse_hyphenated_ndc

GS = "\x1d"
MAX_SCAN_CHARS = 1024

# GS1 AI encodable character set 82 (GS1 General Specifications §7.11, figure 7.11-1).
CSET82 = frozenset(string.ascii_letters + string.digits + "!\"%&'()*+,-./:;<=>?_")

SYMBOLOGIES = {
    "]d2": "gs1-datamatrix", "]d1": "datamatrix", "]C1": "gs1-128", "]C0": "code-128",
    "]Q3": "gs1-qr", "]Q1": "qr", "]E0": "ean-13", "]E4": "ean-8", "]e0": "gs1-databar",
    "]I1": "itf-14", "]J1": "gs1-dotcode",
}


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
        """The 10 NDC digits embedded in a US pharmaceutical GTIN-14 ("03" after the
        indicator). Their 4-4-2 / 5-3-2 / 5-4-1 split is not knowable from the digits."""
        if self.gtin and len(self.gtin) == 14 and self.gtin[1:3] == "03":
            return self.gtin[3:13]
        return None

    def to_json(self, ndc: str | None = None) -> dict[str, Any]:
        """``ndc`` is the hyphenated NDC-10 from the catalog when known, else the digits."""
        return {
            "gtin": self.gtin, "ndc": ndc or self.ndc_digits, "lot": self.lot,
            "expiry": None if self.expiry is None else self.expiry.isoformat(),
            "serial": self.serial, "symbology": self.symbology,
        }


def _yymmdd(text: str) -> date:
    """AI 17: YYMMDD, DD=00 meaning the last day of the month; years per GS1 sliding window."""
    yy, mm, dd = int(text[0:2]), int(text[2:4]), int(text[4:6])
    this_year = date.today().year
    year = this_year - this_year % 100 + yy
    if year - this_year >= 51:
        year -= 100
    elif this_year - year > 49:
        year += 100
    if dd == 0:
        dd = calendar.monthrange(year, mm)[1]
    return date(year, mm, dd)


def validate_gs_substitute(sub: str | None) -> str | None:
    """A GS substitute must be one character that never occurs in GS1 data."""
    if sub is None or sub == "":
        return None
    if len(sub) != 1 or sub in CSET82 or sub == "]" or ord(sub) < 32 or ord(sub) > 126:
        raise BadInput(
            f"GS substitute {sub!r} is not usable: pick one printable character that GS1 "
            "data never contains, such as ~ | ^ # or @", code="BAD_GS_SUBSTITUTE")
    return sub


def parse_scan(text: str, *, gs_substitute: str | None = None,
               strict_gs: bool = True) -> ScanData:
    """Parse what a scanner sent: a GS1 element string (with or without AIM prefix),
    HRI text with parentheses, a GS1 Digital Link URI, or a bare GTIN/UPC.

    ``gs_substitute`` is the character a keyboard-wedge scanner types instead of GS.
    With ``strict_gs`` a US drug package (NDC GTIN) read without any GS whose lot or serial
    swallowed the other field is refused (SCAN_MISSING_GS). Raises BadInput with a stable code.
    """
    raw = text
    sub = validate_gs_substitute(gs_substitute)
    t = text.strip("\r\n")
    if not t:
        raise BadInput("the scan is empty", code="SCAN_EMPTY")
    if len(t) > MAX_SCAN_CHARS:
        raise BadInput(f"the scan is {len(t)} characters long, longer than any package "
                       "barcode; scan again", code="SCAN_TOO_LONG")
    symbology: str | None = None
    body = t
    if t.startswith("]"):
        if len(t) < 3:
            raise BadInput("the scan holds only part of a symbology prefix; scan again",
                           code="SCAN_TRUNCATED")
        symbology = SYMBOLOGIES.get(t[:3], t[:3])
        body = t[3:]
    if sub:
        body = body.replace(sub, GS)
    if any((ord(ch) < 32 and ch != GS) or ord(ch) > 126 for ch in body + t[:3]):
        raise BadInput("the scan contains characters no barcode carries (line noise or a "
                       "wrong baud rate?); scan again", code="SCAN_GARBLED")
    if not body.strip(GS):
        raise BadInput("the scanner sent its prefix but no data; scan again",
                       code="SCAN_EMPTY")
    saw_gs = GS in body
    if body.startswith("("):
        try:
            from biip.gs1_messages import GS1Message

            hri = GS1Message.parse_hri(body)
        except Exception as e:  # biip ParseError / ValueError
            raise BadInput(f"this barcode text could not be read: {e}",
                           code="SCAN_UNREADABLE") from None
        return _finish(raw, _elements(hri.element_strings), symbology, True, strict_gs)
    try:
        import biip  # imported on first scan: biip's tables cost ~45 ms at start-up

        result = biip.parse(t[:3] + body if symbology else body)
    except Exception as e:  # biip raises ParseError subclasses and ValueError on junk
        raise BadInput(f"this barcode could not be read: {e}", code="SCAN_UNREADABLE") from None
    msg = result.gs1_message
    if msg is not None and msg.element_strings.get(ai="01") is not None:
        return _finish(raw, _elements(msg.element_strings), symbology, saw_gs, strict_gs)
    if result.gs1_digital_link_uri is not None:
        return _finish(raw, _elements(result.gs1_digital_link_uri.element_strings),
                       symbology, True, strict_gs)
    if result.gtin is not None:
        return ScanData(raw, result.gtin.as_gtin_14(), symbology=symbology)
    if msg is not None:
        if result.sscc is not None or msg.element_strings.get(ai="00") is not None:
            raise BadInput("this is a shipping container label (SSCC), not a package: scan "
                           "the package's own barcode", code="SCAN_NO_GTIN")
        raise BadInput("the barcode carries no GTIN (AI 01)", code="SCAN_NO_GTIN")
    if result.sscc is not None:
        raise BadInput("this is a shipping container label (SSCC), not a package: scan the "
                       "package's own barcode", code="SCAN_NO_GTIN")
    raise _failure(body, result.gtin_error, result.gs1_message_error,
                   result.gs1_digital_link_uri_error)


def _failure(body: str, gtin_error: str | None, message_error: str | None,
             uri_error: str | None) -> BadInput:
    if gtin_error and "check digit" in gtin_error.lower():
        return BadInput(f"bad check digit: {gtin_error} Scan again or type the NDC.",
                        code="GTIN_CHECK_DIGIT")
    merged = _lost_gs_position(body)
    if merged is not None:
        return BadInput(
            "the scanner seems to have dropped the GS separator (a lot or serial ran into the "
            f"next field at character {merged}). Set the scanner to send GS or a GS "
            "substitute, or use it in serial/USB-CDC mode", code="SCAN_MISSING_GS")
    if _is_truncated(body):
        return BadInput("the scan was cut short (incomplete GS1 data); scan the package again",
                        code="SCAN_TRUNCATED")
    if message_error and "(17)" in message_error:
        return BadInput(f"the expiry in the barcode is not a date ({message_error})",
                        code="SCAN_BAD_EXPIRY")
    if body.startswith(("http://", "https://")) and uri_error:
        return BadInput(f"this web address is not a GS1 Digital Link: {uri_error}",
                        code="SCAN_UNREADABLE")
    errors = [e for e in (message_error, gtin_error) if e]
    return BadInput("this barcode is not a GTIN or a GS1 product code; scan the package's "
                    "2D code or type the NDC" + (f" (detail: {errors[0]})" if errors else ""),
                    code="SCAN_UNREADABLE")


def _lost_gs_position(body: str) -> int | None:
    """Where inserting a GS makes a failing element string valid, if it has no GS at all."""
    if GS in body or not body.startswith("01") or len(body) < 20:
        return None
    import biip

    for i in range(18, len(body) - 2):
        if body[i:i + 2] not in ("10", "17", "21"):
            continue
        try:
            r = biip.parse(body[:i] + GS + body[i:])
        except (biip.BiipException, ValueError):  # not a valid reading: try the next place
            continue
        if r.gs1_message is not None and r.gs1_message.element_strings.get(ai="01"):
            return i
    return None


def _is_truncated(body: str) -> bool:
    """A digit-led element string that becomes valid GS1 data when more characters follow."""
    if not body[:2].isdigit():
        return False
    import biip

    for k in range(1, 15):
        try:
            r = biip.parse(body + "1" * k)
        except (biip.BiipException, ValueError):
            continue
        if r.gs1_message is not None and r.gs1_message.element_strings.get(ai="01"):
            return True
    return False


@dataclass(frozen=True)
class _Fields:
    gtin: str | None
    gtin_error: str | None
    has_gtin: bool
    lot: str | None
    expiry_value: str | None
    expiry: date | None
    serial: str | None


def _elements(element_strings: Any) -> _Fields:
    gtin_es = element_strings.get(ai="01")
    lot_es = element_strings.get(ai="10")
    exp_es = element_strings.get(ai="17")
    ser_es = element_strings.get(ai="21")
    return _Fields(
        gtin=None if gtin_es is None or gtin_es.gtin is None else gtin_es.gtin.as_gtin_14(),
        gtin_error=None if gtin_es is None else gtin_es.gtin_error,
        has_gtin=gtin_es is not None,
        lot=None if lot_es is None else lot_es.value,
        expiry_value=None if exp_es is None else exp_es.value,
        expiry=None if exp_es is None else exp_es.date,
        serial=None if ser_es is None else ser_es.value,
    )


def _finish(raw: str, f: _Fields, symbology: str | None, saw_gs: bool,
            strict_gs: bool) -> ScanData:
    if not f.has_gtin:
        raise BadInput("the barcode carries no GTIN (AI 01)", code="SCAN_NO_GTIN")
    if f.gtin is None:
        raise BadInput(f"bad GTIN in the barcode: {f.gtin_error or 'check digit'}. Scan again "
                       "or type the NDC.", code="GTIN_CHECK_DIGIT")
    expiry = f.expiry
    if f.expiry_value is not None and expiry is None:
        try:
            expiry = _yymmdd(f.expiry_value)
        except ValueError:
            raise BadInput(f"expiry {f.expiry_value} in the barcode is not a date",
                           code="SCAN_BAD_EXPIRY") from None
    scan = ScanData(raw=raw, gtin=f.gtin, lot=f.lot, expiry=expiry, serial=f.serial,
                    symbology=symbology)
    if strict_gs and not saw_gs:
        suspect = missing_gs_suspect(scan)
        if suspect is not None:
            raise BadInput(
                f"the scanner seems to have dropped the GS separator: {suspect}. Set the "
                "scanner to send GS (or a GS substitute configured for this terminal), or "
                "use it in serial/USB-CDC mode; otherwise type lot and serial by hand",
                code="SCAN_MISSING_GS", lot=scan.lot, serial=scan.serial)
    return scan


def _valid_yymmdd(text: str) -> bool:
    if len(text) != 6 or not text.isdigit():
        return False
    try:
        _yymmdd(text)
    except ValueError:
        return False
    return True


def missing_gs_suspect(scan: ScanData) -> str | None:
    """Why a scan of a US drug package (NDC GTIN) read without any GS looks merged, or None.

    A DSCSA package carries both lot (10) and serial (21); both are variable length, so the
    first of them must end with GS. Read without GS, the first swallows the second. A short
    lot that merely contains "21" (an OTC box carries a lot and no serial) is not suspect:
    the swallowed serial must leave at least 6 characters in a value of 10 or more.
    """
    if scan.ndc_digits is None:
        return None
    if scan.lot is not None and scan.serial is None and len(scan.lot) >= 10:
        i = scan.lot.find("21", 1)
        if i > 0 and len(scan.lot) - i - 2 >= 6:
            return (f"lot {scan.lot!r} may really be lot {scan.lot[:i]!r} and serial "
                    f"{scan.lot[i + 2:]!r}")
    if scan.serial is not None and scan.lot is None:
        i = scan.serial.find("10", 1)
        if 0 < i < len(scan.serial) - 2:
            return (f"serial {scan.serial!r} may really be serial {scan.serial[:i]!r} and "
                    f"lot {scan.serial[i + 2:]!r}")
    if scan.expiry is None:
        for name, value in (("lot", scan.lot), ("serial", scan.serial)):
            if value is None:
                continue
            i = value.find("17", 1)
            while i > 0:
                if _valid_yymmdd(value[i + 2:i + 8]):
                    return f"{name} {value!r} seems to contain the expiry (17){value[i+2:i+8]}"
                i = value.find("17", i + 1)
    return None


# ---- element strings (for tests, label printers and support tools) -------------------------
def element_string(gtin: str, *, expiry: date | str | None = None, lot: str | None = None,
                   serial: str | None = None, separator: str = GS) -> str:
    """Build a DSCSA element string: (01) GTIN, (17) expiry, (10) lot, (21) serial.

    ``expiry`` may be a date or a raw YYMMDD (DD=00 for "end of month")."""
    parts: list[tuple[str, str, bool]] = [("01", gtin, False)]
    if expiry is not None:
        exp = expiry if isinstance(expiry, str) else expiry.strftime("%y%m%d")
        parts.append(("17", exp, False))
    if lot is not None:
        parts.append(("10", lot, True))
    if serial is not None:
        parts.append(("21", serial, True))
    out = ""
    for i, (ai, value, variable) in enumerate(parts):
        out += ai + value
        if variable and i < len(parts) - 1:
            out += separator
    return out


# ---- catalog and DSCSA rules ---------------------------------------------------------------
def product_for_scan(conn: sqlite3.Connection, scan: ScanData) -> catalog.Product:
    """GTIN-14 → NDC-10 → product through the catalog (which knows the hyphen pattern).

    Raises UnknownProduct for a GTIN the store does not carry."""
    if scan.gtin is None:
        raise BadInput("the scan carries no GTIN", code="SCAN_NO_GTIN")
    return catalog.lookup(conn, scan.gtin)


def check_package(scan: ScanData, *, today: date, selected_ndc: str | None = None) -> None:
    """DSCSA checks at fill (REGULATIONS.md §7 #48): the GTIN's embedded NDC must be the
    selected NDC (DSCSA_PRODUCT_MISMATCH) and the AI (17) expiry must not be past
    (EXPIRED_LOT)."""
    if selected_ndc is not None:
        want = parse_hyphenated_ndc(selected_ndc).digits10
        if scan.ndc_digits != want:
            got = scan.ndc_digits or f"GTIN {scan.gtin} (no NDC inside)"
            raise BadInput(f"the scanned package ({got}) is not the selected NDC "
                           f"{selected_ndc}; do not fill with it", code="DSCSA_PRODUCT_MISMATCH",
                           gtin=scan.gtin, selected_ndc=selected_ndc)
    if scan.expiry is not None and scan.expiry < today:
        raise LotExpired(f"the scanned package (lot {scan.lot or '?'}) expired on "
                         f"{scan.expiry.isoformat()}; it cannot be dispensed",
                         lot=scan.lot, expiry=scan.expiry.isoformat())
