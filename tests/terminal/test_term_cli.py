"""`pharmos terminal` and `pharmos user`, run as commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from terminal.cli import main

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)  # --smoke picks offscreen itself without a display
    return env


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=_env(), input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_smoke_paints_and_prints_timings(term_dir: Path) -> None:
    p = _run("-m", "terminal.cli", "terminal", "--data-dir", str(term_dir), "--smoke", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["first_paint_ms"] > out["qt_import_ms"] > 0
    assert out["store_open"] is True and out["platform"] == "offscreen"
    p2 = _run("-m", "terminal.gui_main", "--data-dir", str(term_dir), "--smoke", "--json")
    assert p2.returncode == 0, p2.stderr
    assert set(json.loads(p2.stdout)) >= {"first_paint_ms", "qt_import_ms", "paint_at"}


def test_terminal_without_a_store_says_how_to_make_one(tmp_path: Path,
                                                        capsys: Any) -> None:
    code = main(["terminal", "--data-dir", str(tmp_path / "none"), "--json"])
    assert code == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["code"] == "NO_STORE" and "pharmos init" in err["message"]


def test_terminal_without_a_display_says_so(term_dir: Path) -> None:
    p = _run("-m", "terminal.cli", "terminal", "--data-dir", str(term_dir), "--json")
    assert p.returncode == 1
    assert json.loads(p.stdout)["error"]["code"] == "NO_DISPLAY"


def test_demo_without_a_display_runs_the_headless_tour(tmp_path: Path) -> None:
    shots = tmp_path / "shots"
    p = _run("-m", "terminal.cli", "terminal", "--demo", "--data-dir", str(tmp_path / "d"),
             "--screenshots", str(shots), "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and len(out["steps"]) > 20
    assert "no display" in p.stderr and "ava (pharmacist, PIN 2468)" in p.stderr
    assert len(list(shots.glob("*.png"))) == 8


def test_user_commands(term_dir: Path, capsys: Any) -> None:
    d = str(term_dir)
    assert main(["user", "add", "--data-dir", d, "--username", "nina", "--name", "Nina Ross",
                 "--role", "technician", "--pin", "6147", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["role"] == "technician"
    assert main(["user", "list", "--data-dir", d, "--json"]) == 0
    names = [u["username"] for u in json.loads(capsys.readouterr().out)["users"]]
    assert names == ["cara", "max", "nina", "paula", "tom"]
    assert main(["user", "add", "--data-dir", d, "--username", "nina", "--role", "cashier",
                 "--pin", "6147", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "USER_EXISTS"
    assert main(["user", "disable", "--data-dir", d, "nina"]) == 0
    assert main(["user", "enable", "--data-dir", d, "nina"]) == 0
    capsys.readouterr()
    p = _run("-m", "terminal.cli", "user", "passwd", "--data-dir", d, "nina",
             "--password-stdin", "--json", stdin="correct horse battery\n")
    assert p.returncode == 0, p.stderr
    assert main(["user", "add", "--data-dir", d, "--username", "weak", "--role", "cashier",
                 "--pin", "1234", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "WEAK_SECRET"


def test_user_policy(term_dir: Path, capsys: Any) -> None:
    d = str(term_dir)
    assert main(["user", "policy", "--data-dir", d, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "idle_lock_seconds": 120, "max_failures": 5, "lockout_seconds": 300}
    assert main(["user", "policy", "--data-dir", d, "--idle-lock-seconds", "45",
                 "--max-failures", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["idle_lock_seconds"] == 45 and out["max_failures"] == 3
    assert main(["user", "policy", "--data-dir", d, "--idle-lock-seconds", "1",
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "BAD_POLICY"


def test_emergency_access_reviews(term_dir: Path, capsys: Any) -> None:
    from pharmacy import users
    from pharmacy.store import Store

    with Store.open(term_dir) as store:
        s = users.login(store, "cara", "4826")
        seq = users.break_glass(store, s, "read_med_history", "patient collapsed, allergies")[
            "seq"]
    d = str(term_dir)
    assert main(["audit", "break-glass", "--data-dir", d, "--json"]) == 0
    pending = json.loads(capsys.readouterr().out)["pending"]
    assert [(p["seq"], p["subject"], p["review"]) for p in pending] == [
        (seq, "read_med_history", "pending")]
    assert main(["audit", "review", "--data-dir", d, "--seq", str(seq), "--reviewer", "cara",
                 "--note", "fine", "--json"]) == 2  # a cashier does not review
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "ROLE_NOT_PERMITTED"
    assert main(["audit", "review", "--data-dir", d, "--seq", str(seq), "--reviewer", "max",
                 "--note", "called the pharmacist; justified", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reviewed"] == seq
    assert main(["audit", "break-glass", "--data-dir", d, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == []
