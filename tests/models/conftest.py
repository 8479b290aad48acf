"""Fixtures for the models tests: a synthetic weekly dataset, a quickly trained signed bundle,
a store with real sales history, and an allow-everything compliance gate."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.dataset import WeeklyDataset
from models.runtime import ModelRegistry
from pharmacy.compliance import Decision
from pharmacy.sales import Dispenser
from pharmacy.signing import SigningKey, TrustStore
from pharmacy.store import Store

QUICK_FORECAST: dict[str, Any] = {"n_estimators": 30, "seeds": (0,), "scale_windows": (13,),
                                  "blends": (0.4,)}
QUICK_DIVERSION: dict[str, Any] = {"n_estimators": 30, "train_users": 40, "calib_users": 40,
                                   "test_users": 30, "weeks": 8}


def synthetic_weekly(weeks: int = 160, seed: int = 3) -> WeeklyDataset:
    """Seasonal series with a wandering level and independent weekly noise."""
    rng = np.random.default_rng(seed)
    start = date(2020, 1, 5)
    dates = tuple(start + timedelta(days=7 * t) for t in range(weeks))
    names = ("A", "B", "C", "D")
    base = np.array([40.0, 120.0, 8.0, 400.0])
    level = base * np.cumprod(1 + rng.normal(0, 0.01, size=(weeks, 4)), axis=0)
    woy = np.array([d.isocalendar()[1] for d in dates])
    season = 1 + 0.25 * np.sin(2 * np.pi * woy / 52.18)[:, None]
    values = np.maximum(0, level * season * (1 + rng.normal(0, 0.2, size=(weeks, 4))))
    return WeeklyDataset(dates, names, np.round(values, 2))


def write_weekly_csv(data: WeeklyDataset, path: Path, month_first: bool = True) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["datum", *data.names])
        for d, row in zip(data.weeks, data.values, strict=True):
            if month_first:
                text = f"{d.month:02d}-{d.day:02d}-{d.year}" if d.day <= 12 else \
                    f"{d.month}/{d.day}/{d.year}"
            else:
                text = d.isoformat()
            w.writerow([text, *(f"{v:g}" for v in row)])
    return path


@dataclass
class QuickBundle:
    key: SigningKey
    trust: TrustStore
    data: bytes
    version: str
    files: dict[str, bytes]
    models: dict[str, dict[str, Any]]


def build(key: SigningKey, files: dict[str, bytes], models: dict[str, dict[str, Any]],
          version: str, issued_at: datetime, stores: list[str] | None = None) -> bytes:
    from models.bundle import build_bundle

    return build_bundle(files, models, key, version=version, issued_at=issued_at,
                        stores=stores)


@pytest.fixture(scope="session")
def quick_parts() -> tuple[dict[str, bytes], dict[str, dict[str, Any]]]:
    from models.train import DiversionConfig, ForecastConfig, train_diversion, train_forecast

    fc = train_forecast(synthetic_weekly(), ForecastConfig(**QUICK_FORECAST))
    dv = train_diversion(DiversionConfig(**QUICK_DIVERSION))
    return {fc.meta["file"]: fc.onnx, **dv.files}, {"forecast": fc.meta, "diversion": dv.meta}


@pytest.fixture(scope="session")
def head_office_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def quick_bundle(quick_parts: tuple[dict[str, bytes], dict[str, dict[str, Any]]],
                 head_office_key: SigningKey) -> QuickBundle:
    files, models = quick_parts
    version = "m20261101000000-aaaa0001"
    data = build(head_office_key, files, models, version, datetime(2026, 11, 1, 0, 0))
    return QuickBundle(head_office_key, TrustStore([head_office_key.public]), data, version,
                       dict(files), {k: dict(v) for k, v in models.items()})


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry()


class AllowAll:
    """A compliance gate that allows everything (tests of controlled-activity features)."""

    engine = "test"

    def decide(self, request: Any) -> Decision:
        return Decision("allow", (), (), None, self.engine)


def sell_history(store: Store, plan: dict[str, list[int]], *, end: datetime,
                 user: str = "u-tech") -> None:
    """One sale per product per past week (oldest first) with the week's quantity."""
    disp = Dispenser(store, AllowAll())
    weeks = max(len(v) for v in plan.values())
    for i in range(weeks):
        at = end - timedelta(days=7 * (weeks - i))
        for ndc, qtys in plan.items():
            k = i - (weeks - len(qtys))
            if k < 0 or qtys[k] <= 0:
                continue
            disp.sell({"lines": [{"ndc": ndc, "qty": qtys[k]}], "at": at.isoformat(),
                       "user": {"id": user, "role": "technician"}})


@pytest.fixture
def history_store(store: Store, clock: Any) -> Iterator[Store]:
    """The small catalog with stock and 20 weeks of ibuprofen and amoxicillin sales."""
    from pharmacy import inventory

    clock.now = datetime(2026, 6, 1, 15, 0, tzinfo=clock.now.tzinfo)   # received long ago
    inventory.receive(store, [
        {"ndc": "0904-6728-60", "lot": "IB1", "expiry": "2026-12-31", "qty": 200},
        {"ndc": "0093-0058-01", "lot": "AM1", "expiry": "2026-11-20", "qty": 300},
        {"ndc": "0093-0058-01", "lot": "AM2", "expiry": "2027-09-30", "qty": 2000},
    ])
    clock.now = datetime(2026, 11, 4, 15, 0, tzinfo=clock.now.tzinfo)  # a Wednesday
    rng = np.random.default_rng(1)
    sell_history(store, {
        "0904-6728-60": [int(v) for v in rng.poisson(6, 20)],
        "0093-0058-01": [int(v) for v in rng.poisson(60, 20)],
    }, end=datetime(2026, 11, 2, 12, 0, tzinfo=clock.now.tzinfo))
    yield store
