"""`make demo`: a head-office server and a counter terminal on demo data, on this machine.

First run: a head-office database (SQLite) with a demo chain and store (catalog, opening
stock), a head-office signing key, a signed policy bundle and offline allowances published
to the store; a terminal enrolled with a one-time code and synced, so it receives the
catalog, stock, bundle and allowances over the real protocol; demo users and a few
prescriptions in the queue. Every run: the server starts on 127.0.0.1, the terminal syncs,
then the counter opens (or, without a display, a scripted counter day runs and is pushed
to head office), and the server stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from terminal import demo_day

TENANT, STORE = "demo-chain", "demo-austin-01"


def _pharmos(*args: str, stdin: str | None = None) -> Any:
    proc = subprocess.run([sys.executable, "-m", "terminal.cli", *args, "--json"], input=stdin,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"pharmos {' '.join(args[:3])} failed: {proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


@contextlib.contextmanager
def server(db_url: str, log: Path) -> Iterator[str]:
    """A head-office server process on 127.0.0.1 (port 8787 when free), stopped on exit."""
    from sync_server.process import free_port, running_server

    with running_server(db_url, port=free_port(8787), log=log, migrate=False) as (url, _pid):
        yield url


def _point_at(terminal_dir: Path, url: str) -> None:
    """The server's port may differ between demo runs: keep the terminal pointed at it."""
    from pharmacy import replication
    from pharmacy.store import Store

    with Store.open(terminal_dir) as store, store.transaction() as conn:
        replication.set_state(conn, "server_url", url)


def prepare(base: Path) -> dict[str, Any]:
    """Create the head office and enroll the terminal, once. Returns what was done."""
    base.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{(base / 'headoffice.db').resolve()}"
    term = base / "terminal"
    if (term / "pharmos.db").exists():
        return {"db": db_url, "terminal": str(term), "created": False}
    _pharmos("server", "migrate", "--db", db_url)
    _pharmos("server", "admin", "--db", db_url, "create-store", "--tenant", TENANT,
             "--store", STORE, "--jurisdiction", "US-TX", "--demo")
    key = base / "hq-signing.key"
    if not key.exists():
        _pharmos("policy", "keygen", "--out", str(key))
    _pharmos("policy", "build", "--out", str(base / "bundle.json"), "--version",
             time.strftime("demo-%Y%m%d%H%M%S"), "--offline-hours", "72")
    _pharmos("policy", "sign", "--key", str(key), "--in", str(base / "bundle.json"),
             "--out", str(base / "bundle.signed.json"))
    _pharmos("server", "admin", "--db", db_url, "trust-key", "--tenant", TENANT,
             str(key) + ".pub")
    _pharmos("server", "publish-bundle", "--db", db_url, "--tenant", TENANT,
             str(base / "bundle.signed.json"))
    _pharmos("server", "grant", "--db", db_url, "--store", STORE, "-", stdin=json.dumps(
        {"per_day": {"CII": 60, "CIII": 120, "CIV": 200, "CV": 200, "PSE": 40}}))
    code = _pharmos("server", "admin", "--db", db_url, "enroll-code", "--store", STORE)["code"]
    with server(db_url, base / "server.log") as url:
        enrolled = _pharmos("enroll", "--data-dir", str(term), "--server", url, "--code", code)
        first = _pharmos("sync", "--data-dir", str(term))
    from terminal import tour

    tour.ensure_demo_store(term)  # demo users, pharmacy name, a few prescriptions
    return {"db": db_url, "terminal": str(term), "created": True, "enrolled": enrolled,
            "first_sync": first}


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(base: Path, *, headless: bool | None = None, sales: int = 240,
        seed: int | None = None) -> dict[str, Any]:
    """Start the server, sync the terminal, open the counter (or run a headless day)."""
    from pharmacy.store import Store
    from terminal import wiring

    info = prepare(base)
    term = Path(info["terminal"])
    if seed is None:  # a different counter day on every run
        seed = int.from_bytes(os.urandom(4), "big")
    headless = (not has_display()) if headless is None else headless
    with server(info["db"], base / "server.log") as url:
        _point_at(term, url)
        before = _pharmos("sync", "--data-dir", str(term))
        if not headless:
            from terminal import gui_main

            gui_main.launch(term, smoke=False, as_json=False, t0=time.perf_counter())
            day: dict[str, Any] = {"gui": True}
        else:
            with Store.open(term) as store:
                from pharmacy import demo

                day = demo.run_day(store, wiring.compliance_gate(store), sales=sales,
                                   seed=seed, jurisdiction=store.get_setting("jurisdiction")
                                   or "US-TX")
        after = _pharmos("sync", "--data-dir", str(term))
        ho = _pharmos("server", "stock", "--db", info["db"], "--store", STORE)
    on_hand = sum(b["on_hand"] for b in ho.get("batches", []))
    return {**day, "stack": {
        "server": url, "head_office_db": info["db"], "terminal": str(term),
        "first_run": info["created"], "sync_before": before, "sync_after": after,
        "head_office_on_hand_units": on_hand, "head_office_batches": len(ho.get("batches", [])),
    }}


def format_summary(s: dict[str, Any]) -> str:
    st = s["stack"]
    lines = [f"pharmos demo — head office {st['head_office_db']} served at {st['server']}",
             f"  terminal        : {st['terminal']}"
             + (" (enrolled and first synced just now)" if st["first_run"] else ""),
             f"  sync before     : pulled {st['sync_before'].get('pulled')} "
             f"(server_seq {st['sync_before'].get('server_seq')})"]
    if "sales" in s:
        lines.append(demo_day.format_summary(s))
    lines += [f"  sync after      : pushed {st['sync_after'].get('pushed')}, "
              f"server_seq {st['sync_after'].get('server_seq')}",
              f"  head office     : {st['head_office_batches']} batches, "
              f"{st['head_office_on_hand_units']} units on hand"]
    return "\n".join(lines)
