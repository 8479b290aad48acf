"""Serial / USB-CDC scanners through a pty pair and pyserial's loop://: AIM identifiers,
framing, binary junk, truncated frames, unplug and reconnect."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
import serial

from hardware.scanner import ScannerEvent, SerialScanner
from hardware.scans import ScanEvent, ScannerStatus
from pharmacy.gs1 import GS
from tests.hardware.conftest import Pty, close_pty, open_pty

IBU_GTIN = "00309046728603"
DSCSA = f"01{IBU_GTIN}17271200" + f"10IB2701{GS}21SN000123"


def next_scan(q: queue.Queue[ScannerEvent], timeout: float = 3.0) -> ScanEvent:
    deadline = time.monotonic() + timeout
    while True:
        ev = q.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(ev, ScanEvent):
            return ev


def next_status(q: queue.Queue[ScannerEvent], timeout: float = 3.0) -> ScannerStatus:
    deadline = time.monotonic() + timeout
    while True:
        ev = q.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(ev, ScannerStatus):
            return ev


def started(port: str, **kw: object) -> SerialScanner:
    sc = SerialScanner(port, frame_timeout=0.5, reconnect_interval=0.05,  # type: ignore[arg-type]
                       **kw)
    sc.start()
    assert next_status(sc.events).connected
    return sc


def test_pty_scanner_with_aim_identifiers(pty_pair: Pty) -> None:
    sc = started(pty_pair.path)
    try:
        pty_pair.write(("]d2" + DSCSA + "\r\n").encode())
        pty_pair.write(f"]C101{IBU_GTIN}17270131\r".encode())
        pty_pair.write(b"]E05901234123457\n")
        pty_pair.write(f"]Q301{IBU_GTIN}10LOT9\r".encode())
        got = [next_scan(sc.events) for _ in range(4)]
    finally:
        assert sc.stop()
    assert all(e.ok for e in got), [e.error for e in got]
    assert [e.data.symbology for e in got if e.data] == [
        "gs1-datamatrix", "gs1-128", "ean-13", "gs1-qr"]
    first = got[0].data
    assert first is not None and (first.lot, first.serial) == ("IB2701", "SN000123")
    assert got[0].source == pty_pair.path


def test_scan_split_across_reads_and_binary_junk(pty_pair: Pty) -> None:
    sc = started(pty_pair.path)
    try:
        data = ("]d2" + DSCSA + "\r").encode()
        pty_pair.write(data[:7])
        time.sleep(0.05)
        pty_pair.write(data[7:])
        assert next_scan(sc.events).ok
        pty_pair.write(bytes(range(0, 256, 7)) + b"\xff\xfe\x00\r")  # line noise
        junk = [next_scan(sc.events)]
        while True:  # the noise may hold a CR or LF of its own: every frame is an error
            try:
                junk.append(next_scan(sc.events, timeout=0.4))
            except queue.Empty:
                break
        assert junk and all(e.error is not None for e in junk)
        assert {e.error.code for e in junk if e.error} <= {"SCAN_GARBLED", "SCAN_UNREADABLE",
                                                          "SCAN_EMPTY", "SCAN_TRUNCATED"}
        pty_pair.write(f"]C101{IBU_GTIN}\r".encode())  # the reader survived
        assert next_scan(sc.events).ok
    finally:
        assert sc.stop()


def test_truncated_frame_and_bad_scans(pty_pair: Pty) -> None:
    sc = started(pty_pair.path)
    try:
        pty_pair.write(b"]d201003090467")  # no terminator: the scan stopped
        ev = next_scan(sc.events)
        assert ev.error is not None and ev.error.code == "SCAN_TRUNCATED"
        pty_pair.write(f"]d201{IBU_GTIN[:-1]}9\r".encode())
        assert next_scan(sc.events).error.code == "GTIN_CHECK_DIGIT"  # type: ignore[union-attr]
        pty_pair.write(("]d2" + DSCSA.replace(GS, "") + "\r").encode())
        assert next_scan(sc.events).error.code == "SCAN_MISSING_GS"  # type: ignore[union-attr]
        pty_pair.write(b"]d2" + b"1" * 1500)  # endless data without a terminator
        assert next_scan(sc.events).error.code == "SCAN_TOO_LONG"  # type: ignore[union-attr]
    finally:
        assert sc.stop()


def test_gs_substitute_on_serial(pty_pair: Pty) -> None:
    sc = started(pty_pair.path, gs_substitute="~")
    try:
        pty_pair.write((DSCSA.replace(GS, "~") + "\r").encode())
        ev = next_scan(sc.events)
    finally:
        assert sc.stop()
    assert ev.data is not None and ev.data.serial == "SN000123"


def test_unplug_and_reconnect(tmp_path: Path) -> None:
    first = open_pty()
    link = tmp_path / "ttyACM0"
    link.symlink_to(first.path)
    sc = started(str(link))
    second: Pty | None = None
    try:
        first.write(f"]C101{IBU_GTIN}\r".encode())
        assert next_scan(sc.events).ok
        close_pty(first)  # unplugged
        down = next_status(sc.events)
        assert not down.connected and "disconnected" in down.message
        assert not sc.connected
        time.sleep(0.2)  # still unplugged: the reader keeps retrying quietly
        second = open_pty()  # plugged back in, the device node reappears
        link.unlink()
        link.symlink_to(second.path)
        assert next_status(sc.events).connected
        time.sleep(0.05)
        second.write(f"]C101{IBU_GTIN}\r".encode())
        assert next_scan(sc.events).ok
    finally:
        assert sc.stop()
        if second is not None:
            close_pty(second)
    assert sc.events.empty() or all(not isinstance(e, ScanEvent) for e in list(sc.events.queue))


def test_missing_port_reports_and_keeps_trying(tmp_path: Path) -> None:
    sc = SerialScanner(str(tmp_path / "nothing"), reconnect_interval=0.05)
    sc.start()
    try:
        st = next_status(sc.events)
        assert not st.connected and "not available" in st.message
        with pytest.raises(queue.Empty):  # announced once, not once per retry
            next_status(sc.events, timeout=0.3)
    finally:
        assert sc.stop()


def test_loop_url_and_callback() -> None:
    port = serial.serial_for_url("loop://", timeout=0.05, do_not_open=True)
    port.open()
    got: queue.Queue[ScannerEvent] = queue.Queue()
    sc = SerialScanner("loop://", on_event=got.put, opener=lambda: port, frame_timeout=0.15)
    sc.start()
    try:
        assert next_status(got).connected
        port.write(("]d2" + DSCSA + "\r").encode())
        port.write(b"\x00\x01\x02\x03garbage\r")
        ok, bad = next_scan(got), next_scan(got)
    finally:
        assert sc.stop()
    assert ok.data is not None and ok.data.lot == "IB2701"
    assert bad.error is not None and bad.error.code == "SCAN_GARBLED"
    assert not port.is_open  # the reader closed the port it owned


def test_a_failing_callback_does_not_kill_the_reader(pty_pair: Pty) -> None:
    seen: list[ScannerEvent] = []

    def handler(ev: ScannerEvent) -> None:
        seen.append(ev)
        raise RuntimeError("consumer bug")

    sc = SerialScanner(pty_pair.path, on_event=handler)
    sc.start()
    try:
        deadline = time.monotonic() + 3
        while not sc.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        pty_pair.write(f"]C101{IBU_GTIN}\r".encode())
        pty_pair.write(f"]C101{IBU_GTIN}\r".encode())
        while sc.scans < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert sc.stop()
    assert sc.scans == 2


def test_no_terminator_scanner_frames_on_pause(pty_pair: Pty) -> None:
    sc = started(pty_pair.path, terminators=())
    try:
        pty_pair.write(f"]C101{IBU_GTIN}".encode())
        ev = next_scan(sc.events)
    finally:
        assert sc.stop()
    assert ev.ok and ev.data is not None and ev.data.gtin == IBU_GTIN
    assert os.path.exists(pty_pair.path)


def test_scanners_from_config(pty_pair: Pty) -> None:
    from hardware.config import config_from_json
    from hardware.scanner import serial_scanners

    cfg = config_from_json({"scanners": [
        {"kind": "wedge"},
        {"kind": "serial", "port": pty_pair.path, "baud": 115200, "suffix": "\t",
         "gs_substitute": "~"}]})
    [sc] = serial_scanners(cfg)
    assert (sc.port, sc.baud, sc.terminators, sc.gs_substitute) == (
        pty_pair.path, 115200, (b"\t",), "~")
    sc.start()
    try:
        assert next_status(sc.events).connected
        pty_pair.write((DSCSA.replace(GS, "~") + "\t").encode())
        ev = next_scan(sc.events)
    finally:
        assert sc.stop()
    assert ev.data is not None and ev.data.serial == "SN000123"
