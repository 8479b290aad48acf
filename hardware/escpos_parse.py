"""A small ESC/POS stream parser: what a printer would print from a byte stream.

Used by tests and support tools to check layout (text lines and their style), cuts (GS V),
native QR codes (GS ( k), drawer kicks (ESC p, DLE DC4 1) and status requests (DLE EOT),
and by the fake network printer to answer status requests as they arrive. It understands
the commands python-escpos emits and skips the common others by their declared lengths.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any

ESC, GS, DLE, FS = 0x1B, 0x1D, 0x10, 0x1C
LF, CR, HT = 0x0A, 0x0D, 0x09

# ESC x: number of argument bytes for fixed-length commands.
_ESC_ARGS = {
    "@": 0, "!": 1, "E": 1, "-": 1, "a": 1, "t": 1, "d": 1, "J": 1, "p": 3, "r": 1, "M": 1,
    "G": 1, "{": 1, "V": 1, "2": 0, "3": 1, "R": 1, " ": 1, "U": 1, "e": 1, "i": 0, "m": 0,
    "=": 1, "L": 0, "S": 0, "T": 1, "W": 8, "$": 2, "\\": 2, "%": 1, "?": 1, "c": 2, "B": 2,
    "<": 0, "+": 1, "A": 1,
}
_GS_ARGS = {
    "!": 1, "B": 1, "b": 1, "H": 1, "f": 1, "h": 1, "w": 1, "L": 2, "W": 2, "P": 2, "$": 2,
    "\\": 2, "a": 1, "r": 1, "I": 1, "/": 1, "T": 1, "^": 3, ":": 0, "E": 1, "g": 2,
}
_FS_ARGS = {".": 0, "&": 0, "C": 1, "!": 1, "-": 1, "W": 1, "S": 2, "p": 2, "2": 2}
_ALIGN = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}


@dataclass(frozen=True)
class Token:
    kind: str  # text, lf, init, style, codepage, feed, cut, qr_param, qr_store, qr_print,
    #            kick, status, barcode, image, ctrl, unknown
    value: Any
    raw: bytes


class Tokenizer:
    """Incremental: ``feed`` returns the complete commands so far and keeps a partial tail."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def pending(self) -> bytes:
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[Token]:
        self._buf += data
        out: list[Token] = []
        i = 0
        buf = bytes(self._buf)
        while i < len(buf):
            n = _one(buf, i, out)
            if n == 0:
                break
            i += n
        del self._buf[:i]
        return out


def _need(buf: bytes, i: int, n: int) -> bool:
    return i + n <= len(buf)


def _one(buf: bytes, i: int, out: list[Token]) -> int:
    b = buf[i]
    if b == LF:
        out.append(Token("lf", None, buf[i:i + 1]))
        return 1
    if b == CR:
        out.append(Token("ctrl", "CR", buf[i:i + 1]))
        return 1
    if b >= 0x20 or b == HT:
        j = i
        while j < len(buf) and (buf[j] >= 0x20 or buf[j] == HT):
            j += 1
        out.append(Token("text", buf[i:j], buf[i:j]))
        return j - i
    if b not in (ESC, GS, DLE, FS):
        out.append(Token("ctrl", b, buf[i:i + 1]))
        return 1
    if not _need(buf, i, 2):
        return 0
    c = chr(buf[i + 1])
    if b == ESC:
        return _esc(buf, i, c, out)
    if b == GS:
        return _gs(buf, i, c, out)
    if b == DLE:
        return _dle(buf, i, out)
    return _fixed(buf, i, _FS_ARGS.get(c), "fs", out)


def _fixed(buf: bytes, i: int, nargs: int | None, kind: str, out: list[Token]) -> int:
    if nargs is None:
        out.append(Token("unknown", buf[i:i + 2], buf[i:i + 2]))
        return 2
    if not _need(buf, i, 2 + nargs):
        return 0
    out.append(Token(kind, buf[i + 1:i + 2 + nargs], buf[i:i + 2 + nargs]))
    return 2 + nargs


def _length_prefixed(buf: bytes, i: int, kind: str, out: list[Token]) -> int:
    """ESC ( X pL pH data / GS ( X pL pH data / FS ( X pL pH data."""
    if not _need(buf, i, 5):
        return 0
    n = buf[i + 3] + 256 * buf[i + 4]
    if not _need(buf, i, 5 + n):
        return 0
    raw = buf[i:i + 5 + n]
    fn_class = chr(buf[i + 2])
    body = buf[i + 5:i + 5 + n]
    if kind == "gs" and fn_class == "k" and len(body) >= 2 and body[0] == 49:
        fn = body[1]
        if fn == 80:  # store the data: cn fn m d1..dk
            out.append(Token("qr_store", body[3:].decode("utf-8", "replace"), raw))
        elif fn == 81:
            out.append(Token("qr_print", None, raw))
        else:
            out.append(Token("qr_param", (chr(fn), body[2:]), raw))
        return 5 + n
    out.append(Token(f"{kind}({fn_class}", body, raw))
    return 5 + n


def _esc(buf: bytes, i: int, c: str, out: list[Token]) -> int:
    if c == "(":
        return _length_prefixed(buf, i, "esc", out)
    if c == "*":  # bit image: m nL nH data
        if not _need(buf, i, 5):
            return 0
        m, n = buf[i + 2], buf[i + 3] + 256 * buf[i + 4]
        size = n * (3 if m in (32, 33) else 1)
        if not _need(buf, i, 5 + size):
            return 0
        out.append(Token("image", size, buf[i:i + 5 + size]))
        return 5 + size
    if c == "D":  # tab positions, NUL-terminated
        j = buf.find(b"\x00", i + 2)
        if j < 0:
            return 0
        out.append(Token("style", {"tabs": list(buf[i + 2:j])}, buf[i:j + 1]))
        return j + 1 - i
    nargs = _ESC_ARGS.get(c)
    if nargs is None:
        out.append(Token("unknown", buf[i:i + 2], buf[i:i + 2]))
        return 2
    if not _need(buf, i, 2 + nargs):
        return 0
    args = buf[i + 2:i + 2 + nargs]
    raw = buf[i:i + 2 + nargs]
    a = args[0] if args else 0
    if c == "@":
        out.append(Token("init", None, raw))
    elif c == "!":
        out.append(Token("style", {"bold": bool(a & 0x08), "height": 2 if a & 0x10 else 1,
                                   "width": 2 if a & 0x20 else 1,
                                   "underline": 1 if a & 0x80 else 0}, raw))
    elif c in ("E", "G"):
        out.append(Token("style", {"bold": bool(a & 1)}, raw))
    elif c == "-":
        out.append(Token("style", {"underline": a % 48 if a >= 48 else a}, raw))
    elif c == "a":
        out.append(Token("style", {"align": _ALIGN.get(a, "left")}, raw))
    elif c == "r":
        out.append(Token("style", {"color": a & 1}, raw))
    elif c == "M":
        out.append(Token("style", {"font": a % 48 if a >= 48 else a}, raw))
    elif c == "t":
        out.append(Token("codepage", a, raw))
    elif c in ("d", "J"):
        out.append(Token("feed", a if c == "d" else 0, raw))
    elif c == "p":
        out.append(Token("kick", {"pin": 2 if a in (0, 48) else 5, "on_ms": args[1] * 2,
                                  "off_ms": args[2] * 2}, raw))
    elif c == "i":
        out.append(Token("cut", "full", raw))
    elif c == "m":
        out.append(Token("cut", "partial", raw))
    else:
        out.append(Token("esc", raw[1:], raw))
    return 2 + nargs


def _gs(buf: bytes, i: int, c: str, out: list[Token]) -> int:
    if c == "(":
        return _length_prefixed(buf, i, "gs", out)
    if c == "V":
        if not _need(buf, i, 3):
            return 0
        m = buf[i + 2]
        n = 4 if m in (65, 66, 97, 98, 103, 104) else 3
        if not _need(buf, i, n):
            return 0
        mode = "partial" if m in (1, 49, 66, 98, 104) else "full"
        out.append(Token("cut", mode, buf[i:i + n]))
        return n
    if c == "k":
        if not _need(buf, i, 3):
            return 0
        m = buf[i + 2]
        if m <= 6:
            j = buf.find(b"\x00", i + 3)
            if j < 0:
                return 0
            out.append(Token("barcode", (m, buf[i + 3:j].decode("latin-1")), buf[i:j + 1]))
            return j + 1 - i
        if not _need(buf, i, 4):
            return 0
        n = buf[i + 3]
        if not _need(buf, i, 4 + n):
            return 0
        out.append(Token("barcode", (m, buf[i + 4:i + 4 + n].decode("latin-1")),
                         buf[i:i + 4 + n]))
        return 4 + n
    if c == "v":  # GS v 0 m xL xH yL yH data
        if not _need(buf, i, 8):
            return 0
        x = buf[i + 4] + 256 * buf[i + 5]
        y = buf[i + 6] + 256 * buf[i + 7]
        if not _need(buf, i, 8 + x * y):
            return 0
        out.append(Token("image", x * y, buf[i:i + 8 + x * y]))
        return 8 + x * y
    if c == "8":  # GS 8 L p1 p2 p3 p4 data
        if not _need(buf, i, 7):
            return 0
        n = int.from_bytes(buf[i + 3:i + 7], "little")
        if not _need(buf, i, 7 + n):
            return 0
        out.append(Token("image", n, buf[i:i + 7 + n]))
        return 7 + n
    if c == "!":
        if not _need(buf, i, 3):
            return 0
        a = buf[i + 2]
        out.append(Token("style", {"width": (a >> 4) + 1, "height": (a & 0x0F) + 1},
                         buf[i:i + 3]))
        return 3
    if c == "B":
        if not _need(buf, i, 3):
            return 0
        out.append(Token("style", {"invert": bool(buf[i + 2] & 1)}, buf[i:i + 3]))
        return 3
    return _fixed(buf, i, _GS_ARGS.get(c), "gs", out)


def _dle(buf: bytes, i: int, out: list[Token]) -> int:
    c = buf[i + 1]
    if c in (0x04, 0x05):  # EOT n (status) / ENQ n
        if not _need(buf, i, 3):
            return 0
        kind = "status" if c == 0x04 else "dle"
        out.append(Token(kind, buf[i + 2], buf[i:i + 3]))
        return 3
    if c == 0x14:  # DC4 fn a b
        if not _need(buf, i, 5):
            return 0
        raw = buf[i:i + 5]
        if buf[i + 2] == 1:
            out.append(Token("kick", {"pin": 2 if buf[i + 3] == 0 else 5,
                                      "on_ms": buf[i + 4] * 100, "off_ms": buf[i + 4] * 100},
                             raw))
        else:
            out.append(Token("dle", raw[1:], raw))
        return 5
    out.append(Token("unknown", buf[i:i + 2], buf[i:i + 2]))
    return 2


# ---- document model -------------------------------------------------------------------------
@dataclass(frozen=True)
class PrintedLine:
    text: str
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1
    color: int = 0
    underline: int = 0


@dataclass
class Document:
    lines: list[PrintedLine] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)
    cuts: list[str] = field(default_factory=list)
    qr_codes: list[str] = field(default_factory=list)
    kicks: list[int] = field(default_factory=list)
    status_queries: list[int] = field(default_factory=list)
    barcodes: list[tuple[int, str]] = field(default_factory=list)
    codepages: list[int] = field(default_factory=list)
    unknown: list[bytes] = field(default_factory=list)
    trailing: bytes = b""  # an incomplete command at the end (a cut-off stream)

    @property
    def texts(self) -> list[str]:
        return [ln.text for ln in self.lines]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def line_with(self, needle: str) -> PrintedLine:
        for ln in self.lines:
            if needle in ln.text:
                return ln
        raise KeyError(f"no printed line contains {needle!r}")

    def index_of(self, kind: str, value: Any = None) -> int:
        """Position of the first event of ``kind`` (and ``value``) in print order."""
        for n, (k, v) in enumerate(self.events):
            if k == kind and (value is None or v == value):
                return n
        raise KeyError(f"no {kind} event")


def _codec_for(n: int, code_pages: dict[int, str]) -> str:
    name = code_pages.get(n, "CP437")
    for candidate in (name.lower(), name.lower().replace("_", "-"), "cp437"):
        try:
            codecs.lookup(candidate)
            return candidate
        except LookupError:
            continue
    return "latin-1"


def default_code_pages(profile: str | None = None) -> dict[int, str]:
    from escpos.capabilities import get_profile

    pages: dict[str, Any] = get_profile(profile).get_code_pages()
    return {int(v): k for k, v in pages.items()}


def parse(data: bytes, *, profile: str | None = None) -> Document:
    """Interpret a complete ESC/POS stream."""
    tok = Tokenizer()
    tokens = tok.feed(data)
    doc = Document(trailing=tok.pending)
    pages = default_code_pages(profile)
    style: dict[str, Any] = {"align": "left", "bold": False, "width": 1, "height": 1,
                             "color": 0, "underline": 0}
    codec = _codec_for(0, pages)
    line: list[str] = []
    line_style: dict[str, Any] | None = None
    qr_data: str | None = None

    def flush(force: bool = False) -> None:
        nonlocal line, line_style
        if line or force:
            st = line_style or style
            doc.lines.append(PrintedLine("".join(line), st["align"], st["bold"], st["width"],
                                         st["height"], st["color"], st["underline"]))
            doc.events.append(("line", len(doc.lines) - 1))
        line, line_style = [], None

    for t in tokens:
        if t.kind == "text":
            if line_style is None:
                line_style = dict(style)
            line.append(t.value.decode(codec, "replace").replace("\t", "    "))
        elif t.kind == "lf":
            flush(force=True)
        elif t.kind == "init":
            flush()
            style.update(align="left", bold=False, width=1, height=1, color=0, underline=0)
            codec = _codec_for(0, pages)
            doc.events.append(("init", None))
        elif t.kind == "style":
            style.update({k: v for k, v in t.value.items() if k in style})
            if line_style is not None and t.value.get("bold"):
                line_style["bold"] = True  # emphasis switched on mid-line
        elif t.kind == "codepage":
            codec = _codec_for(t.value, pages)
            doc.codepages.append(t.value)
        elif t.kind == "feed":
            flush()
            doc.events.append(("feed", t.value))
        elif t.kind == "cut":
            flush()
            doc.cuts.append(t.value)
            doc.events.append(("cut", t.value))
        elif t.kind == "qr_store":
            qr_data = t.value
        elif t.kind == "qr_print":
            flush()
            if qr_data is not None:
                doc.qr_codes.append(qr_data)
                doc.events.append(("qr", qr_data))
        elif t.kind == "kick":
            doc.kicks.append(t.value["pin"])
            doc.events.append(("kick", t.value["pin"]))
        elif t.kind == "status":
            doc.status_queries.append(t.value)
            doc.events.append(("status", t.value))
        elif t.kind == "barcode":
            flush()
            doc.barcodes.append(t.value)
            doc.events.append(("barcode", t.value))
        elif t.kind == "unknown":
            doc.unknown.append(t.value)
    flush()
    return doc
