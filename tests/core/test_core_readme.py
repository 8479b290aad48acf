"""Docs tested against code: every command of the README tour runs, with the exit status the
README says (0 unless the line ends with `# exit N`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import SMALL_CATALOG, shared_data

ROOT = Path(__file__).resolve().parents[2]


def tour_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- tour:start -->")[1].split("<!-- tour:end -->")[0]
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("```")]


@pytest.mark.slow
def test_readme_tour_runs(tmp_path: Path) -> None:
    lines = tour_lines()
    assert len(lines) >= 15
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"products": SMALL_CATALOG}))
    bindir = Path(sys.executable).parent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "D": str(tmp_path / "term"), "D2": str(tmp_path / "demo"),
           "D3": str(tmp_path / "term3"), "HO": f"sqlite:///{tmp_path / 'ho.db'}",
           "PORT": str(port), "SHARED": str(shared_data()), "CATALOG": str(catalog),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    try:
        _run_tour(lines, env, tmp_path, port)
    finally:  # never leave the tour's server running
        pid = tmp_path / "server.pid"
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text().strip()), signal.SIGKILL)


def _run_tour(lines: list[str], env: dict[str, str], tmp_path: Path, port: int) -> None:
    for line in lines:
        if line.startswith("pharmos enroll"):
            _wait_for_port(port)
        m = re.search(r"#\s*exit (\d)\s*$", line)
        expected = int(m.group(1)) if m else 0
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True,
                              text=True, env=env, timeout=300, cwd=tmp_path)
        assert proc.returncode == expected, (line, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (line, proc.stderr)
        if "--json" in line and proc.stdout.strip():
            out = json.loads(proc.stdout)
            if expected:  # a refusal names its code: an error, or a decision's reasons
                assert out.get("error", {}).get("code") or out["reasons"][0]["code"], line


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise AssertionError(f"the tour's server did not listen on {port}")
