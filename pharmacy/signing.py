"""Ed25519 signatures for everything head office publishes (policy bundles, model bundles).

A signed artifact is a manifest (canonical JSON, naming every file by SHA-256) plus a detached
signature over the manifest bytes. Keys are identified by ``key_id`` = first 16 hex digits of
SHA-256 of the raw public key. Terminals trust a set of public keys (``TrustStore``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pharmacy.canonical import canonical_json
from pharmacy.errors import BadInput, IntegrityFailure


class SignatureInvalid(IntegrityFailure):
    code = "SIGNATURE_INVALID"


class UnknownSigningKey(IntegrityFailure):
    code = "UNKNOWN_SIGNING_KEY"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode("ascii")

    def private_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def public_pem(self) -> bytes:
        return public_pem(self.public)

    def save(self, path: Path) -> None:
        """Write the private key (mode 0600) and ``<path>.pub`` beside it. A path that cannot
        hold them (a folder, a folder that cannot be made) is BAD_OUTPUT_FILE, checked before
        either file is written."""
        pub = path.with_name(path.name + ".pub") if path.name else path
        for target in (path, pub):
            if not target.name or target.is_dir():
                raise BadInput(f"cannot write the key to {target}: it is a folder, not a file "
                               "name", code="BAD_OUTPUT_FILE")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)
            path.write_bytes(self.private_pem())
            pub.write_bytes(self.public_pem())
        except OSError as e:
            raise BadInput(f"cannot write the key to {path}: {e.strerror or e}",
                           code="BAD_OUTPUT_FILE") from None

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as e:
            raise BadInput(f"cannot read the key {path}: {e.strerror}",
                           code="BAD_KEY_FILE") from None
        except (ValueError, TypeError):  # not PEM, or a key that needs a password
            raise BadInput(f"{path} is not an unencrypted PEM private key",
                           code="BAD_KEY") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureInvalid(f"{path} is not an Ed25519 private key", code="BAD_KEY")
        return cls(key)


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SignatureInvalid("not a PEM public key", code="BAD_KEY") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureInvalid("not an Ed25519 public key", code="BAD_KEY")
    return key


class TrustStore:
    """The public keys a terminal accepts, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys}

    @classmethod
    def from_pems(cls, pems: Iterable[bytes]) -> TrustStore:
        return cls(load_public_pem(p) for p in pems)

    def add(self, key: Ed25519PublicKey) -> str:
        kid = key_id(key)
        self._keys[kid] = key
        return kid

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, kid: str, data: bytes, signature_b64: str) -> None:
        key = self._keys.get(kid)
        if key is None:
            raise UnknownSigningKey(f"signed by key {kid}, which this terminal does not trust",
                                    key_id=kid)
        try:
            key.verify(base64.b64decode(signature_b64, validate=True), data)
        except (InvalidSignature, ValueError):
            raise SignatureInvalid("the signature does not match the content; the file was "
                                   "altered or corrupted", key_id=kid) from None


def sha256_files(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


# ---- key rotation ---------------------------------------------------------------------------
ENDORSEMENT = "pharmos.key_endorsement"


def endorse_key(signer: SigningKey, new_public_pem: bytes, *, issued_at: str,
                retire_signer: bool = False) -> dict[str, Any]:
    """A statement, signed by a key terminals trust now, that they should also trust
    ``new_public_pem`` (and, with ``retire_signer``, stop trusting the signer once they do):
    how head office rotates its signing key without visiting every terminal."""
    new = load_public_pem(new_public_pem)
    if key_id(new) == signer.key_id:
        raise SignatureInvalid("a key cannot endorse itself", code="BAD_ENDORSEMENT")
    statement = {"type": ENDORSEMENT, "key_id": key_id(new),
                 "public_key": public_pem(new).decode("ascii"), "issued_at": issued_at,
                 "retire": [signer.key_id] if retire_signer else []}
    return {"endorsement": statement, "key_id": signer.key_id,
            "signature": signer.sign(canonical_json(statement).encode())}


def verify_endorsement(trust: TrustStore, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The endorsement's statement, once its signature checks out against a trusted key.
    A key may retire only itself."""
    statement = doc.get("endorsement") if isinstance(doc, Mapping) else None
    if not isinstance(statement, Mapping) or statement.get("type") != ENDORSEMENT or not \
            isinstance(doc.get("key_id"), str) or not isinstance(doc.get("signature"), str):
        raise SignatureInvalid("not a pharmos key endorsement", code="BAD_ENDORSEMENT")
    trust.verify(doc["key_id"], canonical_json(dict(statement)).encode(), doc["signature"])
    pem = statement.get("public_key")
    try:
        new = load_public_pem(pem.encode("ascii") if isinstance(pem, str) else b"")
    except (ValueError, TypeError, UnicodeError):
        raise SignatureInvalid("the endorsed public key is not an Ed25519 PEM key",
                               code="BAD_ENDORSEMENT") from None
    retire = statement.get("retire")
    if key_id(new) != statement.get("key_id") or not isinstance(retire, list) or \
            any(r != doc["key_id"] for r in retire):
        raise SignatureInvalid("the endorsement's key id, public key or retired keys do not "
                               "line up", code="BAD_ENDORSEMENT")
    return dict(statement)


def endorsed_pems(pems: Iterable[str], statement: Mapping[str, Any]) -> list[str]:
    """A trusted-key list (PEM texts) after a verified endorsement: the keys it retires
    gone, the endorsed key there once."""
    keep = [p for p in pems
            if key_id(load_public_pem(p.encode("ascii"))) not in statement["retire"]]
    if all(key_id(load_public_pem(p.encode("ascii"))) != statement["key_id"] for p in keep):
        keep.append(public_pem(load_public_pem(statement["public_key"].encode("ascii")))
                    .decode("ascii"))
    return keep
