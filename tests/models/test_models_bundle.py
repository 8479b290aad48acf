"""Signed model bundles: verify, install, hot-swap, refuse, fall back."""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from models.bundle import (
    TRUST_SETTING,
    install_model_bundle,
    installed,
    read_bundle,
    trust_for_store,
    trust_key,
)
from models.errors import BundleCorrupt, ModelDowngrade, ModelIncompatible
from models.runtime import ModelRegistry, bundle_dir
from models.suggest import reorder_run
from pharmacy.errors import BadInput
from pharmacy.signing import SignatureInvalid, SigningKey, UnknownSigningKey
from pharmacy.store import Store
from tests.models.conftest import QuickBundle, build


def _rezip(data: bytes, change: dict[str, bytes | None]) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in src.namelist():
            if name in change:
                if change[name] is not None:
                    z.writestr(name, change[name])  # type: ignore[arg-type]
            else:
                z.writestr(name, src.read(name))
        for name, body in change.items():
            if name not in src.namelist() and body is not None:
                z.writestr(name, body)
    return out.getvalue()


def test_no_model_falls_back_to_moving_average_and_says_so(store: Store,
                                                           registry: ModelRegistry) -> None:
    active = registry.active(store)
    assert active.version is None and active.diversion is None
    assert active.forecaster.version == "fallback: moving average"
    assert "moving average" in active.note


def test_install_verify_and_hot_swap(store: Store, quick_bundle: QuickBundle,
                                     registry: ModelRegistry) -> None:
    assert registry.active(store).version is None
    seen: list[str | None] = []
    stop = threading.Event()

    def reader() -> None:  # a worker thread reading the active model while it is swapped
        while not stop.is_set():
            m = registry.get(store.data_dir)
            seen.append(None if m is None else m.version)

    t = threading.Thread(target=reader)
    t.start()
    try:
        result = install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust,
                                      registry=registry)
    finally:
        stop.set()
        t.join()
    assert result["status"] == "installed" and result["version"] == quick_bundle.version
    active = registry.get(store.data_dir)
    assert active is not None and active.version == quick_bundle.version
    assert active.forecaster.version == quick_bundle.version
    assert active.diversion is not None
    assert set(seen) <= {None, quick_bundle.version}
    # files on disk, manifest in the database, audit trail
    d = bundle_dir(store.data_dir, quick_bundle.version)
    assert (d / "forecast.onnx").exists() and (d / "manifest.json").exists()
    rows = installed(store)
    assert rows[0]["status"] == "active" and rows[0]["key_id"] == quick_bundle.key.key_id
    assert rows[0]["models"]["forecast"]["features"] == 20
    # installing the same bundle again is harmless
    again = install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust,
                                 registry=registry)
    assert again["status"] == "already-installed"
    # a new registry (another process) finds it from the store alone
    assert ModelRegistry().active(store).version == quick_bundle.version


def test_newer_bundle_replaces_and_older_is_refused(store: Store, quick_bundle: QuickBundle,
                                                    registry: ModelRegistry) -> None:
    install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust, registry=registry)
    newer = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
                  "m20261201000000-bbbb0002", datetime(2026, 12, 1))
    r = install_model_bundle(store, newer, trust=quick_bundle.trust, registry=registry)
    assert r["previous"] == quick_bundle.version
    assert registry.active(store).version == "m20261201000000-bbbb0002"
    older = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
                  "m20261015000000-cccc0003", datetime(2026, 10, 15))
    with pytest.raises(ModelDowngrade):
        install_model_bundle(store, older, trust=quick_bundle.trust, registry=registry)
    with pytest.raises(ModelDowngrade):   # a replay of the superseded bundle
        install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust,
                             registry=registry)
    assert registry.active(store).version == "m20261201000000-bbbb0002"
    assert [r["status"] for r in installed(store)] == ["active", "superseded"]


def test_tampered_bundle_is_refused_and_last_good_kept(store: Store, quick_bundle: QuickBundle,
                                                       registry: ModelRegistry) -> None:
    install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust, registry=registry)
    newer = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
                  "m20261201000000-dddd0004", datetime(2026, 12, 1))
    onnx = bytearray(quick_bundle.files["forecast.onnx"])
    onnx[len(onnx) // 2] ^= 0x01
    tampered = _rezip(newer, {"forecast.onnx": bytes(onnx)})
    with pytest.raises(BundleCorrupt) as e:
        install_model_bundle(store, tampered, trust=quick_bundle.trust, registry=registry)
    assert e.value.exit_code == 3 and "does not match the signed manifest" in e.value.message
    # an edited manifest breaks the signature
    manifest = zipfile.ZipFile(io.BytesIO(newer)).read("manifest.json")
    edited = _rezip(newer, {"manifest.json": manifest.replace(b'"naive_blend":0.4',
                                                              b'"naive_blend":0.0')})
    with pytest.raises(SignatureInvalid):
        install_model_bundle(store, edited, trust=quick_bundle.trust, registry=registry)
    # an extra unsigned file, a missing file, a truncated archive
    with pytest.raises(BundleCorrupt):
        install_model_bundle(store, _rezip(newer, {"extra.onnx": b"x"}),
                             trust=quick_bundle.trust, registry=registry)
    with pytest.raises(BundleCorrupt):
        install_model_bundle(store, _rezip(newer, {"forecast.onnx": None}),
                             trust=quick_bundle.trust, registry=registry)
    with pytest.raises(BundleCorrupt):
        install_model_bundle(store, newer[: len(newer) // 2], trust=quick_bundle.trust,
                             registry=registry)
    assert registry.active(store).version == quick_bundle.version
    assert not bundle_dir(store.data_dir, "m20261201000000-dddd0004").exists()


def test_foreign_key_and_trust_setting(store: Store, quick_bundle: QuickBundle,
                                       registry: ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(UnknownSigningKey):   # nothing trusted yet
        install_model_bundle(store, quick_bundle.data, registry=registry)
    other = SigningKey.generate()
    foreign = build(other, quick_bundle.files, quick_bundle.models, "m20261102000000-eeee0005",
                    datetime(2026, 11, 2))
    kid = trust_key(store, quick_bundle.key.public_pem())
    assert kid == quick_bundle.key.key_id
    assert trust_key(store, quick_bundle.key.public_pem()) == kid   # idempotent
    assert len(store.get_json_setting(TRUST_SETTING)) == 1
    assert trust_for_store(store).key_ids() == [kid]
    with pytest.raises(UnknownSigningKey):
        install_model_bundle(store, foreign, registry=registry)
    assert install_model_bundle(store, quick_bundle.data, registry=registry)["status"] == \
        "installed"
    with pytest.raises(BadInput):
        trust_key(store, b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_bundle_for_other_stores_and_unknown_format(store: Store, quick_bundle: QuickBundle,
                                                    registry: ModelRegistry) -> None:
    scoped = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
                   "m20261102000000-ffff0006", datetime(2026, 11, 2), stores=["store-9"])
    with pytest.raises(ModelIncompatible) as e:
        install_model_bundle(store, scoped, trust=quick_bundle.trust, registry=registry)
    assert e.value.code == "MODEL_NOT_FOR_STORE"
    ok = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
               "m20261102000000-ffff0007", datetime(2026, 11, 2), stores=["store-1"])
    assert install_model_bundle(store, ok, trust=quick_bundle.trust,
                                registry=registry)["status"] == "installed"
    # a future format, correctly signed
    import json

    from pharmacy.canonical import canonical_json

    m = json.loads(zipfile.ZipFile(io.BytesIO(ok)).read("manifest.json"))
    m["format"] = "pharmos-model-bundle/9"
    body = canonical_json(m).encode()
    sig = canonical_json({"key_id": quick_bundle.key.key_id,
                          "signature": quick_bundle.key.sign(body)}).encode()
    future = _rezip(ok, {"manifest.json": body, "signature.json": sig})
    with pytest.raises(ModelIncompatible) as e:
        read_bundle(future, quick_bundle.trust)
    assert e.value.code == "MODEL_FORMAT_UNSUPPORTED"


def test_files_damaged_on_disk_fall_back(store: Store, quick_bundle: QuickBundle,
                                         registry: ModelRegistry) -> None:
    install_model_bundle(store, quick_bundle.data, trust=quick_bundle.trust, registry=registry)
    newer = build(quick_bundle.key, quick_bundle.files, quick_bundle.models,
                  "m20261201000000-abcd0008", datetime(2026, 12, 1))
    install_model_bundle(store, newer, trust=quick_bundle.trust, registry=registry)
    (bundle_dir(store.data_dir, "m20261201000000-abcd0008") / "forecast.onnx").write_bytes(b"x")
    fresh = ModelRegistry().active(store)          # e.g. after a restart
    assert fresh.version == quick_bundle.version   # the previous good bundle
    assert "failed to load" in fresh.note
    (bundle_dir(store.data_dir, quick_bundle.version) / "forecast.onnx").unlink()
    worst = ModelRegistry().active(store)
    assert worst.version is None and "moving average" in worst.note


def test_every_suggestion_records_its_model_version(history_store: Store,
                                                    quick_bundle: QuickBundle,
                                                    registry: ModelRegistry) -> None:
    before = reorder_run(history_store, registry)
    assert {s["model_version"] for s in before["suggestions"]} <= {
        "fallback: moving average", "none: no sales history"}
    install_model_bundle(history_store, quick_bundle.data, trust=quick_bundle.trust,
                         registry=registry)
    after = reorder_run(history_store, registry)   # same process, no restart
    by_ndc = {s["ndc"]: s for s in after["suggestions"]}
    assert by_ndc["0904-6728-60"]["model_version"] == quick_bundle.version
    assert by_ndc["0904-6728-60"]["forecast"]["basis"] == "model"
    rows = history_store.conn.execute(
        "SELECT model_version, status FROM model_suggestions WHERE run_id = ?",
        (after["run_id"],)).fetchall()
    assert rows and all(r["model_version"] for r in rows)
    assert {r["status"] for r in history_store.conn.execute(
        "SELECT status FROM model_suggestions WHERE run_id = ?", (before["run_id"],))} == \
        {"superseded"}
