"""Command options and input files an operator can get wrong end in a coded error (exit 1,
or 3 for a key that fails as a key), never a traceback (exit 70 INTERNAL): files that are not
UTF-8 or not keys, times and durations beyond what a date can hold, escapes that do not
decode, head-office addresses that are not URLs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pharmacy import print_queue
from pharmacy.compliance import InterimGate
from pharmacy.errors import BadInput
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from terminal.cli import main
from tests.conftest import ROOT


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()  # what fixtures printed
    rc = main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def refused(rc: int, out: Any, code: str, rc_expected: int = 1) -> None:
    assert (rc, out["error"]["code"]) == (rc_expected, code), out


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"\xff\xfe\x00\x81 not utf-8")
    arr = tmp_path / "arr.json"
    arr.write_text("[1, 2]")
    key = tmp_path / "hq.key"
    assert main(["policy", "keygen", "--out", str(key)]) == 0
    bundle = tmp_path / "bundle.json"
    assert main(["policy", "build", "--out", str(bundle), "--version", "v1"]) == 0
    return {"bin": binary, "arr": arr, "key": key, "bundle": bundle, "tmp": tmp_path}


@pytest.fixture
def term_dir(stocked: Store, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    return Path(stocked.data_dir)


@pytest.mark.parametrize("cmd", [["policy", "grant"], ["policy", "check"], ["receive"]])
def test_an_input_file_that_is_not_utf8(capsys: pytest.CaptureFixture[str],
                                        files: dict[str, Path], term_dir: Path,
                                        cmd: list[str]) -> None:
    refused(*run_cli(capsys, *cmd, "--data-dir", str(term_dir), str(files["bin"])), "BAD_JSON")


@pytest.mark.parametrize("which, code", [("missing", "BAD_KEY_FILE"), ("bin", "BAD_KEY"),
                                         ("arr", "BAD_KEY")])
def test_signing_with_a_key_file_that_is_not_a_key(capsys: pytest.CaptureFixture[str],
                                                   files: dict[str, Path], which: str,
                                                   code: str) -> None:
    key = files["tmp"] / "nope.key" if which == "missing" else files[which]
    refused(*run_cli(capsys, "policy", "sign", "--key", str(key), "--in", str(files["bundle"]),
                     "--out", str(files["tmp"] / "o.json")), code)
    assert not (files["tmp"] / "o.json").exists()


def test_training_with_a_key_file_that_is_not_a_key(capsys: pytest.CaptureFixture[str],
                                                    files: dict[str, Path]) -> None:
    refused(*run_cli(capsys, "models", "train", "--dataset", str(files["arr"]), "--key",
                     str(files["arr"]), "--out", str(files["tmp"] / "m.bin"), "--quick"),
            "BAD_KEY")


def test_trusting_a_file_that_is_not_a_public_key(capsys: pytest.CaptureFixture[str],
                                                  files: dict[str, Path],
                                                  term_dir: Path) -> None:
    refused(*run_cli(capsys, "policy", "trust", "--data-dir", str(term_dir),
                     str(files["arr"])), "BAD_KEY", 3)
    refused(*run_cli(capsys, "policy", "endorse", "--key", str(files["key"]), "--new",
                     str(files["arr"]), "--out", str(files["tmp"] / "e.json")), "BAD_KEY", 3)


@pytest.mark.parametrize("extra, code", [
    (["--offline-hours", "nan"], "BAD_OFFLINE_HOURS"),
    (["--offline-hours", "inf"], "BAD_OFFLINE_HOURS"),
    (["--offline-hours", "1e30"], "BAD_OFFLINE_HOURS"),
    (["--offline-hours", "0"], "BAD_OFFLINE_HOURS"),
    (["--issued-at", "bad"], "BAD_TIME"),
    (["--issued-at", "9999-12-31T23:00:00Z"], "BAD_TIME"),  # its offline window ends after 9999
])
def test_policy_build_times(capsys: pytest.CaptureFixture[str], files: dict[str, Path],
                            extra: list[str], code: str) -> None:
    refused(*run_cli(capsys, "policy", "build", "--out", str(files["tmp"] / "x.json"),
                     "--version", "v", *extra), code)


@pytest.mark.parametrize("args, code", [
    (["abc\\x", "--escaped"], "BAD_ESCAPE"),
    (["abc\\u12", "--escaped"], "BAD_ESCAPE"),
    (["0100309046728603", "--gs-substitute", "\\x"], "BAD_ESCAPE"),
    (["0100309046728603", "--today", "31/12/2027"], "BAD_DATE"),
])
def test_hw_parse_scan_options(capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch, args: list[str],
                               code: str) -> None:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    refused(*run_cli(capsys, "hw", "parse-scan", *args), code)


@pytest.mark.parametrize("cmd", ["evaluate", "train"])
def test_a_dataset_that_is_not_text(capsys: pytest.CaptureFixture[str],
                                    files: dict[str, Path], cmd: str) -> None:
    extra = ["--key", str(files["key"]), "--out", str(files["tmp"] / "m.bin")] \
        if cmd == "train" else []
    refused(*run_cli(capsys, "models", cmd, "--dataset", str(files["bin"]), "--quick", *extra),
            "BAD_DATASET")


def test_dates_and_windows_out_of_range(capsys: pytest.CaptureFixture[str], term_dir: Path,
                                        tmp_path: Path) -> None:
    refused(*run_cli(capsys, "pmp", "report", "--data-dir", str(term_dir), "--user", "u1",
                     "--from", "9999-12-31", "--out", str(tmp_path / "pmp.txt")), "BAD_DATE")
    assert not (tmp_path / "pmp.txt").exists()
    refused(*run_cli(capsys, "models", "diversion", "--data-dir", str(term_dir), "--days",
                     "99999999999"), "BAD_ARGS")
    refused(*run_cli(capsys, "sync", "run", "--data-dir", str(term_dir), "--grace-hours",
                     "1e30", "--for-seconds", "0.3"), "BAD_ARGS")
    refused(*run_cli(capsys, "sync", "run", "--data-dir", str(term_dir), "--every", "nan",
                     "--for-seconds", "0.3"), "BAD_ARGS")


def test_enroll_with_an_address_that_is_not_a_url(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    refused(*run_cli(capsys, "enroll", "--data-dir", str(tmp_path / "t"), "--server",
                     "http://[::1", "--code", "ABCD-EFGH"), "BAD_SERVER_URL")


@pytest.mark.parametrize("case", ["password", "name"])
def test_user_add_with_bytes_that_are_not_text(tmp_path: Path, case: str) -> None:
    """A password piped from a file in another encoding, or a name typed in one: refused
    (the terminal decodes them with surrogate escapes, which cannot be hashed or stored)."""
    d = tmp_path / "term"
    Store.init(d, "store-u").close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PHARMOS_DATA_DIR", None)
    argv: list[Any] = [sys.executable, "-m", "terminal.cli", "user", "add", "--data-dir",
                       str(d), "--username", "bob", "--role", "cashier", "--json"]
    if case == "password":
        argv.append("--password-stdin")
        stdin = b"pass\xffword123\n"
    else:
        argv += ["--name", b"x\xff", "--pin", "1357"]
        stdin = b""
    p = subprocess.run([os.fsencode(a) if isinstance(a, str) else a for a in argv],
                       input=stdin, capture_output=True, cwd=ROOT, env=env, timeout=60)
    assert b"Traceback" not in p.stderr
    assert (p.returncode, json.loads(p.stdout)["error"]["code"]) == (1, "BAD_TEXT")


def test_pins_are_ascii_digits() -> None:
    from pharmacy import users

    with pytest.raises(BadInput) as e:
        users.check_secret_policy("pin", "\u0661\u0663\u0665\u0667")  # Arabic-Indic 1357
    assert e.value.code == "WEAK_SECRET"
    users.check_secret_policy("pin", "1357")


@pytest.mark.parametrize("line_no", [2**64, 0, -1, True, "1"])
def test_an_rx_label_for_a_line_the_sale_cannot_have(stocked: Store, line_no: Any) -> None:
    sale = Dispenser(stocked, InterimGate()).sell(
        {"lines": [{"ndc": "0904-6728-60", "qty": 1}],
         "user": {"id": "u-cashier", "role": "cashier"}})
    with pytest.raises(BadInput) as e:
        print_queue.enqueue(stocked, sale.sale_id, "rx_label", line_no=line_no)
    assert e.value.code == "UNKNOWN_SALE_LINE"
    assert stocked.conn.execute("SELECT COUNT(*) FROM print_jobs").fetchone()[0] == 0
