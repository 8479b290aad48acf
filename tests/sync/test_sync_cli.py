"""Every sync command runs: server admin and views, publishing, enroll, sync, status, the
scheduler in the foreground, the will-call board and shared settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pharmacy.signing import SigningKey
from terminal.cli import main
from tests.conftest import SMALL_CATALOG
from tests.sync.conftest import ServerProcess


def run(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    rc = main(list(argv))
    out = capsys.readouterr().out
    assert rc == code, out
    return json.loads(out) if out.strip().startswith(("{", "[")) else out


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'server.db'}"
    s = ServerProcess(db).start()
    try:
        yield s
    finally:
        s.stop()


def test_server_admin_and_terminal_commands(srv: ServerProcess, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = srv.db
    assert run(capsys, "server", "migrate", "--db", db, "--json")["schema_version"] >= 1
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"products": SMALL_CATALOG}))
    made = run(capsys, "server", "admin", "--db", db, "create-store", "--tenant", "acme",
               "--store", "cli-1", "--demo", "--catalog", str(catalog), "--jurisdiction",
               "US-TX", "--json")
    assert made["products"] == 4 and made["batches"] > 0
    err = run(capsys, "server", "admin", "--db", db, "create-store", "--tenant", "acme",
              "--store", "cli-1", "--json", code=1)
    assert err["error"]["code"] == "STORE_EXISTS"
    key = SigningKey.generate()
    pem = tmp_path / "ho.pub"
    pem.write_bytes(key.public_pem())
    assert run(capsys, "server", "admin", "--db", db, "trust-key", "--tenant", "acme",
               str(pem), "--json")["trusted_keys"] == 1
    code = run(capsys, "server", "admin", "--db", db, "enroll-code", "--store", "cli-1",
               "--json")["code"]
    term = tmp_path / "till"
    enrolled = run(capsys, "enroll", "--data-dir", str(term), "--server", srv.url, "--code",
                   code, "--name", "front", "--json")
    assert enrolled["store_id"] == "cli-1" and enrolled["token_storage"] == "keyring"
    again = run(capsys, "enroll", "--data-dir", str(term), "--server", srv.url, "--code", code,
                "--json", code=1)
    assert again["error"]["code"] == "ALREADY_ENROLLED"
    synced = run(capsys, "sync", "--data-dir", str(term), "--json")
    assert set(synced) >= {"pushed", "pulled", "server_seq"} and synced["pulled"] > 0
    status = run(capsys, "sync", "status", "--data-dir", str(term), "--json")
    assert status["last_success"] and status["pending"]["events"] == 0
    human = run(capsys, "sync", "status", "--data-dir", str(term))
    assert "last success" in human
    local = run(capsys, "stock", "--data-dir", str(term), "--json")["batches"]
    hq = run(capsys, "server", "stock", "--db", db, "--store", "cli-1", "--json")["batches"]
    assert local == hq
    terms = run(capsys, "server", "terminals", "--db", db, "--store", "cli-1", "--json")
    assert terms["terminals"][0]["name"] == "front"
    same = run(capsys, "server", "admin", "--db", db, "terminals", "--store", "cli-1",
               "--tenant", "acme", "--json")
    assert same["terminals"][0]["terminal_id"] == enrolled["terminal_id"]

    # publishing: catalog and prices, bundle, model, allowances
    cheaper = tmp_path / "prices.json"
    cheaper.write_text(json.dumps({"products": [{**SMALL_CATALOG[0], "price": "5.00"}]}))
    assert run(capsys, "server", "publish-catalog", "--db", db, "--tenant", "acme",
               str(cheaper), "--json")["stores"] == ["cli-1"]
    bundle = tmp_path / "bundle.bin"
    bundle.write_bytes(b"not really signed")  # every terminal would refuse it: so does HQ
    err = run(capsys, "server", "publish-bundle", "--db", db, "--store", "cli-1", str(bundle),
              "--json", code=1)
    assert err["error"]["code"] == "BUNDLE_MALFORMED"
    assert "terminals would refuse" in err["error"]["message"]
    from policy_cache.demo import build_demo_bundle

    signed, _ = build_demo_bundle(key=key)
    other, _ = build_demo_bundle(key=SigningKey.generate())
    bundle.write_bytes(other)
    err = run(capsys, "server", "publish-bundle", "--db", db, "--store", "cli-1", str(bundle),
              "--json", code=1)
    assert err["error"]["code"] == "UNKNOWN_SIGNING_KEY"
    bundle.write_bytes(signed)
    pub = run(capsys, "server", "publish-bundle", "--db", db, "--store", "cli-1", str(bundle),
              "--json")
    assert len(pub["sha256"]) == 64
    model = tmp_path / "model.bin"
    model.write_bytes(b"onnx")
    assert run(capsys, "server", "publish-model", "--db", db, "--store", "cli-1", "--kind",
               "demand", "--version", "7", str(model), "--json")["items"] == 1
    grant = tmp_path / "grant.json"
    grant.write_text(json.dumps({"CII": 0, "CIV": 20}))
    assert run(capsys, "server", "grant", "--db", db, "--store", "cli-1", str(grant),
               "--json")["kind"] == "allowances"
    run(capsys, "sync", "--data-dir", str(term), "--json")
    price = run(capsys, "catalog", "show", "--data-dir", str(term), SMALL_CATALOG[0]["ndc"],
                "--json")["price"]
    assert price == "5.00"

    # the will-call board and shared settings
    board = run(capsys, "board", "put", "--data-dir", str(term), "rx-1", "--label", "J.D.",
                "--bin", "A1", "--json")["will_call"]
    assert board["rx-1"]["bin"] == "A1" and board["rx-1"]["status"] == "waiting"
    run(capsys, "board", "put", "--data-dir", str(term), "rx-1", "--status", "ready", "--json")
    shown = run(capsys, "board", "show", "--data-dir", str(term), "--json")["will_call"]
    assert shown["rx-1"]["status"] == "ready"
    assert run(capsys, "board", "remove", "--data-dir", str(term), "rx-1",
               "--json")["will_call"] == {}
    assert run(capsys, "store-settings", "set", "--data-dir", str(term), "receipt_footer",
               "Thank you", "--json")["store_settings"] == {"receipt_footer": "Thank you"}
    run(capsys, "store-settings", "set", "--data-dir", str(term), "max_pse", "2", "--json")
    assert run(capsys, "store-settings", "show", "--data-dir", str(term),
               "--json")["store_settings"] == {"max_pse": 2, "receipt_footer": "Thank you"}
    pushed = run(capsys, "sync", "--data-dir", str(term), "--json")["pushed"]
    assert pushed == 5  # five document updates

    # the scheduler in the foreground: opportunistic syncs, then it stops
    ran = run(capsys, "sync", "run", "--data-dir", str(term), "--at", "02:00", "--every",
              "0.01", "--for-seconds", "3", "--json")
    assert ran["runs"] and ran["runs"][0] == {**ran["runs"][0], "reason": "opportunistic",
                                              "ok": True}

    # revoking the terminal
    gone = run(capsys, "server", "admin", "--db", db, "revoke", "--terminal",
               enrolled["terminal_id"], "--json")
    assert gone["revoked_at"]
    err = run(capsys, "sync", "--data-dir", str(term), "--json", code=1)
    assert err["error"]["code"] == "TOKEN_REVOKED"


def test_cli_errors_are_codes_not_tracebacks(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    err = run(capsys, "server", "migrate", "--db", "mysql://x", "--json", code=1)
    assert err["error"]["code"] == "BAD_DB_URL"
    err = run(capsys, "server", "stock", "--store", "x", "--json", code=1)
    assert err["error"]["code"] == "BAD_ARGS"
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    err = run(capsys, "server", "stock", "--db", db, "--store", "x", "--json", code=1)
    assert err["error"]["code"] == "NO_DATABASE"
    (tmp_path / "fresh.db").touch()  # a file that holds no head-office schema
    err = run(capsys, "server", "stock", "--db", db, "--store", "x", "--json", code=1)
    assert err["error"]["code"] == "SCHEMA_MISMATCH"
    run(capsys, "server", "migrate", "--db", db, "--json")
    err = run(capsys, "server", "stock", "--db", db, "--store", "x", "--json", code=1)
    assert err["error"]["code"] == "UNKNOWN_STORE"
    err = run(capsys, "server", "publish-bundle", "--db", db, str(tmp_path), "--json", code=1)
    assert err["error"]["code"] in ("BAD_ARGS", "BAD_INPUT_FILE")
    run(capsys, "init", "--data-dir", str(tmp_path / "t"), "--store-id", "s", "--json")
    err = run(capsys, "sync", "--data-dir", str(tmp_path / "t"), "--json", code=1)
    assert err["error"]["code"] == "NOT_ENROLLED"
    st = run(capsys, "sync", "status", "--data-dir", str(tmp_path / "t"), "--json")
    assert st["enrolled"] is False


def test_key_rotation_commands(srv: ServerProcess, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    db = srv.db
    run(capsys, "server", "admin", "--db", db, "create-store", "--tenant", "rot",
        "--store", "rot-1", "--json")
    old = tmp_path / "old.key"
    run(capsys, "policy", "keygen", "--out", str(old), "--json")
    new = tmp_path / "new.key"
    run(capsys, "policy", "keygen", "--out", str(new), "--json")
    run(capsys, "server", "admin", "--db", db, "trust-key", "--tenant", "rot",
        str(old) + ".pub", "--json")
    out = run(capsys, "policy", "endorse", "--key", str(old), "--new", str(new) + ".pub",
              "--retire-old", "--out", str(tmp_path / "e.json"), "--json")
    assert out["retire"] == [out["signed_by"]] and out["trusted"] != out["signed_by"]
    # endorsed by a key the tenant does not trust: refused, nothing changes
    stray = run(capsys, "policy", "endorse", "--key", str(new), "--new", str(old) + ".pub",
                "--out", str(tmp_path / "stray.json"), "--json")
    assert stray["trusted"] == out["signed_by"]
    err = run(capsys, "server", "admin", "--db", db, "endorse-key", "--tenant", "rot",
              str(tmp_path / "stray.json"), "--json", code=1)
    assert err["error"]["code"] == "UNKNOWN_SIGNING_KEY"
    done = run(capsys, "server", "admin", "--db", db, "endorse-key", "--tenant", "rot",
               str(tmp_path / "e.json"), "--json")
    assert done["trusted"] == out["trusted"] and done["retired"] == [out["signed_by"]]
    assert done["trusted_keys"] == 1 and done["stores"] == ["rot-1"]
    (tmp_path / "bad.json").write_text("{not json")
    err = run(capsys, "server", "admin", "--db", db, "endorse-key", "--tenant", "rot",
              str(tmp_path / "bad.json"), "--json", code=1)
    assert err["error"]["code"] == "BAD_JSON"
