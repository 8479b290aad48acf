"""The durable print queue with real printers behind it: a sale is never lost to a printer
fault, and every failed receipt can be reprinted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest

from hardware.backends import RecordingBackend
from hardware.config import HardwareConfig, PrinterConfig, ReceiptConfig
from hardware.escpos_parse import parse
from hardware.fake_printer import FakeNetworkPrinter
from hardware.printing import EscposPrinter
from pharmacy import print_queue
from pharmacy.compliance import InterimGate
from pharmacy.errors import BadInput, PharmosError
from pharmacy.phi import FileKeyProvider, PhiVault
from pharmacy.print_queue import PrintJob
from pharmacy.sales import Dispenser, sale_record
from pharmacy.store import Store

CFG = HardwareConfig(printer=PrinterConfig(drawer_pin=2, timeout=0.5),
                     receipt=ReceiptConfig(header=("Main Street Pharmacy",)))


def printer_at(url: str) -> EscposPrinter:
    return EscposPrinter(CFG, url=url)


def test_only_committed_sales_are_queued(stocked: Store, sale_id: str) -> None:
    with pytest.raises(BadInput) as info:
        print_queue.enqueue(stocked, "no-such-sale")
    assert info.value.code == "UNKNOWN_SALE"
    with pytest.raises(BadInput):
        print_queue.enqueue(stocked, sale_id, "poster")
    with pytest.raises(BadInput) as info:
        print_queue.enqueue(stocked, sale_id, "rx_label", line_no=9)
    assert info.value.code == "UNKNOWN_SALE_LINE"
    job = print_queue.enqueue(stocked, sale_id)
    assert (job.status, job.attempts, job.reprint, job.kind) == ("pending", 0, False, "receipt")
    assert print_queue.pending(stocked.conn) == [job]


def test_print_receipt_through_the_queue(stocked: Store, sale_id: str,
                                         fake_printer: FakeNetworkPrinter) -> None:
    job = print_queue.job_for_print(stocked, sale_id)
    with printer_at(fake_printer.url) as p:
        done = print_queue.print_now(stocked, p, job, timeout=5)
    assert (done.status, done.attempts, done.printer) == ("done", 1, fake_printer.url)
    assert done.printed_at and done.error_code is None
    assert print_queue.pending(stocked.conn) == []
    doc = fake_printer.document()
    assert doc.qr_codes == [sale_id] and doc.kicks == [2] and doc.cuts == ["full"]
    assert doc.line_with("TOTAL").text.endswith(sale_record(stocked.conn, sale_id)["total"])
    doc.line_with("Lot IB2606  Exp 2026-12-31 x5")
    doc.line_with("Lot IB2701  Exp 2027-01-31 x2")
    # printing again is a reprint: marked, and the drawer stays shut
    again = print_queue.job_for_print(stocked, sale_id)
    assert again.reprint and again.job_id != job.job_id
    with printer_at(fake_printer.url) as p:
        assert print_queue.print_now(stocked, p, again, timeout=5).status == "done"
    copy = fake_printer.document()
    assert copy.line_with("REPRINT").bold and copy.kicks == []


@pytest.mark.parametrize("fault,code", [
    ("paper", "PAPER_OUT"), ("silent", "PRINTER_TIMEOUT"), ("drop", "PRINTER_DISCONNECTED"),
    ("off", "PRINTER_OFFLINE"),
])
def test_printer_faults_keep_the_sale_and_queue_a_reprint(
        stocked: Store, sale_id: str, fake_printer: FakeNetworkPrinter, fault: str,
        code: str) -> None:
    url = fake_printer.url
    if fault == "paper":
        fake_printer.paper = "out"
    elif fault == "silent":
        fake_printer.silent = True
    elif fault == "drop":
        fake_printer.drop_after = 200  # disconnects mid-receipt
    else:
        fake_printer.stop()
    job = print_queue.job_for_print(stocked, sale_id)
    t0 = time.monotonic()
    with printer_at(url) as p:
        failed = print_queue.print_now(stocked, p, job, timeout=5)
    assert time.monotonic() - t0 < 3
    assert (failed.status, failed.error_code) == ("failed", code)
    assert failed.error_message and failed.error_message.endswith(
        "The sale is saved; its paper waits in the reprint queue")
    # the sale is committed regardless, and the job waits in the reprint queue
    assert sale_record(stocked.conn, sale_id)["sale_id"] == sale_id
    assert [j.job_id for j in print_queue.pending(stocked.conn)] == [job.job_id]
    if fault == "off":
        return
    fake_printer.paper, fake_printer.silent, fake_printer.drop_after = "ok", False, None
    with printer_at(url) as p:
        tried = print_queue.retry_pending(stocked, p, timeout=5)
    assert [(j.job_id, j.status, j.attempts) for j in tried] == [(job.job_id, "done", 2)]
    assert print_queue.pending(stocked.conn) == []
    last = fake_printer.document()
    assert last.qr_codes == [sale_id] and last.kicks == []  # a retry never re-opens the drawer


def test_open_job_is_reused_not_duplicated(stocked: Store, sale_id: str) -> None:
    a = print_queue.job_for_print(stocked, sale_id)
    b = print_queue.job_for_print(stocked, sale_id, reprint=True)
    assert a.job_id == b.job_id
    print_queue.cancel(stocked, a.job_id)
    c = print_queue.job_for_print(stocked, sale_id)
    assert c.job_id != a.job_id and not c.reprint
    assert len(print_queue.jobs_for_sale(stocked.conn, sale_id)) == 2


def test_hung_printer_never_blocks_beyond_the_timeout(stocked: Store, sale_id: str) -> None:
    rec = RecordingBackend(timeout=5.0)
    rec.hang = threading.Event()
    p = EscposPrinter(CFG, backend=rec)
    job = print_queue.job_for_print(stocked, sale_id)
    t0 = time.monotonic()
    out = print_queue.print_now(stocked, p, job, timeout=0.3)
    assert time.monotonic() - t0 < 2.0
    assert (out.status, out.error_code) == ("failed", "PRINTER_TIMEOUT")
    rec.hang.set()
    assert p.close(2.0)


def test_gui_style_dispatch_returns_at_once(stocked: Store, sale_id: str) -> None:
    rec = RecordingBackend()
    rec.hang = threading.Event()
    p = EscposPrinter(CFG, backend=rec)
    job = print_queue.job_for_print(stocked, sale_id)
    t0 = time.monotonic()
    fut = print_queue.dispatch(stocked, p, job)
    assert time.monotonic() - t0 < 1.0 and not fut.done()
    assert print_queue.get(stocked.conn, job.job_id).status == "printing"
    assert print_queue.pending(stocked.conn)[0].status == "printing"  # a crash leaves it listed
    rec.hang.set()
    fut.result(5)
    assert print_queue.record(stocked, job.job_id, fut).status == "done"
    assert parse(rec.output).qr_codes == [sale_id]
    p.close()


def test_printer_refusing_at_submit_is_recorded(stocked: Store, sale_id: str) -> None:
    class Refuses:
        url = "dummy://refuses"

        def submit(self, job: PrintJob, document: Any) -> Future[Any]:
            raise BadInput("bad printer", code="BAD_PRINTER_URL")

    job = print_queue.job_for_print(stocked, sale_id)
    out = print_queue.print_now(stocked, Refuses(), job, timeout=1)
    assert (out.status, out.error_code) == ("failed", "BAD_PRINTER_URL")

    class Crashes:
        url = "dummy://crashes"

        def submit(self, job: PrintJob, document: Any) -> Future[Any]:
            fut: Future[Any] = Future()
            fut.set_exception(OSError("boom"))
            return fut

    out = print_queue.print_now(stocked, Crashes(), job, timeout=1)
    assert (out.status, out.error_code) == ("failed", "PRINT_FAILED")


def test_rx_label_document_and_print(stocked: Store) -> None:
    r = Dispenser(stocked, InterimGate()).sell({
        "lines": [{"ndc": "0093-0058-01", "qty": 21}],
        "rx": {"rx_number": "RX700001", "directions": "Take 1 capsule three times a day",
               "refills_authorized": 2, "refill_number": 1,
               "prescriber": {"name": "Dr. Maria Alvarez", "dea": "BA1234563"}},
        "patient": {"id": "pt-1", "name": "Ana Nguyen", "address": "1 Oak St"},
        "user": {"id": "u-ph", "role": "pharmacist"}})
    vault = PhiVault(stocked.conn, FileKeyProvider(stocked.data_dir), stocked.clock)

    def name(pid: str) -> str | None:
        return str(vault.get(pid, "u-ph")["name"])

    job = print_queue.job_for_print(stocked, r.sale_id, "rx_label", line_no=1)
    doc = print_queue.document(stocked, job, patient_name=name)
    label = doc["label"]
    assert (label["rx_number"], label["patient"], label["refills_left"]) == (
        "RX700001", "Ana Nguyen", 1)
    assert label["lots"] == [{"lot": "AM1", "expiry": "2027-06-30", "qty": 21}]
    assert "Ana Nguyen" not in str(print_queue.document(stocked, job))  # no PHI unless asked
    rec = RecordingBackend()
    with EscposPrinter(CFG, backend=rec) as p:
        out = print_queue.print_now(stocked, p, job, timeout=5, patient_name=name)
    assert out.status == "done"
    printed = parse(rec.output)
    printed.line_with("Ana Nguyen")
    printed.line_with("Refills left: 1")
    assert printed.kicks == []  # labels never open the drawer
    audit = stocked.conn.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'phi.read'").fetchone()[0]
    assert audit >= 2  # each patient-name read is audited


def test_queue_errors_are_pharmos_errors(stocked: Store) -> None:
    with pytest.raises(PharmosError) as info:
        print_queue.get(stocked.conn, "nope")
    assert info.value.code == "UNKNOWN_PRINT_JOB"
    with pytest.raises(PharmosError):
        print_queue.mark_done(stocked, "nope")


def test_malformed_document_fails_its_job_only(stocked: Store, sale_id: str) -> None:
    class Broken(EscposPrinter):
        def render(self, document: Any) -> bytes:
            raise KeyError("sale")

    p = Broken(CFG, backend=RecordingBackend())
    job = print_queue.job_for_print(stocked, sale_id)
    out = print_queue.print_now(stocked, p, job, timeout=2)
    assert (out.status, out.error_code) == ("failed", "PRINT_FAILED")
    assert p.close()
