"""Shared fixtures: real SQLite stores in temporary directories, a small fixed catalog,
and the location of ../shared/data (skip without it, fail in CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pharmacy import catalog, inventory
from pharmacy.store import Store

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHARMOS_SHARED_DATA", ROOT.parent / "shared" / "data"))

SMALL_CATALOG = [
    {"ndc": "0904-6728-60", "name": "Ibuprofen 200 mg tablets 100s", "ingredients": ["ibuprofen"],
     "strength": "200 mg", "unit": "pack", "pack_size": 1, "price": "7.49", "tax_rate_bp": 825},
    {"ndc": "0093-0058-01", "name": "Amoxicillin 500 mg capsules", "ingredients": ["amoxicillin"],
     "strength": "500 mg", "unit": "capsule", "pack_size": 100, "price": "0.12", "rx_only": True,
     "appl": "A061926:003"},
    {"ndc": "0406-0552-01", "name": "Oxycodone HCl 5 mg tablets", "ingredients": ["oxycodone"],
     "strength": "5 mg", "unit": "tablet", "pack_size": 100, "price": "0.45", "rx_only": True,
     "dea_schedule": "CII", "appl": "A090895:001"},
    {"ndc": "50580-451-01", "name": "Sudafed 12 Hour 120 mg 10s",
     "ingredients": ["pseudoephedrine"], "strength": "120 mg", "unit": "pack", "pack_size": 1,
     "price": "9.99", "tax_rate_bp": 825, "cmea": True, "pse_mg_per_unit": 984.0},
]


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 2, 15, 0, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    s = Store.init(tmp_path / "term", "store-1", clock=clock)
    catalog.upsert_products(s, [catalog.product_from_json(p) for p in SMALL_CATALOG])
    yield s
    s.close()


@pytest.fixture
def stocked(store: Store) -> Store:
    inventory.receive(store, [
        {"ndc": "0904-6728-60", "lot": "IB2701", "expiry": "2027-01-31", "qty": 10},
        {"ndc": "0904-6728-60", "lot": "IB2606", "expiry": "2026-12-31", "qty": 5},
        {"ndc": "0904-6728-60", "lot": "IB2510", "expiry": "2025-10-31", "qty": 7},
        {"ndc": "0093-0058-01", "lot": "AM1", "expiry": "2027-06-30", "qty": 500},
        {"ndc": "0406-0552-01", "lot": "OX1", "expiry": "2027-03-31", "qty": 300,
         "order_form": "222-123456"},
        {"ndc": "50580-451-01", "lot": "SU1", "expiry": "2027-05-31", "qty": 40},
    ])
    return store


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips when absent, fails when PHARMOS_REQUIRE_SHARED_DATA=1."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        if os.environ.get("PHARMOS_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"shared data {p} is required (PHARMOS_REQUIRE_SHARED_DATA=1)")
        pytest.skip(f"shared data {p} not present (fresh clone without ../shared/data)")
    return p
