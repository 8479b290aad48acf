"""Signed policy bundles: one JSON file that head office builds, signs and ships.

Format 1 (canonical JSON, UTF-8)::

    {"format": "pharmos-policy-bundle", "format_version": 1,
     "manifest": {"format_version": 1, "bundle_version": "...", "jurisdictions": [...],
                  "issued_at": "...Z", "offline_until": "...Z", "key_id": "...",
                  "policy_count": N, "files": {"<name>": "<sha256>", ...}},
     "files": {"policies/00_base.cedar": "<text>", "schema.cedarschema": "<text>",
               "data/jurisdictions.json": "<text>", ...},
     "signature": {"alg": "ed25519", "key_id": "...", "sig": "<base64>"}}

The signature covers the canonical JSON of the manifest, which names every file by SHA-256
(pharmacy.signing). ``build_bundle`` refuses a policy that fails schema validation, and so
does ``sign_bundle``: an invalid policy cannot be signed. ``verify_bundle`` checks, in order:
JSON, format version, signature and signer, file hashes, expiry, policies against the schema,
data files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from pharmacy.canonical import canonical_json
from pharmacy.clock import iso, parse_iso
from pharmacy.signing import SignatureInvalid, SigningKey, TrustStore, sha256_files
from policy_cache.data import DATA_FILES, OPTIONAL_DATA_FILES, BundleData
from policy_cache.errors import (
    BundleExpired,
    BundleFormatUnsupported,
    BundleMalformed,
    BundleTampered,
    BundleUnsigned,
    PolicyInputError,
    PolicyInvalid,
)

FORMAT = "pharmos-policy-bundle"
FORMAT_VERSION = 1
SCHEMA_FILE = "schema.cedarschema"
REQUIRED_ANNOTATIONS = ("id", "outcome", "applies", "jurisdiction")
OUTCOMES = ("base", "deny", "hold", "warn", "obligation")
APPLIES = ("any", "restricted", "dea", "cii", "ciii_v", "cv_otc", "pse", "india", "rx",
           "rx_only")


@dataclass(frozen=True)
class BundleMeta:
    bundle_version: str
    format_version: int
    jurisdictions: tuple[str, ...]
    issued_at: datetime
    offline_until: datetime
    key_id: str | None
    policy_count: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"bundle_version": self.bundle_version, "format_version": self.format_version,
                "jurisdictions": list(self.jurisdictions), "issued_at": iso(self.issued_at),
                "offline_until": iso(self.offline_until), "key_id": self.key_id,
                "policy_count": self.policy_count, "sha256": self.sha256}


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature, hashes, policies and data have all been checked."""

    meta: BundleMeta
    policy_text: str
    schema_text: str
    data: BundleData


def default_source() -> Path:
    return Path(str(resources.files("policy_cache.rules")))


def read_source(source: Path | str | None) -> dict[str, str]:
    """The files of a rules directory as bundle members (policies/, schema, data/)."""
    src = default_source() if source is None else Path(source)
    if not src.is_dir():
        raise PolicyInputError(f"policy source {src} is not a directory", code="BAD_SOURCE")
    files: dict[str, str] = {}
    for p in sorted(src.glob("*.cedar")):
        files[f"policies/{p.name}"] = p.read_text(encoding="utf-8")
    schema = src / SCHEMA_FILE
    if not schema.exists():
        raise PolicyInputError(f"policy source {src} has no {SCHEMA_FILE}", code="BAD_SOURCE")
    files[SCHEMA_FILE] = schema.read_text(encoding="utf-8")
    for name in DATA_FILES:
        p = src / name
        if not p.exists():
            raise PolicyInputError(f"policy source {src} has no {name}", code="BAD_SOURCE")
        files[f"data/{name}"] = p.read_text(encoding="utf-8")
    for name in OPTIONAL_DATA_FILES:
        p = src / name
        if p.exists():
            files[f"data/{name}"] = p.read_text(encoding="utf-8")
    if not any(k.startswith("policies/") for k in files):
        raise PolicyInputError(f"policy source {src} has no .cedar policies", code="BAD_SOURCE")
    return files


def policy_text_of(files: Mapping[str, str]) -> str:
    return "\n".join(files[k] for k in sorted(files) if k.startswith("policies/"))


def data_files_of(files: Mapping[str, str]) -> dict[str, str]:
    return {k[len("data/"):]: v for k, v in files.items() if k.startswith("data/")}


def check_policies(policy_text: str, schema_text: str) -> dict[str, dict[str, Any]]:
    """Parse, validate against the schema and check annotations. Returns the EST policies
    by positional id. Raises PolicyInvalid naming each failing policy."""
    try:
        schema = cedarpy.Schema.from_str(schema_text)
    except ValueError as e:
        raise PolicyInvalid(f"the Cedar schema does not parse: {e}") from None
    try:
        est = json.loads(cedarpy.policies_to_json_str(policy_text))
    except ValueError as e:
        raise PolicyInvalid(f"the policies do not parse: {e}") from None
    policies: dict[str, dict[str, Any]] = est.get("staticPolicies", {})
    if est.get("templates"):
        raise PolicyInvalid("policy templates are not allowed in a bundle")
    result = cedarpy.validate_policies(policy_text, schema)
    if not result.validation_passed:
        names = result.id_annotations_by_policy_id
        errs = "; ".join(f"{names.get(e.policy_id, e.policy_id)}: {e.error}"
                         for e in result.errors[:5])
        raise PolicyInvalid(f"{len(result.errors)} policy error(s) against the schema: {errs}",
                            errors=[str(e) for e in result.errors])
    seen: set[str] = set()
    for pid, pol in policies.items():
        ann = pol.get("annotations", {})
        missing = [a for a in REQUIRED_ANNOTATIONS if a not in ann]
        if missing:
            raise PolicyInvalid(f"policy {ann.get('id', pid)} lacks @{', @'.join(missing)}")
        rid = ann["id"]
        if rid in seen:
            raise PolicyInvalid(f"two policies share @id({rid!r})")
        seen.add(rid)
        if ann["outcome"] not in OUTCOMES or ann["applies"] not in APPLIES:
            raise PolicyInvalid(f"policy {rid}: @outcome must be one of {OUTCOMES} and @applies "
                                f"one of {APPLIES}")
        effect = pol.get("effect")
        if ann["outcome"] in ("deny", "hold") and effect != "forbid":
            raise PolicyInvalid(f"policy {rid}: a {ann['outcome']} rule must be a forbid policy")
        if ann["outcome"] in ("warn", "obligation", "base") and effect != "permit":
            raise PolicyInvalid(f"policy {rid}: a {ann['outcome']} rule must be a permit policy")
        if ann["outcome"] in ("deny", "hold", "warn") and not (
                ann.get("code") and ann.get("citation") and ann.get("message")):
            raise PolicyInvalid(f"policy {rid}: needs @code, @citation and @message")
        if ann["outcome"] == "obligation" and not ann.get("obligations"):
            raise PolicyInvalid(f"policy {rid}: an obligation rule needs @obligations")
        if ann["jurisdiction"] != "*" and '"attr":"rules"' not in json.dumps(
                pol.get("conditions", []), separators=(",", ":")):
            raise PolicyInvalid(f"policy {rid}: @jurisdiction({ann['jurisdiction']!r}) needs a "
                                "context.rules.contains(..) guard in its condition")
    return policies


def _check_data_refs(policy_text: str, data: BundleData) -> None:
    """Every cap and rule pack a policy names must be defined in the jurisdiction data."""
    import re

    used = set(re.findall(r"context(?:\.| has )cap_([a-z0-9_]+)", policy_text))
    undefined = sorted(used - {c.name for c in data.caps})
    if undefined:
        raise PolicyInvalid(f"policies use caps that no jurisdiction data defines: "
                            f"{', '.join(undefined)}")
    packs = set(re.findall(r'context\.rules\.contains\("([^"]+)"\)', policy_text))
    unknown = sorted(packs - {r.id for r in data.rules})
    if unknown:
        raise PolicyInvalid(f"policies use rule packs that no jurisdiction data defines: "
                            f"{', '.join(unknown)}")


def _hashes(files: dict[str, str]) -> dict[str, str]:
    return sha256_files({name: text.encode("utf-8") for name, text in files.items()})


def _validate(files: dict[str, str]) -> tuple[str, int, BundleData]:
    """Every policy against the schema, and the data the policies refer to: (policy text,
    policy count, data). An invalid policy can never be signed or installed."""
    policy_text = policy_text_of(files)
    policies = check_policies(policy_text, files[SCHEMA_FILE])
    data = BundleData(data_files_of(files))
    _check_data_refs(policy_text, data)
    return policy_text, len(policies), data


def build_bundle(source: Path | str | None, *, version: str, jurisdictions: list[str] | tuple[
        str, ...], issued_at: datetime, offline_until: datetime) -> bytes:
    """An unsigned bundle from a rules directory (None = the rules shipped with pharmos)."""
    if not version or not isinstance(version, str):
        raise PolicyInputError("the bundle needs a version", code="BAD_VERSION")
    if offline_until <= issued_at:
        raise PolicyInputError("offline_until must be after issued_at", code="BAD_OFFLINE_UNTIL")
    files = read_source(source)
    _, policy_count, data = _validate(files)
    unknown = [j for j in jurisdictions if j not in data.jurisdictions]
    if unknown or not jurisdictions:
        raise PolicyInputError(f"jurisdictions must be some of {sorted(data.jurisdictions)}; "
                               f"got {list(jurisdictions)}", code="BAD_JURISDICTION")
    manifest = {
        "format_version": FORMAT_VERSION, "bundle_version": version,
        "jurisdictions": list(jurisdictions), "issued_at": iso(issued_at),
        "offline_until": iso(offline_until), "policy_count": policy_count,
        "files": _hashes(files),
    }
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest,
           "files": files}
    return canonical_json(doc).encode("utf-8")


def sign_bundle(bundle_bytes: bytes, signing_key: SigningKey) -> bytes:
    """Sign an unsigned (or re-sign a signed) bundle. Re-validates every policy first."""
    doc = _parse(bundle_bytes)
    files = _files(doc)
    manifest = _manifest(doc)
    _check_hashes(manifest, files)
    _, policy_count, data = _validate(files)
    meta = _meta(manifest, bytes(bundle_bytes), policy_count, data)  # what terminals check
    if meta.offline_until <= meta.issued_at:
        raise BundleMalformed("the bundle's offline_until is not after its issued_at")
    manifest = {**manifest, "key_id": signing_key.key_id}
    sig = signing_key.sign(canonical_json(manifest).encode("utf-8"))
    out = {"format": FORMAT, "format_version": FORMAT_VERSION, "manifest": manifest,
           "files": files, "signature": {"alg": "ed25519", "key_id": signing_key.key_id,
                                         "sig": sig}}
    return canonical_json(out).encode("utf-8")


def _parse(raw: bytes) -> dict[str, Any]:
    if not isinstance(raw, bytes | bytearray):
        raise BundleMalformed("a bundle is bytes")
    try:
        doc = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleMalformed(f"the bundle is not valid JSON ({type(e).__name__}); it was "
                              "damaged in transit or is not a pharmos policy bundle") from None
    except RecursionError:
        raise BundleMalformed("the bundle's JSON is nested too deeply; this file is not a "
                              "pharmos policy bundle") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleMalformed("this file is not a pharmos policy bundle")
    fv = doc.get("format_version")
    if fv != FORMAT_VERSION:
        raise BundleFormatUnsupported(
            f"bundle format version {fv!r} is not supported by this pharmos (it reads "
            f"version {FORMAT_VERSION}); update the terminal or ask head office for a "
            f"version-{FORMAT_VERSION} bundle", format_version=fv)
    return doc


def _files(doc: dict[str, Any]) -> dict[str, str]:
    files = doc.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise BundleMalformed("the bundle's files are missing or malformed")
    if SCHEMA_FILE not in files:
        raise BundleMalformed(f"the bundle has no {SCHEMA_FILE}")
    return files


def _manifest(doc: dict[str, Any]) -> dict[str, Any]:
    m = doc.get("manifest")
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        raise BundleMalformed("the bundle's manifest is missing or malformed")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleFormatUnsupported(
            f"manifest format version {m.get('format_version')!r} is not supported")
    for k in ("bundle_version", "issued_at", "offline_until", "jurisdictions"):
        if k not in m:
            raise BundleMalformed(f"the bundle's manifest lacks {k}")
    return m


def _check_hashes(manifest: dict[str, Any], files: dict[str, str]) -> None:
    listed = manifest["files"]
    if set(listed) != set(files):
        raise BundleTampered("the bundle's files do not match its manifest (files added or "
                             "removed after signing)")
    actual = _hashes(files)
    for name in files:
        if listed[name] != actual[name]:
            raise BundleTampered(f"bundle file {name} does not match its signed hash; the "
                                 "bundle was altered or corrupted", file=name)


def _meta(manifest: dict[str, Any], raw: bytes, policy_count: int,
          data: BundleData | None = None) -> BundleMeta:
    """The manifest's fields, each checked (``data``: the jurisdictions must be ones it
    defines)."""
    version = manifest["bundle_version"]
    if not isinstance(version, str) or not version.strip():
        raise BundleMalformed(f"the bundle's version {version!r:.40} is not a version name")
    try:
        issued = parse_iso(str(manifest["issued_at"]))
        until = parse_iso(str(manifest["offline_until"]))
    except ValueError:
        raise BundleMalformed("the bundle's issued_at / offline_until are not ISO times"
                              ) from None
    js = manifest["jurisdictions"]
    if not isinstance(js, list) or not js or not all(isinstance(j, str) for j in js):
        raise BundleMalformed("the bundle's jurisdictions must be a list of codes")
    if data is not None:
        unknown = sorted(set(js) - set(data.jurisdictions))
        if unknown:
            raise BundleMalformed(f"the bundle names jurisdictions its data does not define: "
                                  f"{', '.join(unknown)}")
    kid = manifest.get("key_id")
    return BundleMeta(version, FORMAT_VERSION, tuple(js), issued, until,
                      kid if isinstance(kid, str) else None, policy_count,
                      hashlib.sha256(raw).hexdigest())


def verify_bundle(raw: bytes, trust: TrustStore, *, now: datetime | None = None
                  ) -> VerifiedBundle:
    """Everything a terminal checks before it uses a bundle. ``now`` checks expiry."""
    doc = _parse(raw)
    manifest = _manifest(doc)
    sig = doc.get("signature")
    if not isinstance(sig, dict) or not sig.get("sig") or not sig.get("key_id"):
        raise BundleUnsigned("the bundle is not signed; only bundles signed by head office "
                             "can be installed")
    if sig.get("alg") != "ed25519":
        raise BundleFormatUnsupported(f"signature algorithm {sig.get('alg')!r} is not supported")
    kid = str(sig["key_id"])
    if manifest.get("key_id") != kid:
        raise SignatureInvalid("the signature's key id does not match the manifest; the bundle "
                               "was altered", key_id=kid)
    trust.verify(kid, canonical_json(manifest).encode("utf-8"), str(sig["sig"]))
    files = _files(doc)
    _check_hashes(manifest, files)
    policy_text, policy_count, data = _validate(files)
    meta = _meta(manifest, bytes(raw), policy_count, data)
    if now is not None and now > meta.offline_until:
        raise BundleExpired(f"bundle {meta.bundle_version} expired at {iso(meta.offline_until)}"
                            "; ask head office for a current bundle",
                            bundle_version=meta.bundle_version)
    return VerifiedBundle(meta, policy_text, files[SCHEMA_FILE], data)


def peek_meta(raw: bytes) -> dict[str, Any]:
    """The manifest of a bundle without verifying it (for display only)."""
    doc = _parse(raw)
    m = _manifest(doc)
    return {k: v for k, v in m.items() if k != "files"}
