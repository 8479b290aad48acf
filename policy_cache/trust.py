"""Head-office public keys a terminal trusts for policy bundles (kept in the store's settings)."""

from __future__ import annotations

from pharmacy.signing import TrustStore, load_public_pem
from pharmacy.signing import key_id as _key_id
from pharmacy.store import Store

SETTING = "policy.trusted_keys"


def _pems(store: Store) -> dict[str, str]:
    raw = store.get_json_setting(SETTING)
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def trust_key(store: Store, public_pem: bytes) -> str:
    """Add a head-office Ed25519 public key (PEM); returns its key id. Idempotent."""
    key = load_public_pem(public_pem)
    kid = _key_id(key)
    pems = _pems(store)
    pems[kid] = public_pem.decode("ascii")
    store.set_json_setting(SETTING, pems)
    from policy_cache.gate import invalidate

    invalidate(store)
    return kid


def trust_store(store: Store) -> TrustStore:
    return TrustStore.from_pems(p.encode("ascii") for p in _pems(store).values())


def trusted_key_ids(store: Store) -> list[str]:
    return sorted(_pems(store))


def retire_key(store: Store, kid: str) -> bool:
    """Stop trusting key ``kid`` (never the last one). Whether it was trusted."""
    pems = _pems(store)
    if kid not in pems or len(pems) == 1:
        return False
    del pems[kid]
    store.set_json_setting(SETTING, pems)
    from policy_cache.gate import invalidate

    invalidate(store)
    return True
