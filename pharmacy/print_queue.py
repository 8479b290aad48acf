"""Durable print jobs: a receipt never depends on a printer being up.

A job is written after its sale committed (its own small transaction) and stays open until
a printer has taken every byte. The printer itself is a port (:class:`Printer`): hardware
renders and sends the document on its own thread and completes a Future; the caller records
the outcome here, on the thread that owns the store. Failed and unfinished jobs are listed
by :func:`pending` and printed again by :func:`retry_pending` or a reprint.

No device IO here, no rendering: documents are plain dicts built from committed rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from pharmacy.checkout import tenders_for
from pharmacy.clock import iso
from pharmacy.errors import BadInput, NotFound, PharmosError
from pharmacy.ids import new_id
from pharmacy.refunds import refund_record
from pharmacy.sales import sale_record
from pharmacy.store import Store

KINDS = ("receipt", "rx_label", "refund")
OPEN_STATUSES = ("pending", "printing", "failed")


@dataclass(frozen=True)
class PrintJob:
    job_id: str
    sale_id: str
    kind: str
    line_no: int | None
    reprint: bool
    status: str
    attempts: int
    printer: str | None
    error_code: str | None
    error_message: str | None
    created_at: str
    updated_at: str
    printed_at: str | None
    refund_id: str | None = None  # a refund slip: the refund it prints

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PrintJob:
        return cls(
            job_id=row["job_id"], sale_id=row["sale_id"], kind=row["kind"],
            line_no=row["line_no"], reprint=bool(row["reprint"]), status=row["status"],
            attempts=row["attempts"], printer=row["printer"], error_code=row["error_code"],
            error_message=row["error_message"], created_at=row["created_at"],
            updated_at=row["updated_at"], printed_at=row["printed_at"],
            refund_id=row["refund_id"],
        )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Printer(Protocol):
    """The printing port. ``submit`` must return at once; the Future completes (on any
    thread) with None when the printer took the document, or with a PharmosError whose code
    says why not (PRINTER_OFFLINE, PAPER_OUT, PRINTER_TIMEOUT, ...)."""

    @property
    def url(self) -> str: ...

    def submit(self, job: PrintJob, document: Mapping[str, Any]) -> Future[Any]: ...


PatientName = Callable[[str], str | None]  # patient_id -> name (through the PHI vault)


# ---- queue rows -----------------------------------------------------------------------------
def enqueue(store: Store, sale_id: str, kind: str = "receipt", *, line_no: int | None = None,
            reprint: bool = False, refund_id: str | None = None) -> PrintJob:
    """Queue a document for a committed sale (a refund slip: for one of its committed
    refunds). Raises UNKNOWN_SALE for a sale that is not committed (a receipt is never
    printed for a sale that might roll back)."""
    if kind not in KINDS:
        raise BadInput(f"print job kind {kind!r} is not one of {', '.join(KINDS)}",
                       code="BAD_PRINT_KIND")
    conn = store.conn
    if conn.execute("SELECT 1 FROM sales WHERE sale_id = ?", (sale_id,)).fetchone() is None:
        raise BadInput(f"no committed sale {sale_id}", code="UNKNOWN_SALE")
    if kind == "rx_label":
        if line_no is None:
            raise BadInput("an Rx label needs the sale line number", code="BAD_PRINT_KIND")
        if isinstance(line_no, bool) or not isinstance(line_no, int) or not 1 <= line_no <= 200:
            raise BadInput(f"sale {sale_id} has no line {line_no}", code="UNKNOWN_SALE_LINE")
        if conn.execute("SELECT 1 FROM sale_lines WHERE sale_id = ? AND line_no = ?",
                        (sale_id, line_no)).fetchone() is None:
            raise BadInput(f"sale {sale_id} has no line {line_no}", code="UNKNOWN_SALE_LINE")
    if (kind == "refund") != (refund_id is not None) or (
            refund_id is not None and conn.execute(
                "SELECT 1 FROM refunds WHERE refund_id = ? AND sale_id = ?",
                (refund_id, sale_id)).fetchone() is None):
        raise BadInput(f"sale {sale_id} has no refund {refund_id}", code="UNKNOWN_REFUND")
    job_id = new_id()
    now = iso(store.clock())
    with store.transaction() as c:
        c.execute(
            "INSERT INTO print_jobs(job_id, sale_id, kind, line_no, refund_id, reprint, status, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (job_id, sale_id, kind, line_no, refund_id, int(reprint), now, now))
    return get(conn, job_id)


def get(conn: sqlite3.Connection, job_id: str) -> PrintJob:
    row = conn.execute("SELECT * FROM print_jobs WHERE job_id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"no print job {job_id}", code="UNKNOWN_PRINT_JOB")
    return PrintJob.from_row(row)


_NOT_PRINTED = "status IN ('pending','printing','failed')"


def pending(conn: sqlite3.Connection, limit: int = 200) -> list[PrintJob]:
    """Jobs not yet printed (queued, interrupted, or failed), oldest first."""
    rows = conn.execute(
        f"SELECT * FROM print_jobs WHERE {_NOT_PRINTED} "
        "ORDER BY created_at, rowid LIMIT ?", (limit,)).fetchall()
    return [PrintJob.from_row(r) for r in rows]


def pending_count(conn: sqlite3.Connection) -> int:
    """How many jobs are waiting to be printed or reprinted."""
    return int(conn.execute(f"SELECT COUNT(*) FROM print_jobs WHERE {_NOT_PRINTED}")
               .fetchone()[0])


def jobs_for_sale(conn: sqlite3.Connection, sale_id: str) -> list[PrintJob]:
    rows = conn.execute("SELECT * FROM print_jobs WHERE sale_id = ? ORDER BY created_at, rowid",
                        (sale_id,)).fetchall()
    return [PrintJob.from_row(r) for r in rows]


def job_for_print(store: Store, sale_id: str, kind: str = "receipt", *,
                  line_no: int | None = None, reprint: bool = False,
                  refund_id: str | None = None) -> PrintJob:
    """The job to print now: an open one for the same document (no duplicate queue entries),
    else a new one, a reprint when the document was printed before or ``reprint`` is asked."""
    jobs = [j for j in jobs_for_sale(store.conn, sale_id)
            if j.kind == kind and j.line_no == line_no and j.refund_id == refund_id]
    for j in jobs:
        if j.is_open:
            return j
    printed = any(j.status == "done" for j in jobs)
    return enqueue(store, sale_id, kind, line_no=line_no, reprint=reprint or printed,
                   refund_id=refund_id)


def _update(store: Store, job_id: str, sql: str, params: tuple[Any, ...]) -> PrintJob:
    with store.transaction() as c:
        cur = c.execute(sql + " WHERE job_id = ?", (*params, job_id))
        if cur.rowcount == 0:
            raise NotFound(f"no print job {job_id}", code="UNKNOWN_PRINT_JOB")
    return get(store.conn, job_id)


def start(store: Store, job_id: str, printer_url: str) -> PrintJob:
    now = iso(store.clock())
    return _update(store, job_id, "UPDATE print_jobs SET status = 'printing', attempts = "
                   "attempts + 1, printer = ?, updated_at = ?", (printer_url, now))


def mark_done(store: Store, job_id: str) -> PrintJob:
    now = iso(store.clock())
    return _update(store, job_id, "UPDATE print_jobs SET status = 'done', error_code = NULL, "
                   "error_message = NULL, updated_at = ?, printed_at = ?", (now, now))


def mark_failed(store: Store, job_id: str, code: str, message: str) -> PrintJob:
    now = iso(store.clock())
    return _update(store, job_id, "UPDATE print_jobs SET status = 'failed', error_code = ?, "
                   "error_message = ?, updated_at = ?", (code, message, now))


def cancel(store: Store, job_id: str) -> PrintJob:
    now = iso(store.clock())
    return _update(store, job_id, "UPDATE print_jobs SET status = 'cancelled', updated_at = ?",
                   (now,))


# ---- documents ------------------------------------------------------------------------------
def document(store: Store, job: PrintJob, *,
             patient_name: PatientName | None = None) -> dict[str, Any]:
    """What the printer gets: the committed sale (and, for a label, the Rx facts), plus the
    job (reprint flag, attempt number). No PHI unless ``patient_name`` is given."""
    conn = store.conn
    sale = sale_record(conn, job.sale_id)
    doc: dict[str, Any] = {"job": job.to_json(), "store_id": store.store_id, "sale": sale}
    if job.kind in ("receipt", "refund"):  # from the counter, a reprint or the CLI
        tenders = tenders_for(conn, job.sale_id)
        if tenders:
            doc["tenders"] = tenders
        header = pharmacy_header(store)
        if header:
            doc["pharmacy"] = header
    if job.kind == "rx_label":
        doc["label"] = _label_facts(conn, job, sale, patient_name)
    if job.kind == "refund" and job.refund_id is not None:
        doc["refund"] = refund_record(conn, job.refund_id)
    return doc


def pharmacy_header(store: Store) -> dict[str, str] | None:
    """The pharmacy's own name and address for the top of its paper, when set."""
    name = store.get_setting("pharmacy.name")
    if not name:
        return None
    return {"name": name, "address": store.get_setting("pharmacy.address") or ""}


def day_report_document(store: Store, report: Mapping[str, Any]) -> tuple[PrintJob, dict[str, Any]]:
    """The day report as a document for the receipt printer, with the job it prints as. Not
    queued: a report is printed again by asking for it again."""
    now = iso(store.clock())
    job = PrintJob(job_id=new_id(), sale_id="", kind="day_report", line_no=None,
                   reprint=False, status="printing", attempts=1, printer=None,
                   error_code=None, error_message=None, created_at=now, updated_at=now,
                   printed_at=None)
    doc: dict[str, Any] = {"job": job.to_json(), "store_id": store.store_id,
                           "report": dict(report)}
    header = pharmacy_header(store)
    if header:
        doc["pharmacy"] = header
    return job, doc


def _label_facts(conn: sqlite3.Connection, job: PrintJob, sale: Mapping[str, Any],
                 patient_name: PatientName | None) -> dict[str, Any]:
    row = conn.execute("SELECT rx, patient_id FROM sales WHERE sale_id = ?",
                       (job.sale_id,)).fetchone()
    rx: dict[str, Any] = json.loads(row["rx"]) if row["rx"] else {}
    line = conn.execute(
        "SELECT l.qty, p.* FROM sale_lines l JOIN products p ON p.ndc = l.ndc "
        "WHERE l.sale_id = ? AND l.line_no = ?", (job.sale_id, job.line_no)).fetchone()
    if line is None:
        raise BadInput(f"sale {job.sale_id} has no line {job.line_no}", code="UNKNOWN_SALE_LINE")
    lots = conn.execute("SELECT lot, expiry, qty FROM allocations WHERE sale_id = ? AND "
                        "line_no = ? ORDER BY expiry", (job.sale_id, job.line_no)).fetchall()
    attrs: dict[str, Any] = json.loads(line["attrs"] or "{}")
    authorized, filled = rx.get("refills_authorized"), rx.get("refill_number")
    refills_left = (max(0, authorized - int(filled or 0))
                    if isinstance(authorized, int) else None)
    prescriber = rx.get("prescriber") or {}
    name = None
    if patient_name is not None and row["patient_id"]:
        name = patient_name(row["patient_id"])
    return {
        "rx_number": rx.get("rx_number"), "date": str(sale["created_at"])[:10],
        "patient": name, "drug": line["name"], "strength": line["strength"],
        "ndc": line["ndc"], "directions": rx.get("directions"), "quantity": line["qty"],
        "unit": line["unit"], "refills_left": refills_left,
        "prescriber": prescriber.get("name") if isinstance(prescriber, dict) else prescriber,
        "dea_schedule": line["dea_schedule"], "india_schedule": line["india_schedule"],
        "ndps": bool(attrs.get("ndps")),
        "aux_warnings": [str(w) for w in attrs.get("aux_warnings", [])],
        "manufacturer": line["manufacturer"],
        "lots": [{"lot": a["lot"], "expiry": a["expiry"], "qty": a["qty"]} for a in lots],
    }


# ---- dispatch -------------------------------------------------------------------------------
def dispatch(store: Store, printer: Printer, job: PrintJob, *,
             patient_name: PatientName | None = None) -> Future[Any]:
    """Mark the job as printing and hand it to the printer. Returns at once; call
    :func:`record` with the Future once it is done (on the store's thread)."""
    job = start(store, job.job_id, printer.url)
    doc = document(store, job, patient_name=patient_name)
    try:
        return printer.submit(job, doc)
    except PharmosError as err:  # a printer that refuses at once (bad URL, no device)
        fut: Future[Any] = Future()
        fut.set_exception(err)
        return fut


def record(store: Store, job_id: str, fut: Future[Any]) -> PrintJob:
    """Write a finished Future's outcome to the queue."""
    err = fut.exception()
    if err is None:
        return mark_done(store, job_id)
    if isinstance(err, PharmosError):
        return mark_failed(store, job_id, err.code, err.message)
    if isinstance(err, TimeoutError):
        return mark_failed(store, job_id, "PRINTER_TIMEOUT", "the printer did not answer in time")
    return mark_failed(store, job_id, "PRINT_FAILED", f"printing failed: {err}")


def print_now(store: Store, printer: Printer, job: PrintJob, *, timeout: float,
              patient_name: PatientName | None = None) -> PrintJob:
    """Dispatch and wait at most ``timeout`` seconds; the job ends done or failed, never lost."""
    fut = dispatch(store, printer, job, patient_name=patient_name)
    done, _ = wait([fut], timeout=timeout)
    if not done:
        return mark_failed(store, job.job_id, "PRINTER_TIMEOUT",
                           f"the printer did not finish within {timeout:g} s. The sale is saved; "
                           "its paper waits in the reprint queue")
    return record(store, job.job_id, fut)


def retry_pending(store: Store, printer: Printer, *, timeout: float,
                  patient_name: PatientName | None = None, limit: int = 50) -> list[PrintJob]:
    """Print every open job once, oldest first; stops after the first failure (the printer
    is most likely still down) and returns the jobs it tried."""
    tried: list[PrintJob] = []
    for job in pending(store.conn, limit):
        result = print_now(store, printer, job, timeout=timeout, patient_name=patient_name)
        tried.append(result)
        if result.status != "done":
            break
    return tried
