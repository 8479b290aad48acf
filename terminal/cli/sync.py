"""Sync commands: the head-office server (run, migrate, admin, stock, publish, grant), and on a
terminal: enroll, sync, sync status, sync run (scheduler), the will-call board and shared
store settings."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from pharmacy.errors import BadInput
from terminal import wiring
from terminal.cli._common import add_secret_args, emit, read_json_input, secret_from_args

S = argparse.SUPPRESS


def _json_flag(p: argparse.ArgumentParser, sub: bool = False) -> None:
    p.add_argument("--json", action="store_true", default=S if sub else False,
                   help="print JSON")


def _db(p: argparse.ArgumentParser, sub: bool = True) -> None:
    p.add_argument("--db", default=S if sub else None,
                   help="server database: sqlite:///PATH or postgresql://user@host:port/db")


def _need_db(args: argparse.Namespace) -> str:
    db = getattr(args, "db", None)
    if not db:
        raise BadInput("give the server database with --db sqlite:///PATH or "
                       "--db postgresql://...", code="BAD_ARGS")
    return str(db)


@contextlib.contextmanager
def _server_store(args: argparse.Namespace) -> Iterator[Any]:
    """The head-office database named by --db, schema checked, closed afterwards. A database
    that cannot be reached (or read) is DB_UNAVAILABLE (or BAD_DB), here or in the work."""
    from sync_server.storage import database_error, open_store

    url = _need_db(args)
    store = open_store(url, create=False)  # only 'server migrate' (or serving) creates it
    try:
        store.check_schema()
        yield store
    except Exception as e:
        mapped = database_error(e, url)
        if mapped is None:
            raise
        raise mapped from None
    finally:
        store.close()


def _date_arg(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{flag} {value!r} is not a date (YYYY-MM-DD)", code="BAD_DATE") from None


def _target(store: Any, args: argparse.Namespace) -> tuple[str, str]:
    if not getattr(args, "store", None):
        raise BadInput("give --store", code="BAD_ARGS")
    t: tuple[str, str] = store.resolve_store(args.store, getattr(args, "tenant", None))
    return t


# ---- server -------------------------------------------------------------------------------
def cmd_server(args: argparse.Namespace) -> int:
    from sync_server.app import serve

    serve(_need_db(args), args.host, args.port, max_body=args.max_body, migrate=args.migrate,
          log_level=args.log_level, workers=args.workers)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from sync_server.storage import opened, parse_db_url

    with opened(_need_db(args)) as store:
        version = store.migrate()
    emit(args, {"db": parse_db_url(args.db).redacted(), "schema_version": version},
         f"server schema at version {version}")
    return 0


def _opening(products: list[Any], today: date) -> list[dict[str, Any]]:
    try:
        from pharmacy import demo
    except ImportError:  # a build without the demo module
        demo = None  # type: ignore[assignment]
    if demo is not None:
        out: list[dict[str, Any]] = demo.opening_stock(products, today)
        return out
    return [{"ndc": p.ndc, "lot": f"HQ{p.ndc11[-6:]}", "qty": 100,
             "expiry": date(today.year + 2, 1, 31).isoformat()}
            for p in products if p.dea_schedule != "CI"]


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}", code="BAD_INPUT_FILE") from None


def _catalog_file(path: str) -> list[Any]:
    from pharmacy.catalog import product_from_json

    data = read_json_input(path)
    items = data.get("products") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise BadInput("the catalog file needs a 'products' list", code="BAD_CATALOG")
    return [product_from_json(p) for p in items]


def cmd_create_store(args: argparse.Namespace) -> int:
    from pharmacy import catalog

    products: list[Any] = []
    opening: list[dict[str, Any]] = []
    if args.catalog:
        products = _catalog_file(args.catalog)
    elif args.demo:
        products = catalog.demo_catalog()
    with _server_store(args) as store:
        if args.demo:
            opening = _opening(products, store.clock().date())
        out = store.create_store(args.tenant, args.store, jurisdiction=args.jurisdiction,
                                 products=products, opening=opening)
    emit(args, out, f"created store {args.store} in tenant {args.tenant}: "
                    f"{out['products']} products, {out['batches']} batches")
    return 0


def cmd_enroll_code(args: argparse.Namespace) -> int:
    from sync_server.storage import MAX_ENROLL_TTL_HOURS

    if not 0 < args.ttl_hours <= MAX_ENROLL_TTL_HOURS:  # NaN too
        raise BadInput(f"--ttl-hours is more than 0 and at most {MAX_ENROLL_TTL_HOURS} "
                       f"(a year), not {args.ttl_hours}", code="BAD_ARGS")
    with _server_store(args) as store:
        tenant, sid = _target(store, args)
        out = store.create_enroll_code(tenant, sid, args.ttl_hours)
    emit(args, out, out["code"])
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    with _server_store(args) as store:
        out = store.revoke(args.terminal)
    emit(args, out, f"terminal {args.terminal} revoked at {out['revoked_at']}")
    return 0


def cmd_terminals(args: argparse.Namespace) -> int:
    with _server_store(args) as store:
        tenant, sid = _target(store, args)
        rows = store.terminals(tenant, sid)
    emit(args, {"tenant_id": tenant, "store_id": sid, "terminals": rows},
         "\n".join(f"{r['terminal_id']}  {r['name'] or '-':<12} last sync "
                   f"{r['last_sync_at'] or 'never'}  pending {r['pending_events']}"
                   f"{'  REVOKED' if r['revoked_at'] else ''}" for r in rows) or "no terminals")
    return 0


def cmd_trust_key(args: argparse.Namespace) -> int:
    pem = _read_bytes(args.file).decode("ascii", errors="replace")
    with _server_store(args) as store:
        out = store.trust_key(args.tenant, pem)
    emit(args, out, f"tenant {args.tenant} now trusts {out['trusted_keys']} key(s)")
    return 0


def cmd_endorse_key(args: argparse.Namespace) -> int:
    doc = read_json_input(args.file)
    with _server_store(args) as store:
        out = store.endorse_key(args.tenant, doc)
    emit(args, out, f"tenant {args.tenant} trusts key {out['trusted']}"
         + (f", retired {', '.join(out['retired'])}" if out["retired"] else "")
         + f"; published to {len(out['stores'])} store(s)")
    return 0


def cmd_stock(args: argparse.Namespace) -> int:
    day = _date_arg(args.today, "--today") if args.today else None
    with _server_store(args) as store:
        tenant, sid = _target(store, args)
        rows = store.stock(tenant, sid, day or store.clock().date())
    emit(args, {"batches": rows},
         "\n".join(f"{r['ndc']:<13} {r['lot']:<12} {r['expiry']} {r['status']:<11} "
                   f"{r['on_hand']:>6}  {r['name']}" for r in rows))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pharmacy.clock import zone_named

    try:
        start = date.fromisoformat(args.date_from)
        end = date.fromisoformat(args.date_to) if args.date_to else start
    except ValueError:
        raise BadInput("--from and --to are dates (YYYY-MM-DD)", code="BAD_DATE") from None
    tz = zone_named(args.tz)
    with _server_store(args) as store:
        tenant, sid = _target(store, args)
        out = store.sales_report(tenant, sid, start, end, tz)
    refused = out["refused"]
    emit(args, out, "\n".join([
        f"{sid} {out['period']['from']}..{out['period']['to']}: {out['sales']} sales, "
        f"total {out['total']} (tax {out['tax']}); {refused['attempts']} refused",
        *(f"  {d['date']}  {d['sales']:>5} sales  {d['total']:>12}" for d in out["by_day"]),
        *(f"  refused {code}: {n}" for code, n in refused["by_code"].items()),
        *(f"  dispensed {sched}: {n} units" for sched, n in
          out["controlled_dispensed"].items()),
        *([f"  returned to stock: {out['returned']['sales']} sales, "
           f"{out['returned']['total']}"] if out["returned"]["sales"] else []),
        *([f"  refunded: {out['refunded']['refunds']} refunds, {out['refunded']['total']}"]
          if out["refunded"]["refunds"] else []),
        *(f"  paid by {m}: {v['count']} payments, {v['amount']}"
          for m, v in out["payments"].items()),
        *([f"  net total {out['net_total']}"]
          if out["returned"]["sales"] or out["refunded"]["refunds"] else [])]))
    return 0


def _publish_targets(store: Any, args: argparse.Namespace) -> tuple[str, str | None]:
    if args.store:
        tenant, sid = store.resolve_store(args.store, args.tenant)
        return tenant, sid
    if not args.tenant:
        raise BadInput("give --store S (one store) or --tenant T (every store of the chain)",
                       code="BAD_ARGS")
    return args.tenant, None


def _publish(args: argparse.Namespace, kind: str, bodies: list[dict[str, Any]],
             blob: bytes | None = None, check: Any = None) -> int:
    with _server_store(args) as store:
        tenant, sid = _publish_targets(store, args)
        if check is not None:
            check(store, tenant)
        out = store.publish(tenant, sid, kind, bodies, blob)
    emit(args, out, f"published {out['items']} {kind} to {', '.join(out['stores']) or 'none'}")
    return 0


def cmd_server_user(args: argparse.Namespace) -> int:
    """Users head office publishes: add, passwd, disable, enable."""
    cmd = args.user_command
    kind, secret = secret_from_args(args) if cmd in ("add", "passwd") else ("pin", None)
    with _server_store(args) as store:
        tenant, sid = _publish_targets(store, args)
        out = store.publish_user(
            tenant, sid, args.username, role=args.role if cmd == "add" else None,
            display_name=getattr(args, "name", None), secret=secret, kind=kind,
            active={"disable": False, "enable": True}.get(cmd))
    emit(args, out, f"user {out['username']} ({out['role']}, "
         f"{'active' if out['active'] else 'disabled'}) published to "
         f"{', '.join(out['stores']) or 'no store yet'}")
    return 0


def cmd_publish_bundle(args: argparse.Namespace) -> int:
    data = _read_bytes(args.file)
    return _publish(args, "policy_bundle", [{"name": Path(args.file).name}], data,
                    check=lambda store, tenant: store.check_bundle(tenant, data))


def cmd_publish_model(args: argparse.Namespace) -> int:
    data = _read_bytes(args.file)
    return _publish(args, "model", [{"kind": args.kind, "version": args.version,
                                     "name": Path(args.file).name}], data)


def cmd_publish_catalog(args: argparse.Namespace) -> int:
    products = _catalog_file(args.file)
    return _publish(args, "product", [p.to_json() for p in products])


def cmd_grant(args: argparse.Namespace) -> int:
    grant = read_json_input(args.input)
    if not isinstance(grant, dict):
        raise BadInput("the allowance grant must be a JSON object", code="BAD_GRANT")
    return _publish(args, "allowances", [grant])


# ---- terminal -----------------------------------------------------------------------------
def cmd_enroll(args: argparse.Namespace) -> int:
    from terminal import sync_client

    d = wiring.resolve_data_dir(args.data_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = sync_client.enroll(d, args.server, args.code, name=args.name,
                             token_store=args.token_store)
    emit(args, out, f"enrolled terminal {out['terminal_id']} in store {out['store_id']}"
                    + (f"\nWARNING: {out['warning']}" if out.get("warning") else ""))
    return 0


def _open_store(args: argparse.Namespace) -> Any:
    from pharmacy.store import Store

    return Store.open(wiring.resolve_data_dir(getattr(args, "data_dir", None)))


def cmd_sync(args: argparse.Namespace) -> int:
    from terminal import sync_client

    with _open_store(args) as store:
        result = sync_client.sync(store, retries=args.retries, timeout=args.timeout)
    out = result.to_json()
    emit(args, out, f"pushed {out['pushed']}, pulled {out['pulled']}, "
                    f"server at {out['server_seq']}")
    return 0


def cmd_sync_status(args: argparse.Namespace) -> int:
    from terminal import sync_client

    with _open_store(args) as store:
        st = sync_client.status(store)
    emit(args, st, sync_client.format_status(st))
    return 0


def cmd_sync_run(args: argparse.Namespace) -> int:
    import time

    from terminal import sync_client

    d = wiring.resolve_data_dir(args.data_dir)
    sched = sync_client.SyncScheduler(d, at=args.at, every_minutes=args.every,
                                      misfire_grace_hours=args.grace_hours)
    with sched.running():
        deadline = None if args.for_seconds is None else time.monotonic() + args.for_seconds
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2 if deadline is not None else 5)
    emit(args, {"runs": sched.runs}, f"{len(sched.runs)} sync run(s)")
    return 0


def cmd_board_show(args: argparse.Namespace) -> int:
    from pharmacy import replication

    with _open_store(args) as store:
        board = replication.doc_view(store.conn, "will_call")
    emit(args, {"will_call": board},
         "\n".join(f"{k}  {v.get('label', ''):<10} bin {v.get('bin', '-'):<6} "
                   f"{v.get('status')}" for k, v in board.items()) or "board empty")
    return 0


def cmd_board_put(args: argparse.Namespace) -> int:
    from crdt import shared_doc
    from pharmacy import replication
    from pharmacy.clock import iso

    fields = {k: getattr(args, k) for k in ("label", "bin", "status", "note", "rx_number")
              if getattr(args, k) is not None}
    with _open_store(args) as store:
        board = replication.edit_doc(
            store, "will_call",
            lambda st: shared_doc.will_call_put(st, args.item, fields, actor=args.user or
                                                store.replica_id, at=iso(store.clock())))
    emit(args, {"will_call": board}, f"{args.item}: {board.get(args.item)}")
    return 0


def cmd_board_remove(args: argparse.Namespace) -> int:
    from crdt import shared_doc
    from pharmacy import replication

    with _open_store(args) as store:
        board = replication.edit_doc(
            store, "will_call", lambda st: shared_doc.will_call_remove(st, args.item))
    emit(args, {"will_call": board}, f"removed {args.item}")
    return 0


def cmd_settings_show(args: argparse.Namespace) -> int:
    from pharmacy import replication

    with _open_store(args) as store:
        view = replication.doc_view(store.conn, "store_settings")
    emit(args, {"store_settings": view},
         "\n".join(f"{k} = {json.dumps(v)}" for k, v in view.items()) or "no shared settings")
    return 0


def cmd_settings_set(args: argparse.Namespace) -> int:
    from crdt import shared_doc
    from pharmacy import replication

    try:
        value = json.loads(args.value)
    except ValueError:
        value = args.value
    except RecursionError:  # brackets nested thousands deep: a list, which is refused
        raise BadInput(f"{args.key} must be a string, number, boolean or null",
                       code="BAD_DOC_EDIT") from None
    with _open_store(args) as store:
        view = replication.edit_doc(
            store, "store_settings", lambda st: shared_doc.settings_set(st, args.key, value))
    emit(args, {"store_settings": view}, f"{args.key} = {json.dumps(view.get(args.key))}")
    return 0


# ---- registration -------------------------------------------------------------------------
def _data_dir(p: argparse.ArgumentParser, sub: bool = False) -> None:
    p.add_argument("--data-dir", default=S if sub else None,
                   help="terminal data directory (default: $PHARMOS_DATA_DIR)")


def _store_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--store", required=required, help="store id")
    p.add_argument("--tenant", help="tenant (chain) id; needed when the store id is ambiguous")


def register(sub: Any) -> None:
    srv = sub.add_parser("server", help="head-office sync server: run, migrate, admin, views")
    _db(srv, sub=False)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8787)
    srv.add_argument("--max-body", type=int, default=16 * 1024 * 1024,
                     help="largest request body in bytes, compressed or not")
    srv.add_argument("--migrate", action="store_true", help="apply migrations at start")
    srv.add_argument("--log-level", default="warning")
    srv.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL)")
    _json_flag(srv)
    srv.set_defaults(handler=cmd_server)
    ssub = srv.add_subparsers(dest="server_command", metavar="SUBCOMMAND")

    p = ssub.add_parser("migrate", help="create or upgrade the server database")
    _db(p)
    _json_flag(p, sub=True)
    p.set_defaults(handler=cmd_migrate)

    adm = ssub.add_parser("admin", help="tenants, stores, enrollment codes, terminals")
    _db(adm)
    _json_flag(adm, sub=True)
    asub = adm.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    p = asub.add_parser("create-store", help="create a store (and its tenant)")
    _db(p)
    _json_flag(p, sub=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--jurisdiction", help="e.g. US-TX; sent to terminals at enrollment")
    p.add_argument("--demo", action="store_true",
                   help="seed the head-office catalog and opening stock")
    p.add_argument("--catalog", help="catalog JSON ({'products': [...]}) instead of the demo "
                                     "catalog")
    p.set_defaults(handler=cmd_create_store)
    p = asub.add_parser("enroll-code", help="a one-time code for enrolling a terminal")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.add_argument("--ttl-hours", type=float, default=72,
                   help="hours the code stays valid (default 72, at most 8760)")
    p.set_defaults(handler=cmd_enroll_code)
    p = asub.add_parser("revoke", help="revoke a terminal's token")
    _db(p)
    _json_flag(p, sub=True)
    p.add_argument("--terminal", required=True)
    p.set_defaults(handler=cmd_revoke)
    p = asub.add_parser("terminals", help="terminals of a store: last sync, pending counts")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.set_defaults(handler=cmd_terminals)
    p = asub.add_parser("trust-key", help="a policy/model signing public key sent to "
                                          "terminals at enrollment")
    _db(p)
    _json_flag(p, sub=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("file", help="PEM public key")
    p.set_defaults(handler=cmd_trust_key)
    p = asub.add_parser("endorse-key", help="rotate the tenant's signing key with an "
                                            "endorsement from 'pharmos policy endorse'")
    _db(p)
    _json_flag(p, sub=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("file", help="the endorsement (JSON)")
    p.set_defaults(handler=cmd_endorse_key)

    p = ssub.add_parser("terminals", help="terminals of a store: last sync, pending counts")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.set_defaults(handler=cmd_terminals)

    p = ssub.add_parser("stock", help="a store's stock as head office sees it")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.add_argument("--today", help="date for expiry status (default: today)")
    p.set_defaults(handler=cmd_stock)

    p = ssub.add_parser("report", help="a store's sales, refusals and controlled "
                        "dispensing over a period, as its terminals pushed them")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.add_argument("--from", dest="date_from", required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", help="last day (default: --from)")
    p.add_argument("--tz", default="UTC", help="the store's time zone for days (default UTC)")
    p.set_defaults(handler=cmd_report)

    p = ssub.add_parser("publish-bundle", help="publish a signed policy bundle")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p, required=False)
    p.add_argument("file")
    p.set_defaults(handler=cmd_publish_bundle)
    p = ssub.add_parser("publish-model", help="publish a signed model bundle")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p, required=False)
    p.add_argument("--kind", required=True, help="e.g. demand, expiry_risk, diversion")
    p.add_argument("--version", required=True)
    p.add_argument("file")
    p.set_defaults(handler=cmd_publish_model)
    usr = ssub.add_parser("user", help="accounts head office publishes to a store's (or the "
                          "chain's) terminals: add, passwd, disable, enable")
    usub = usr.add_subparsers(dest="user_command", required=True)
    for name, what in (("add", "publish a new account"), ("passwd", "a new PIN or password"),
                       ("disable", "refuse its sign-in everywhere"),
                       ("enable", "allow its sign-in again")):
        p = usub.add_parser(name, help=what)
        _db(p)
        _json_flag(p, sub=True)
        _store_args(p, required=False)
        p.add_argument("--username", required=True)
        if name == "add":
            p.add_argument("--name", help="display name (default: the username)")
            p.add_argument("--role", required=True,
                           choices=("pharmacist", "technician", "cashier", "manager"))
        if name in ("add", "passwd"):
            add_secret_args(p)
        p.set_defaults(handler=cmd_server_user)

    p = ssub.add_parser("publish-catalog", help="publish catalog and price changes")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p, required=False)
    p.add_argument("file", help="catalog JSON ({'products': [...]}) or -")
    p.set_defaults(handler=cmd_publish_catalog)
    p = ssub.add_parser("grant", help="grant offline allowances to a store (JSON)")
    _db(p)
    _json_flag(p, sub=True)
    _store_args(p)
    p.add_argument("input", nargs="?", default="-")
    p.set_defaults(handler=cmd_grant)

    p = sub.add_parser("enroll", help="enroll this terminal with head office")
    _data_dir(p)
    _json_flag(p)
    p.add_argument("--server", required=True, help="e.g. https://ho.example.com")
    p.add_argument("--code", required=True, help="one-time code from head office")
    p.add_argument("--name", help="terminal name shown at head office")
    p.add_argument("--token-store", default="auto", choices=["auto", "keyring", "file"],
                   help="where the token goes; auto falls back to a 0600 file without a "
                        "keyring")
    p.set_defaults(handler=cmd_enroll)

    syn = sub.add_parser("sync", help="sync with head office now; 'sync status', 'sync run'")
    _data_dir(syn)
    _json_flag(syn)
    syn.add_argument("--retries", type=int, default=5)
    syn.add_argument("--timeout", type=float, default=30.0)
    syn.set_defaults(handler=cmd_sync)
    ysub = syn.add_subparsers(dest="sync_command", metavar="SUBCOMMAND")
    p = ysub.add_parser("status", help="last success, pending outbox, offline since")
    _data_dir(p, sub=True)
    _json_flag(p, sub=True)
    p.set_defaults(handler=cmd_sync_status)
    p = ysub.add_parser("run", help="run the sync scheduler in the foreground")
    _data_dir(p, sub=True)
    _json_flag(p, sub=True)
    p.add_argument("--at", default="02:00", help="nightly sync time, HH:MM local")
    p.add_argument("--every", type=float, default=5, help="minutes between opportunistic "
                                                          "syncs (0: none)")
    p.add_argument("--grace-hours", type=float, default=8)
    p.add_argument("--for-seconds", type=float, help="stop after this long (tests)")
    p.set_defaults(handler=cmd_sync_run)

    board = sub.add_parser("board", help="the will-call board shared by the store's terminals")
    bsub = board.add_subparsers(dest="board_command", required=True, metavar="ACTION")
    p = bsub.add_parser("show")
    _data_dir(p)
    _json_flag(p)
    p.set_defaults(handler=cmd_board_show)
    p = bsub.add_parser("put", help="add or change an item")
    _data_dir(p)
    _json_flag(p)
    p.add_argument("item")
    for f in ("label", "bin", "note", "user"):
        p.add_argument(f"--{f}")
    p.add_argument("--rx-number", dest="rx_number")
    p.add_argument("--status", choices=["waiting", "ready", "picked_up", "returned"])
    p.set_defaults(handler=cmd_board_put)
    p = bsub.add_parser("remove")
    _data_dir(p)
    _json_flag(p)
    p.add_argument("item")
    p.set_defaults(handler=cmd_board_remove)

    st = sub.add_parser("store-settings", help="settings shared by the store's terminals")
    tsub = st.add_subparsers(dest="settings_command", required=True, metavar="ACTION")
    p = tsub.add_parser("show")
    _data_dir(p)
    _json_flag(p)
    p.set_defaults(handler=cmd_settings_show)
    p = tsub.add_parser("set")
    _data_dir(p)
    _json_flag(p)
    p.add_argument("key")
    p.add_argument("value", help="a JSON scalar or a plain string")
    p.set_defaults(handler=cmd_settings_set)
