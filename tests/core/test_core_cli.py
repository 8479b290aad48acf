"""The `pharmos` CLI as operators use it: real processes, JSON in and out, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SMALL_CATALOG

ROOT = Path(__file__).resolve().parents[2]


def pharmos(*args: str, stdin: str | None = None, code: int = 0) -> Any:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "terminal.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else proc.stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    d = str(tmp_path / "term")
    out = pharmos("init", "--data-dir", d, "--store-id", "s-cli", "--json")
    assert out["store_id"] == "s-cli" and out["replica_id"]
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"products": SMALL_CATALOG}))
    out = pharmos("catalog", "import", "--data-dir", d, "--catalog", str(cat), "--json")
    assert out == {"imported": {"products": len(SMALL_CATALOG)}}
    return d


def test_receive_sell_stock_verify(data_dir: str) -> None:
    d = data_dir
    shown = pharmos("catalog", "show", "--data-dir", d, "--json", "00406055201")
    assert shown["ndc"] == "0406-0552-01" and shown["dea_schedule"] == "CII"
    assert shown["india_schedule"] is None and shown["cmea"] is False
    assert shown["appl"] == "A090895:001" and shown["gtin"] == "00304060552012"
    by_gtin = pharmos("catalog", "show", "--data-dir", d, "--json", shown["gtin"])
    assert by_gtin["ndc"] == shown["ndc"]
    receipt = {"batches": [
        {"ndc": "0904-6728-60", "lot": "A1", "expiry": "2030-01-31", "qty": 10,
         "unit_cost": "3.10"},
        {"ndc": "0406-0552-01", "lot": "OX9", "expiry": "2030-01-31", "qty": 100},
    ]}
    out = pharmos("receive", "--data-dir", d, "--json", "-", stdin=json.dumps(receipt))
    assert out["received"] == 2 and out["register_entries"] == 1
    sale = pharmos("sale", "--data-dir", d, "--json", "-",
                   stdin=json.dumps({"lines": [{"ndc": "0904-6728-60", "qty": 3}]}))
    assert sale["lines"][0]["allocations"] == [{"lot": "A1", "expiry": "2030-01-31", "qty": 3}]
    assert sale["total"] == "24.32" and sale["sale_id"]
    stock = pharmos("stock", "--data-dir", d, "--json", "--ndc", "0904-6728-60")
    row = stock["batches"][0]
    assert {k: row[k] for k in ("ndc", "lot", "expiry", "status", "on_hand", "cmea")} == {
        "ndc": "0904-6728-60", "lot": "A1", "expiry": "2030-01-31", "status": "active",
        "on_hand": 7, "cmea": False}
    assert set(row) >= {"ndc", "name", "lot", "expiry", "status", "on_hand", "dea_schedule",
                        "india_schedule", "cmea"}
    assert pharmos("audit", "verify", "--data-dir", d, "--json") == {
        "ok": True, "entries": 1, "chains": 1}


def test_exit_codes_and_error_shape(data_dir: str) -> None:
    d = data_dir
    bad = pharmos("sale", "--data-dir", d, "--json", "-", stdin="{not json", code=1)
    assert bad["error"]["code"] == "BAD_JSON" and "line 1" in bad["error"]["message"]
    unknown = pharmos("catalog", "show", "--data-dir", d, "--json", "1111-2222-33", code=1)
    assert unknown["error"]["code"] == "UNKNOWN_PRODUCT"
    refused = pharmos("sale", "--data-dir", d, "--json", "-", code=2,
                      stdin=json.dumps({"lines": [{"ndc": "0904-6728-60", "qty": 1}]}))
    assert refused["error"]["code"] == "OUT_OF_STOCK"
    pharmos("receive", "--data-dir", d, "--json", "-", stdin=json.dumps(
        {"batches": [{"ndc": "0406-0552-01", "lot": "OX9", "expiry": "2030-01-31",
                      "qty": 100}]}))
    denied = pharmos("sale", "--data-dir", d, "--json", "-", code=2,
                     stdin=json.dumps({"lines": [{"ndc": "0406-0552-01", "qty": 1}]}))
    assert denied["error"]["code"] in {"POLICY_ENGINE_MISSING", "BUNDLE_MISSING"}
    assert denied["error"]["decision"]["decision"] == "deny"
    # human mode: message on stderr, no traceback, same exit code
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "terminal.cli", "stock", "--data-dir",
                           d + "-missing"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "NO_STORE" in proc.stderr and "Traceback" not in proc.stderr


def test_lot_adjust_stocktake_commands(data_dir: str) -> None:
    d = data_dir
    pharmos("receive", "--data-dir", d, "--json", "-", stdin=json.dumps(
        {"batches": [{"ndc": "0093-0058-01", "lot": "AM7", "expiry": "2030-01-31",
                      "qty": 100}]}))
    out = pharmos("lot", "quarantine", "--data-dir", d, "--json", "AM7", "--reason", "damp")
    assert out["status"] == "quarantined"
    pharmos("lot", "release", "--data-dir", d, "--json", "AM7")
    pharmos("adjust", "--data-dir", d, "--json", "--ndc", "0093-0058-01", "--lot", "AM7",
            "--delta", "-4", "--reason", "DAMAGED")
    out = pharmos("stocktake", "--data-dir", d, "--json", "-", stdin=json.dumps(
        {"counts": [{"ndc": "0093-0058-01", "lot": "AM7", "counted": 90}]}))
    assert out["deltas"] == {"00093005801:AM7": -6}
    out = pharmos("lot", "recall", "--data-dir", d, "--json", "AM7", "--reason", "FDA")
    stock = pharmos("stock", "--data-dir", d, "--json", "--ndc", "0093-0058-01")
    assert stock["batches"][0]["status"] == "recalled" and stock["batches"][0]["on_hand"] == 90


def test_flipped_byte_in_register_is_reported_at_that_entry(data_dir: str) -> None:
    d = data_dir
    pharmos("receive", "--data-dir", d, "--json", "-", stdin=json.dumps({"batches": [
        {"ndc": "0406-0552-01", "lot": "OX1", "expiry": "2030-01-31", "qty": 100},
        {"ndc": "0406-0552-01", "lot": "OX2", "expiry": "2030-02-28", "qty": 100},
        {"ndc": "0406-0552-01", "lot": "OX3", "expiry": "2030-03-31", "qty": 100}]}))
    assert pharmos("audit", "verify", "--data-dir", d, "--json")["entries"] == 3
    db = Path(d) / "pharmos.db"
    for extra in ("-wal", "-shm"):
        assert not Path(str(db) + extra).exists() or Path(str(db) + extra).stat().st_size >= 0
    raw = bytearray(db.read_bytes())
    needle = b'"kind":"receive","lot":"OX2"'  # raw (unescaped) only in the register body
    idx = raw.find(needle)
    assert idx > 0 and raw.find(needle, idx + 1) == -1
    raw[idx + len(needle) - 2] ^= 0x01  # OX2 -> OX3 in the stored body, one bit
    db.write_bytes(bytes(raw))
    out = pharmos("audit", "verify", "--data-dir", d, "--json", code=3)
    assert out["error"]["code"] == "REGISTER_CHAIN_BROKEN"
    assert out["error"]["details"]["seq"] == 2
    assert "hash" in out["error"]["details"]["reason"]
