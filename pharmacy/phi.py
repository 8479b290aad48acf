"""Patient data (PHI): the one module through which it is written and read.

Records are sealed with AES-256-GCM before they reach the database; every read and write is
written to the audit log with the user who did it (45 CFR 164.312(a)(2)(i), (b)). The key comes
from a ``KeyProvider``: by default a key file in the data directory readable only by its owner;
a terminal can supply an OS-keyring-backed provider instead (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pharmacy.canonical import canonical_json
from pharmacy.clock import iso
from pharmacy.errors import BadInput, IntegrityFailure, NotFound, PharmosError
from pharmacy.ids import new_id

KEY_FILE = "phi.key"
_FIELDS = ("name", "address", "birth_date", "gender", "id_document", "phone", "allergies",
           "medications")


class KeyProvider(Protocol):
    def key(self) -> bytes: ...


class FileKeyProvider:
    """A 256-bit key in ``<data_dir>/phi.key``, created with mode 0600 on first use."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / KEY_FILE
        self._key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            if not self.path.exists():
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(AESGCM.generate_key(bit_length=256))
                    f.flush()
                    os.fsync(f.fileno())
            self._key = self.path.read_bytes()
        return self._key


class AccessDenied(PharmosError):
    code = "HIPAA_ACCESS_DENIED"
    exit_code = 2


class PhiVault:
    def __init__(self, conn: sqlite3.Connection, keys: KeyProvider, clock_iso: Any) -> None:
        self.conn = conn
        self._aead = AESGCM(keys.key())
        self._now = clock_iso
        # sealed blob -> its record, for the patients seen lately: a returning patient's record
        # is compared without decrypting it again. A blob's nonce is random, so a blob equal to
        # one opened before holds the same record (and passed the same integrity check).
        self._opened: dict[tuple[str, bytes], dict[str, Any]] = {}

    def _seal(self, patient_id: str, record: dict[str, Any]) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, canonical_json(record).encode(),
                                          patient_id.encode())

    def _open(self, patient_id: str, sealed: bytes) -> dict[str, Any]:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], patient_id.encode())
        except Exception:  # cryptography raises InvalidTag; any failure means tampering
            raise IntegrityFailure(f"patient record {patient_id} fails its integrity check",
                                   code="PHI_INTEGRITY") from None
        data: dict[str, Any] = json.loads(plain)
        return data

    def _open_cached(self, patient_id: str, sealed: bytes) -> dict[str, Any]:
        key = (patient_id, bytes(sealed))
        record = self._opened.get(key)
        if record is None:
            if len(self._opened) >= 64:
                self._opened.clear()
            record = self._opened[key] = self._open(patient_id, sealed)
        return record

    def _audit(self, user_id: str | None, action: str, patient_id: str,
               at: str | None = None) -> None:
        if not user_id:
            raise AccessDenied("patient data needs a signed-in user (unique user id)",
                               code="HIPAA_UNIQUE_USER")
        self.conn.execute(
            "INSERT INTO audit_log(created_at, user_id, action, subject) VALUES (?, ?, ?, ?)",
            (at or iso(self._now()), user_id, action, patient_id),
        )

    def upsert(self, patient: dict[str, Any], user_id: str | None) -> str:
        """Write or merge a patient record (call inside a transaction). Returns the id."""
        if not isinstance(patient, dict):
            raise BadInput("'patient' must be an object", code="BAD_PATIENT")
        pid = str(patient.get("id") or new_id())
        record = {k: patient[k] for k in _FIELDS if patient.get(k) is not None}
        row = self.conn.execute("SELECT sealed FROM patients WHERE patient_id = ?",
                                (pid,)).fetchone()
        now = iso(self._now())
        self._audit(user_id, "phi.write", pid, now)
        if row is None:
            self.conn.execute("INSERT INTO patients VALUES (?, ?, ?, ?)",
                              (pid, self._seal(pid, record), now, now))
        else:
            current = self._open_cached(pid, row[0])
            merged = {**current, **record}
            if merged != current:
                self.conn.execute(
                    "UPDATE patients SET sealed = ?, updated_at = ? WHERE patient_id = ?",
                    (self._seal(pid, merged), now, pid))
        return pid

    def get(self, patient_id: str, user_id: str | None) -> dict[str, Any]:
        row = self.conn.execute("SELECT sealed FROM patients WHERE patient_id = ?",
                                (patient_id,)).fetchone()
        if row is None:
            raise NotFound(f"no patient {patient_id}", code="UNKNOWN_PATIENT")
        self._audit(user_id, "phi.read", patient_id)
        return {"id": patient_id, **self._open(patient_id, row[0])}
