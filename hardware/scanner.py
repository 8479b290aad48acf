"""Serial / USB-CDC barcode scanners: one reader thread per port.

The reader owns its port. It frames the byte stream on the scanner's terminator (CR, LF or
CRLF; or, with no terminator, on a pause), parses each frame (AIM symbology identifiers
such as ``]d2`` included) and posts a :class:`~hardware.scans.ScanEvent` — parsed data or a
stable error code, never an exception. Binary junk on the line yields SCAN_GARBLED events;
a frame without its terminator yields SCAN_TRUNCATED. When the scanner is unplugged the
reader posts a :class:`~hardware.scans.ScannerStatus`, then reopens the port every
``reconnect_interval`` seconds until it is back or the reader is stopped.

Events go to ``on_event`` (called on the reader thread: a GUI forwards them with a signal)
or, without a callback, to the ``events`` queue.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from hardware.config import HardwareConfig, ScannerConfig
from hardware.scans import ScanEvent, ScannerStatus, scan_event
from pharmacy.errors import BadInput

log = logging.getLogger("pharmos.hardware.scanner")

ScannerEvent = ScanEvent | ScannerStatus
MAX_FRAME = 1024


def _open_url(port: str, baud: int, timeout: float) -> Any:
    import serial

    ser = serial.serial_for_url(port, baudrate=baud, timeout=timeout, do_not_open=True)
    ser.open()
    return ser


class SerialScanner:
    def __init__(self, port: str, *, baud: int = 9600,
                 on_event: Callable[[ScannerEvent], None] | None = None,
                 terminators: tuple[bytes, ...] = (b"\r", b"\n"),
                 gs_substitute: str | None = None, strict_gs: bool = True,
                 frame_timeout: float = 0.3, reconnect_interval: float = 0.5,
                 read_timeout: float = 0.05,
                 opener: Callable[[], Any] | None = None) -> None:
        self.port = port
        self.baud = baud
        self.terminators = tuple(t for t in terminators if t)
        self.gs_substitute = gs_substitute
        self.strict_gs = strict_gs
        self.frame_timeout = frame_timeout
        self.reconnect_interval = reconnect_interval
        self.read_timeout = read_timeout
        self._opener = opener or (lambda: _open_url(port, baud, read_timeout))
        self._on_event = on_event
        self.events: queue.Queue[ScannerEvent] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"scanner {port}")
        self._ser: Any = None
        self.connected = False
        self.scans = 0

    @classmethod
    def from_config(cls, cfg: ScannerConfig, **kw: Any) -> SerialScanner:
        if cfg.kind != "serial" or not cfg.port:
            raise BadInput("this scanner is not configured as a serial scanner with a port",
                           code="BAD_HARDWARE_CONFIG")
        term = cfg.suffix.encode("latin-1") if cfg.suffix else b""
        terminators = (b"\r", b"\n") if term in (b"\r", b"\n", b"\r\n") else (term,)
        return cls(cfg.port, baud=cfg.baud, terminators=terminators,
                   gs_substitute=cfg.gs_substitute, strict_gs=cfg.strict_gs, **kw)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> SerialScanner:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> bool:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> SerialScanner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _post(self, ev: ScannerEvent) -> None:
        if isinstance(ev, ScanEvent):
            self.scans += 1
        if self._on_event is None:
            self.events.put(ev)
            return
        try:
            self._on_event(ev)
        except Exception:  # a consumer's bug must not kill the device thread
            log.exception("scan event handler failed")

    # ---- reader thread ---------------------------------------------------------------------
    def _close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()

    def _connect(self, announced_down: bool) -> bool:
        try:
            self._ser = self._opener()
        except Exception as e:  # SerialException / OSError / ValueError
            if not announced_down:
                self._post(ScannerStatus(self.port, False, f"scanner on {self.port} is not "
                                         f"available ({e}); retrying", time.monotonic()))
            return False
        self.connected = True
        self._post(ScannerStatus(self.port, True, f"scanner on {self.port} connected",
                                 time.monotonic()))
        return True

    def _run(self) -> None:
        buf = bytearray()
        last = 0.0
        announced_down = False
        try:
            while not self._stop.is_set():
                if self._ser is None:
                    if not self._connect(announced_down):
                        announced_down = True
                        self._stop.wait(self.reconnect_interval)
                        continue
                    announced_down = False
                try:
                    waiting = getattr(self._ser, "in_waiting", 0) or 1
                    chunk = bytes(self._ser.read(min(waiting, 4096)))
                except Exception as e:  # unplugged: SerialException / OSError
                    self._close()
                    self.connected = False
                    if buf:
                        self._frame_error(bytes(buf), "SCAN_TRUNCATED", "the scanner was "
                                          "disconnected in the middle of a scan; scan again")
                        buf.clear()
                    self._post(ScannerStatus(self.port, False, f"scanner on {self.port} "
                                             f"disconnected ({e}); waiting for it to come "
                                             "back", time.monotonic()))
                    announced_down = True
                    continue
                now = time.monotonic()
                if chunk:
                    buf += chunk
                    last = now
                    self._frames(buf)
                    if len(buf) > MAX_FRAME:
                        self._frame_error(bytes(buf[:64]), "SCAN_TOO_LONG", "the scanner sent "
                                          f"more than {MAX_FRAME} bytes without ending the scan")
                        buf.clear()
                elif buf and now - last > self.frame_timeout:
                    data = bytes(buf)
                    buf.clear()
                    if self.terminators:
                        self._frame_error(data, "SCAN_TRUNCATED", "the scan stopped before its "
                                          "end-of-scan character; scan again (or check the "
                                          "scanner's suffix setting)")
                    else:
                        self._emit(data)
        finally:
            self._close()
            self.connected = False

    def _frames(self, buf: bytearray) -> None:
        while self.terminators:
            cut = [(buf.find(t), t) for t in self.terminators if buf.find(t) >= 0]
            if not cut:
                return
            i, term = min(cut)
            frame = bytes(buf[:i])
            del buf[: i + len(term)]
            if frame:  # the LF of a CRLF is an empty frame
                self._emit(frame)

    def _emit(self, frame: bytes) -> None:
        text = frame.decode("latin-1")
        self._post(scan_event(self.port, text, time.monotonic(),
                              gs_substitute=self.gs_substitute, strict_gs=self.strict_gs))

    def _frame_error(self, frame: bytes, code: str, message: str) -> None:
        self._post(ScanEvent(self.port, frame.decode("latin-1"), time.monotonic(),
                             error=BadInput(message, code=code)))


def serial_scanners(cfg: HardwareConfig,
                    on_event: Callable[[ScannerEvent], None] | None = None) -> list[SerialScanner]:
    """One (not yet started) reader per configured serial scanner; wedges are fed by the GUI."""
    return [SerialScanner.from_config(s, on_event=on_event) for s in cfg.scanners
            if s.kind == "serial"]
