"""Run a head-office server as a child process on 127.0.0.1 (demo, benchmarks, support)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        if port is None:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/health", timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def running_server(db_url: str, *, port: int | None = None, workers: int = 1,
                   log: Path | None = None, migrate: bool = True,
                   timeout: float = 30.0) -> Iterator[tuple[str, int]]:
    """Start ``python -m sync_server``; yield (base URL, pid) once /v1/health answers; stop it
    (terminate, then kill) on exit."""
    port = port or free_port()
    args = [sys.executable, "-m", "sync_server", "--db", db_url, "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    if migrate:
        args.append("--migrate")
    out: IO[bytes] | int = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None and not isinstance(out, int):
            out.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the sync server exited with {proc.returncode}"
                                   + (f"; see {log}" if log else ""))
            if _healthy(url):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the sync server did not start")
            time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
