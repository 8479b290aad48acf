"""State substitution law reaches the Rx verification check from the signed bundle."""

from __future__ import annotations

from typing import Any

import pytest

from pharmacy import substitution
from pharmacy.store import Store
from policy_cache import gate
from policy_cache.demo import install_demo_bundle
from terminal import integrations


def test_law_table_comes_from_the_active_bundle(store: Store) -> None:
    assert gate.substitution_law(store) is None  # no bundle, no table
    install_demo_bundle(store)
    gate.invalidate(store)
    law = gate.substitution_law(store)
    assert law is not None and law["version"] == 1
    table = substitution.state_law_from_json(law)
    assert table["US-NY"].model == table["US-FL"].model == "mandatory"
    assert table["US-CA"].model == table["US-TX"].model == "permissive"


def test_rx_verification_uses_the_bundle_table(store: Store,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    install_demo_bundle(store)
    gate.invalidate(store)
    seen: dict[str, Any] = {}

    def fake_check(conn: Any, prescribed: str, dispensed: str, daw: Any, jurisdiction: str,
                   today: Any, **kw: Any) -> tuple[()]:
        seen.update(kw)
        return ()

    monkeypatch.setattr(substitution, "check_dispense", fake_check)
    assert integrations.substitution_reasons(store, "0093-0058-01", "0093-0058-01", 0,
                                             "US-NY") == []
    assert seen["law_table"] == substitution.state_law_from_json(gate.substitution_law(store)
                                                                  or {})
