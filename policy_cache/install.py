"""Installing a bundle on a terminal: verify against the trusted keys, refuse anything stale,
keep the last good bundles, switch atomically. A failure raises a BundleInvalid subclass (or
pharmacy.signing's UnknownSigningKey / SignatureInvalid) and changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from pharmacy.clock import iso, parse_iso
from pharmacy.signing import TrustStore
from pharmacy.store import Store
from policy_cache.bundle import VerifiedBundle, verify_bundle
from policy_cache.errors import BundleStale
from policy_cache.trust import trust_store, trusted_key_ids

KEEP_PREVIOUS = 3
LAST_SEEN = "policy.last_seen"


def verify_for_store(store: Store, raw: bytes, trust: TrustStore | None = None
                     ) -> VerifiedBundle:
    """Signature, hashes, policies and data; not expiry (an expired bundle still governs
    unrestricted items; the rules refuse restricted ones)."""
    return verify_bundle(raw, trust or trust_store(store))


def active_row(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
    row = conn.execute(
        "SELECT sha256, body FROM policy_bundles WHERE status = 'active'").fetchone()
    return None if row is None else (str(row[0]), bytes(row[1]))


def install_bundle(store: Store, signed_bytes: bytes) -> dict[str, Any]:
    """Verify and activate a signed bundle; the previous active bundle is kept."""
    now = store.clock()
    trust = trust_store(store)
    vb = verify_bundle(signed_bytes, trust, now=now)
    from policy_cache.gate import BundleGate, invalidate, remember_gate

    gate = BundleGate(vb)  # parse every policy with the engine before switching
    meta = vb.meta
    with store.transaction() as c:
        cur = c.execute("SELECT sha256, bundle_version, issued_at FROM policy_bundles "
                        "WHERE status = 'active'").fetchone()
        if cur is not None and cur[0] == meta.sha256:
            return {"installed": False, "already_active": True, **meta.to_json()}
        if cur is not None and parse_iso(cur[2]) > meta.issued_at:
            raise BundleStale(
                f"bundle {meta.bundle_version} (issued {iso(meta.issued_at)}) is older than the "
                f"active bundle {cur[1]} (issued {cur[2]}); it was not installed",
                bundle_version=meta.bundle_version, active_version=cur[1])
        c.execute("UPDATE policy_bundles SET status = 'previous' WHERE status = 'active'")
        c.execute("DELETE FROM policy_bundles WHERE sha256 = ?", (meta.sha256,))
        c.execute("INSERT INTO policy_bundles(sha256, bundle_version, issued_at, offline_until, "
                  "key_id, installed_at, status, body) VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
                  (meta.sha256, meta.bundle_version, iso(meta.issued_at),
                   iso(meta.offline_until), meta.key_id or "", iso(now), signed_bytes))
        old = c.execute("SELECT sha256 FROM policy_bundles WHERE status = 'previous' "
                        "ORDER BY installed_at DESC").fetchall()
        for (sha,) in old[KEEP_PREVIOUS:]:
            c.execute("DELETE FROM policy_bundles WHERE sha256 = ?", (sha,))
        note_seen(store, now)
    remember_gate(meta.sha256, tuple(trust.key_ids()), gate)  # the next sale needn't rebuild it
    invalidate(store)
    return {"installed": True, "previous_version": None if cur is None else cur[1],
            **meta.to_json()}


def note_seen(store: Store, when: datetime) -> None:
    prev = stored_last_seen(store)
    if prev is None or when > prev:
        store.set_setting(LAST_SEEN, iso(when))


def stored_last_seen(store: Store) -> datetime | None:
    raw = store.get_setting(LAST_SEEN)
    try:
        return parse_iso(raw) if raw else None
    except ValueError:
        return None


def show(store: Store) -> dict[str, Any]:
    """What `pharmos policy show` prints."""
    from policy_cache.allowances import current_allowances, usage_today
    from policy_cache.gate import gate_for_store

    rows = store.conn.execute(
        "SELECT sha256, bundle_version, issued_at, offline_until, key_id, installed_at, status "
        "FROM policy_bundles ORDER BY status = 'active' DESC, installed_at DESC").fetchall()
    bundles = [{"sha256": r[0], "bundle_version": r[1], "issued_at": r[2],
                "offline_until": r[3], "key_id": r[4], "installed_at": r[5], "status": r[6]}
               for r in rows]
    gate = gate_for_store(store)
    gate.invalidate()
    bg = gate.bundle_gate
    now = store.clock()
    active: dict[str, Any] | None = None
    if bg is not None:
        active = {**bg.meta.to_json(), "expired": now > bg.meta.offline_until,
                  "rules": len(bg.policies), "data": bg.data.summary()}
    status = "ok" if bg is not None and now <= bg.meta.offline_until else (
        "expired" if bg is not None else gate._problem[0])
    return {"status": status, "active": active, "bundles": bundles,
            "trusted_keys": trusted_key_ids(store),
            "allowances": current_allowances(store), "offline_used_today": usage_today(store),
            "now": iso(now)}

