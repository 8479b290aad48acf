"""Printer connections: a small base class over python-escpos' backends, plus a recording fake.

Constructing a backend never touches the device (python-escpos issue #445); ``open()`` does,
and every failure becomes a :mod:`hardware.errors` error with a stable code. A backend is
owned by one thread (the print worker); it is not thread-safe.

Rendering is not done here: documents are rendered to bytes first (:mod:`hardware.render`),
so the exact bytes a printer receives are known, recorded and re-sendable.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from abc import ABC, abstractmethod
from typing import Any

from hardware.errors import (
    DeviceNotFound,
    HardwareError,
    PrinterDisconnected,
    PrinterOffline,
    PrinterTimeout,
)
from hardware.urls import PrinterUrl, parse_printer_url

DEFAULT_TIMEOUT = 5.0


class PrinterBackend(ABC):
    """One printer connection: open / write / query / close."""

    supports_status = False

    def __init__(self, url: PrinterUrl, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = url.timeout or timeout
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def where(self) -> str:
        return self.url.text

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    def query(self, request: bytes) -> bytes:
        """Send a real-time status request (DLE EOT n) and return the printer's reply."""
        raise HardwareError(f"{self.where} cannot report its status", code="NO_STATUS")

    def _require_open(self) -> None:
        if not self._open:
            raise HardwareError(f"{self.where} is not open", code="PRINTER_NOT_OPEN")


class EscposBackend(PrinterBackend):
    """Wraps one python-escpos printer object; subclasses say how to build it and how its
    errors read at the counter."""

    def __init__(self, url: PrinterUrl, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(url, timeout)
        self._dev: Any = None

    @abstractmethod
    def _make(self) -> Any:
        """Construct the python-escpos object (no IO)."""

    def _not_found(self, err: BaseException) -> HardwareError:
        return DeviceNotFound(f"no printer at {self.where}: {_reason(err)}. Check the cable and "
                              "the port in the terminal's hardware settings",
                              printer=self.where)

    def _io_error(self, err: BaseException) -> HardwareError:
        if isinstance(err, TimeoutError):
            return PrinterTimeout(f"the printer at {self.where} stopped taking data "
                                  f"(waited {self.timeout:g} s)", printer=self.where)
        return PrinterDisconnected(f"the connection to the printer at {self.where} dropped "
                                   f"({_reason(err)})", printer=self.where)

    def open(self) -> None:
        if self._open:
            return
        from escpos.exceptions import DeviceNotFoundError

        self._dev = self._make()
        try:
            self._dev.open(raise_not_found=True)
        except DeviceNotFoundError as e:
            self._dev = None
            raise self._not_found(e.__context__ or e) from None
        except (OSError, RuntimeError, ValueError) as e:
            self._dev = None
            raise self._not_found(e) from None
        self._after_open()
        self._open = True

    def _after_open(self) -> None:
        pass

    def close(self) -> None:
        dev, self._dev, self._open = self._dev, None, False
        if dev is not None:
            with contextlib.suppress(Exception):
                dev.close()

    def write(self, data: bytes) -> None:
        self._require_open()
        try:
            self._dev._raw(data)
        except (OSError, AssertionError) as e:
            self.close()
            raise self._io_error(e) from None

    def _read(self) -> bytes:
        data: bytes = self._dev._read()
        return data

    def query(self, request: bytes) -> bytes:
        self._require_open()
        try:
            self._dev._raw(request)
            reply = self._read()
        except (OSError, AssertionError) as e:
            self.close()
            if isinstance(e, TimeoutError):
                raise PrinterTimeout(
                    f"the printer at {self.where} does not answer status requests (waited "
                    f"{self.timeout:g} s): it may be hung or switched off",
                    printer=self.where) from None
            raise self._io_error(e) from None
        if not reply:
            raise self._empty_reply()
        return reply

    def _empty_reply(self) -> HardwareError:
        return PrinterTimeout(f"the printer at {self.where} does not answer status requests",
                              printer=self.where)


class NetworkBackend(EscposBackend):
    supports_status = True

    def _make(self) -> Any:
        from escpos.printer import Network

        return Network(host=self.url.host or "", port=self.url.port or 9100,
                       timeout=self.timeout)

    def open(self) -> None:
        """Connect ourselves: python-escpos 3.1's Network.open leaks its socket when the
        connection is refused. The connected socket is handed to the escpos object."""
        if self._open:
            return
        dev = self._make()
        try:
            sock = socket.create_connection((self.url.host or "", self.url.port or 9100),
                                            timeout=self.timeout)
        except OSError as e:
            raise self._not_found(e) from None
        dev.device = sock
        self._dev = dev
        self._open = True

    def _not_found(self, err: BaseException) -> HardwareError:
        if isinstance(err, TimeoutError):
            return PrinterTimeout(f"the printer at {self.where} does not answer (no connection "
                                  f"within {self.timeout:g} s); is it switched on and on the "
                                  "network?", printer=self.where)
        return PrinterOffline(f"no printer answers at {self.where} ({_reason(err)}); check it is "
                              "switched on and its network cable", printer=self.where)

    def _empty_reply(self) -> HardwareError:
        self.close()
        return PrinterDisconnected(f"the printer at {self.where} closed the connection",
                                   printer=self.where)


class SerialBackend(EscposBackend):
    supports_status = True

    def _make(self) -> Any:
        from escpos.printer import Serial

        return Serial(devfile=self.url.path or "", baudrate=self.url.baud,
                      timeout=self.timeout, xonxoff=self.url.flow == "xonxoff",
                      dsrdtr=self.url.flow == "dsrdtr")

    def _after_open(self) -> None:
        ser = self._dev.device
        if self.url.flow == "rtscts":
            ser.rtscts = True
        ser.write_timeout = self.timeout  # a printer holding flow control must not hang us

    def write(self, data: bytes) -> None:
        from serial import SerialException, SerialTimeoutException

        self._require_open()
        try:
            self._dev._raw(data)
            self._dev.device.flush()
        except SerialTimeoutException:
            self.close()
            raise PrinterTimeout(f"the printer on {self.where} stopped taking data (flow control "
                                 "held for too long): paper out or offline?",
                                 printer=self.where) from None
        except (SerialException, OSError) as e:
            self.close()
            raise PrinterDisconnected(f"the printer on {self.where} went away ({_reason(e)})",
                                      printer=self.where) from None

    def _read(self) -> bytes:
        from serial import SerialException

        try:
            return bytes(self._dev.device.read(1))
        except SerialException as e:
            raise OSError(str(e)) from None


class UsbBackend(EscposBackend):
    supports_status = True

    def _make(self) -> Any:
        from escpos.printer import Usb

        if not Usb.is_usable():  # checked first: without pyusb even close() raises
            raise DeviceNotFound("USB printing needs pyusb and libusb on this terminal "
                                 "(pip install 'python-escpos[usb]'); or connect the printer "
                                 "by serial or network", printer=self.where)
        return Usb(idVendor=self.url.vendor_id, idProduct=self.url.product_id,
                   timeout=int(self.timeout * 1000), in_ep=self.url.in_ep, out_ep=self.url.out_ep)

    def write(self, data: bytes) -> None:
        self._require_open()
        try:
            self._dev._raw(data)
        except Exception as e:  # usb.core.USBError / USBTimeoutError
            self.close()
            if "timeout" in type(e).__name__.lower() or "timed out" in str(e).lower():
                raise self._io_error(TimeoutError(str(e))) from None
            raise self._io_error(e) from None


class FileBackend(EscposBackend):
    """A device file such as /dev/usb/lp0 (no status channel), or a capture file."""

    def _make(self) -> Any:
        from escpos.printer import File

        return File(devfile=self.url.path or "", auto_flush=True)


class RecordingBackend(PrinterBackend):
    """A recording fake usable in place of any backend (python-escpos' Dummy, plus faults).

    ``output`` holds every byte written. Fault injection: ``fail_open`` (an error to raise
    on open), ``status`` replies per DLE EOT n (None: no reply → timeout), ``drop_after``
    (disconnect once that many bytes were written), ``hang`` (an Event the write waits for:
    a printer that never takes data)."""

    supports_status = True

    def __init__(self, url: PrinterUrl | None = None, timeout: float = DEFAULT_TIMEOUT, *,
                 status: dict[int, bytes | None] | None = None) -> None:
        super().__init__(url or parse_printer_url("dummy://recording"), timeout)
        from escpos.printer import Dummy

        self._dummy = Dummy()
        self.fail_open: HardwareError | None = None
        self.status: dict[int, bytes | None] = {1: b"\x12", 2: b"\x12", 4: b"\x12"}
        if status:
            self.status.update(status)
        self.drop_after: int | None = None
        self.hang: threading.Event | None = None
        self.opens = 0
        self.queries: list[bytes] = []

    @property
    def output(self) -> bytes:
        data: bytes = self._dummy.output
        return data

    def clear(self) -> None:
        self._dummy.clear()

    def open(self) -> None:
        if self.fail_open is not None:
            raise self.fail_open
        self.opens += 1
        self._open = True

    def close(self) -> None:
        self._open = False

    def write(self, data: bytes) -> None:
        self._require_open()
        if self.hang is not None and not self.hang.wait(self.timeout):
            raise PrinterTimeout(f"the printer at {self.where} stopped taking data",
                                 printer=self.where)
        if self.drop_after is not None:
            room = max(0, self.drop_after - len(self.output))
            if len(data) > room:
                self._dummy._raw(data[:room])
                self._open = False
                raise PrinterDisconnected(f"the connection to the printer at {self.where} "
                                          "dropped", printer=self.where)
        self._dummy._raw(data)

    def query(self, request: bytes) -> bytes:
        self._require_open()
        self.queries.append(request)
        reply = self.status.get(request[-1]) if request[:2] == b"\x10\x04" else None
        if reply is None:
            raise PrinterTimeout(f"the printer at {self.where} does not answer status requests",
                                 printer=self.where)
        return reply


def _reason(err: BaseException) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return "unknown host name"
    if isinstance(err, TimeoutError):
        return "timed out"
    strerror = getattr(err, "strerror", None)
    if isinstance(strerror, str) and strerror:
        return strerror
    lines = str(err).strip().splitlines()
    return lines[-1].strip() if lines else type(err).__name__


def backend_for(url: str | PrinterUrl, *, timeout: float = DEFAULT_TIMEOUT,
                fake: bool = False) -> PrinterBackend:
    """The backend for a printer URL; ``fake`` gives a recording fake for the same address.
    Nothing is opened."""
    u = url if isinstance(url, PrinterUrl) else parse_printer_url(url)
    if fake or u.scheme == "dummy":
        return RecordingBackend(u, timeout)
    if u.scheme == "tcp":
        return NetworkBackend(u, timeout)
    if u.scheme == "serial":
        return SerialBackend(u, timeout)
    if u.scheme == "usb":
        return UsbBackend(u, timeout)
    return FileBackend(u, timeout)
