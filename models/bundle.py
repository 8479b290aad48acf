"""Signed model bundles: build and sign (head office), verify, install, hot-swap (terminal).

A bundle is a zip archive holding ``manifest.json`` (canonical JSON: format, version,
issued_at, key_id, every file by SHA-256, and the metadata of each model: features,
training window, metrics), ``signature.json`` (Ed25519 over the manifest bytes, see
``pharmacy.signing``) and the ONNX files.

Trust: ``install_model_bundle`` verifies against the ``trust`` argument when given (the sync
client can pass the store's head-office keys), otherwise against the store setting
``model_trust`` (a JSON list of PEM public keys; ``trust_key`` / ``pharmos models trust``).

A bundle that is tampered with, signed by an unknown key, malformed, incompatible (features,
format, input width, unloadable graph) or older than the installed one is refused with a
reason, recorded in the audit log, and the current model stays in use.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from models.errors import BundleCorrupt, ModelDowngrade, ModelIncompatible
from pharmacy.canonical import canonical_json
from pharmacy.clock import iso, parse_iso
from pharmacy.errors import BadInput, PharmosError
from pharmacy.signing import SigningKey, TrustStore, key_id, load_public_pem, sha256_files

if TYPE_CHECKING:
    from models.runtime import ModelRegistry
    from pharmacy.store import Store

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
FORMAT = "pharmos-model-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"
TRUST_SETTING = "model_trust"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class VerifiedBundle:
    version: str
    issued_at: str
    key_id: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: str
    files: dict[str, bytes]


# ---- head office -------------------------------------------------------------------------------
def build_bundle(files: dict[str, bytes], models: dict[str, dict[str, Any]], key: SigningKey, *,
                 version: str, issued_at: datetime, stores: list[str] | None = None) -> bytes:
    """Sign and pack. ``models`` maps a role ("forecast", "diversion") to its metadata."""
    for name in files:
        _check_name(name)
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": version, "issued_at": iso(issued_at),
        "key_id": key.key_id, "files": sha256_files(files), "models": models,
    }
    if stores is not None:
        manifest["stores"] = sorted(stores)
    body = canonical_json(manifest).encode("utf-8")
    sig = canonical_json({"key_id": key.key_id, "signature": key.sign(body)}).encode("utf-8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in [(MANIFEST, body), (SIGNATURE, sig), *sorted(files.items())]:
            z.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
    return buf.getvalue()


# ---- verification ------------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if (not name or "/" in name or "\\" in name or name.startswith(".")
            or name in (MANIFEST, SIGNATURE) or len(name) > 100):
        raise BundleCorrupt(f"bundle file name {name!r} is not allowed", file=name)


def read_bundle(data: bytes, trust: TrustStore) -> VerifiedBundle:
    """Open and verify a signed bundle (signature, then every file's hash)."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleCorrupt(f"the model bundle is {len(data)} bytes, over the "
                            f"{MAX_BUNDLE_BYTES} limit")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise BundleCorrupt("the model bundle is not a readable archive; it was truncated "
                            "or corrupted in transfer") from None
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise BundleCorrupt("the model bundle names a file twice")
    if sum(i.file_size for i in infos) > MAX_BUNDLE_BYTES:
        raise BundleCorrupt("the model bundle unpacks to more than the size limit")
    if MANIFEST not in names or SIGNATURE not in names:
        raise BundleCorrupt("the model bundle lacks its manifest or signature")
    try:
        contents = {n: z.read(n) for n in names}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BundleCorrupt("the model bundle's contents are damaged (checksum error)") from None
    body = contents.pop(MANIFEST)
    try:
        sig = json.loads(contents.pop(SIGNATURE))
        kid, signature = str(sig["key_id"]), str(sig["signature"])
    except (ValueError, KeyError, TypeError):
        raise BundleCorrupt("the model bundle's signature file is malformed") from None
    trust.verify(kid, body, signature)         # SignatureInvalid / UnknownSigningKey
    try:
        manifest = json.loads(body)
    except ValueError:
        raise BundleCorrupt("the signed manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelIncompatible(
            f"bundle format {manifest.get('format') if isinstance(manifest, dict) else None!r}"
            f" is not {FORMAT!r}; this terminal needs an update to use it",
            code="MODEL_FORMAT_UNSUPPORTED")
    declared = manifest.get("files")
    if not isinstance(declared, dict):
        raise BundleCorrupt("the signed manifest lists no files")
    for name in contents:
        _check_name(name)
    extra = sorted(set(contents) - set(declared))
    if extra:
        raise BundleCorrupt(f"the model bundle holds files its manifest does not sign: {extra}")
    actual = sha256_files(contents)
    for name, digest in declared.items():
        if name not in contents:
            raise BundleCorrupt(f"the model bundle lacks {name}", file=name)
        if actual[name] != digest:
            raise BundleCorrupt(f"{name} does not match the signed manifest; the file was "
                                "altered or corrupted", file=name)
    try:
        version = str(manifest["version"])
        issued_at = iso(parse_iso(str(manifest["issued_at"])))
    except (KeyError, ValueError):
        raise BundleCorrupt("the signed manifest lacks a version or issue time") from None
    if not _VERSION.match(version):  # it names files and folders
        raise BundleCorrupt(f"model version {version!r} is not a valid name")
    return VerifiedBundle(version, issued_at, kid, manifest, body, signature, contents)


# ---- trust ---------------------------------------------------------------------------------------
def trusted_pems(store: Store) -> list[str]:
    value = store.get_json_setting(TRUST_SETTING)
    return [str(p) for p in value] if isinstance(value, list) else []


def trust_for_store(store: Store) -> TrustStore:
    return TrustStore.from_pems(p.encode("ascii") for p in trusted_pems(store))


def trust_key(store: Store, pem: bytes) -> str:
    """Add a head-office public key (PEM) to the keys this store accepts models from."""
    try:
        public = load_public_pem(pem)
    except (ValueError, TypeError, PharmosError):
        raise BadInput("not an Ed25519 public key in PEM form", code="BAD_KEY") from None
    kid = key_id(public)
    pems = trusted_pems(store)
    text = pem.decode("ascii").strip() + "\n"
    if all(key_id(load_public_pem(p.encode("ascii"))) != kid for p in pems):
        pems.append(text)
        store.set_json_setting(TRUST_SETTING, pems)
    return kid


def retire_key(store: Store, kid: str) -> bool:
    """Stop accepting models signed by key ``kid`` (never the last one)."""
    pems = trusted_pems(store)
    keep = [p for p in pems if key_id(load_public_pem(p.encode("ascii"))) != kid]
    if len(keep) == len(pems) or not keep:
        return False
    store.set_json_setting(TRUST_SETTING, keep)
    return True


# ---- install -------------------------------------------------------------------------------------
def installed(store: Store) -> list[dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT version, issued_at, installed_at, key_id, status, manifest FROM model_bundles "
        "ORDER BY installed_seq DESC").fetchall()
    out = []
    for r in rows:
        manifest = json.loads(r["manifest"])
        out.append({"version": r["version"], "issued_at": r["issued_at"],
                    "installed_at": r["installed_at"], "key_id": r["key_id"],
                    "status": r["status"], "models": summarize(manifest)})
    return out


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def summarize(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a bundle says of its models, for listings: a field of an unexpected shape (the
    manifest is signed, not necessarily well made) is left out, never an error."""
    out: dict[str, Any] = {}
    for role, meta in _obj(manifest.get("models")).items():
        if not isinstance(meta, dict):
            continue
        features = meta.get("features")
        item: dict[str, Any] = {"kind": meta.get("kind"), "feature_set": meta.get("feature_set"),
                                "features": len(features) if isinstance(features, list) else 0,
                                "training_window": meta.get("training_window")}
        if role == "forecast":
            item["holdout"] = {k: {m: v for m, v in s.items()
                                   if m in ("mse", "mape", "naive_mse", "snaive_mse")}
                               for k, s in _obj(_obj(meta.get("holdout")).get("metrics")).items()
                               if isinstance(s, dict)}
        if role == "diversion":
            ev = _obj(meta.get("evaluation"))
            item["evaluation"] = {k: ev.get(k) for k in ("precision", "recall",
                                                          "ordinary_flagged_rate")}
        out[role] = item
    return out


def _record(store: Store, action: str, subject: str, detail: dict[str, Any]) -> None:
    with store.transaction() as c:
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, NULL, ?, ?, ?)",
                  (iso(store.clock()), action, subject, json.dumps(detail, sort_keys=True)))


def install_model_bundle(store: Store, signed_bytes: bytes, *, trust: TrustStore | None = None,
                         registry: ModelRegistry | None = None) -> dict[str, Any]:
    """Verify, load, store and activate a signed bundle; the new models are used at once.

    Raises (and records in the audit log) on a refused bundle; the active models stay.
    """
    from models import runtime

    reg = registry if registry is not None else runtime.REGISTRY
    trust = trust if trust is not None else trust_for_store(store)
    subject = "?"
    try:
        vb = read_bundle(signed_bytes, trust)
        subject = vb.version
        scope = vb.manifest.get("stores")
        if isinstance(scope, list) and store.store_id not in scope:
            raise ModelIncompatible(f"model bundle {vb.version} is for other stores",
                                    code="MODEL_NOT_FOR_STORE")
        current = store.conn.execute(
            "SELECT version, issued_at FROM model_bundles WHERE status = 'active'").fetchone()
        if current is not None and current["version"] == vb.version:
            return {"status": "already-installed", "version": vb.version}
        known = store.conn.execute("SELECT status FROM model_bundles WHERE version = ?",
                                   (vb.version,)).fetchone()
        if known is not None or (current is not None and vb.issued_at < current["issued_at"]):
            raise ModelDowngrade(
                f"model bundle {vb.version} (issued {vb.issued_at}) is older than the installed "
                f"{current['version'] if current else '?'}; keeping the installed one",
                version=vb.version)
        models = runtime.models_from_files(vb.version, vb.manifest, vb.files)
    except PharmosError as e:
        _record(store, "model.refused", subject, {"code": e.code, "message": e.message})
        raise
    _write_files(store, vb)
    now = iso(store.clock())
    with store.transaction() as c:
        c.execute("UPDATE model_bundles SET status = 'superseded' WHERE status = 'active'")
        c.execute(
            "INSERT INTO model_bundles(version, issued_at, installed_at, key_id, status, "
            "manifest, signature) VALUES (?, ?, ?, ?, 'active', ?, ?)",
            (vb.version, vb.issued_at, now, vb.key_id, vb.manifest_bytes.decode("utf-8"),
             vb.signature))
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                  "VALUES (?, NULL, 'model.installed', ?, ?)",
                  (now, vb.version, json.dumps({"key_id": vb.key_id,
                                                "previous": None if current is None
                                                else current["version"]})))
    reg.swap(store.data_dir, vb.version, models)
    return {"status": "installed", "version": vb.version, "issued_at": vb.issued_at,
            "key_id": vb.key_id, "previous": None if current is None else current["version"],
            "load_ms": round(models.load_ms, 3), "models": summarize(vb.manifest)}


def _write_files(store: Store, vb: VerifiedBundle) -> None:
    from models.runtime import bundle_dir

    final = bundle_dir(store.data_dir, vb.version)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name, data in [*vb.files.items(), (MANIFEST, vb.manifest_bytes)]:
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)

