"""The sync scheduler: a nightly slot missed while the terminal was off is caught up at
start; misfires get hours of grace; opportunistic syncs never overlap."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pharmacy import replication
from pharmacy.clock import iso
from pharmacy.errors import PharmosError
from pharmacy.store import Store
from terminal.sync_client import SyncScheduler, last_nightly, nightly_due, parse_at

TWO = parse_at("02:00")


def test_last_nightly_and_due() -> None:
    now = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    assert last_nightly(now, TWO) == datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    early = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    assert last_nightly(early, TWO) == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    assert nightly_due(None, now, TWO)
    assert nightly_due(datetime(2026, 11, 1, 23, 0, tzinfo=UTC), now, TWO)  # off at 02:00
    assert not nightly_due(datetime(2026, 11, 2, 2, 5, tzinfo=UTC), now, TWO)
    assert not nightly_due(datetime(2026, 11, 1, 2, 30, tzinfo=UTC), early, TWO)
    with pytest.raises(PharmosError):
        parse_at("25h")


def _store(tmp_path: Path, last_success: datetime | None) -> Path:
    d = tmp_path / "term"
    s = Store.init(d, "s1")
    try:
        if last_success is not None:
            with s.transaction() as c:
                replication.set_state(c, "last_success", iso(last_success))
    finally:
        s.close()
    return d


def _wait(pred: object, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_terminal_that_was_off_at_night_syncs_when_it_starts(tmp_path: Path) -> None:
    d = _store(tmp_path, datetime.now(UTC) - timedelta(days=2))
    calls: list[str] = []
    sched = SyncScheduler(d, at="02:00", every_minutes=0, misfire_grace_hours=6,
                          run=lambda: calls.append("sync"))
    with sched.running():
        assert _wait(lambda: calls)
        job = sched._sched.get_job("nightly")
        assert job.misfire_grace_time == 6 * 3600 and job.coalesce
        assert sched._sched.get_job("opportunistic") is None
    assert sched.runs[0]["reason"] == "catch-up" and sched.runs[0]["ok"]


def test_no_catch_up_after_a_recent_success(tmp_path: Path) -> None:
    d = _store(tmp_path, datetime.now(UTC))
    calls: list[str] = []
    sched = SyncScheduler(d, at="02:00", every_minutes=0, run=lambda: calls.append("x"))
    with sched.running():
        time.sleep(0.5)
    assert calls == []


def test_opportunistic_syncs_repeat_and_failures_are_recorded(tmp_path: Path) -> None:
    d = _store(tmp_path, datetime.now(UTC))
    n = [0]

    def flaky() -> None:
        n[0] += 1
        if n[0] == 1:
            raise PharmosError("offline", code="SYNC_UNAVAILABLE")

    sched = SyncScheduler(d, every_minutes=0.005, run=flaky)
    with sched.running():
        assert _wait(lambda: len(sched.runs) >= 2, timeout=10)
    assert sched.runs[0] == {"reason": "opportunistic", "ok": False,
                             "error": "SYNC_UNAVAILABLE"}
    assert sched.runs[1]["ok"]


def test_syncs_never_overlap(tmp_path: Path) -> None:
    d = _store(tmp_path, None)
    gate = threading.Event()
    sched = SyncScheduler(d, run=gate.wait)
    t = threading.Thread(target=sched.run_once, args=["nightly"])
    t.start()
    time.sleep(0.1)
    assert sched.run_once("opportunistic") is False  # one is running
    gate.set()
    t.join()
    assert [r["reason"] for r in sched.runs] == ["nightly"]
