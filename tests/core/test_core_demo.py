from __future__ import annotations

from pathlib import Path

from pharmacy import catalog, register
from pharmacy.demo import categories
from pharmacy.ids import dea_check_digit
from pharmacy.store import Store
from terminal.cli import main


def test_headless_demo_day(tmp_path: Path, capsys: object) -> None:
    d = tmp_path / "demo"
    assert main(["demo", "--headless", "--data-dir", str(d), "--sales", "220", "--seed", "7",
                 "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    assert out["sales"] == 220
    assert out["sales_by_kind"]["otc"] > 50 and out["sales_by_kind"]["rx"] > 20
    assert sum(out["refusals"].values()) > 0  # the day includes refused attempts
    assert {"EXPIRED_LOT", "OUT_OF_STOCK"} & set(out["refusals"])
    assert out["register"]["chain_ok"] and out["register"]["entries"] > 0
    # every sale of the day was paid; a few sealed packs came back and were refunded
    assert sum(out["payments"].values()) == 220 and set(out["payments"]) == {"cash", "card"}
    assert out["refunds"]["count"] > 0
    assert out["stack"]["first_run"] and out["stack"]["sync_after"]["pushed"] > 220
    assert out["stack"]["head_office_batches"] > 100
    with Store.open(d / "terminal") as store:
        # the day's 220 sales, plus the filled prescriptions the demo queue is seeded with
        assert store.conn.execute("SELECT COUNT(*) FROM sales").fetchone()[0] >= 220
        assert register.verify(store.conn).ok
        decisions = store.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        assert decisions >= 220
        from pharmacy import daybook
        from pharmacy.clock import parse_iso

        refunded = store.conn.execute("SELECT COUNT(*), SUM(total_cents) FROM refunds"
                                      ).fetchone()
        assert refunded[0] == out["refunds"]["count"]
        last = store.conn.execute("SELECT MAX(created_at) FROM sales").fetchone()[0]
        from datetime import UTC

        day = daybook.day_report(store.conn, parse_iso(last).date(), UTC)
        assert day["cash_expected"] == out["day"]["cash_expected"]


def test_demo_catalog_has_every_category() -> None:
    cats = categories(catalog.demo_catalog())
    assert all(cats[k] for k in ("otc", "rx", "cii", "ciii_v", "pse"))


def test_demo_prescriber_dea_numbers_check() -> None:
    from pharmacy.demo import PRESCRIBERS

    for p in PRESCRIBERS:
        dea = p["dea"]
        assert int(dea[-1]) == dea_check_digit(dea[2:8])
