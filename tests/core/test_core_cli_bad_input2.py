"""Bad input to the policy, server, hardware, receipt and shared-document commands ends in a
coded error (exit 1; 3 for a file that fails as a bundle or key; 4 for a device), never a
traceback (exit 70 INTERNAL) or a hang, and nothing is written: JSON nested thousands deep,
text that is not UTF-8, output paths that name no file, database URLs that do not parse,
timeouts that are not a number of seconds."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pharmacy.store import Store
from terminal.cli import main

DEEP = "[" * 100_000 + "]" * 100_000


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> tuple[int, Any]:
    capsys.readouterr()  # what fixtures printed
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        rc = main([*argv, "--json"])
    finally:
        sys.stdin = old
    out = capsys.readouterr().out
    return rc, json.loads(out)


def refused(rc: int, out: Any, code: str, rc_expected: int = 1) -> None:
    assert (rc, out["error"]["code"]) == (rc_expected, code), out


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    key = tmp_path / "hq.key"
    assert main(["policy", "keygen", "--out", str(key)]) == 0
    bundle = tmp_path / "bundle.json"
    assert main(["policy", "build", "--out", str(bundle), "--version", "v1"]) == 0
    return {"deep": deep, "key": key, "bundle": bundle, "tmp": tmp_path}


@pytest.fixture
def term_dir(stocked: Store, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    return Path(stocked.data_dir)


@pytest.fixture
def hq_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    db = f"sqlite:///{tmp_path / 'hq.db'}"
    assert main(["server", "migrate", "--db", db]) == 0
    assert main(["server", "admin", "create-store", "--db", db, "--tenant", "t1", "--store",
                 "s1"]) == 0
    return db


def _events(db: str) -> int:
    import sqlite3

    with sqlite3.connect(db[len("sqlite:///"):]) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


# ---- JSON nested thousands deep ---------------------------------------------------------------
@pytest.mark.parametrize("cmd", [["policy", "grant"], ["policy", "check"]])
def test_terminal_json_input_nested_too_deeply(capsys: pytest.CaptureFixture[str],
                                               files: dict[str, Path], term_dir: Path,
                                               cmd: list[str]) -> None:
    refused(*run_cli(capsys, *cmd, "--data-dir", str(term_dir), str(files["deep"])),
            "BAD_JSON")
    refused(*run_cli(capsys, *cmd, "--data-dir", str(term_dir), "-", stdin=DEEP), "BAD_JSON")


@pytest.mark.parametrize("cmd", [["sign", "--key", "KEY", "--in", "DEEP", "--out", "OUT"],
                                 ["install", "--data-dir", "TERM", "DEEP"]])
def test_policy_bundle_nested_too_deeply(capsys: pytest.CaptureFixture[str],
                                         files: dict[str, Path], term_dir: Path,
                                         cmd: list[str]) -> None:
    subst = {"KEY": str(files["key"]), "DEEP": str(files["deep"]), "TERM": str(term_dir),
             "OUT": str(files["tmp"] / "signed.json")}
    refused(*run_cli(capsys, "policy", *[subst.get(a, a) for a in cmd]), "BUNDLE_MALFORMED",
            3)
    assert not (files["tmp"] / "signed.json").exists()


@pytest.mark.parametrize("cmd", [
    ["admin", "create-store", "--tenant", "t1", "--store", "s2", "--catalog", "DEEP"],
    ["admin", "endorse-key", "--tenant", "t1", "DEEP"],
    ["publish-catalog", "--store", "s1", "DEEP"],
    ["grant", "--store", "s1", "DEEP"],
])
def test_server_json_files_nested_too_deeply(capsys: pytest.CaptureFixture[str],
                                             files: dict[str, Path], hq_db: str,
                                             cmd: list[str]) -> None:
    argv = [str(files["deep"]) if a == "DEEP" else a for a in cmd]
    refused(*run_cli(capsys, "server", *argv, "--db", hq_db), "BAD_JSON")
    assert _events(hq_db) == 0
    rc, out = run_cli(capsys, "server", "stock", "--store", "s2", "--db", hq_db)
    assert rc == 1
    assert out["error"]["code"] == "UNKNOWN_STORE"  # create-store wrote nothing


def test_setting_values_nested_too_deeply(capsys: pytest.CaptureFixture[str],
                                          term_dir: Path) -> None:
    d = str(term_dir)
    before = run_cli(capsys, "hw", "config", "show", "--data-dir", d)[1]
    refused(*run_cli(capsys, "hw", "config", "set", "--data-dir", d, f"printer.url={DEEP}"),
            "BAD_HARDWARE_CONFIG")
    assert run_cli(capsys, "hw", "config", "show", "--data-dir", d)[1] == before
    refused(*run_cli(capsys, "store-settings", "set", "--data-dir", d, "k", DEEP),
            "BAD_DOC_EDIT")
    assert run_cli(capsys, "store-settings", "show", "--data-dir", d)[1] == {
        "store_settings": {}}


# ---- shared documents: values pycrdt cannot hold --------------------------------------------
@pytest.mark.parametrize("argv", [
    ["board", "put", "\udcff"],  # a byte that is not UTF-8, as the shell passes it
    ["board", "put", "i1", "--note", "\udcff"],
    ["board", "remove", "\udcff"],
    ["store-settings", "set", "\udcff", "1"],
    ["store-settings", "set", "k", "x\udcff"],
    ["store-settings", "set", "k", '"\\ud800"'],  # a lone surrogate as a JSON escape
    ["store-settings", "set", "k", "99999999999999999999"],  # past a 64-bit integer
    ["store-settings", "set", "k", "NaN"],
    ["store-settings", "set", "k", "1e400"],  # infinity
])
def test_shared_document_edits_pycrdt_cannot_hold(capsys: pytest.CaptureFixture[str],
                                                  term_dir: Path, argv: list[str]) -> None:
    """These ended in a pycrdt panic (a BaseException: a raw traceback, not even INTERNAL)."""
    refused(*run_cli(capsys, *argv, "--data-dir", str(term_dir)), "BAD_DOC_EDIT")
    assert run_cli(capsys, "board", "show", "--data-dir", str(term_dir))[1] == {
        "will_call": {}}
    assert run_cli(capsys, "store-settings", "show", "--data-dir", str(term_dir))[1] == {
        "store_settings": {}}
    with Store.open(term_dir) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM doc_updates").fetchone()[0] == 0


# ---- server grant: what every terminal would refuse is not published -----------------------
@pytest.mark.parametrize("grant, code", [
    ({}, "BAD_GRANT"),
    ({"format": "pharmos-policy-bundle"}, "BAD_GRANT"),  # a bundle given as a grant
    ({"per_day": {"CII": -1}}, "BAD_GRANT"),
    ({"per_day": {"CII": 1}, "valid_until": "tomorrow"}, "BAD_GRANT"),
    ({"per_day": {"CII": 1}, "grant_id": "\ud800"}, "BAD_GRANT"),  # crashed: not UTF-8
    ({"per_day": {"CII": 1}, "note": "x\x00"}, "BAD_PUBLICATION"),  # PostgreSQL holds no NUL
])
def test_server_grant_terminals_would_refuse(capsys: pytest.CaptureFixture[str], hq_db: str,
                                             grant: dict[str, Any], code: str) -> None:
    refused(*run_cli(capsys, "server", "grant", "--store", "s1", "--db", hq_db,
                     stdin=json.dumps(grant)), code)
    assert _events(hq_db) == 0
    rc, out = run_cli(capsys, "server", "grant", "--store", "s1", "--db", hq_db,
                      stdin=json.dumps({"CII": 2, "grant_id": "g1"}))
    assert rc == 0 and out["items"] == 1 and _events(hq_db) == 1


# ---- server database URLs libpq cannot read ---------------------------------------------------
@pytest.mark.parametrize("url", ["postgresql://[::1/x", "postgresql://u:s3cret@h/d?foo=bar",
                                 "postgresql://%zz@h/d", "postgres://u:s3cret@[::1/x"])
@pytest.mark.parametrize("cmd", [["stock", "--store", "s1"], ["migrate"]])
def test_server_postgresql_url_that_does_not_parse(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, url: str,
                                                   cmd: list[str]) -> None:
    """These ended in psycopg.ProgrammingError (exit 70); no connection is tried."""
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    rc, out = run_cli(capsys, "server", *cmd, "--db", url)
    refused(rc, out, "BAD_DB_URL")
    assert "s3cret" not in out["error"]["message"]


# ---- policy output paths that name no file -----------------------------------------------------
@pytest.mark.parametrize("out", ["", ".", "DIR"])
@pytest.mark.parametrize("cmd", [["build", "--version", "v"],
                                 ["sign", "--key", "KEY", "--in", "BUNDLE"],
                                 ["endorse", "--key", "KEY", "--new", "PUB"],
                                 ["keygen", "--force"]])
def test_policy_output_that_is_no_file_name(capsys: pytest.CaptureFixture[str],
                                            files: dict[str, Path], cmd: list[str],
                                            out: str) -> None:
    """--out '' crashed build/sign/endorse (ValueError from Path.with_name, exit 70), and
    keygen --force --out DIR crashed with IsADirectoryError."""
    d = files["tmp"] / "folder"
    d.mkdir()
    assert main(["policy", "keygen", "--out", str(files["tmp"] / "new.key")]) == 0
    subst = {"KEY": str(files["key"]), "BUNDLE": str(files["bundle"]),
             "PUB": str(files["tmp"] / "new.key.pub"), "DIR": str(d)}
    refused(*run_cli(capsys, "policy", *[subst.get(a, a) for a in cmd], "--out",
                     subst.get(out, out)), "BAD_OUTPUT_FILE")
    assert list(d.iterdir()) == []


def test_keygen_whose_public_key_file_is_a_folder(capsys: pytest.CaptureFixture[str],
                                                  files: dict[str, Path]) -> None:
    """The private key was written, then the .pub crashed (IsADirectoryError): half a key."""
    (files["tmp"] / "new.key.pub").mkdir()
    refused(*run_cli(capsys, "policy", "keygen", "--out", str(files["tmp"] / "new.key")),
            "BAD_OUTPUT_FILE")
    assert not (files["tmp"] / "new.key").exists()


# ---- hardware: timeouts that are not a number of seconds, scanner settings -------------------
def _sale(store: Store) -> str:
    from pharmacy.compliance import InterimGate
    from pharmacy.sales import Dispenser

    return Dispenser(store, InterimGate()).sell(
        {"lines": [{"ndc": "0904-6728-60", "qty": 1}],
         "user": {"id": "u-cashier", "role": "cashier"}}).sale_id


@pytest.mark.parametrize("timeout", ["nan", "-1", "0", "1e308", "inf"])
@pytest.mark.parametrize("cmd", [["print", "SALE"], ["reprint", "SALE"],
                                 ["label", "SALE", "--line", "1"], ["retry"]])
def test_receipt_timeout_that_is_not_seconds(capsys: pytest.CaptureFixture[str],
                                             stocked: Store, term_dir: Path, cmd: list[str],
                                             timeout: str) -> None:
    """1e308 crashed (OverflowError in the wait, exit 70); NaN, 0 and negatives queued the job
    and failed it as PRINTER_TIMEOUT (exit 4), as if the printer were at fault."""
    sale_id = _sale(stocked)
    argv = [sale_id if a == "SALE" else a for a in cmd]
    refused(*run_cli(capsys, "receipt", *argv, "--data-dir", str(term_dir), "--printer",
                     "dummy://x", "--timeout", timeout), "BAD_ARGS")
    with Store.open(term_dir) as store:
        assert store.conn.execute("SELECT COUNT(*) FROM print_jobs").fetchone()[0] == 0


@pytest.mark.parametrize("extra, code", [
    (["--timeout", "nan"], "BAD_ARGS"),  # listened forever at full CPU on a port that opens
    (["--timeout", "inf"], "BAD_ARGS"),
    (["--timeout", "-1"], "BAD_ARGS"),
    (["--count", "0"], "BAD_ARGS"),
    (["--baud", "0"], "BAD_HARDWARE_CONFIG"),  # was DEVICE_NOT_FOUND (exit 4)
    (["--baud", "123"], "BAD_HARDWARE_CONFIG"),
    (["--gs-substitute", "ab"], "BAD_HARDWARE_CONFIG"),
])
def test_listen_scanner_options(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, extra: list[str],
                                code: str) -> None:
    monkeypatch.delenv("PHARMOS_DATA_DIR", raising=False)
    refused(*run_cli(capsys, "hw", "listen-scanner", "--port", "loop://", *extra), code)


def test_receipt_retry_json_is_one_document_when_the_printer_is_down(
        capsys: pytest.CaptureFixture[str], stocked: Store, term_dir: Path) -> None:
    """It printed the summary and then the error: two JSON documents, which no caller parses."""
    import socket

    from pharmacy import print_queue

    print_queue.enqueue(stocked, _sale(stocked), "receipt")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out = run_cli(capsys, "receipt", "retry", "--data-dir", str(term_dir), "--printer",
                      f"tcp://127.0.0.1:{port}", "--timeout", "2")
    assert rc == 4 and out["error"]["code"] == "PRINTER_OFFLINE", out
    assert out["error"]["details"]["printed"] == 0 and out["error"]["details"]["pending"] == 1


# ---- policy bundles whose manifest terminals cannot use ---------------------------------------
BAD_MANIFESTS = [("bundle_version", None), ("bundle_version", ""), ("bundle_version", {"a": 1}),
                 ("jurisdictions", ["ZZ"]), ("jurisdictions", []), ("jurisdictions", "US"),
                 ("issued_at", 5), ("offline_until", "garbage"),
                 ("offline_until", "2000-01-01T00:00:00Z")]  # before issued_at


@pytest.mark.parametrize("field, value", BAD_MANIFESTS)
def test_policy_sign_refuses_a_manifest_terminals_cannot_use(
        capsys: pytest.CaptureFixture[str], files: dict[str, Path], field: str,
        value: Any) -> None:
    """A hand-edited manifest was signed as it stood; terminals then refused it, or installed
    a bundle named 'None' for jurisdiction 'ZZ'."""
    doc = json.loads(files["bundle"].read_text())
    doc["manifest"][field] = value
    edited = files["tmp"] / "edited.json"
    edited.write_text(json.dumps(doc))
    out = files["tmp"] / "signed.json"
    refused(*run_cli(capsys, "policy", "sign", "--key", str(files["key"]), "--in", str(edited),
                     "--out", str(out)), "BUNDLE_MALFORMED", 3)
    assert not out.exists()


@pytest.mark.parametrize("field, value", BAD_MANIFESTS[:4])
def test_policy_install_refuses_a_signed_manifest_it_cannot_use(
        capsys: pytest.CaptureFixture[str], files: dict[str, Path], term_dir: Path,
        field: str, value: Any) -> None:
    from pharmacy.canonical import canonical_json
    from pharmacy.signing import SigningKey

    key = SigningKey.load(files["key"])
    assert main(["policy", "trust", "--data-dir", str(term_dir), str(files["key"]) + ".pub"]) == 0
    doc = json.loads(files["bundle"].read_text())
    doc["manifest"] = {**doc["manifest"], field: value, "key_id": key.key_id}
    doc["signature"] = {"alg": "ed25519", "key_id": key.key_id,
                        "sig": key.sign(canonical_json(doc["manifest"]).encode("utf-8"))}
    signed = files["tmp"] / "signed.json"
    signed.write_text(json.dumps(doc))
    refused(*run_cli(capsys, "policy", "install", "--data-dir", str(term_dir), str(signed)),
            "BUNDLE_MALFORMED", 3)
    assert run_cli(capsys, "policy", "show", "--data-dir", str(term_dir))[1]["active"] is None


@pytest.mark.parametrize("argv", [
    ("stock", "--json", "--bogus"),
    ("nosuchcommand", "--json"),
    ("receive", "--json", "a", "b"),
    ("lot", "quarantine", "--json"),
    ("report", "day", "--json", "--date"),
])
def test_a_command_line_argparse_cannot_read_is_bad_input(
        capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    # argparse's own exit code is 2, the code of a refusal by a domain rule: never here
    rc, out = run_cli(capsys, *argv)
    assert rc == 1 and out["error"]["code"] == "BAD_ARGS"


def test_help_still_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["stock", "--help"])
    assert e.value.code == 0
    assert "--ndc" in capsys.readouterr().out


def test_server_store_jurisdiction_is_one_terminals_know(capsys: pytest.CaptureFixture[str],
                                                        hq_db: str) -> None:
    refused(*run_cli(capsys, "server", "admin", "--db", hq_db, "create-store", "--tenant", "t",
                     "--store", "s-zz", "--jurisdiction", "ZZ"), "BAD_JURISDICTION")
    refused(*run_cli(capsys, "server", "admin", "--db", hq_db, "enroll-code", "--tenant", "t",
                     "--store", "s-zz"), "UNKNOWN_STORE")
    rc, out = run_cli(capsys, "server", "admin", "--db", hq_db, "create-store", "--tenant", "t",
                      "--store", "s-tx", "--jurisdiction", "US-TX")
    assert rc == 0 and "error" not in out


def test_server_reads_never_create_a_database(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "ho.db"
    for argv in (("stock", "--store", "s"), ("terminals", "--store", "s"),
                 ("report", "--store", "s", "--from", "2026-11-01")):
        refused(*run_cli(capsys, "server", argv[0], "--db", f"sqlite:///{missing}",
                         *argv[1:]), "NO_DATABASE")
    assert not (tmp_path / "nowhere").exists()
    rc, _ = run_cli(capsys, "server", "migrate", "--db", f"sqlite:///{missing}")
    assert rc == 0 and missing.is_file()
