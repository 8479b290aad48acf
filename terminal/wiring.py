"""Composition root (Qt-free): opens a store and wires the ports the core declares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pharmacy.compliance import ComplianceGate, InterimGate
from pharmacy.store import Store

if TYPE_CHECKING:
    from pharmacy.sales import Dispenser


def resolve_data_dir(arg: str | None) -> Path:
    """--data-dir beats PHARMOS_DATA_DIR beats the platform's user data dir."""
    if arg:
        return Path(arg)
    env = os.environ.get("PHARMOS_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("pharmos", "pharmos"))


def compliance_gate(store: Store) -> ComplianceGate:
    """The signed-bundle gate when policy_cache provides one, else the interim gate."""
    try:
        from policy_cache.gate import gate_for_store
    except ImportError:
        return InterimGate()
    gate: ComplianceGate = gate_for_store(store)
    return gate


def dispenser(store: Store) -> Dispenser:
    from pharmacy.sales import Dispenser

    return Dispenser(store, compliance_gate(store))


def install_demo_policy(store: Store) -> dict[str, object] | None:
    """Install a demo-signed policy bundle when the policy engine is present."""
    try:
        from policy_cache.demo import install_demo_bundle
    except ImportError:
        return None
    info: dict[str, object] = install_demo_bundle(store)
    return info


def freeze_startup_heap() -> None:
    """Move what start-up allocated out of the cyclic collector's way (``gc.freeze``).

    A long-running terminal then pays for garbage collection only on what each sale
    allocates, which takes collector pauses out of the dispense tail (p99).
    """
    import gc

    gc.collect()
    gc.freeze()
