"""Fixtures for the users / Rx / checkout core tests: real stores, real PHI key files."""

from __future__ import annotations

from typing import Any

import pytest

from pharmacy import users
from pharmacy.compliance import InterimGate
from pharmacy.phi import FileKeyProvider
from pharmacy.sales import Dispenser
from pharmacy.store import Store


@pytest.fixture
def keys(store: Store) -> FileKeyProvider:
    return FileKeyProvider(store.data_dir)


@pytest.fixture
def dispenser(stocked: Store, keys: FileKeyProvider) -> Dispenser:
    return Dispenser(stocked, InterimGate(), keys=keys)



@pytest.fixture
def people(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for uname, role in (("paula", "pharmacist"), ("tom", "technician"), ("cara", "cashier"),
                        ("max", "manager")):
        ch = users.add_user(store, uname, uname.title(), role, "2580")
        out[role] = {"id": ch.user_id, "role": role, "name": uname.title()}
    return out

