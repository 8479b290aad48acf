"""Hardware commands for installers and support (`pharmos hw ...`) and the receipt queue
(`pharmos receipt ...`)."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from datetime import date
from typing import Any

from pharmacy.errors import BadInput
from pharmacy.store import Store
from terminal import wiring
from terminal.cli._common import add_data_dir, add_json, emit

MAX_LISTEN_SECONDS = 7 * 24 * 3600.0
MAX_PRINT_WAIT_SECONDS = 3600.0


def _open(args: argparse.Namespace) -> Store:
    return Store.open(wiring.resolve_data_dir(args.data_dir))


def _unescape(text: str, flag: str) -> str:
    """Backslash escapes (\\x1d, \\u001d, \\t) as a shell cannot type them."""
    try:
        return text.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise BadInput(f"{flag} has a broken backslash escape ({e.reason})",
                       code="BAD_ESCAPE") from None


def _gs_sub(text: str | None) -> str | None:
    if text is None:
        return None
    return _unescape(text, "--gs-substitute") or None


# ---- hw parse-scan --------------------------------------------------------------------------
def cmd_parse_scan(args: argparse.Namespace) -> int:
    from pharmacy import gs1

    text = args.string
    if args.escaped:
        text = _unescape(text, "the scan")
    scan = gs1.parse_scan(text, gs_substitute=_gs_sub(args.gs_substitute),
                          strict_gs=not args.no_gs_check)
    try:
        today = date.fromisoformat(args.today) if args.today else None
    except ValueError:
        raise BadInput(f"--today {args.today!r} is not a date (YYYY-MM-DD)",
                       code="BAD_DATE") from None
    out = scan.to_json()
    if args.data_dir:
        with _open(args) as store:
            product = gs1.product_for_scan(store.conn, scan)
            out["ndc"] = product.ndc
            out["product"] = {"ndc": product.ndc, "name": product.name,
                              "strength": product.strength}
            gs1.check_package(scan, today=today or store.clock().date(),
                              selected_ndc=args.ndc)
    elif args.ndc or today:
        gs1.check_package(scan, today=today or date.min, selected_ndc=args.ndc)
    human = " ".join(f"{k}={v}" for k, v in out.items() if v is not None and k != "product")
    emit(args, out, human)
    return 0


# ---- hw test-print --------------------------------------------------------------------------
def cmd_test_print(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hardware import config as hwconfig
    from hardware.backends import backend_for
    from hardware.printing import PrintWorker
    from hardware.render import Layout, render_test_page

    base = hwconfig.PrinterConfig()
    receipt = hwconfig.ReceiptConfig()
    if args.data_dir:
        with _open(args) as store:
            cfg = hwconfig.load(store)
        base, receipt = cfg.printer, cfg.receipt
    raw = asdict(base)
    for key, value in (("url", args.printer), ("width", args.width), ("profile", args.profile),
                       ("code_page", args.code_page), ("timeout", args.timeout)):
        if value is not None:
            raw[key] = value
    if args.no_status:
        raw["status_check"] = False
    pcfg = hwconfig.printer_from_json(raw)
    if not pcfg.url:
        raise BadInput("give --printer URL (e.g. tcp://192.168.1.50:9100) or --data-dir of a "
                       "terminal with a configured printer", code="NO_PRINTER")
    layout = Layout.from_config(pcfg, receipt)
    data = render_test_page(layout, pcfg.url, drawer_pin=args.drawer)
    worker = PrintWorker(backend_for(pcfg.url, timeout=pcfg.timeout),
                         status_check=pcfg.status_check)
    try:
        outcome = worker.submit(data).result(timeout=pcfg.timeout * 6 + 1)
    except TimeoutError:
        from hardware.errors import PrinterTimeout

        raise PrinterTimeout(f"the printer at {pcfg.url} did not finish the test page",
                             printer=pcfg.url) from None
    finally:
        worker.stop(0.5)
    out = {"printer": pcfg.url, "width": pcfg.width, "columns": layout.columns,
           "profile": pcfg.profile, **outcome.to_json()}
    emit(args, out, f"test page sent to {pcfg.url} ({outcome.bytes_sent} bytes)"
         + (" — paper is low" if outcome.paper_low else ""))
    return 0


# ---- hw listen-scanner ----------------------------------------------------------------------
def cmd_listen_scanner(args: argparse.Namespace) -> int:
    from hardware import config as hwconfig
    from hardware.errors import DeviceNotFound
    from hardware.scanner import ScannerEvent, SerialScanner
    from hardware.scans import ScanEvent, ScannerStatus

    if not 0 < args.timeout <= MAX_LISTEN_SECONDS:  # NaN fails too (it listened forever)
        raise BadInput(f"--timeout is more than 0 and at most {MAX_LISTEN_SECONDS:g} seconds "
                       f"(a week), not {args.timeout}", code="BAD_ARGS")
    if args.count < 1:
        raise BadInput(f"--count is how many scans to wait for: 1 or more, not {args.count}",
                       code="BAD_ARGS")
    gs = _gs_sub(args.gs_substitute)
    # the port, baud rate and GS substitute as a configured serial scanner must have them
    hwconfig.scanner_from_json({"kind": "serial", "port": args.port, "baud": args.baud,
                                "gs_substitute": gs}, "listen-scanner")
    events: queue.Queue[ScannerEvent] = queue.Queue()
    terminators = {"cr": (b"\r", b"\n"), "tab": (b"\t",), "none": ()}[args.suffix]
    scanner = SerialScanner(args.port, baud=args.baud, on_event=events.put,
                            terminators=terminators, gs_substitute=gs,
                            strict_gs=not args.no_gs_check)
    deadline = time.monotonic() + args.timeout
    seen = 0
    connected_once = False
    scanner.start()
    try:
        while seen < args.count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ev = events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if isinstance(ev, ScannerStatus):
                if not ev.connected and not connected_once:
                    raise DeviceNotFound(f"cannot open the scanner port: {ev.message}",
                                         port=args.port)
                connected_once = connected_once or ev.connected
                print(ev.message, file=sys.stderr, flush=True)
                continue
            assert isinstance(ev, ScanEvent)
            seen += 1
            if args.json:
                print(json.dumps(ev.to_json()), flush=True)
            elif ev.error is not None:
                print(f"error [{ev.error.code}]: {ev.error.message}", flush=True)
            else:
                assert ev.data is not None
                print(" ".join(f"{k}={v}" for k, v in ev.data.to_json().items()
                               if v is not None), flush=True)
    finally:
        scanner.stop(1.0)
    if not args.json:
        print(f"{seen} scan(s)", file=sys.stderr)
    return 0


# ---- hw config ------------------------------------------------------------------------------
def cmd_config_show(args: argparse.Namespace) -> int:
    from hardware import config as hwconfig

    with _open(args) as store:
        cfg = hwconfig.load(store)
    emit(args, cfg.to_json(), json.dumps(cfg.to_json(), indent=2))
    return 0


def cmd_config_set(args: argparse.Namespace) -> int:
    from hardware import config as hwconfig

    pairs: list[tuple[str, Any]] = []
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{item!r} is not KEY=VALUE (e.g. printer.url=tcp://10.0.0.5:9100)",
                           code="BAD_ARGS")
        pairs.append((key.strip(), hwconfig.parse_value(value)))
    with _open(args) as store:
        cfg = hwconfig.set_values(store, pairs)
    emit(args, cfg.to_json(), json.dumps(cfg.to_json(), indent=2))
    return 0


# ---- receipt --------------------------------------------------------------------------------
def _printer(store: Store, args: argparse.Namespace, *, label: bool = False) -> Any:
    from hardware import config as hwconfig
    from hardware.printing import EscposPrinter

    cfg = hwconfig.load(store)
    pcfg = cfg.labels if label else cfg.printer
    return EscposPrinter(cfg, pcfg, url=args.printer), pcfg


def _wait(pcfg: Any, args: argparse.Namespace) -> float:
    if args.timeout is None:
        return float(pcfg.timeout * 6 + 1)
    if not 0 < args.timeout <= MAX_PRINT_WAIT_SECONDS:  # NaN fails too
        raise BadInput(f"--timeout is more than 0 and at most {MAX_PRINT_WAIT_SECONDS:g} "
                       f"seconds, not {args.timeout}", code="BAD_ARGS")
    return float(args.timeout)


def _finish(args: argparse.Namespace, job: Any, **details: Any) -> int:
    from hardware.errors import HardwareError

    if job.status != "done":
        raise HardwareError(
            f"{job.error_message or 'printing failed'} (job {job.job_id}: 'pharmos receipt "
            "retry' prints it)", code=job.error_code or "PRINT_FAILED", job_id=job.job_id,
            sale_id=job.sale_id, **details)
    emit(args, job.to_json(), f"printed {job.kind} for sale {job.sale_id}"
         + (" (reprint)" if job.reprint else ""))
    return 0


def _print_sale(args: argparse.Namespace, *, reprint: bool) -> int:
    from pharmacy import print_queue

    with _open(args) as store:
        printer, pcfg = _printer(store, args)
        try:
            wait = _wait(pcfg, args)  # before a job is queued
            job = print_queue.job_for_print(store, args.sale_id, "receipt", reprint=reprint)
            job = print_queue.print_now(store, printer, job, timeout=wait)
        finally:
            printer.close(0.5)
    return _finish(args, job)


def cmd_receipt_print(args: argparse.Namespace) -> int:
    return _print_sale(args, reprint=False)


def cmd_receipt_reprint(args: argparse.Namespace) -> int:
    return _print_sale(args, reprint=True)


def cmd_receipt_label(args: argparse.Namespace) -> int:
    from pharmacy import print_queue
    from pharmacy.phi import FileKeyProvider, PhiVault
    from pharmacy.sales import default_user

    with _open(args) as store:
        vault = PhiVault(store.conn, FileKeyProvider(store.data_dir), store.clock)
        user_id = str(default_user()["id"])

        def patient_name(patient_id: str) -> str | None:
            name = vault.get(patient_id, user_id).get("name")
            return None if name is None else str(name)

        printer, pcfg = _printer(store, args, label=True)
        try:
            wait = _wait(pcfg, args)  # before a job is queued
            job = print_queue.job_for_print(store, args.sale_id, "rx_label", line_no=args.line)
            job = print_queue.print_now(store, printer, job, timeout=wait,
                                        patient_name=patient_name)
        finally:
            printer.close(0.5)
    return _finish(args, job)


def cmd_receipt_refund(args: argparse.Namespace) -> int:
    from pharmacy import print_queue
    from pharmacy.refunds import refund_record

    with _open(args) as store:
        sale_id = refund_record(store.conn, args.refund_id)["sale_id"]
        job = print_queue.job_for_print(store, sale_id, "refund", refund_id=args.refund_id)
        printer, pcfg = _printer(store, args)
        try:
            job = print_queue.print_now(store, printer, job, timeout=_wait(pcfg, args))
        finally:
            printer.close(0.5)
    return _finish(args, job)


def cmd_receipt_pending(args: argparse.Namespace) -> int:
    from pharmacy import print_queue

    with _open(args) as store:
        jobs = print_queue.pending(store.conn)
    emit(args, {"pending": [j.to_json() for j in jobs]},
         "\n".join(f"{j.created_at}  {j.sale_id}  {j.kind:<8} {j.status:<8} "
                   f"{j.error_code or ''}" for j in jobs) or "nothing waiting to print")
    return 0


def cmd_receipt_retry(args: argparse.Namespace) -> int:
    from pharmacy import print_queue

    with _open(args) as store:
        printer, pcfg = _printer(store, args)
        try:
            wait = _wait(pcfg, args)
            tried = print_queue.retry_pending(store, printer, timeout=wait)
        finally:
            printer.close(0.5)
        left = print_queue.pending(store.conn)
    printed = sum(j.status == "done" for j in tried)
    failed = bool(tried) and tried[-1].status != "done"
    if not (failed and args.json):  # --json prints one document: the summary or the error
        emit(args, {"tried": [j.to_json() for j in tried], "pending": len(left)},
             f"printed {printed} of {len(tried)}; {len(left)} still waiting")
    if failed:
        return _finish(args, tried[-1], printed=printed, pending=len(left))
    return 0


# ---- registration ---------------------------------------------------------------------------
def register(sub: Any) -> None:
    hw = sub.add_parser("hw", help="scanners, printers and their settings")
    hsub = hw.add_subparsers(dest="hw_command", required=True)

    p = hsub.add_parser("parse-scan", help="parse what a scanner sent (GS1, GTIN, HRI, URI)")
    add_json(p)
    p.add_argument("string", help="the scan; GS as the real character or via --gs-substitute")
    p.add_argument("--gs-substitute", metavar="C", help="character the scanner sends for GS")
    p.add_argument("--escaped", action="store_true",
                   help="decode backslash escapes in STRING (\\x1d, \\u001d)")
    p.add_argument("--no-gs-check", action="store_true",
                   help="accept a lot/serial that may have swallowed a lost GS")
    p.add_argument("--data-dir", help="look the GTIN up in this terminal's catalog and apply "
                   "the DSCSA checks")
    p.add_argument("--ndc", help="the selected NDC the package must match (DSCSA)")
    p.add_argument("--today", help="date for the expiry check (default: the store's today)")
    p.set_defaults(handler=cmd_parse_scan)

    p = hsub.add_parser("test-print", help="print a test page")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--printer", metavar="URL",
                   help="tcp://HOST:9100, serial:///dev/ttyUSB0, usb://VID:PID, file:///PATH")
    p.add_argument("--width", type=int, choices=[58, 80])
    p.add_argument("--profile", help="python-escpos printer profile, e.g. TM-T88V")
    p.add_argument("--code-page", help="fixed code page, e.g. CP858 (default: automatic)")
    p.add_argument("--timeout", type=float, help="seconds per printer operation")
    p.add_argument("--drawer", type=int, choices=[2, 5], help="also kick the cash drawer pin")
    p.add_argument("--no-status", action="store_true", help="skip the status checks")
    p.set_defaults(handler=cmd_test_print)

    p = hsub.add_parser("listen-scanner", help="print scans from a serial / USB-CDC scanner")
    add_json(p)
    p.add_argument("--port", required=True, help="/dev/ttyACM0, COM4 or a pyserial URL")
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--count", type=int, default=1, help="stop after this many scans")
    p.add_argument("--timeout", type=float, default=60.0, help="stop after this many seconds")
    p.add_argument("--suffix", default="cr", choices=["cr", "tab", "none"],
                   help="how the scanner ends a scan: cr (CR, LF or CRLF), tab, none (a pause)")
    p.add_argument("--gs-substitute", metavar="C")
    p.add_argument("--no-gs-check", action="store_true")
    p.set_defaults(handler=cmd_listen_scanner)

    cfg = hsub.add_parser("config", help="this terminal's hardware settings")
    csub = cfg.add_subparsers(dest="config_command", required=True)
    p = csub.add_parser("show")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_config_show)
    p = csub.add_parser("set", help="KEY=VALUE ... e.g. printer.url=tcp://10.0.0.5:9100 "
                        "printer.width=58 scanners.0.gs_substitute=~")
    add_data_dir(p)
    add_json(p)
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(handler=cmd_config_set)

    rc = sub.add_parser("receipt", help="print, reprint and list queued receipts")
    rsub = rc.add_subparsers(dest="receipt_command", required=True)
    for name, handler, text in (("print", cmd_receipt_print, "print a sale's receipt"),
                                ("reprint", cmd_receipt_reprint, "print a marked copy")):
        p = rsub.add_parser(name, help=text)
        add_data_dir(p)
        add_json(p)
        p.add_argument("sale_id")
        p.add_argument("--printer", metavar="URL", help="override the configured printer")
        p.add_argument("--timeout", type=float, help="seconds to wait for the printer")
        p.set_defaults(handler=handler)
    p = rsub.add_parser("label", help="print the Rx label of a sale line")
    add_data_dir(p)
    add_json(p)
    p.add_argument("sale_id")
    p.add_argument("--line", type=int, default=1)
    p.add_argument("--printer", metavar="URL")
    p.add_argument("--timeout", type=float)
    p.set_defaults(handler=cmd_receipt_label)
    p = rsub.add_parser("refund", help="print a refund's slip (a marked copy once printed)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("refund_id")
    p.add_argument("--printer", metavar="URL")
    p.add_argument("--timeout", type=float)
    p.set_defaults(handler=cmd_receipt_refund)
    p = rsub.add_parser("pending", help="receipts and labels waiting to be printed")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_receipt_pending)
    p = rsub.add_parser("retry", help="print everything waiting, oldest first")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--printer", metavar="URL")
    p.add_argument("--timeout", type=float)
    p.set_defaults(handler=cmd_receipt_retry)
