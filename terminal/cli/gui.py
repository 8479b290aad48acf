"""`pharmos terminal` (the counter GUI) and `pharmos user` (counter accounts)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pharmacy.errors import BadInput
from terminal.cli._common import add_data_dir, add_json, add_secret_args, emit, secret_from_args


def _data_dir(arg: str | None) -> Path:
    from terminal import wiring

    return wiring.resolve_data_dir(arg)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"))


def cmd_terminal(args: argparse.Namespace) -> int:
    d = _data_dir(args.data_dir)
    if args.demo:
        from terminal import tour

        prepared = tour.ensure_demo_store(d)
        if prepared:
            print(f"demo store ready in {d}; demo users: "
                  + ", ".join(f"{u} ({r}, PIN {p})" for u, _n, r, p in tour.DEMO_USERS),
                  file=sys.stderr)
        if not args.smoke and not _has_display():
            print("no display: running the headless counter tour instead", file=sys.stderr)
            out_dir = Path(args.screenshots) if args.screenshots else None
            summary = tour.headless(d, out_dir)
            emit(args, summary, tour.format_summary(summary))
            return 0 if summary.get("ok") else 3
    if not (d / "pharmos.db").exists():
        raise BadInput(f"no store in {d}; run 'pharmos init --data-dir {d} --store-id ...' "
                       "(or 'pharmos terminal --demo --data-dir DIR')", code="NO_STORE")
    if not args.smoke and not _has_display():
        raise BadInput("no display to open the counter on (DISPLAY / WAYLAND_DISPLAY unset); "
                       "use --smoke to check start-up, or --demo for the headless tour",
                       code="NO_DISPLAY")
    from terminal import gui_main

    return gui_main.launch(d, smoke=args.smoke, as_json=args.json,
                           t0=time.perf_counter())


def cmd_user_add(args: argparse.Namespace) -> int:
    from pharmacy import users
    from pharmacy.store import Store

    kind, secret = secret_from_args(args)
    with Store.open(_data_dir(args.data_dir)) as store:
        ch = users.add_user(store, args.username, args.name or args.username, args.role,
                            secret, kind=kind)
    emit(args, {"user_id": ch.user_id, "username": ch.username, "role": ch.role},
         f"user {ch.username} ({ch.role}) added")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from pharmacy import users
    from pharmacy.store import Store

    with Store.open(_data_dir(args.data_dir)) as store:
        rows = users.list_users(store.conn)
    emit(args, {"users": rows}, "\n".join(
        f"{u['username']:<16} {u['role']:<11} {'active' if u['active'] else 'disabled':<9} "
        f"{u['display_name']}" for u in rows) or "no users")
    return 0


def cmd_user_secret(args: argparse.Namespace) -> int:
    from pharmacy import users
    from pharmacy.store import Store

    kind, secret = secret_from_args(args)
    with Store.open(_data_dir(args.data_dir)) as store:
        ch = users.set_secret(store, args.username, secret, kind=kind)
    emit(args, {"username": ch.username, "changed": "secret"},
         f"new {kind} set for {ch.username}")
    return 0


def cmd_user_active(args: argparse.Namespace) -> int:
    from pharmacy import users
    from pharmacy.store import Store

    with Store.open(_data_dir(args.data_dir)) as store:
        ch = users.set_active(store, args.username, args.active)
    emit(args, {"username": ch.username, "active": ch.active},
         f"{ch.username} {'enabled' if ch.active else 'disabled'}")
    return 0


POLICY_SETTINGS = (("idle_lock_seconds", "auth.idle_lock_seconds"),
                   ("max_failures", "auth.max_failures"),
                   ("lockout_seconds", "auth.lockout_seconds"))


def cmd_user_policy(args: argparse.Namespace) -> int:
    """Show or set the sign-in policy: idle lock, failed attempts before a lockout, lockout."""
    from pharmacy import users
    from pharmacy.store import Store

    defaults = {"idle_lock_seconds": users.DEFAULT_IDLE_LOCK_SECONDS,
                "max_failures": users.DEFAULT_MAX_FAILURES,
                "lockout_seconds": users.DEFAULT_LOCKOUT_SECONDS}
    with Store.open(_data_dir(args.data_dir)) as store:
        for name, key in POLICY_SETTINGS:
            value = getattr(args, name)
            if value is None:
                continue
            low = 5 if name != "max_failures" else 1
            if not low <= value <= 86_400:
                raise BadInput(f"--{name.replace('_', '-')} must be {low}..86400",
                               code="BAD_POLICY")
            store.set_setting(key, str(value))
        out = {name: int(store.get_setting(key) or defaults[name])
               for name, key in POLICY_SETTINGS}
    emit(args, out, "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("terminal", help="the counter terminal (PySide6)")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--smoke", action="store_true",
                   help="start, paint the main window (offscreen without a display), exit")
    p.add_argument("--demo", action="store_true",
                   help="create a demo store with demo users in --data-dir if there is none; "
                        "without a display, run the headless counter tour")
    p.add_argument("--screenshots", help="with --demo and no display: save screens here")
    p.set_defaults(handler=cmd_terminal)

    user = sub.add_parser("user", help="counter accounts (one per person)")
    usub = user.add_subparsers(dest="user_command", required=True)
    p = usub.add_parser("add", help="add a user")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--username", required=True)
    p.add_argument("--name", help="display name")
    p.add_argument("--role", required=True,
                   choices=["pharmacist", "technician", "cashier", "manager"])
    add_secret_args(p)
    p.set_defaults(handler=cmd_user_add)
    p = usub.add_parser("list", help="list users")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(handler=cmd_user_list)
    p = usub.add_parser("passwd", help="set a new PIN or password")
    add_data_dir(p)
    add_json(p)
    p.add_argument("username")
    add_secret_args(p)
    p.set_defaults(handler=cmd_user_secret)
    p = usub.add_parser("policy", help="show or set idle lock and lockout")
    add_data_dir(p)
    add_json(p)
    p.add_argument("--idle-lock-seconds", type=int,
                   help="lock a signed-in session after this many idle seconds")
    p.add_argument("--max-failures", type=int, help="wrong PINs before a lockout")
    p.add_argument("--lockout-seconds", type=int, help="how long a lockout lasts")
    p.set_defaults(handler=cmd_user_policy)
    for name, active in (("disable", False), ("enable", True)):
        p = usub.add_parser(name, help=f"{name} a user")
        add_data_dir(p)
        add_json(p)
        p.add_argument("username")
        p.set_defaults(handler=cmd_user_active, active=active)
