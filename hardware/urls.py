"""Printer addresses as URLs, one form for the config, the CLI and support staff.

==============================  ==================================================
``tcp://HOST[:PORT]``           network printer, raw port 9100 by default
``serial:///dev/ttyUSB0``       serial / USB-serial; ``?baud=19200&flow=none``
``serial://COM3``               the same on Windows
``usb://VID:PID``               USB printer class device, hex ids (needs pyusb)
``file:///dev/usb/lp0``         a device file (or any file, to capture the bytes)
``dummy://NAME``                a recording fake: keeps the bytes, prints nothing
==============================  ==================================================

Common query parameters: ``timeout`` (seconds). Serial: ``baud``, ``flow``
(``dsrdtr`` default, ``rtscts``, ``xonxoff``, ``none``). USB: ``in_ep``, ``out_ep``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from hardware.errors import BadDeviceUrl

SCHEMES = ("tcp", "serial", "usb", "file", "dummy")
BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
FLOWS = ("dsrdtr", "rtscts", "xonxoff", "none")


@dataclass(frozen=True)
class PrinterUrl:
    scheme: str
    text: str
    host: str | None = None
    port: int | None = None
    path: str | None = None
    vendor_id: int | None = None
    product_id: int | None = None
    baud: int = 9600
    flow: str = "dsrdtr"
    in_ep: int = 0x82
    out_ep: int = 0x01
    timeout: float | None = None

    def __str__(self) -> str:
        return self.text


def _bad(url: str, why: str) -> BadDeviceUrl:
    return BadDeviceUrl(
        f"printer address {url!r} is not usable: {why}. Examples: tcp://192.168.1.50:9100, "
        "serial:///dev/ttyUSB0?baud=19200, usb://04b8:0202, file:///dev/usb/lp0",
        code="BAD_PRINTER_URL")


def _int(url: str, text: str, base: int, what: str) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise _bad(url, f"{what} {text!r} is not a number") from None


def parse_printer_url(url: str) -> PrinterUrl:
    text = url.strip()
    if len(text) > 300 or any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise _bad(url[:60], "it is longer than 300 characters or holds control characters")
    if "://" not in text:
        raise _bad(url, "it has no scheme (tcp://, serial://, usb://, file:// or dummy://)")
    try:
        parts = urlsplit(text)
        query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    except ValueError as e:
        raise _bad(url, str(e)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _bad(url, f"scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    allowed = {"timeout"} | {"serial": {"baud", "flow"}, "usb": {"in_ep", "out_ep"}}.get(
        scheme, set())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise _bad(url, f"unknown option(s) {', '.join(unknown)}")
    timeout = None
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise _bad(url, "timeout is not a number") from None
        if not 0.05 <= timeout <= 300:
            raise _bad(url, "timeout must be between 0.05 and 300 seconds")
    if scheme == "tcp":
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise _bad(url, "the port is not a number from 1 to 65535") from None
        if not host:
            raise _bad(url, "it names no host")
        if port == 0:
            raise _bad(url, "the port is not a number from 1 to 65535")
        if len(host) > 253:
            raise _bad(url, "the host name is longer than 253 characters")
        return PrinterUrl("tcp", text, host=host, port=port or 9100, timeout=timeout)
    if scheme == "serial":
        path = parts.path or parts.netloc
        if parts.netloc and parts.path:
            path = parts.netloc + parts.path
        if not path:
            raise _bad(url, "it names no serial port")
        baud = _int(url, query.get("baud", "9600"), 10, "baud rate")
        if baud not in BAUD_RATES:
            raise _bad(url, f"baud rate {baud} is not one of {BAUD_RATES}")
        flow = query.get("flow", "dsrdtr")
        if flow not in FLOWS:
            raise _bad(url, f"flow {flow!r} is not one of {', '.join(FLOWS)}")
        return PrinterUrl("serial", text, path=path, baud=baud, flow=flow, timeout=timeout)
    if scheme == "usb":
        ids = parts.netloc.split(":")
        if len(ids) != 2 or not all(ids):
            raise _bad(url, "USB printers are written usb://VID:PID in hex, e.g. usb://04b8:0202")
        vid, pid = (_int(url, i, 16, "USB id") for i in ids)
        if not (0 < vid <= 0xFFFF and 0 <= pid <= 0xFFFF):
            raise _bad(url, "USB ids are 4 hex digits each")
        in_ep = _int(url, query.get("in_ep", "0x82"), 0, "endpoint")
        out_ep = _int(url, query.get("out_ep", "0x01"), 0, "endpoint")
        # USB endpoint addresses: 1-15, IN ones with bit 7 set
        if not (0x81 <= in_ep <= 0x8F and 0x01 <= out_ep <= 0x0F):
            raise _bad(url, "USB endpoints are in_ep 0x81-0x8f and out_ep 0x01-0x0f")
        return PrinterUrl("usb", text, vendor_id=vid, product_id=pid, in_ep=in_ep,
                          out_ep=out_ep, timeout=timeout)
    if scheme == "file":
        path = parts.path
        if parts.netloc and parts.netloc != "localhost":
            path = parts.netloc + parts.path  # file://C:/x on Windows
        if not path:
            raise _bad(url, "it names no file")
        return PrinterUrl("file", text, path=path, timeout=timeout)
    return PrinterUrl("dummy", text, host=parts.netloc or "dummy", timeout=timeout)
