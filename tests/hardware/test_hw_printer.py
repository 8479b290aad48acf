"""Printers: a TCP server on 127.0.0.1 that speaks like a 9100 printer, a serial printer on a
pty, a file device; status checks, faults and the worker thread that owns each device."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hardware.backends import (
    FileBackend,
    NetworkBackend,
    RecordingBackend,
    SerialBackend,
    UsbBackend,
    backend_for,
)
from hardware.errors import (
    BadDeviceUrl,
    DeviceNotFound,
    HardwareError,
    PaperOut,
    PrinterDisconnected,
    PrinterOffline,
    PrinterTimeout,
)
from hardware.escpos_parse import parse
from hardware.fake_printer import FakeNetworkPrinter
from hardware.printing import PrintWorker, read_status
from hardware.render import Layout, render_receipt
from hardware.urls import parse_printer_url
from tests.hardware.conftest import Pty
from tests.hardware.test_hw_render import SALE, SALE_ID

RECEIPT = render_receipt(SALE, Layout(width=80, columns=42, drawer_pin=2), kick=True)


def fail(fut: object, timeout: float = 5.0) -> HardwareError:
    from concurrent.futures import Future

    assert isinstance(fut, Future)
    err = fut.exception(timeout)
    assert isinstance(err, HardwareError), err
    return err


# ---- printer URLs ---------------------------------------------------------------------------
def test_printer_urls() -> None:
    u = parse_printer_url("tcp://127.0.0.1")
    assert (u.scheme, u.host, u.port) == ("tcp", "127.0.0.1", 9100)
    u = parse_printer_url("tcp://printer.local:9101?timeout=2.5")
    assert (u.host, u.port, u.timeout) == ("printer.local", 9101, 2.5)
    u = parse_printer_url("serial:///dev/ttyUSB0?baud=19200&flow=none")
    assert (u.path, u.baud, u.flow) == ("/dev/ttyUSB0", 19200, "none")
    assert parse_printer_url("serial://COM3").path == "COM3"
    u = parse_printer_url("usb://04b8:0202")
    assert (u.vendor_id, u.product_id, u.in_ep, u.out_ep) == (0x04B8, 0x0202, 0x82, 0x01)
    assert parse_printer_url("file:///dev/usb/lp0").path == "/dev/usb/lp0"
    assert parse_printer_url("dummy://x").scheme == "dummy"
    for bad in ("10.0.0.5:9100", "lpt://x", "tcp://", "tcp://h:99999", "usb://04b8",
                "usb://zz:01", "serial:///dev/ttyS0?baud=12345", "serial:///dev/x?flow=magic",
                "file://", "tcp://h?color=red", "tcp://h?timeout=0"):
        with pytest.raises(BadDeviceUrl) as info:
            parse_printer_url(bad)
        assert info.value.code == "BAD_PRINTER_URL" and "tcp://" in info.value.message


def test_backends_are_built_without_touching_the_device(tmp_path: Path) -> None:
    assert isinstance(backend_for("tcp://192.0.2.1:9100"), NetworkBackend)
    assert isinstance(backend_for("serial:///dev/does-not-exist"), SerialBackend)
    assert isinstance(backend_for("usb://04b8:0202"), UsbBackend)
    f = backend_for(f"file://{tmp_path}/nope/lp0")
    assert isinstance(f, FileBackend) and not f.is_open
    assert not (tmp_path / "nope").exists()
    assert isinstance(backend_for("tcp://192.0.2.1", fake=True), RecordingBackend)


# ---- the fake 9100 printer ------------------------------------------------------------------
def test_receipt_over_tcp_with_status_checks(fake_printer: FakeNetworkPrinter) -> None:
    with PrintWorker(backend_for(fake_printer.url, timeout=1.0)) as w:
        outcome = w.submit(RECEIPT).result(5)
    assert outcome.bytes_sent == len(RECEIPT) and not outcome.paper_low
    assert outcome.status is not None and outcome.status.online
    # the server got the status requests, then exactly the rendered bytes, then more requests
    assert fake_printer.status_requests == [1, 4, 1, 4]
    assert fake_printer.received == b"\x10\x04\x01\x10\x04\x04" + RECEIPT + (
        b"\x10\x04\x01\x10\x04\x04")
    doc = fake_printer.document()
    assert doc.qr_codes == [SALE_ID] and doc.kicks == [2] and doc.cuts == ["full"]
    assert doc.line_with("TOTAL").text.endswith("56.76")
    assert doc.status_queries == [1, 4, 1, 4]
    assert fake_printer.wait_closed()  # one connection per job: the printer is free again


def test_paper_low_is_reported_not_refused(fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.paper = "low"
    with PrintWorker(backend_for(fake_printer.url, timeout=1.0)) as w:
        outcome = w.submit(RECEIPT).result(5)
    assert outcome.paper_low and outcome.to_json()["status"]["paper"] == "low"


@pytest.mark.parametrize("setup,error,code", [
    ({"paper": "out"}, PaperOut, "PAPER_OUT"),
    ({"online": False}, PrinterOffline, "PRINTER_OFFLINE"),
    ({"cover_open": True}, PrinterOffline, "COVER_OPEN"),
])
def test_status_faults_refuse_before_printing(fake_printer: FakeNetworkPrinter,
                                              setup: dict[str, object], error: type,
                                              code: str) -> None:
    for k, v in setup.items():
        setattr(fake_printer, k, v)
    with PrintWorker(backend_for(fake_printer.url, timeout=1.0)) as w:
        err = fail(w.submit(RECEIPT))
    assert isinstance(err, error) and err.code == code
    assert "printer at" in err.message
    assert RECEIPT not in fake_printer.received  # nothing was printed into a fault


def test_printer_that_never_answers(fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.silent = True
    w = PrintWorker(backend_for(fake_printer.url, timeout=0.3))
    t0 = time.monotonic()
    fut = w.submit(RECEIPT)
    assert time.monotonic() - t0 < 0.2  # the caller is never blocked
    err = fail(fut)
    assert isinstance(err, PrinterTimeout) and err.code == "PRINTER_TIMEOUT"
    assert time.monotonic() - t0 < 2
    fake_printer.silent = False  # it recovers: the same worker prints the next job
    assert w.submit(RECEIPT).result(5).bytes_sent == len(RECEIPT)
    assert w.stop()


def test_printer_that_disconnects_mid_receipt(fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.drop_after = 120
    with PrintWorker(backend_for(fake_printer.url, timeout=1.0)) as w:
        err = fail(w.submit(RECEIPT))
        assert isinstance(err, PrinterDisconnected) and err.code == "PRINTER_DISCONNECTED"
        assert len(fake_printer.connections[0]) == 120  # it really got part of the receipt
        fake_printer.drop_after = None
        assert w.submit(RECEIPT).result(5)  # reconnects for the reprint
    assert fake_printer.document(1).qr_codes == [SALE_ID]


def test_printer_switched_off(fake_printer: FakeNetworkPrinter) -> None:
    url = fake_printer.url
    fake_printer.stop()
    with PrintWorker(backend_for(url, timeout=0.5)) as w:
        err = fail(w.submit(RECEIPT))
    assert isinstance(err, PrinterOffline) and err.code == "PRINTER_OFFLINE"
    assert "connection refused" in err.message


def test_printer_refusing_connections(fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.refuse = True
    with PrintWorker(backend_for(fake_printer.url, timeout=0.5)) as w:
        err = fail(w.submit(RECEIPT))
    assert err.code in ("PRINTER_DISCONNECTED", "PRINTER_TIMEOUT", "PRINTER_OFFLINE"), err.message
    assert fake_printer.url in err.message


def test_status_checks_can_be_skipped(fake_printer: FakeNetworkPrinter) -> None:
    fake_printer.silent = True  # an old printer that does not implement DLE EOT
    with PrintWorker(backend_for(fake_printer.url, timeout=0.5), status_check=False) as w:
        assert w.submit(RECEIPT).result(5).status is None
    assert fake_printer.wait_for(len(RECEIPT))
    assert fake_printer.received == RECEIPT


# ---- the worker thread ----------------------------------------------------------------------
def test_hung_printer_holds_only_its_own_thread() -> None:
    rec = RecordingBackend(timeout=5.0)
    rec.hang = threading.Event()
    w = PrintWorker(rec, stall_after=0.2)
    first = w.submit(RECEIPT)
    time.sleep(0.3)
    t0 = time.monotonic()
    second = w.submit(RECEIPT)  # fails fast while the printer is stuck
    err = fail(second, 1.0)
    assert time.monotonic() - t0 < 0.5
    assert isinstance(err, PrinterTimeout) and "stuck" in err.message
    assert not first.done()
    rec.hang.set()
    assert first.result(5).bytes_sent == len(RECEIPT)
    assert w.stop()
    assert rec.output == RECEIPT and not rec.is_open


def test_recording_backend_faults() -> None:
    rec = RecordingBackend(status={4: b"\x7e"})  # paper end
    with PrintWorker(rec) as w:
        assert fail(w.submit(RECEIPT)).code == "PAPER_OUT"
        rec.status[4] = b"\x12"
        rec.drop_after = 50
        assert fail(w.submit(RECEIPT)).code == "PRINTER_DISCONNECTED"
        rec.drop_after = None
        rec.status[1] = None  # no answer
        assert fail(w.submit(RECEIPT)).code == "PRINTER_TIMEOUT"
        rec.status[1] = b"\xff"  # nonsense
        assert fail(w.submit(RECEIPT)).code == "PRINTER_BAD_STATUS"
        rec.status[1] = b"\x12"
        rec.fail_open = DeviceNotFound("unplugged")
        assert fail(w.submit(RECEIPT)).code == "DEVICE_NOT_FOUND"
        rec.fail_open = None
        rec.clear()
        assert w.submit(RECEIPT).result(2)
    assert rec.output == RECEIPT


def test_a_driver_bug_fails_the_job_not_the_thread() -> None:
    class Broken(RecordingBackend):
        def write(self, data: bytes) -> None:
            raise ZeroDivisionError("bug")

    with PrintWorker(Broken()) as w:
        err = fail(w.submit(RECEIPT))
        assert err.code == "PRINT_FAILED"
        assert fail(w.submit(RECEIPT)).code == "PRINT_FAILED"  # still serving


# ---- serial, file and USB backends ----------------------------------------------------------
def test_serial_printer_on_a_pty(pty_pair: Pty) -> None:
    """A serial printer: the test plays the printer on the master side, answering status."""
    got = bytearray()
    stop = threading.Event()

    def printer() -> None:
        import os
        import select

        while not stop.is_set():
            r, _, _ = select.select([pty_pair.master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(pty_pair.master, 4096)
            except OSError:
                return
            got.extend(chunk)
            for n in (1, 4):
                if chunk.endswith(b"\x10\x04" + bytes([n])):
                    os.write(pty_pair.master, b"\x12")

    t = threading.Thread(target=printer, daemon=True)
    t.start()
    try:
        backend = backend_for(f"serial://{pty_pair.path}?flow=none&baud=19200", timeout=1.0)
        with PrintWorker(backend) as w:
            outcome = w.submit(RECEIPT).result(5)
        deadline = time.monotonic() + 2
        while len(got) < len(RECEIPT) + 12 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(2)
    assert outcome.status is not None and outcome.status.paper == "ok"
    assert bytes(got) == b"\x10\x04\x01\x10\x04\x04" + RECEIPT + b"\x10\x04\x01\x10\x04\x04"


def test_serial_printer_that_never_answers(pty_pair: Pty) -> None:
    backend = backend_for(f"serial://{pty_pair.path}?flow=none", timeout=0.3)
    with PrintWorker(backend) as w:
        err = fail(w.submit(RECEIPT))
    assert err.code == "PRINTER_TIMEOUT"


def test_missing_serial_port_and_usb_without_driver(tmp_path: Path) -> None:
    with PrintWorker(backend_for(f"serial://{tmp_path}/ttyUSB9", timeout=0.3)) as w:
        err = fail(w.submit(RECEIPT))
    assert isinstance(err, DeviceNotFound) and "ttyUSB9" in err.message
    with PrintWorker(backend_for("usb://04b8:0202", timeout=0.3)) as w:
        err = fail(w.submit(RECEIPT))
    assert err.code == "DEVICE_NOT_FOUND"


def test_file_device(tmp_path: Path) -> None:
    out = tmp_path / "lp0"
    b = backend_for(f"file://{out}")
    assert not b.supports_status
    with PrintWorker(b) as w:
        outcome = w.submit(RECEIPT).result(5)
    assert outcome.status is None and out.read_bytes() == RECEIPT
    with PrintWorker(backend_for(f"file://{tmp_path}/no/such/dir/lp0")) as w:
        assert fail(w.submit(RECEIPT)).code == "DEVICE_NOT_FOUND"
    assert parse(out.read_bytes()).qr_codes == [SALE_ID]


def test_read_status_directly(fake_printer: FakeNetworkPrinter) -> None:
    b = backend_for(fake_printer.url, timeout=1.0)
    b.open()
    try:
        fake_printer.paper = "out"
        st = read_status(b)
        assert (st.online, st.paper) == (False, "out")
        fake_printer.paper, fake_printer.cover_open = "ok", True
        st = read_status(b)
        assert st.cover_open and not st.online
    finally:
        b.close()


def test_printers_for_a_terminal(fake_printer: FakeNetworkPrinter) -> None:
    from hardware.config import config_from_json
    from hardware.printing import printers_for

    cfg = config_from_json({"printer": {"url": fake_printer.url}})
    receipt, label = printers_for(cfg)
    assert receipt is label  # one worker owns the one device
    cfg = config_from_json({"printer": {"url": fake_printer.url},
                            "label_printer": {"url": "dummy://labels", "width": 58}})
    receipt, label = printers_for(cfg)
    assert receipt is not label and label.url == "dummy://labels"
    for p in (receipt, label):
        assert p.close()


def test_open_drawer_without_a_receipt(fake_printer: FakeNetworkPrinter) -> None:
    from hardware.config import HardwareConfig, PrinterConfig
    from hardware.printing import EscposPrinter

    fake_printer.paper = "out"  # a drawer pulse still works on a printer out of paper
    with EscposPrinter(HardwareConfig(printer=PrinterConfig(url=fake_printer.url,
                                                            drawer_pin=5))) as p:
        fut = p.open_drawer()
        assert fut is not None and fut.result(5).bytes_sent == 5
        fut = p.open_drawer(2)
        assert fut is not None and fut.result(5)
    # the sender is done; give the fake's reader thread time to take in the second pulse
    assert fake_printer.wait_for(5, connections=2)
    assert [parse(bytes(c)).kicks for c in fake_printer.connections] == [[5], [2]]
    with EscposPrinter(HardwareConfig(printer=PrinterConfig(url="dummy://x"))) as p:
        assert p.open_drawer() is None  # no drawer configured


def test_submit_after_stop_fails_at_once() -> None:
    w = PrintWorker(RecordingBackend()).start()
    assert w.stop()
    assert fail(w.submit(RECEIPT), 0.5).code == "PRINTER_CLOSED"


@pytest.mark.parametrize("url", ["tcp://printer:0", "tcp://" + "h" * 300 + ":9100",
                                 "tcp://10.0.0.5:9100\x00", "file:///dev/usb/\nlp0",
                                 "usb://04b8:0202?in_ep=0x01", "usb://04b8:0202?out_ep=0x81",
                                 "usb://04b8:0202?in_ep=0x90"])
def test_printer_urls_that_could_never_print(url: str) -> None:
    from hardware.errors import BadDeviceUrl

    with pytest.raises(BadDeviceUrl) as e:
        parse_printer_url(url)
    assert e.value.code == "BAD_PRINTER_URL" and len(e.value.message) < 400


def test_scanner_port_names() -> None:
    from hardware.config import scanner_from_json
    from hardware.errors import BadHardwareConfig

    assert scanner_from_json({"kind": "serial", "port": "/dev/ttyACM0"}).port == "/dev/ttyACM0"
    for port in ("/dev/ttyACM0\x00", " ", "x" * 201):
        with pytest.raises(BadHardwareConfig):
            scanner_from_json({"kind": "serial", "port": port})
