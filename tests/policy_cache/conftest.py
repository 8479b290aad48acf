"""Fixtures for the policy tests (helpers live in policy_support.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pharmacy.store import Store
from policy_cache.allowances import grant_allowances
from policy_cache.install import install_bundle
from policy_cache.trust import trust_key
from tests.policy_cache.policy_support import Checker, hq_key, signed_bundle, stock_everything


@pytest.fixture
def pstore(stocked: Store) -> Store:
    """The conftest ``stocked`` store plus the wider catalog, trusting the test head-office
    key, with the default bundle installed (valid to 2026-12-31) and allowances granted."""
    stock_everything(stocked)
    trust_key(stocked, hq_key().public_pem())
    install_bundle(stocked, signed_bundle())
    grant_allowances(stocked, {"per_day": {"CII": 2, "CIII": 30, "CIV": 30, "CV": 30,
                                           "PSE": 6, "H": 50, "H1": 20, "X": 2}})
    return stocked


@pytest.fixture
def checker(pstore: Store) -> Checker:
    return Checker(pstore)


@pytest.fixture
def at() -> Callable[..., str]:
    def _at(days: float = 0, hours: float = 0, base: datetime | None = None) -> str:
        b = base or datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
        return (b + timedelta(days=days, hours=hours)).isoformat()
    return _at


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "term"
