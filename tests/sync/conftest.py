"""Sync fixtures: server stores on SQLite and on a fresh PostgreSQL database, real server
processes on 127.0.0.1, terminals enrolled against them, an in-memory keyring."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import keyring
import pytest

from pharmacy import catalog
from sync_server.storage import SqlServerStore, open_store
from tests.conftest import ROOT, SMALL_CATALOG
from tests.sync.memkeyring import MemoryKeyring

# subprocesses (CLI runs, servers) never see a real keyring: they fall back to the token file
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"

PG_ADMIN = os.environ.get("PHARMOS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
OPENING = [
    {"ndc": "0904-6728-60", "lot": "IB1", "expiry": "2027-06-30", "qty": 200},
    {"ndc": "0093-0058-01", "lot": "AM1", "expiry": "2027-06-30", "qty": 500},
    {"ndc": "50580-451-01", "lot": "SU1", "expiry": "2027-05-31", "qty": 40},
]


def products() -> list[catalog.Product]:
    return [catalog.product_from_json(p) for p in SMALL_CATALOG]


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    try:
        yield kr
    finally:
        keyring.set_keyring(old)


# ---- PostgreSQL -----------------------------------------------------------------------------
def _pg_unavailable(reason: str) -> None:
    if os.environ.get("PHARMOS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (PHARMOS_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {reason}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    import psycopg

    name = f"pharmos_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as e:
        _pg_unavailable(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(psycopg.Error), \
                psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def server_store(db_url: str) -> Iterator[SqlServerStore]:
    s = open_store(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


# ---- server processes -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m sync_server`` on 127.0.0.1; restartable on the same port and database."""

    def __init__(self, db: str, port: int | None = None, max_body: int | None = None,
                 workers: int = 1) -> None:
        self.db = db
        self.port = port or free_port()
        self.max_body = max_body
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> ServerProcess:
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        cmd = [sys.executable, "-m", "sync_server", "--db", self.db, "--port", str(self.port),
               "--migrate", "--log-level", "warning"]
        if self.max_body:
            cmd += ["--max-body", str(self.max_body)]
        if self.workers != 1:
            cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited {self.proc.returncode}: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not come up")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush beyond what was committed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def live_server(db_url: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(db_url).start()
    try:
        yield srv
    finally:
        srv.stop()


def seed_store(db: str, tenant: str, store: str, *, opening: bool = True,
               jurisdiction: str | None = "US-TX") -> dict[str, Any]:
    s = open_store(db)
    try:
        s.migrate()
        return s.create_store(tenant, store, jurisdiction=jurisdiction, products=products(),
                              opening=OPENING if opening else ())
    finally:
        s.close()


def enroll_code(db: str, tenant: str, store: str) -> str:
    s = open_store(db)
    try:
        return str(s.create_enroll_code(tenant, store)["code"])
    finally:
        s.close()
