"""Docs tested against code: every command of the README tour runs, with the exit status the
README says (0 unless the line ends with `# exit N`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
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
    env = {**os.environ, "D": str(tmp_path / "term"), "D2": str(tmp_path / "demo"),
           "SHARED": str(shared_data()), "CATALOG": str(catalog),
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    for line in lines:
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
