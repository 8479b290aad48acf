"""Printing off the caller's thread: one worker thread owns each printer.

``PrintWorker.submit`` never blocks: it queues bytes and returns a Future. The worker opens
the device, checks its status (online, cover, paper) when the connection can answer, sends
the bytes, checks again (paper that ran out mid-receipt, a connection that dropped) and
completes the Future with a :class:`PrintOutcome` or a hardware error. A printer that hangs
holds only its own worker: new jobs fail fast with PRINTER_TIMEOUT while it is stuck, and the
durable queue in the store (:mod:`pharmacy.print_queue`) keeps them for reprint.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from hardware.backends import PrinterBackend, backend_for
from hardware.config import HardwareConfig, PrinterConfig
from hardware.errors import HardwareError, PaperOut, PrinterOffline, PrinterTimeout
from hardware.render import render_document, render_drawer_kick
from pharmacy.errors import PharmosError
from pharmacy.print_queue import PrintJob

log = logging.getLogger("pharmos.hardware.printer")

STATUS_PRINTER = b"\x10\x04\x01"  # DLE EOT 1: online / offline
STATUS_OFFLINE_CAUSE = b"\x10\x04\x02"  # DLE EOT 2: cover open, paper end stop, error
STATUS_PAPER = b"\x10\x04\x04"  # DLE EOT 4: roll paper sensor


@dataclass(frozen=True)
class PrinterStatus:
    online: bool
    paper: str  # ok | low | out
    cover_open: bool = False
    error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"online": self.online, "paper": self.paper, "cover_open": self.cover_open,
                "error": self.error}


@dataclass(frozen=True)
class PrintOutcome:
    bytes_sent: int
    seconds: float
    status: PrinterStatus | None = None

    @property
    def paper_low(self) -> bool:
        return self.status is not None and self.status.paper == "low"

    def to_json(self) -> dict[str, Any]:
        return {"bytes_sent": self.bytes_sent, "seconds": round(self.seconds, 3),
                "status": None if self.status is None else self.status.to_json()}


def _status_byte(backend: PrinterBackend, request: bytes) -> int:
    reply = backend.query(request)
    b = reply[-1]
    if b & 0x93 != 0x12:  # fixed bits: 1 and 4 set, 0 and 7 clear
        raise HardwareError(f"the printer at {backend.where} sent a status reply that makes no "
                            f"sense ({reply!r}); is it an ESC/POS printer, and is the right "
                            "port configured?", code="PRINTER_BAD_STATUS",
                            printer=backend.where)
    return b


def read_status(backend: PrinterBackend) -> PrinterStatus:
    """Ask an open printer for its real-time status (DLE EOT 1, 4 and, if offline, 2)."""
    s1 = _status_byte(backend, STATUS_PRINTER)
    online = not s1 & 0x08
    s4 = _status_byte(backend, STATUS_PAPER)
    paper = "out" if s4 & 0x60 == 0x60 else "low" if s4 & 0x0C == 0x0C else "ok"
    cover = error = False
    if not online:
        s2 = _status_byte(backend, STATUS_OFFLINE_CAUSE)
        cover, error = bool(s2 & 0x04), bool(s2 & 0x40)
        if s2 & 0x20:
            paper = "out"
    return PrinterStatus(online, paper, cover, error)


def require_ready(backend: PrinterBackend, status: PrinterStatus, *, after: bool = False) -> None:
    when = "ran out of paper during printing" if after else "is out of paper"
    if status.paper == "out":
        raise PaperOut(f"the printer at {backend.where} {when}: load a new roll",
                       printer=backend.where)
    if status.cover_open:
        raise PrinterOffline(f"the printer at {backend.where} has its cover open: close it",
                             code="COVER_OPEN", printer=backend.where)
    if not status.online:
        raise PrinterOffline(f"the printer at {backend.where} is offline"
                             f"{' (error state: switch it off and on)' if status.error else ''}",
                             printer=backend.where)


_STOP = object()
QUEUE_HINT = ". The sale is saved; its paper waits in the reprint queue"


class PrintWorker:
    """The thread that owns one printer backend."""

    def __init__(self, backend: PrinterBackend, *, status_check: bool = True,
                 stall_after: float | None = None, name: str | None = None,
                 hint: str = "") -> None:
        """``hint`` is appended to every error message (e.g. where the job went)."""
        self.backend = backend
        self.hint = hint
        self.status_check = status_check
        self.stall_after = stall_after if stall_after is not None else backend.timeout * 3
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=name or f"printer {backend.where}")
        self._busy_since: float | None = None
        self._started = False
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.backend.where

    def start(self) -> PrintWorker:
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        return self

    def __enter__(self) -> PrintWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stalled(self) -> bool:
        since = self._busy_since
        return since is not None and time.monotonic() - since > self.stall_after

    def submit(self, data: bytes, *, status_check: bool | None = None) -> Future[PrintOutcome]:
        """Queue bytes for the printer; returns at once. ``status_check=False`` skips the
        status round trips for this job (a drawer pulse works on a printer out of paper)."""
        fut: Future[PrintOutcome] = Future()
        with self._lock:
            if self._stopped:
                fut.set_exception(HardwareError(f"the printer at {self.url} was closed{self.hint}",
                                                code="PRINTER_CLOSED", printer=self.url))
                return fut
        self.start()
        if self.stalled:
            fut.set_exception(PrinterTimeout(
                f"the printer at {self.url} has been stuck on a job for more than "
                f"{self.stall_after:g} s; check it{self.hint}", printer=self.url))
            return fut
        self._q.put((fut, data, status_check))
        return fut

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the worker to finish and close the device; True if it ended in time."""
        with self._lock:
            self._stopped = True
            if not self._started:
                return True
        self._q.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                fut, data, check = item
                if not fut.set_running_or_notify_cancel():
                    continue
                self._busy_since = time.monotonic()
                try:
                    fut.set_result(self._print(data, check))
                except PharmosError as e:
                    self.backend.close()
                    fut.set_exception(self._hinted(e))
                except Exception as e:  # a driver bug must not kill the thread or hang the Future
                    log.exception("printer %s failed", self.url)
                    self.backend.close()
                    fut.set_exception(self._hinted(HardwareError(
                        f"printing failed on {self.url}: {e}", code="PRINT_FAILED",
                        printer=self.url)))
                finally:
                    self._busy_since = None
        finally:
            self.backend.close()

    def _hinted(self, err: PharmosError) -> PharmosError:
        if not self.hint:
            return err
        return type(err)(err.message + self.hint, code=err.code, **err.details)

    def _print(self, data: bytes, status_check: bool | None = None) -> PrintOutcome:
        t0 = time.monotonic()
        b = self.backend
        b.open()
        wanted = self.status_check if status_check is None else status_check
        check = wanted and b.supports_status
        if check:
            require_ready(b, read_status(b))
        b.write(data)
        status = None
        if check:
            status = read_status(b)  # also proves the connection survived the whole document
            require_ready(b, status, after=True)
        b.close()  # network printers serve one connection at a time
        return PrintOutcome(len(data), time.monotonic() - t0, status)


class EscposPrinter:
    """The :class:`pharmacy.print_queue.Printer` port on an ESC/POS printer."""

    def __init__(self, cfg: HardwareConfig, printer: PrinterConfig | None = None, *,
                 backend: PrinterBackend | None = None, url: str | None = None) -> None:
        self.cfg = cfg
        pcfg = printer or cfg.printer
        self.pcfg = pcfg
        target = url or pcfg.url
        if backend is None:
            if not target:
                from pharmacy.errors import BadInput

                raise BadInput("no printer is configured for this terminal: give --printer URL "
                               "or run 'pharmos hw config set --data-dir D printer.url=URL'",
                               code="NO_PRINTER")
            backend = backend_for(target, timeout=pcfg.timeout)
        self.worker = PrintWorker(backend, status_check=pcfg.status_check, hint=QUEUE_HINT)

    @property
    def url(self) -> str:
        return self.worker.url

    def render(self, document: Mapping[str, Any]) -> bytes:
        return render_document(document, self.cfg)

    def submit(self, job: PrintJob, document: Mapping[str, Any]) -> Future[Any]:
        try:
            data = self.render(document)
        except Exception as e:  # a malformed document fails its job, not the caller
            log.exception("cannot render print job %s", job.job_id)
            fut: Future[Any] = Future()
            fut.set_exception(HardwareError(f"the document could not be laid out: {e}",
                                            code="PRINT_FAILED", job_id=job.job_id))
            return fut
        return self.worker.submit(data)

    def open_drawer(self, pin: int | None = None) -> Future[Any] | None:
        """Pulse the cash drawer wired to this printer (pin 2 or 5; default: the configured
        pin). Returns None when no drawer is configured. Never blocks."""
        pin = pin or self.pcfg.drawer_pin
        if pin not in (2, 5):
            return None
        return self.worker.submit(render_drawer_kick(pin), status_check=False)

    def close(self, timeout: float = 2.0) -> bool:
        return self.worker.stop(timeout)

    def __enter__(self) -> EscposPrinter:
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def printers_for(cfg: HardwareConfig) -> tuple[EscposPrinter, EscposPrinter]:
    """(receipt printer, label printer) for a terminal, one worker per device: labels share
    the receipt printer's worker when no separate label printer is configured."""
    receipt = EscposPrinter(cfg, cfg.printer)
    label = cfg.label_printer
    if label is None or label.url == cfg.printer.url:
        return receipt, receipt
    return receipt, EscposPrinter(cfg, label)
