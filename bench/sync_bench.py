"""Sync benchmark (issue 4): a bounded loopback load test of the head-office server.

One real terminal day is made first: 500 sales through the dispense transaction on a demo
store; its push (events + counter rows) is the template every simulated terminal sends,
with its own replica and event ids, encoded as the terminal's client encodes it (protocol 2:
events as columns) and gzip-compressed. A real server (uvicorn on 127.0.0.1; two worker
processes on PostgreSQL, one on SQLite) is loaded by a few client threads, each request
gzip-compressed as terminals send it; one terminal-day sync = one push of the whole day + one
pull from cursor 0. A few syncs run first and are not counted (connections, caches), then
300 are measured. The load generator shares the machine, so it is kept light (the standard
library's HTTP client over keep-alive connections) and its own CPU is reported. Reported:
terminal-day syncs/s, p50/p99 sync latency, the server processes' CPU per sync (Linux), the
load generator's CPU per sync, and the ratio to a bare durable-commit ingest (the same gzip
bodies inserted one row per commit into the same database engine, same concurrency)
measured in the same run. Both SQLite and PostgreSQL (a fresh database on 127.0.0.1, dropped
afterwards; skipped if unreachable).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.stats import cpu_reference_ms, ratio, summary
from pharmacy import event_columns
from terminal.sync_client import PUSH_PROTOCOL, UPLOAD_GZIP_LEVEL  # as terminals send them

ROOT = Path(__file__).resolve().parents[1]
SALES_PER_DAY = 500
TERMINALS_PER_STORE = 5
PG_ADMIN = os.environ.get("PHARMOS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET = {"pg_syncs_per_s": 100, "upload_gzip_bytes": 20_000}


# ---- one real terminal day ------------------------------------------------------------------
def terminal_day(sales: int = SALES_PER_DAY) -> tuple[dict[str, Any], list[Any]]:
    """Push payload (events + counters) of a day of real sales, and the catalog used."""
    from pharmacy import catalog, demo, inventory, replication
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser
    from pharmacy.store import Store

    products = catalog.demo_catalog()
    with tempfile.TemporaryDirectory() as d:
        store = Store.init(Path(d) / "term", "bench")
        try:
            catalog.upsert_products(store, products)
            today = store.clock().date()
            inventory.receive(store, demo.opening_stock(products, today), supplier="opening")
            replication.ack_push(store, replication.collect_push(store, limit=100_000))
            sellable = [r for r in inventory.stock(store.conn, today)
                        if r["status"] == "active" and r["on_hand"] > 20
                        and not r["dea_schedule"] and not r["cmea"]
                        and r["india_schedule"] not in ("H", "H1", "X")]
            disp = Dispenser(store, InterimGate())
            sold = i = 0
            while sold < sales:
                r = sellable[i % len(sellable)]
                i += 1
                lines = [{"ndc": r["ndc"], "qty": 1 + i % 2}]
                if i % 3 == 0:
                    other = sellable[(i * 7) % len(sellable)]
                    if other["ndc"] != r["ndc"]:
                        lines.append({"ndc": other["ndc"], "qty": 1})
                try:
                    disp.sell({"lines": lines})
                except Exception:  # a rule or stock refusal: not a sale
                    continue
                sold += 1
            batch = replication.collect_push(store, limit=100_000)
            payload = {"events": batch.events, "counters": batch.counters}
        finally:
            store.close()
    return payload, products


def terminal_payload(day: dict[str, Any], store_id: str,
                     protocol: int = PUSH_PROTOCOL) -> bytes:
    """The day as one simulated terminal sends it (its own replica and event ids), encoded
    and compressed as the terminal's client does."""
    from pharmacy.ids import IdClock

    ids = IdClock()  # each simulated terminal is its own process with its own id clock
    replica = str(uuid.uuid4())
    events = [{**e, "event_id": ids.new(), "replica_id": replica} for e in day["events"]]
    groups: list[dict[str, Any]] = []
    if protocol >= 2:
        groups, events = event_columns.pack(events)
    body: dict[str, Any] = {
        "protocol": protocol, "idempotency_key": str(uuid.uuid4()), "store_id": store_id,
        "replica_id": replica, "replica_seq": max((e["seq"] for e in day["events"]), default=0),
        "events": events,
        "counters": [{**c, "replica_id": replica} for c in day["counters"]],
        "docs": [],
        "status": {"pending_events": len(day["events"]), "pending_counters":
                   len(day["counters"])},
    }
    if groups:
        body["event_groups"] = groups
    return gzip.compress(json.dumps(body, separators=(",", ":")).encode(), UPLOAD_GZIP_LEVEL)


# ---- server process -------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU so far of a process and its worker processes (Linux /proc; None
    elsewhere)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [pid, *(int(c) for c in f.read().split())]
        total = 0
        for p in pids:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def server(db: str, workers: int) -> Iterator[tuple[str, int]]:
    from sync_server.process import running_server

    with running_server(db, workers=workers) as (url, pid):
        yield url, pid


def _enroll(db: str, n: int, products: list[Any]) -> list[tuple[str, str]]:
    """n terminals in stores of five: (store_id, token)."""
    from sync_server.storage import open_store

    st = open_store(db)
    try:
        st.migrate()
        tenant = f"bench{secrets.token_hex(3)}"
        out = []
        for i in range(n):
            sid = f"store{i // TERMINALS_PER_STORE:05d}"
            if i % TERMINALS_PER_STORE == 0:
                st.create_store(tenant, sid, products=products)
            code = st.create_enroll_code(tenant, sid)["code"]
            out.append((sid, st.enroll(code, f"t{i}", None)["token"]))
        # terminals of a store sync at different moments: spread concurrent pushes
        random.Random(0).shuffle(out)
        return out
    finally:
        st.close()


def _parallel(n: int, threads: int, work: Callable[[int], float]) -> tuple[float, list[float]]:
    lat: list[float] = []
    lock = threading.Lock()
    next_i = [0]
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n or errors:
                return
            try:
                dt = work(i)
            except BaseException as e:
                errors.append(e)
                return
            with lock:
                lat.append(dt)

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall, lat


def load(url: str, terminals: list[tuple[str, str]], bodies: list[bytes],
         threads: int, server_pid: int | None = None) -> dict[str, Any]:
    """Each thread syncs terminals over its own keep-alive connection. The load generator
    shares the machine with the server and the database, so it is kept light (the standard
    library's HTTP client, responses read but not decoded) and its own CPU is reported."""
    import http.client
    from urllib.parse import urlsplit

    host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
    local = threading.local()
    conns: list[http.client.HTTPConnection] = []
    lock = threading.Lock()

    def post(path: str, body: bytes, headers: dict[str, str]) -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = http.client.HTTPConnection(host, port, timeout=120)
            with lock:
                conns.append(c)
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            if r.getheader("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            raise RuntimeError(f"{path}: HTTP {r.status}: {data[:300]!r}")

    def one(i: int) -> float:
        sid, token = terminals[i]
        auth = f"Bearer {token}"
        pull = json.dumps({"protocol": 1, "store_id": sid, "replica_id": "x", "cursor": 0,
                           "limit": 2000}).encode()
        t0 = time.perf_counter()
        post("/v1/push", bodies[i], {"Authorization": auth, "Content-Type": "application/json",
                                     "Content-Encoding": "gzip", "Accept-Encoding": "gzip"})
        post("/v1/pull", pull, {"Authorization": auth, "Content-Type": "application/json",
                                "Accept-Encoding": "gzip"})
        return time.perf_counter() - t0

    cpu0 = None if server_pid is None else _cpu_seconds(server_pid)
    own0 = time.process_time()
    try:
        wall, lat = _parallel(len(terminals), threads, one)
    finally:
        for c in conns:
            c.close()
    own1 = time.process_time()
    out = {"syncs": len(lat), "seconds": round(wall, 3),
           "syncs_per_s": round(len(lat) / wall, 2), **summary(lat)}
    cpu1 = None if server_pid is None else _cpu_seconds(server_pid)
    if cpu0 is not None and cpu1 is not None and lat:
        # the server processes' own CPU per sync (not the database's)
        out["server_cpu_ms_per_sync"] = round((cpu1 - cpu0) * 1000 / len(lat), 2)
    if lat:
        out["load_generator_cpu_ms_per_sync"] = round((own1 - own0) * 1000 / len(lat), 2)
    return out


# ---- floors: a bare durable commit of the same bodies ---------------------------------------
def floor_sqlite(path: Path, bodies: list[bytes], threads: int) -> dict[str, Any]:
    conn0 = sqlite3.connect(path)
    conn0.execute("PRAGMA journal_mode=WAL")
    conn0.execute("CREATE TABLE IF NOT EXISTS ingest (id INTEGER PRIMARY KEY, body BLOB)")
    conn0.close()
    local = threading.local()
    conns: list[sqlite3.Connection] = []

    def one(i: int) -> float:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = sqlite3.connect(path, isolation_level=None, timeout=60,
                                          check_same_thread=False)
            c.execute("PRAGMA synchronous=FULL")
            conns.append(c)
        t0 = time.perf_counter()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO ingest(body) VALUES (?)", (bodies[i],))
        c.execute("COMMIT")
        return time.perf_counter() - t0

    try:
        wall, lat = _parallel(len(bodies), threads, one)
    finally:
        for c in conns:
            c.close()
    return {"commits_per_s": round(len(lat) / wall, 2), **summary(lat)}


def floor_pg(url: str, bodies: list[bytes], threads: int) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS ingest (id BIGSERIAL PRIMARY KEY, body BYTEA)")
    local = threading.local()
    conns: list[Any] = []

    def one(i: int) -> float:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = psycopg.connect(url, autocommit=True)
            conns.append(c)
        t0 = time.perf_counter()
        with c.transaction():
            c.execute("INSERT INTO ingest(body) VALUES (%s)", (bodies[i],))
        return time.perf_counter() - t0

    try:
        wall, lat = _parallel(len(bodies), threads, one)
    finally:
        for c in conns:
            c.close()
    return {"commits_per_s": round(len(lat) / wall, 2), **summary(lat)}


# head office's recommended setting (docs/sync.md, Capacity): full-page images after each
# checkpoint are most of a day's ingest WAL; compressed, sustained ingest stays flat
PG_DATABASE_SETTINGS = {"wal_compression": "lz4"}


@contextlib.contextmanager
def pg_database() -> Iterator[str | None]:
    """A fresh database (dropped afterwards) with PG_DATABASE_SETTINGS set on it when this
    role may set them; None when PostgreSQL is unreachable."""
    try:
        import psycopg

        name = f"pharmos_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as c:
            c.execute(f"CREATE DATABASE {name}")
            for key, value in PG_DATABASE_SETTINGS.items():
                with contextlib.suppress(psycopg.Error):  # not a superuser: the server's own
                    c.execute(f"ALTER DATABASE {name} SET {key} = '{value}'")
    except Exception:
        yield None
        return
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with contextlib.suppress(Exception), \
                psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_settings(url: str) -> dict[str, str]:
    """The settings that shape ingest, as a new session of the bench database sees them."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        names = ["shared_buffers", "max_wal_size", "checkpoint_timeout", "wal_compression",
                 "synchronous_commit", "server_version"]
        row = c.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)
                        ).fetchone()
    return dict(zip(names, map(str, row or ()), strict=False))


def sustained(total: int = 2000, chunk: int = 250, threads: int = 4) -> dict[str, Any]:
    """PostgreSQL only: ``total`` terminal-day syncs in chunks, throughput per chunk, as the
    events table grows (checkpoints and full-page writes included)."""
    day, products = terminal_day()
    with pg_database() as pg:
        if pg is None:
            return {"skipped": f"PostgreSQL not reachable at {PG_ADMIN}"}
        warm = 20
        terms = _enroll(pg, warm + total, products)
        bodies = [terminal_payload(day, sid) for sid, _ in terms]
        chunks: list[dict[str, Any]] = []
        with server(pg, 2) as (url, pid):
            load(url, terms[:warm], bodies[:warm], threads)
            t0 = time.perf_counter()
            for k in range(warm, warm + total, chunk):
                res = load(url, terms[k:k + chunk], bodies[k:k + chunk], threads, pid)
                chunks.append({key: res.get(key) for key in (
                    "syncs", "syncs_per_s", "p99_ms", "server_cpu_ms_per_sync")})
            wall = time.perf_counter() - t0
        rates = [c["syncs_per_s"] for c in chunks]
        return {"syncs": total, "chunk": chunk, "syncs_per_s": round(total / wall, 2),
                "chunk_syncs_per_s": {"min": min(rates), "max": max(rates),
                                      "median": sorted(rates)[len(rates) // 2]},
                "chunks": chunks, "postgres_settings": pg_settings(pg),
                "cpu_reference_ms": cpu_reference_ms()}


# ---- the benchmark --------------------------------------------------------------------------
def run(quick: bool = False) -> dict[str, Any]:
    n = 20 if quick else 300
    warm = 4 if quick else 20  # syncs run first and not counted: connections, caches
    threads = 4
    # PostgreSQL: a worker process per core (the Python server is the busiest process);
    # SQLite has one writer, a second process only adds lock waits to the tail latency
    workers = {"sqlite": 1, "postgresql": 2}
    t0 = time.perf_counter()
    day, products = terminal_day()
    upload = terminal_payload(day, "store00000")
    out: dict[str, Any] = {
        "terminals": n, "sales_per_day": SALES_PER_DAY,
        "events_per_day": len(day["events"]), "counter_rows_per_day": len(day["counters"]),
        "push_protocol": PUSH_PROTOCOL,
        "upload_raw_bytes": len(gzip.decompress(upload)),
        "upload_gzip_bytes": len(upload),
        "upload_gzip_bytes_protocol_1": len(terminal_payload(day, "store00000", protocol=1)),
        "warm_up_syncs": warm, "client_threads": threads, "server_workers": workers,
        "target": TARGET,
    }
    with tempfile.TemporaryDirectory() as d:
        db = f"sqlite:///{Path(d) / 'server.db'}"
        terms = _enroll(db, warm + n, products)
        bodies = [terminal_payload(day, sid) for sid, _ in terms]
        with server(db, workers["sqlite"]) as (url, pid):
            load(url, terms[:warm], bodies[:warm], threads)
            terms, bodies = terms[warm:], bodies[warm:]
            res = load(url, terms, bodies, threads, pid)
        fl = floor_sqlite(Path(d) / "floor.db", bodies, threads)
        out["sqlite"] = {**res, "floor": fl,
                         "ratio_to_floor": ratio(res["syncs_per_s"], fl["commits_per_s"])}
    with pg_database() as pg:
        if pg is None:
            out["postgresql"] = {"skipped": f"PostgreSQL not reachable at {PG_ADMIN}"}
        else:
            terms = _enroll(pg, warm + n, products)
            bodies = [terminal_payload(day, sid) for sid, _ in terms]
            with server(pg, workers["postgresql"]) as (url, pid):
                load(url, terms[:warm], bodies[:warm], threads)
                terms, bodies = terms[warm:], bodies[warm:]
                res = load(url, terms, bodies, threads, pid)
            fl = floor_pg(pg, bodies, threads)
            out["postgresql"] = {
                **res, "floor": fl, "postgres_settings": pg_settings(pg),
                "ratio_to_floor": ratio(res["syncs_per_s"], fl["commits_per_s"]),
                "meets_target": res["syncs_per_s"] >= TARGET["pg_syncs_per_s"],
                "minutes_for_50000_terminals": round(50_000 / res["syncs_per_s"] / 60, 1),
            }
    out["upload_meets_target"] = out["upload_gzip_bytes"] <= TARGET["upload_gzip_bytes"]
    out["cpu_reference_ms"] = cpu_reference_ms()  # syncs/s is absolute: how fast was Python
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


if __name__ == "__main__":
    if "--sustained" in sys.argv:
        print(json.dumps(sustained(), indent=2))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
