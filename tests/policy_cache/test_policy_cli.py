"""`pharmos policy ...` end to end through terminal.cli.main, with real files and stores."""

from __future__ import annotations

import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from pharmacy import catalog, inventory
from pharmacy.store import Store
from terminal.cli import main
from tests.conftest import SMALL_CATALOG
from tests.policy_cache.policy_support import rx


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str,
        stdin: Any = None) -> tuple[int, Any]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(stdin)))
    code = main(list(argv))
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except json.JSONDecodeError:
        return code, out


@pytest.fixture
def term(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    d = tmp_path / "term"
    s = Store.init(d, "store-cli")
    try:
        catalog.upsert_products(s, [catalog.product_from_json(p) for p in SMALL_CATALOG])
        inventory.receive(s, [
            {"ndc": "0904-6728-60", "lot": "IB1", "expiry": "2030-01-31", "qty": 100},
            {"ndc": "0406-0552-01", "lot": "OX1", "expiry": "2030-03-31", "qty": 300,
             "order_form": "222-123456"}])
    finally:
        s.close()
    return d


def test_policy_cli_head_office_to_terminal(tmp_path: Path, term: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "hq" / "hq.key"
    code, out = run(capsys, monkeypatch, "policy", "keygen", "--out", str(key), "--json")
    assert code == 0 and out["key_id"] and Path(out["public_key"]).exists()
    assert (key.stat().st_mode & 0o777) == 0o600
    unsigned, signed = tmp_path / "b.json", tmp_path / "b.signed.json"
    code, out = run(capsys, monkeypatch, "policy", "build", "--out", str(unsigned), "--version",
                    "cli-1", "--offline-hours", "72", "--json")
    assert code == 0 and out["signed"] is False and out["policy_count"] > 80
    code, out = run(capsys, monkeypatch, "policy", "sign", "--key", str(key), "--in",
                    str(unsigned), "--out", str(signed), "--json")
    assert code == 0 and out["key_id"]

    d = str(term)
    code, out = run(capsys, monkeypatch, "policy", "install", "--data-dir", d, str(signed),
                    "--json")
    assert code == 3 and out["error"]["code"] == "UNKNOWN_SIGNING_KEY"
    code, out = run(capsys, monkeypatch, "policy", "trust", "--data-dir", d,
                    str(key) + ".pub", "--json")
    assert code == 0 and out["trusted_keys"] == [out["trusted"]]
    code, out = run(capsys, monkeypatch, "policy", "install", "--data-dir", d, str(unsigned),
                    "--json")
    assert code == 3 and out["error"]["code"] == "BUNDLE_UNSIGNED"
    code, out = run(capsys, monkeypatch, "policy", "install", "--data-dir", d, str(signed),
                    "--json")
    assert code == 0 and out["installed"] and out["bundle_version"] == "cli-1"

    code, out = run(capsys, monkeypatch, "policy", "grant", "--data-dir", d, "--json", "-",
                    stdin={"per_day": {"CII": 1}})
    assert code == 0 and out["allowances"]["per_day"] == {"CII": 1}
    code, out = run(capsys, monkeypatch, "policy", "show", "--data-dir", d, "--json")
    assert code == 0 and out["status"] == "ok"
    assert out["active"]["bundle_version"] == "cli-1" and out["active"]["rules"] > 80
    code, human = run(capsys, monkeypatch, "policy", "show", "--data-dir", d)
    assert code == 0 and "cli-1" in human

    user = {"id": "ph-ana", "role": "pharmacist"}
    patient = {"id": "p1", "name": "Jane Doe", "address": "1 Elm St", "birth_date": "1970-01-01"}
    ok_req = {"lines": [{"ndc": "0406-0552-01", "qty": 20}], "jurisdiction": "US-TX",
              "user": user, "patient": patient,
              "rx": rx(written_on=(date.today() - timedelta(days=1)).isoformat())}
    code, out = run(capsys, monkeypatch, "policy", "check", "--data-dir", d, "--json", "-",
                    stdin=ok_req)
    assert code == 0 and out["decision"] == "allow" and out["bundle_version"] == "cli-1"
    assert set(out) == {"decision", "reasons", "obligations", "bundle_version"}
    assert "register_entry" in out["obligations"]

    bad_req = dict(ok_req, rx=dict(ok_req["rx"], refill_number=1, pmp_checked=False))
    code, out = run(capsys, monkeypatch, "policy", "check", "--data-dir", d, "--json", "-",
                    stdin=bad_req)
    assert code == 2 and out["decision"] == "deny"
    cited = {r["code"]: r["citation"] for r in out["reasons"]}
    assert cited == {"DEA_CII_NO_REFILL": "21 CFR 1306.12(a)",
                     "TX_PMP_CHECK_REQUIRED": "TX H&S 481.0764(a)"}
    code, human = run(capsys, monkeypatch, "policy", "check", "--data-dir", d, "-",
                      stdin=bad_req)
    assert code == 2 and "[21 CFR 1306.12(a)]" in human

    code, out = run(capsys, monkeypatch, "sale", "--data-dir", d, "--json", "-", stdin=bad_req)
    assert code == 2 and out["error"]["code"] == "DEA_CII_NO_REFILL"
    assert {r["code"] for r in out["error"]["decision"]["reasons"]} == set(cited)
    code, out = run(capsys, monkeypatch, "sale", "--data-dir", d, "--json", "-", stdin=ok_req)
    assert code == 0 and out["decision"]["decision"] == "allow"
    assert out["register_entries"] == 1
    offline = dict(ok_req, offline=True, rx=dict(ok_req["rx"], rx_number="RX-off"))
    code, out = run(capsys, monkeypatch, "policy", "check", "--data-dir", d, "--json", "-",
                    stdin=offline)
    assert code == 2 and [r["code"] for r in out["reasons"]] == ["OFFLINE_CAP"]

    tampered = bytearray(signed.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    bad_file = tmp_path / "tampered.json"
    bad_file.write_bytes(bytes(tampered))
    code, out = run(capsys, monkeypatch, "policy", "install", "--data-dir", d, str(bad_file),
                    "--json")
    assert code == 3 and out["error"]["code"] in ("BUNDLE_TAMPERED", "BUNDLE_MALFORMED",
                                                  "SIGNATURE_INVALID")
    code, out = run(capsys, monkeypatch, "policy", "show", "--data-dir", d, "--json")
    assert out["active"]["bundle_version"] == "cli-1"


def test_policy_cli_rules_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    code, out = run(capsys, monkeypatch, "policy", "rules", "--json")
    assert code == 0 and len(out["rules"]) > 80
    assert any(r["code"] == "DEA_CII_NO_REFILL" and r["cases"] == ["1"] for r in out["rules"])
    code, out = run(capsys, monkeypatch, "policy", "build", "--out", str(tmp_path / "x"),
                    "--version", "v", "--source", str(tmp_path / "nope"), "--json")
    assert code == 1 and out["error"]["code"] == "BAD_SOURCE"
    code, out = run(capsys, monkeypatch, "policy", "sign", "--key", str(tmp_path / "nokey"),
                    "--in", str(tmp_path / "x"), "--out", str(tmp_path / "y"), "--json")
    assert code != 0 and "error" in out


def test_policy_cli_check_without_bundle(term: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    req = {"lines": [{"ndc": "0406-0552-01", "qty": 1}], "rx": rx()}
    code, out = run(capsys, monkeypatch, "policy", "check", "--data-dir", str(term), "--json",
                    "-", stdin=req)
    assert code == 2 and [r["code"] for r in out["reasons"]] == ["BUNDLE_MISSING"]
    req = {"lines": [{"ndc": "0904-6728-60", "qty": 1}]}
    code, out = run(capsys, monkeypatch, "policy", "check", "--data-dir", str(term), "--json",
                    "-", stdin=req)
    assert code == 0 and out["decision"] == "allow"
    code, out = run(capsys, monkeypatch, "policy", "grant", "--data-dir", str(term), "--json",
                    "-", stdin={"per_day": {"CII": 1}})
    assert code == 1 and out["error"]["code"] == "BAD_GRANT"
