"""Core commands: init, catalog, receive, sale, stock, lots, audit, demo, bench."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

from pharmacy import catalog, checkout, inventory, print_queue, refunds
from pharmacy import register as controlled_register
from pharmacy.errors import BadInput, IntegrityFailure
from pharmacy.sales import default_user
from pharmacy.store import Store
from terminal import wiring
from terminal.cli._common import add_data_dir, add_json, emit, read_json_input


def _open(args: argparse.Namespace) -> Store:
    return Store.open(wiring.resolve_data_dir(args.data_dir))


def _today(store: Store) -> date:
    return store.clock().date()


# ---- init ---------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from terminal import demo_day

    d = wiring.resolve_data_dir(args.data_dir)
    out: dict[str, Any] = {"data_dir": str(d), "store_id": args.store_id,
                           "jurisdiction": args.jurisdiction}
    if args.demo:
        out["demo"] = demo_day.prepare_demo_store(d, args.store_id, args.jurisdiction)
    else:
        store = Store.init(d, args.store_id)
        try:
            store.set_setting("jurisdiction", args.jurisdiction)
        finally:
            store.close()
    with Store.open(d) as store:
        out["replica_id"] = store.replica_id
    emit(args, out, f"initialised store {args.store_id} in {d}")
    return 0


# ---- catalog ------------------------------------------------------------------------------
def cmd_catalog_import(args: argparse.Namespace) -> int:
    with _open(args) as store:
        imported: dict[str, Any] = {}
        if args.orange_book:
            from pharmacy import orange_book

            imported["orange_book"] = orange_book.import_orange_book(store, Path(args.orange_book))
            imported["orange_book_diff"] = orange_book.last_import(store.conn)
        if args.ndc_product or args.ndc_package:
            if not (args.ndc_product and args.ndc_package):
                raise BadInput("--ndc-product and --ndc-package go together", code="BAD_ARGS")
            from pharmacy import ndc_directory

            imported.update(ndc_directory.import_ndc_directory(
                store, Path(args.ndc_product), Path(args.ndc_package)))
        if args.catalog:
            data = read_json_input(args.catalog)
            items = data.get("products") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise BadInput("the catalog file needs a 'products' list", code="BAD_CATALOG")
            imported["products"] = catalog.upsert_products(
                store, [catalog.product_from_json(p) for p in items])
        if not imported:
            raise BadInput("nothing to import: give --orange-book, --ndc-product/--ndc-package "
                           "or --catalog", code="BAD_ARGS")
        emit(args, {"imported": imported})
    return 0


def cmd_catalog_show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        p = catalog.lookup(store.conn, args.identifier)
        emit(args, p.to_json(), f"{p.ndc}  {p.name}  {p.strength or ''}")
    return 0


def cmd_catalog_search(args: argparse.Namespace) -> int:
    with _open(args) as store:
        found = catalog.search(store.conn, args.text)
        emit(args, {"products": [p.to_json() for p in found]},
             "\n".join(f"{p.ndc}  {p.name}" for p in found) or "no match")
    return 0


# ---- stock --------------------------------------------------------------------------------
def cmd_receive(args: argparse.Namespace) -> int:
    data = read_json_input(args.input)
    if not isinstance(data, dict):
        raise BadInput("the receipt must be a JSON object with 'batches'", code="BAD_REQUEST")
    with _open(args) as store:
        changed = inventory.receive(store, data.get("batches") or [], supplier=data.get("supplier"),
                                    reference=data.get("reference"), user_id=data.get("user_id"))
        emit(args, {"received": len(changed.batch_ids), "batch_ids": list(changed.batch_ids),
                    "register_entries": changed.register_entries})
    return 0


def cmd_sale(args: argparse.Namespace) -> int:
    req = read_json_input(args.input)
    tender = req.pop("tender", None) if isinstance(req, dict) else None
    with _open(args) as store:
        if tender is None:
            result = wiring.dispenser(store).sell(req)
            emit(args, result.to_json(),
                 f"sale {result.sale_id} total {result.to_json()['total']}")
            return 0
        # paid in the same transaction: {"method": "cash"|"card", "tendered", "reference"}
        if not isinstance(tender, dict):
            raise BadInput("'tender' must be an object with 'method'", code="BAD_TENDER")
        req.setdefault("user", default_user())
        method = str(tender.get("method"))
        tendered, reference = tender.get("tendered"), tender.get("reference")
        paid = checkout.checkout(wiring.dispenser(store), req, lambda total: checkout.tender_for(
            method, total, tendered, reference))
        out = paid.to_json()
        emit(args, out, f"sale {out['sale_id']} total {out['total']} paid by "
                        f"{out['tender']['method']}, change {out['tender']['change']}")
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if args.show is not None:
            out = refunds.refundable(store.conn, args.show, _today(store))
            emit(args, out, "\n".join(
                [f"sale {out['sale_id']} total {out['total']} refunded {out['refunded']}"
                 + ("" if out["paid"] else " (not paid)")]
                + [f"  line {ln['line_no']}: {ln['refundable']} of {ln['qty']} refundable  "
                   f"{ln['name']}" + ("  (may go back on the shelf)" if ln["restockable"]
                                      else "") for ln in out["lines"]]))
            return 0
        req = read_json_input(args.input)
        if not isinstance(req, dict):
            raise BadInput("the refund must be a JSON object with 'sale_id', 'method' and "
                           "'reason'", code="BAD_REQUEST")
        user = req.get("user") or default_user()
        if not isinstance(user, dict):
            raise BadInput("'user' must be an object with an 'id' and a 'role'",
                           code="BAD_USER")
        result = refunds.refund(store, user, req.get("sale_id"),  # type: ignore[arg-type]
                                method=str(req.get("method") or ""),
                                reason=req.get("reason"),  # type: ignore[arg-type]
                                lines=req.get("lines"), reference=req.get("reference"))
        out = result.to_json()
        emit(args, out, f"refund {out['refund_id']} of sale {out['sale_id']}: {out['total']} "
                        f"by {out['method']}")
    return 0


def cmd_stock(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = inventory.stock(store.conn, _today(store), args.ndc)
        emit(args, {"batches": rows},
             "\n".join(f"{r['ndc']:<13} {r['lot']:<12} {r['expiry']} {r['status']:<11} "
                       f"{r['on_hand']:>6}  {r['name']}" for r in rows))
    return 0


def cmd_lot(args: argparse.Namespace) -> int:
    status = {"quarantine": "quarantined", "recall": "recalled", "release": "active"}[args.action]
    with _open(args) as store:
        changed = inventory.set_status(store, args.lot, status, ndc=args.ndc, reason=args.reason)
        emit(args, {"status": status, "batch_ids": list(changed.batch_ids)})
    return 0


def cmd_adjust(args: argparse.Namespace) -> int:
    with _open(args) as store:
        changed = inventory.adjust(store, args.ndc, args.lot, args.delta, args.reason,
                                   note=args.note)
        emit(args, {"batch_ids": list(changed.batch_ids),
                    "register_entries": changed.register_entries})
    return 0


def cmd_stocktake(args: argparse.Namespace) -> int:
    data = read_json_input(args.input)
    counts = data.get("counts") if isinstance(data, dict) else None
    if not isinstance(counts, list):
        raise BadInput("the stocktake needs a 'counts' list", code="BAD_REQUEST")
    with _open(args) as store:
        changed = inventory.stocktake(store, counts)
        emit(args, {"deltas": changed.details["deltas"],
                    "register_entries": changed.register_entries})
    return 0


# ---- audit --------------------------------------------------------------------------------
def cmd_audit_verify(args: argparse.Namespace) -> int:
    with _open(args) as store:
        result = controlled_register.verify(store.conn)
    if not result.ok:
        b = result.broken or {}
        raise IntegrityFailure(
            f"controlled register broken at entry {b.get('seq')} of replica "
            f"{b.get('replica_id')} ({b.get('entry_id')}): {b.get('reason')}",
            code="REGISTER_CHAIN_BROKEN", **b)
    emit(args, result.to_json(),
         f"register ok: {result.entries} entries in {result.chains} chain(s)")
    return 0


def cmd_audit_break_glass(args: argparse.Namespace) -> int:
    from pharmacy import users

    with _open(args) as store:
        pending = users.pending_break_glass(store.conn)
    emit(args, {"pending": pending}, "\n".join(
        f"{p['seq']:>6}  {p['at']}  {p['user_id']}  {p['subject']}: {p.get('reason', '')}"
        for p in pending) or "no emergency access waiting for review")
    return 0


def cmd_audit_review(args: argparse.Namespace) -> int:
    """Close an emergency-access review as the named manager or pharmacist (this CLI runs
    with the owner's rights on the data directory, as `pharmos user add` does)."""
    from pharmacy import users

    with _open(args) as store:
        row = users.get_user(store.conn, args.reviewer)
        if not row["active"]:
            raise BadInput(f"user {args.reviewer} is disabled", code="USER_DISABLED")
        out = users.review_break_glass(store, {"id": row["user_id"], "role": row["role"]},
                                       args.seq, args.note)
    emit(args, out, f"emergency access {out['reviewed']} reviewed")
    return 0


# ---- demo and bench -----------------------------------------------------------------------
def cmd_report_day(args: argparse.Namespace) -> int:
    from pharmacy import daybook

    day = None
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            raise BadInput(f"--date {args.date!r} is not a date YYYY-MM-DD",
                           code="BAD_DATE") from None
    with _open(args) as store:
        out = daybook.store_day_report(store, day, store.time_zone(args.tz))
        if args.print:
            out["printed"] = _print_report(store, out, args.printer)
        emit(args, out, daybook.report_text(out))
    return 0


def _print_report(store: Store, report: dict[str, Any], url: str | None) -> dict[str, Any]:
    """The day report on the receipt printer (not queued: ask again to print it again)."""
    from concurrent.futures import TimeoutError as FutureTimeout
    from dataclasses import asdict

    from hardware import config as hwconfig
    from hardware.errors import PrinterTimeout
    from hardware.render import render_document

    cfg = hwconfig.load(store)
    pcfg = cfg.printer if url is None else hwconfig.printer_from_json(
        {**asdict(cfg.printer), "url": url})
    if not pcfg.url:
        raise BadInput("no receipt printer is configured: give --printer URL",
                       code="NO_PRINTER")
    from hardware.backends import backend_for
    from hardware.printing import PrintWorker

    _, doc = print_queue.day_report_document(store, report)
    worker = PrintWorker(backend_for(pcfg.url, timeout=pcfg.timeout),
                         status_check=pcfg.status_check)
    try:
        outcome = worker.submit(render_document(doc, cfg)).result(timeout=pcfg.timeout * 6 + 1)
    except FutureTimeout:
        raise PrinterTimeout(f"the printer at {pcfg.url} did not finish the day report",
                             printer=pcfg.url) from None
    finally:
        worker.stop(0.5)
    return {"printer": pcfg.url, **outcome.to_json()}


def cmd_demo(args: argparse.Namespace) -> int:
    from terminal import demo_stack

    base = Path(args.data_dir) if args.data_dir else Path("demo-data")
    summary = demo_stack.run(base, headless=True if args.headless else None,
                             sales=args.sales, seed=args.seed)
    emit(args, summary, demo_stack.format_summary(summary))
    return 0 if summary.get("register", {"chain_ok": True})["chain_ok"] else 3


def cmd_bench(args: argparse.Namespace) -> int:
    from bench import run as bench_run

    result = bench_run.run(quick=args.quick, only=args.only)
    emit(args, result, bench_run.format_result(result))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create a terminal store")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--store-id", required=True)
    p.add_argument("--jurisdiction", default="US",
                   choices=["US", "US-TX", "US-FL", "US-NY", "US-CA", "IN"])
    p.add_argument("--demo", action="store_true", help="load the demo catalog and stock")
    p.set_defaults(handler=cmd_init)

    cat = sub.add_parser("catalog", help="products and reference data")
    csub = cat.add_subparsers(dest="catalog_command", required=True)
    p = csub.add_parser("import", help="import the Orange Book, NDC Directory or a catalog")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--orange-book", help="FDA Orange Book products.txt")
    p.add_argument("--ndc-product", help="FDA NDC Directory product.txt")
    p.add_argument("--ndc-package", help="FDA NDC Directory package.txt")
    p.add_argument("--catalog", help="pharmos catalog JSON ({'products': [...]}) or -")
    p.set_defaults(handler=cmd_catalog_import)
    p = csub.add_parser("show", help="one product by NDC or GTIN")
    add_data_dir(p)
    add_json(p)
    p.add_argument("identifier")
    p.set_defaults(handler=cmd_catalog_show)
    p = csub.add_parser("search", help="products by name")
    add_data_dir(p)
    add_json(p)
    p.add_argument("text")
    p.set_defaults(handler=cmd_catalog_search)

    p = sub.add_parser("receive", help="receive batches (JSON on stdin)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_receive)

    p = sub.add_parser("sale", help="sell or dispense (JSON request on stdin)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_sale)

    p = sub.add_parser("refund", help="refund a paid sale, whole or by line (JSON on stdin)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--show", metavar="SALE_ID", help="what of a sale can still be refunded")
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_refund)

    p = sub.add_parser("stock", help="batches and on-hand quantities")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--ndc")
    p.set_defaults(handler=cmd_stock)

    lot = sub.add_parser("lot", help="quarantine, recall or release a lot")
    lsub = lot.add_subparsers(dest="lot_command", required=True)
    for action in ("quarantine", "recall", "release"):
        p = lsub.add_parser(action)
        add_data_dir(p)
        add_json(p)
        p.add_argument("lot")
        p.add_argument("--ndc")
        p.add_argument("--reason")
        p.set_defaults(handler=cmd_lot, action=action)

    p = sub.add_parser("adjust", help="adjust a batch with a reason code")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--ndc", required=True)
    p.add_argument("--lot", required=True)
    p.add_argument("--delta", type=int, required=True)
    p.add_argument("--reason", required=True, choices=sorted(inventory.ADJUST_REASONS))
    p.add_argument("--note")
    p.set_defaults(handler=cmd_adjust)

    p = sub.add_parser("stocktake", help="enter counted quantities (JSON on stdin)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_stocktake)

    audit = sub.add_parser("audit", help="controlled-register integrity, emergency-access "
                           "reviews")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser("verify")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_audit_verify)
    p = asub.add_parser("break-glass", help="emergency accesses waiting for review")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_audit_break_glass)
    p = asub.add_parser("review", help="close the review of an emergency access")
    add_data_dir(p)
    p.add_argument("--seq", type=int, required=True, help="its audit entry (from break-glass)")
    p.add_argument("--reviewer", required=True, help="username of the manager or pharmacist")
    p.add_argument("--note", required=True, help="what the review found")
    add_json(p)
    p.set_defaults(handler=cmd_audit_review)

    rep = sub.add_parser("report", help="this terminal's reports")
    rsub = rep.add_subparsers(dest="report_command", required=True)
    p = rsub.add_parser("day", help="the end-of-day report: sales, payments, refunds, cash")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--date", help="YYYY-MM-DD (default: today in the store's time zone)")
    p.add_argument("--tz", help="time zone (default: the store's 'timezone' setting, or UTC)")
    p.add_argument("--print", action="store_true", help="print it on the receipt printer")
    p.add_argument("--printer", metavar="URL", help="override the configured printer")
    p.set_defaults(handler=cmd_report_day)

    p = sub.add_parser("demo", help="a local head-office server and a terminal on demo data")
    p.add_argument("--data-dir", help="where the demo keeps its head office and terminal "
                   "(default: ./demo-data)")
    add_json(p)
    p.add_argument("--headless", action="store_true",
                   help="run a scripted counter day instead of opening the counter "
                   "(the default when there is no display)")
    p.add_argument("--sales", type=int, default=240)
    p.add_argument("--seed", type=int, default=None,
                   help="scripted day's random seed (default: a new day each run)")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks as ratios against floors")
    add_json(p)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", action="append", help="run only this benchmark (repeatable)")
    p.set_defaults(handler=cmd_bench)
