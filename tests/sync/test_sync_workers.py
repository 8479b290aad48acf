"""``--workers N``: N processes on one listening socket; keep-alive requests are not held
back by Nagle's algorithm; SIGTERM stops every worker."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.sync.conftest import ServerProcess


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs Linux /proc to see worker processes")
    return [int(c) for c in path.read_text().split()]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="worker processes need fork")
def test_two_workers_answer_fast_on_keep_alive_and_stop_together(tmp_path: Path) -> None:
    srv = ServerProcess(f"sqlite:///{tmp_path / 'server.db'}", workers=2).start()
    try:
        assert srv.proc is not None
        kids = _children(srv.proc.pid)
        assert len(kids) == 2
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            c.get("/v1/health")
            took = []
            for _ in range(20):
                t0 = time.perf_counter()
                assert c.get("/v1/health").status_code == 200
                took.append(time.perf_counter() - t0)
        # with Nagle on, each keep-alive response waits for a delayed ACK (~40 ms)
        assert statistics.median(took) < 0.02, took
    finally:
        srv.stop()
    assert srv.proc is not None and srv.proc.returncode == 0
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{k}").exists() for k in kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{k}").exists() for k in kids)
