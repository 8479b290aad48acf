"""docs/hardware.md tested against code: every command of its installer tour runs through the
real `pharmos` console script, against a fake 9100 printer and a pty scanner, with the exit
status the page says (0 unless the line ends with `# exit N`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from hardware.escpos_parse import parse
from hardware.fake_printer import FakeNetworkPrinter
from pharmacy import catalog, inventory
from pharmacy.compliance import InterimGate
from pharmacy.gs1 import GS
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from tests.conftest import SMALL_CATALOG
from tests.hardware.conftest import Pty

ROOT = Path(__file__).resolve().parents[2]


def tour_lines() -> list[str]:
    text = (ROOT / "docs" / "hardware.md").read_text()
    block = text.split("<!-- hw-tour:start -->")[1].split("<!-- hw-tour:end -->")[0]
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("```")]


def make_store(d: Path) -> str:
    with Store.init(d, "austin-01") as store:
        catalog.upsert_products(store, [catalog.product_from_json(p) for p in SMALL_CATALOG])
        inventory.receive(store, [{"ndc": "0904-6728-60", "lot": "IB2701",
                                   "expiry": "2030-01-31", "qty": 24}])
        return Dispenser(store, InterimGate()).sell(
            {"lines": [{"ndc": "0904-6728-60", "qty": 2}]}).sale_id


def test_hardware_tour_runs(tmp_path: Path, fake_printer: FakeNetworkPrinter,
                            pty_pair: Pty) -> None:
    lines = tour_lines()
    assert len(lines) >= 12
    d = tmp_path / "term"
    sale = make_store(d)
    capture = tmp_path / "capture.bin"
    bindir = Path(sys.executable).parent
    env = {**os.environ, "D": str(d), "SALE": sale, "PRINTER": fake_printer.url,
           "CAPTURE": str(capture), "SCANNER": pty_pair.path,
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    done = threading.Event()

    def scanner() -> None:  # a scanner that keeps scanning until someone listens
        scan = f"]d201003090467286031727120010IB2701{GS}21SN000123\r"
        while not done.wait(0.2):
            pty_pair.write(scan.encode())

    t = threading.Thread(target=scanner, daemon=True)
    t.start()
    try:
        for line in lines:
            m = re.search(r"#\s*exit (\d)\s*$", line)
            expected = int(m.group(1)) if m else 0
            proc = subprocess.run(["bash", "-o", "pipefail", "-c", line], capture_output=True,
                                  text=True, env=env, timeout=60, cwd=tmp_path)
            assert proc.returncode == expected, (line, proc.stdout[-2000:], proc.stderr[-2000:])
            assert "Traceback" not in proc.stderr, (line, proc.stderr)
            out = json.loads(proc.stdout)
            if expected:
                assert out["error"]["code"], line
            elif "parse-scan" in line or "listen-scanner" in line:
                assert out["gtin"] == "00309046728603", line
    finally:
        done.set()
        t.join(2)
    # the printer got the test page, the receipt, its reprint and the retried copy
    docs = [parse(bytes(c)) for c in fake_printer.connections]
    qr = [q for doc in docs for q in doc.qr_codes]
    assert qr.count(sale) == 3 and "pharmos test page" in qr
    assert parse(capture.read_bytes()).line_with("PRINTER TEST")
