"""Offline: per-terminal allowances consumed through the local counter, a 72-hour offline run
with the clock moving, bundle expiry, a clock moved backwards, and rules that need other
stores' data failing closed unless the bundle declares a documented-outage path."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pharmacy.errors import ComplianceDenied, PharmosError
from pharmacy.store import Store
from policy_cache.allowances import current_allowances, grant_allowances, usage_today
from policy_cache.bundle import build_bundle, sign_bundle
from policy_cache.install import install_bundle, show
from policy_cache.trust import trust_key
from tests.conftest import FakeClock
from tests.policy_cache.policy_support import (
    ALL_J,
    NDC,
    PATIENT,
    Checker,
    codes,
    hq_key,
    rx,
    sale,
    stock_everything,
)

OXY = NDC["oxycodone"]
SIGNED = {"purchaser_signature": "sig:1"}


def install_fresh(store: Store, hours: float = 72, source: Path | None = None,
                  version: str = "off-1") -> dict[str, Any]:
    now = store.clock()
    raw = build_bundle(source, version=version, jurisdictions=ALL_J, issued_at=now,
                       offline_until=now + timedelta(hours=hours))
    return install_bundle(store, sign_bundle(raw, hq_key()))


@pytest.fixture
def offline_store(stocked: Store) -> Store:
    stock_everything(stocked)
    trust_key(stocked, hq_key().public_pem())
    install_fresh(stocked)
    grant_allowances(stocked, {"per_day": {"CII": 2, "CIV": 10, "PSE": 4, "H": 5},
                               "grant_id": "sync-1"})
    return stocked


def off(req: dict[str, Any]) -> dict[str, Any]:
    return dict(req, offline=True)


def buyer(n: int) -> dict[str, Any]:
    return dict(PATIENT, id=f"pse-buyer-{n}")


def test_72_hours_offline_caps_hold(offline_store: Store, clock: FakeClock) -> None:
    checker = Checker(offline_store)
    start = clock.now
    sold_cii = refused_cap = 0
    day_totals: dict[str, int] = {}
    for buyers, step in enumerate(range(0, 72, 6), 1):  # a sale attempt every 6 hours for 72 hours
        clock.now = start + timedelta(hours=step)
        day = clock.now.date().isoformat()
        for _ in range(2):
            try:
                checker.sell(off(sale(OXY, 1, rx=rx(rx_number=f"RX-{step}-{_}", quantity=1,
                                                    written_on=day))))
                sold_cii += 1
                day_totals[day] = day_totals.get(day, 0) + 1
            except ComplianceDenied as e:
                assert e.code == "OFFLINE_CAP", e.decision.reasons
                assert e.decision.reasons[0].citation
                refused_cap += 1
        try:
            checker.sell(off(sale(NDC["sudafed12h"], 1, patient=buyer(buyers), **SIGNED)))
        except ComplianceDenied as e:
            assert e.code == "OFFLINE_CAP"
        assert checker.sell(off(sale(NDC["ibuprofen"], 1, patient=None))).sale_id
    assert all(n <= 2 for n in day_totals.values()), day_totals
    assert sum(day_totals.values()) == sold_cii and refused_cap > 0
    assert len(day_totals) >= 3  # the counter starts again each (UTC) day
    usage = offline_store.conn.execute(
        "SELECT day, SUM(units) FROM offline_usage WHERE ndc = ? GROUP BY day", (OXY,)).fetchall()
    assert {d: n for d, n in usage} == day_totals
    pse_days = offline_store.conn.execute(
        "SELECT MAX(units) FROM offline_usage WHERE ndc = ?", (NDC["sudafed12h"],)).fetchone()
    assert pse_days[0] <= 4
    # past offline_until: restricted items are refused, everything else goes on
    clock.now = start + timedelta(hours=72, minutes=1)
    for req in (off(sale(OXY, 1, rx=rx(quantity=1, rx_number="RX-late",
                                       written_on=clock.now.date().isoformat()))),
                off(sale(NDC["sudafed12h"], 1, patient=buyer(99), **SIGNED)),
                off(sale(NDC["azee"], 1, j="IN", rx={"rx_number": "I1", "quantity": 1}))):
        d = checker.check(req)
        assert d.decision == "deny" and "BUNDLE_EXPIRED" in codes(d), d.reasons
    online = checker.check(sale(OXY, 1, rx=rx(quantity=1, rx_number="RX-on",
                                              written_on=clock.now.date().isoformat())))
    assert codes(online) == ["BUNDLE_EXPIRED"]
    assert checker.sell(off(sale(NDC["ibuprofen"], 2, patient=None))).sale_id
    assert checker.sell(off(sale(NDC["amoxicillin"], 10, rx=rx(quantity=10)))).sale_id
    assert show(offline_store)["status"] == "expired"


def test_allowance_is_per_schedule_and_refusals_consume_nothing(offline_store: Store) -> None:
    checker = Checker(offline_store)
    for i in range(2):
        checker.sell(off(sale(OXY, 1, rx=rx(rx_number=f"A{i}", quantity=1))))
    with pytest.raises(ComplianceDenied) as ei:
        checker.sell(off(sale(OXY, 1, rx=rx(rx_number="A3", quantity=1))))
    assert ei.value.code == "OFFLINE_CAP"
    assert "CII allowance is 2 units a day" in ei.value.decision.reasons[0].message
    assert usage_today(offline_store) == {OXY: 2}
    # other schedules have their own allowance; a C-IV still sells
    assert checker.sell(off(sale(NDC["alprazolam"], 10, rx=rx(rx_number="B1",
                                                               quantity=10)))).sale_id
    # a schedule without an allowance gets none offline
    with pytest.raises(ComplianceDenied) as ei:
        checker.sell(off(sale(NDC["apap_codeine"], 1, rx=rx(rx_number="C1", quantity=1))))
    assert ei.value.code == "OFFLINE_CAP"
    # online, the allowance does not apply
    assert checker.sell(sale(OXY, 1, rx=rx(rx_number="A4", quantity=1))).sale_id
    # one cart cannot exceed it either
    with pytest.raises(ComplianceDenied):
        checker.sell(off(sale(NDC["alprazolam"], 11, rx=rx(rx_number="B2", quantity=11))))


def test_no_grant_means_no_offline_allowance(pstore: Store) -> None:
    pstore.set_json_setting("policy.allowances", None)
    from policy_cache.gate import invalidate

    invalidate(pstore)
    d = Checker(pstore).check(off(sale(OXY, 1, rx=rx(quantity=1))))
    assert codes(d) == ["OFFLINE_CAP"]
    assert Checker(pstore).check(off(sale(NDC["ibuprofen"], 1, patient=None))).allowed


def test_grant_is_capped_at_bundle_offline_until(offline_store: Store, clock: FakeClock
                                                 ) -> None:
    far = (clock.now + timedelta(days=30)).isoformat()
    grant_allowances(offline_store, {"per_day": {"CII": 5}, "valid_until": far})
    got = current_allowances(offline_store)
    assert got is not None and got["valid_until"] == show(offline_store)["active"][
        "offline_until"]
    for bad in ({"per_day": {"C2": 1}}, {"per_day": {"CII": -1}}, {"per_day": {"CII": True}},
                {"per_day": {}}, [], {"per_day": {"CII": 1}, "valid_until": "soon"}):
        with pytest.raises(PharmosError) as ei:
            grant_allowances(offline_store, bad)  # type: ignore[arg-type]
        assert ei.value.code == "BAD_GRANT"


def test_clock_moved_backwards_counts_as_expired(offline_store: Store, clock: FakeClock
                                                 ) -> None:
    checker = Checker(offline_store)
    checker.sell(sale(NDC["ibuprofen"], 1, patient=None))
    clock.advance(minutes=-2)  # within tolerance
    assert checker.check(sale(OXY, 1, rx=rx(quantity=1))).allowed
    clock.advance(hours=-3)
    d = checker.check(sale(OXY, 1, rx=rx(quantity=1)))
    assert d.decision == "deny" and codes(d) == ["BUNDLE_EXPIRED"]
    assert "clock" in d.reasons[0].message
    assert checker.sell(sale(NDC["ibuprofen"], 1, patient=None)).sale_id
    # a new process sees the same (last time seen comes from the records)
    again = Store.open(offline_store.data_dir, clock=clock)
    try:
        assert codes(Checker(again).check(sale(OXY, 1, rx=rx(quantity=1)))) == [
            "BUNDLE_EXPIRED"]
    finally:
        again.close()
    clock.advance(hours=3)
    assert checker.check(sale(OXY, 1, rx=rx(quantity=1))).allowed


def test_cmea_30_day_fails_closed_offline_without_outage_path(stocked: Store, tmp_path: Path
                                                              ) -> None:
    import shutil

    from policy_cache.bundle import default_source

    stock_everything(stocked)
    trust_key(stocked, hq_key().public_pem())
    install_fresh(stocked)
    grant_allowances(stocked, {"per_day": {"PSE": 5}})
    checker = Checker(stocked)
    d = checker.check(off(sale(NDC["sudafed12h"], 1, patient=buyer(1), **SIGNED)))
    assert d.allowed and "cmea_reconcile_after_outage" in d.obligations
    src = tmp_path / "rules"
    shutil.copytree(default_source(), src, ignore=shutil.ignore_patterns("__*"))
    j = json.loads((src / "jurisdictions.json").read_text())
    j["outage_paths"] = [o for o in j["outage_paths"] if o["id"] != "CMEA_30DAY"]
    (src / "jurisdictions.json").write_text(json.dumps(j))
    stocked.clock.advance(minutes=1)  # type: ignore[attr-defined]
    install_fresh(stocked, source=src, version="no-cmea-outage")
    d = checker.check(off(sale(NDC["sudafed12h"], 1, patient=buyer(1), **SIGNED)))
    assert codes(d, "deny") == ["CMEA_30DAY_OFFLINE"]
    assert checker.check(sale(NDC["sudafed12h"], 1, patient=buyer(1), **SIGNED)).allowed
    exempt = checker.check(off(sale(NDC["pse_single"], 1, patient=None)))
    assert exempt.allowed, exempt.reasons


def test_pmp_checks_fail_closed_offline_with_documented_outage_path(offline_store: Store
                                                                    ) -> None:
    checker = Checker(offline_store)
    fl = checker.check(off(sale(OXY, 1, j="US-FL", rx=rx(quantity=1, pmp_checked=False))))
    assert codes(fl) == ["FL_PDMP_CHECK_REQUIRED"]
    fl_outage = checker.check(off(sale(OXY, 1, j="US-FL", rx=rx(
        quantity=1, pmp_checked=False, pmp_outage="terminal offline, E-FORCSE unreachable"))))
    assert fl_outage.allowed and "pmp_check_after_outage" in fl_outage.obligations
    tx_outage = checker.check(off(sale(OXY, 1, j="US-TX", rx=rx(
        quantity=1, pmp_checked=False, pmp_outage="terminal offline"))))
    assert codes(tx_outage) == ["TX_PMP_CHECK_REQUIRED"]  # no documented TX outage path


def test_grant_accepts_the_flat_sync_form(offline_store: Store) -> None:
    grant_allowances(offline_store, {"CII": 0, "CIV": 10, "IN_H1": 3, "grant_id": "pub-7"})
    got = current_allowances(offline_store)
    assert got is not None
    assert got["per_day"] == {"CII": 0, "CIV": 10, "H1": 3} and got["grant_id"] == "pub-7"
    d = Checker(offline_store).check(off(sale(OXY, 1, rx=rx(quantity=1))))
    assert codes(d) == ["OFFLINE_CAP"]
