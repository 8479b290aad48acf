"""A demo head office inside a data dir: for `pharmos init --demo` and the benchmarks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pharmacy.clock import iso
from pharmacy.signing import SigningKey
from pharmacy.store import Store
from policy_cache.allowances import DEMO_ALLOWANCES, grant_allowances
from policy_cache.bundle import build_bundle, sign_bundle
from policy_cache.install import install_bundle
from policy_cache.trust import trust_key

DEMO_KEY = Path("policy") / "demo-head-office.key"
ALL_JURISDICTIONS = ("US", "US-TX", "US-FL", "US-NY", "US-CA", "IN")


def demo_key(store: Store) -> SigningKey:
    """The data dir's demo head-office key, generated once (mode 0600)."""
    path = store.data_dir / DEMO_KEY
    if path.exists():
        return SigningKey.load(path)
    key = SigningKey.generate()
    key.save(path)
    return key


_SESSION_KEY: list[SigningKey] = []


def build_demo_bundle(*, offline_hours: float = 72, key: SigningKey | None = None,
                      version: str | None = None) -> tuple[bytes, bytes]:
    """A signed bundle of the shipped rules for every jurisdiction and the public key (PEM)
    that verifies it (for a demo head office, e.g. the sync server's tests)."""
    from pharmacy.clock import utcnow

    if key is None:
        if not _SESSION_KEY:
            _SESSION_KEY.append(SigningKey.generate())
        key = _SESSION_KEY[0]
    now = utcnow()
    raw = build_bundle(None, version=version or f"demo-{now.strftime('%Y%m%dT%H%M%S')}",
                       jurisdictions=list(ALL_JURISDICTIONS), issued_at=now,
                       offline_until=now + timedelta(hours=offline_hours))
    return sign_bundle(raw, key), key.public_pem()


def install_demo_bundle(store: Store, *, offline_hours: float = 72,
                        allowances: dict[str, int] | None = None) -> dict[str, Any]:
    """Trust the demo key, build + sign + install the shipped rules for every jurisdiction
    (valid offline for ``offline_hours``) and grant offline allowances."""
    key = demo_key(store)
    kid = trust_key(store, key.public_pem())
    now = store.clock()
    raw = build_bundle(None, version=f"demo-{now.strftime('%Y%m%dT%H%M%S')}",
                       jurisdictions=list(ALL_JURISDICTIONS), issued_at=now,
                       offline_until=now + timedelta(hours=offline_hours))
    result = install_bundle(store, sign_bundle(raw, key))
    per_day = dict(DEMO_ALLOWANCES if allowances is None else allowances)
    grant_allowances(store, {"per_day": per_day, "grant_id": "demo"})
    return {"bundle": result, "key_id": kid, "allowances": per_day,
            "offline_until": iso(now + timedelta(hours=offline_hours))}
