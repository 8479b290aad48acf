"""Counter-terminal fixtures: the real window, offscreen, over the real core on a real
temporary store, with a fake wedge scanner (fast key events), a recording printer and a
real serial scanner on a pty when a test asks for one."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from termtestlib import PINS, Term

from pharmacy import catalog, inventory, users
from pharmacy.store import Store

EXTRA_CATALOG = [
    {"ndc": "0832-1215-10", "name": "Jantoven (warfarin sodium) 5 mg tablets",
     "ingredients": ["warfarin"], "strength": "5 mg", "unit": "tablet", "price": "0.20",
     "rx_only": True},
    {"ndc": "65862-357-30", "name": "Clopidogrel 75 mg tablets", "ingredients": ["clopidogrel"],
     "strength": "75 mg", "unit": "tablet", "price": "0.30", "rx_only": True},
]


@pytest.fixture
def term_dir(stocked: Store, clock: Any) -> Iterator[Path]:
    """A stocked store with one user per role; closed so the terminal's worker owns it."""
    store = stocked
    catalog.upsert_products(store, [catalog.product_from_json(p) for p in EXTRA_CATALOG])
    inventory.receive(store, [
        {"ndc": "0832-1215-10", "lot": "WF1", "expiry": "2027-08-31", "qty": 300},
        {"ndc": "65862-357-30", "lot": "CL1", "expiry": "2027-09-30", "qty": 300},
    ])
    for role, (uname, pin) in PINS.items():
        users.add_user(store, uname, uname.title(), role, pin)
    store.set_setting("pharmacy.name", "Test Pharmacy")
    d = store.data_dir
    store.close()
    yield d


@pytest.fixture
def term(qtbot: Any, term_dir: Path, clock: Any) -> Iterator[Term]:
    t = Term.start(qtbot, term_dir, clock)
    yield t
    t.stop()
