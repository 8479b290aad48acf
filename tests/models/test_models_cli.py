"""Every `pharmos models` command, run through the CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pharmacy.store import Store
from terminal.cli import main
from tests.models.conftest import QuickBundle, synthetic_weekly, write_weekly_csv


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else out


def test_keygen_train_trust_install_show(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = write_weekly_csv(synthetic_weekly(), tmp_path / "weekly.csv")
    key = tmp_path / "ho" / "models.pem"
    code, out = run(capsys, "models", "keygen", str(key), "--json")
    assert code == 0 and Path(out["public"]).exists()
    code, out = run(capsys, "models", "keygen", str(key), "--json")
    assert code == 1 and out["error"]["code"] == "KEY_EXISTS"

    bundle = tmp_path / "bundle.zip"
    code, out = run(capsys, "models", "train", "--dataset", str(csv_path), "--out", str(bundle),
                    "--key", str(key), "--quick", "--version", "m-test-1", "--json")
    assert code == 0, out
    assert out["version"] == "m-test-1" and bundle.exists()
    assert set(out["forecast"]) == {"A", "B", "C", "D"}
    assert 0 <= out["diversion"]["precision"] <= 1

    d = tmp_path / "term"
    assert main(["init", "--data-dir", str(d), "--store-id", "s-1"]) == 0
    capsys.readouterr()
    code, out = run(capsys, "models", "install", "--data-dir", str(d), str(bundle), "--json")
    assert code == 3 and out["error"]["code"] == "UNKNOWN_SIGNING_KEY"
    code, out = run(capsys, "models", "trust", "--data-dir", str(d), str(key) + ".pub", "--json")
    assert code == 0
    code, out = run(capsys, "models", "show", "--data-dir", str(d), "--json")
    assert out["active"]["forecast"] == "fallback: moving average"
    code, out = run(capsys, "models", "install", "--data-dir", str(d), str(bundle), "--json")
    assert code == 0 and out["status"] == "installed" and out["version"] == "m-test-1"
    code, out = run(capsys, "models", "show", "--data-dir", str(d), "--json")
    assert out["active"]["version"] == "m-test-1"
    assert out["installed"][0]["models"]["forecast"]["holdout"]["A"]["mse"] > 0
    # a damaged file is refused with exit 3 and a JSON error
    bad = tmp_path / "bad.zip"
    bad.write_bytes(bundle.read_bytes()[:-40])
    code, out = run(capsys, "models", "install", "--data-dir", str(d), str(bad), "--json")
    assert code == 3 and out["error"]["code"] == "MODEL_BUNDLE_CORRUPT"


def test_train_refuses_a_model_that_loses_to_the_baselines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from models.dataset import WeeklyDataset

    base = synthetic_weekly()
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.normal(0, 10, size=(base.n_weeks, 4)), axis=0) + 500
    walk[-52:] = walk[-53]            # the hold-out repeats the last week: Naive is exact
    data = WeeklyDataset(base.weeks, base.names, walk)
    csv_path = write_weekly_csv(data, tmp_path / "walk.csv", month_first=False)
    main(["models", "keygen", str(tmp_path / "k.pem")])
    capsys.readouterr()
    code, out = run(capsys, "models", "train", "--dataset", str(csv_path), "--out",
                    str(tmp_path / "b.zip"), "--key", str(tmp_path / "k.pem"), "--quick",
                    "--json")
    assert code == 2 and out["error"]["code"] == "MODEL_BELOW_BASELINE"
    assert not (tmp_path / "b.zip").exists()


def test_reorder_expiry_and_diversion_commands(history_store: Store, quick_bundle: QuickBundle,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from models.bundle import install_model_bundle, trust_key
    from models.runtime import REGISTRY

    d = str(history_store.data_dir)
    code, out = run(capsys, "models", "reorder", "--data-dir", d, "--json")
    assert code == 0
    assert {s["model_version"] for s in out["suggestions"]} == {"fallback: moving average"}
    assert "moving average" in out["model"]["note"]

    trust_key(history_store, quick_bundle.key.public_pem())
    install_model_bundle(history_store, quick_bundle.data)
    # lower the stock so that something must be ordered
    from pharmacy import inventory

    inventory.adjust(history_store, "0904-6728-60", "IB1", -70, "DAMAGED")
    history_store.set_json_setting("reorder_defaults", {"lead_time_days": 3, "review_days": 7})
    code, out = run(capsys, "models", "reorder", "--data-dir", d, "--accept", "--user", "u-1",
                    "--json")
    assert code == 0, out
    ibu = next(s for s in out["suggestions"] if s["ndc"] == "0904-6728-60")
    assert ibu["order_units"] > 0 and ibu["model_version"] == quick_bundle.version
    assert ibu["lead_time_days"] == 3
    po = out["purchase_order"]
    assert po["status"] == "draft"
    assert {ln["ndc"] for ln in po["lines"]} == {s["ndc"] for s in out["suggestions"]
                                                 if s["order_units"] > 0}
    assert all(ln["model_version"] == quick_bundle.version for ln in po["lines"])
    from models.suggest import purchase_order

    stored = purchase_order(history_store.conn, po["po_id"])
    assert stored["lines"][0]["suggestion_id"] == po["lines"][0]["suggestion_id"]
    # a later run supersedes the open suggestions, not the accepted ones
    code, out = run(capsys, "models", "reorder", "--data-dir", d, "--json")
    assert code == 0

    code, out = run(capsys, "models", "expiry-risk", "--data-dir", d, "--json")
    assert code == 0
    ib = next(i for i in out["items"] if i["lot"] == "IB1")
    assert 0 <= ib["p_expire"] <= 1 and ib["model_version"] == quick_bundle.version
    code, out = run(capsys, "models", "diversion", "--data-dir", d, "--json")
    assert code == 0 and out["scored"] is True
    assert out["model_version"] == quick_bundle.version
    code, text = run(capsys, "models", "diversion", "--data-dir", d)
    assert code == 0 and "model bundle" in text
    REGISTRY.forget(history_store.data_dir)


def test_evaluate_rejects_a_short_file(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    p = write_weekly_csv(synthetic_weekly(80), tmp_path / "short.csv")
    code, out = run(capsys, "models", "evaluate", "--dataset", str(p), "--quick", "--json")
    assert code == 1 and out["error"]["code"] == "BAD_DATASET"


def test_cli_as_a_process(tmp_path: Path) -> None:
    """The console entry point, as an operator runs it."""
    d = tmp_path / "t"
    exe = [sys.executable, "-m", "terminal.cli"]
    subprocess.run([*exe, "init", "--data-dir", str(d), "--store-id", "s-9"], check=True,
                   capture_output=True)
    r = subprocess.run([*exe, "models", "show", "--data-dir", str(d), "--json"],
                       capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["active"]["version"] is None
    r = subprocess.run([*exe, "models", "reorder", "--data-dir", str(d)], capture_output=True,
                       text=True, check=True)
    assert "moving average" in r.stdout
