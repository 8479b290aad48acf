"""Demo data: opening stock for the demo catalog and a scripted counter day.

Pure core: the gate is passed in, so the same day runs under the interim gate or a signed
policy bundle.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, timedelta
from typing import Any

from pharmacy import catalog, checkout, daybook, inventory, refunds, register
from pharmacy.catalog import Product
from pharmacy.compliance import ComplianceGate
from pharmacy.errors import PharmosError
from pharmacy.money import fmt
from pharmacy.sales import Dispenser
from pharmacy.store import Store

DEMO_USER = {"id": "u-pharm-ava", "role": "pharmacist"}
PRESCRIBERS = [
    {"name": "Dr. Maria Alvarez", "address": "1200 Main St, Austin TX 78701",
     "dea": "BA1234563"},
    {"name": "Dr. James Okafor", "address": "77 Elm Ave, Austin TX 78702", "dea": "AO7654329"},
]


def categories(products: list[Product]) -> dict[str, list[Product]]:
    us = [p for p in products if p.attrs.get("market") != "IN" and p.india_schedule is None]
    return {
        "otc": [p for p in us if not p.rx_only and not p.cmea and not p.dea_schedule],
        "rx": [p for p in us if p.rx_only and not p.dea_schedule],
        "cii": [p for p in us if p.dea_schedule == "CII"],
        "ciii_v": [p for p in us if p.dea_schedule in ("CIII", "CIV") and p.rx_only],
        "pse": [p for p in us if p.cmea],
        "ci": [p for p in products if p.dea_schedule == "CI"],
    }


def opening_stock(products: list[Product], today: date, seed: int = 1) -> list[dict[str, Any]]:
    """Two or three lots per product: one short-dated, one or two long-dated, one expired."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i, p in enumerate(products):
        if p.dea_schedule == "CI":
            continue
        big = p.unit in ("tablet", "capsule", "mL", "patch")
        qty = rng.randint(400, 1500) if big else rng.randint(30, 90)
        lots = [(today + timedelta(days=rng.randint(25, 60)), qty // 3),
                (today + timedelta(days=rng.randint(300, 700)), qty - qty // 3)]
        if i % 7 == 0:
            lots.append((today - timedelta(days=rng.randint(5, 40)), rng.randint(5, 20)))
        for n, (exp, q) in enumerate(lots):
            out.append({
                "ndc": p.ndc, "lot": f"{p.ndc11[-5:]}{chr(65 + n)}{exp:%y%m}",
                "expiry": exp.isoformat(), "qty": max(q, 1),
                "unit_cost": fmt(max(1, p.price_cents * 55 // 100)),
                "supplier": "McKesson" if i % 2 else "Cardinal Health",
                "order_form": "CSOS-2026-" + str(1000 + i) if p.dea_schedule == "CII" else None,
            })
    return out


def seed(store: Store, seed: int = 1) -> dict[str, Any]:
    products = catalog.demo_catalog()
    catalog.upsert_products(store, products)
    batches = opening_stock(products, store.clock().date(), seed)
    changed = inventory.receive(store, batches, supplier="opening stock",
                                reference="demo-opening", user_id=DEMO_USER["id"])
    return {"products": len(products), "batches": len(batches),
            "register_entries": changed.register_entries}


def _patient(rng: random.Random, n: int) -> dict[str, Any]:
    first = rng.choice(["Ana", "Ben", "Chloe", "Dev", "Elif", "Femi", "Gus", "Hana", "Ivan"])
    last = rng.choice(["Nguyen", "Smith", "Garcia", "Patel", "Kim", "Brown", "Rossi", "Haddad"])
    return {"id": f"pt-{n:04d}", "name": f"{first} {last}",
            "address": f"{rng.randint(10, 999)} Oak St, Austin TX 787{rng.randint(10, 99)}",
            "birth_date": f"{rng.randint(1940, 2004)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "id_document": f"TXDL{rng.randint(10_000_000, 99_999_999)}"}


def _rx(rng: random.Random, n: int, qty: int, *, written: date, refill: int = 0,
        authorized: int = 0) -> dict[str, Any]:
    return {
        "rx_number": f"RX{rng.randrange(10**6):06d}{n:04d}", "electronic": True,
        "written_on": written.isoformat(), "refill_number": refill,
        "refills_authorized": authorized, "days_supply": rng.choice([5, 7, 10, 30]),
        "quantity_prescribed": qty, "directions": "Take 1 tablet by mouth every 6 hours as needed",
        "daw": 0, "prescriber": rng.choice(PRESCRIBERS), "emergency_oral": False,
        "partial_fill": False, "pmp_checked": True, "acute_pain": False,
    }


def _tender(method: str, reference: str) -> Callable[[int], checkout.Tender]:
    """Cash rounded up to the next note, or a card with its approval code."""
    def tender(total: int) -> checkout.Tender:
        if method == "cash":
            return checkout.tender_for("cash", total, fmt(-(-total // 100) * 100))
        return checkout.tender_for("card", total, None, reference)
    return tender


def run_day(store: Store, gate: ComplianceGate, *, sales: int = 240, seed: int = 7,
            jurisdiction: str = "US-TX") -> dict[str, Any]:
    """A scripted counter day of mixed sales and refused attempts; returns a summary."""
    rng = random.Random(seed)
    disp = Dispenser(store, gate)
    cats = categories(catalog.demo_catalog())
    today = store.clock().date()
    done = 0
    refusals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    revenue = refunded = refund_count = 0
    payments: Counter[str] = Counter()
    attempts = 0
    while done < sales and attempts < sales * 3:
        attempts += 1
        roll = rng.random()
        req: dict[str, Any] = {"jurisdiction": jurisdiction, "user": DEMO_USER}
        if roll < 0.55 and cats["otc"]:
            kind = "otc"
            req["lines"] = [{"ndc": rng.choice(cats["otc"]).ndc, "qty": rng.randint(1, 3)}
                            for _ in range(rng.randint(1, 3))]
        elif roll < 0.80 and cats["rx"]:
            kind = "rx"
            p = rng.choice(cats["rx"])
            qty = rng.choice([30, 60, 90]) if p.unit in ("tablet", "capsule") else 1
            req.update(lines=[{"ndc": p.ndc, "qty": qty}],
                       rx=_rx(rng, attempts, qty, written=today),
                       patient=_patient(rng, attempts))
        elif roll < 0.90 and cats["cii"] + cats["ciii_v"]:
            kind = "controlled"
            p = rng.choice(cats["cii"] + cats["ciii_v"])
            qty = rng.choice([10, 20, 28])
            refill = 1 if (p.dea_schedule == "CII" and rng.random() < 0.15) else 0
            req.update(lines=[{"ndc": p.ndc, "qty": qty}],
                       rx=_rx(rng, attempts, qty, refill=refill,
                              authorized=0 if p.dea_schedule == "CII" else 2, written=today),
                       patient=_patient(rng, attempts))
        elif roll < 0.96 and cats["pse"]:
            kind = "pseudoephedrine"
            req.update(lines=[{"ndc": rng.choice(cats["pse"]).ndc, "qty": rng.randint(1, 4)}],
                       patient=_patient(rng, rng.randint(1, 12)),
                       purchaser_signature="captured on pad")
        else:
            kind = "problem"
            problem = rng.choice(["expired", "short", "unknown", "ci"])
            if problem == "expired":
                row = store.conn.execute(
                    "SELECT ndc, lot FROM batches WHERE expiry < ? LIMIT 1",
                    (today.isoformat(),)).fetchone()
                req["lines"] = ([{"ndc": row[0], "lot": row[1], "qty": 1}] if row
                                else [{"ndc": "0000-0000-00", "qty": 1}])
            elif problem == "short" and cats["otc"]:
                req["lines"] = [{"ndc": rng.choice(cats["otc"]).ndc, "qty": 100_000}]
            elif problem == "ci" and cats["ci"]:
                req["lines"] = [{"ndc": cats["ci"][0].ndc, "qty": 1}]
            else:
                req["lines"] = [{"ndc": "99999-999-99", "qty": 1}]
        # paid in the same transaction: cash rounded up to the next note, or card
        method = "card" if rng.random() < 0.45 else "cash"
        try:
            paid = checkout.checkout(disp, req, _tender(method, f"AUTH{attempts:05d}"))
        except PharmosError as e:
            refusals[e.code] += 1
            continue
        result = paid.sale
        done += 1
        kinds[kind] += 1
        payments[method] += 1
        revenue += result.total_cents
        if kind == "otc" and rng.random() < 0.05:  # a sealed pack brought back, refunded
            back = refunds.refund(store, DEMO_USER, result.sale_id, method=method,
                                  reason="unopened, customer changed their mind",
                                  lines=[{"line_no": 1, "qty": 1, "restock": True}])
            refunded += back.total_cents
            refund_count += 1
    verify = register.verify(store.conn)
    day = daybook.day_report(store.conn, store.clock().astimezone(UTC).date(), UTC)
    stock_rows = inventory.stock(store.conn, today)
    value = sum(
        r["on_hand"] * round(float(r["unit_cost"] or 0) * 100)
        for r in stock_rows if r["status"] in ("active", "expired", "quarantined")
    )
    return {
        "store_id": store.store_id,
        "data_dir": str(store.data_dir),
        "gate": getattr(gate, "engine", type(gate).__name__),
        "sales": done,
        "attempts": attempts,
        "sales_by_kind": dict(kinds),
        "refusals": dict(sorted(refusals.items())),
        "revenue": fmt(revenue),
        "payments": dict(sorted(payments.items())),
        "refunds": {"count": refund_count, "total": fmt(refunded)},
        # the whole UTC day in this store (earlier runs of the same day included)
        "day": {k: day[k] for k in ("date", "cash_expected", "net_taken")},
        "stock_value": fmt(value),
        "batches": len(stock_rows),
        "register": {"entries": verify.entries, "chains": verify.chains,
                     "chain_ok": verify.ok},
    }
