"""Shared helpers for the policy tests: a wider catalog, a head-office key, real signed
bundles, request builders, and a checker that runs every decision twice, through the compiled
partitions and through the full uncompiled policy set, and insists they agree."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from pharmacy import catalog, inventory
from pharmacy.compliance import Decision
from pharmacy.sales import Dispenser, SaleResult
from pharmacy.signing import SigningKey
from pharmacy.store import Store
from policy_cache.bundle import build_bundle, sign_bundle
from policy_cache.dea import with_check_digit
from policy_cache.gate import StoreGate, gate_for_store

ALL_J = ["US", "US-TX", "US-FL", "US-NY", "US-CA", "IN"]
ISSUED = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 12, 31, tzinfo=UTC)

EXTRA_CATALOG: list[dict[str, Any]] = [
    {"ndc": "65162-033-10", "name": "Acetaminophen/codeine 300 mg/30 mg tablets",
     "ingredients": ["acetaminophen", "codeine"], "strength": "300 mg/30 mg", "unit": "tablet",
     "price": "0.20", "rx_only": True, "dea_schedule": "CIII", "manufacturer": "Amneal"},
    {"ndc": "0781-1077-01", "name": "Alprazolam 0.5 mg tablets", "ingredients": ["alprazolam"],
     "strength": "0.5 mg", "unit": "tablet", "price": "0.10", "rx_only": True,
     "dea_schedule": "CIV", "manufacturer": "Sandoz"},
    {"ndc": "65862-455-01", "name": "Carisoprodol 350 mg tablets",
     "ingredients": ["carisoprodol"], "strength": "350 mg", "unit": "tablet", "price": "0.15",
     "rx_only": True, "dea_schedule": "CIV"},
    {"ndc": "62332-373-90", "name": "Pregabalin 75 mg capsules", "ingredients": ["pregabalin"],
     "strength": "75 mg", "unit": "capsule", "price": "0.30", "rx_only": True,
     "dea_schedule": "CV"},
    {"ndc": "0121-0775-04", "name": "Guaifenesin/codeine oral solution 118 mL",
     "ingredients": ["guaifenesin", "codeine"], "strength": "100 mg/10 mg per 5 mL",
     "unit": "bottle", "price": "8.50", "dea_schedule": "CV",
     "attrs": {"cv_otc_eligible": True, "opium_containing": True, "ml_per_unit": 118}},
    {"ndc": "99999-001-01", "name": "Psilocybin 25 mg capsules (research supply)",
     "ingredients": ["psilocybin"], "unit": "capsule", "dea_schedule": "CI"},
    {"ndc": "0406-8003-01", "name": "Morphine sulfate oral solution",
     "ingredients": ["morphine"], "unit": "mL", "price": "0.05", "rx_only": True,
     "dea_schedule": "CII"},
    {"ndc": "50580-136-24", "name": "Sudafed Sinus Congestion 30 mg tablets 24s",
     "ingredients": ["pseudoephedrine"], "strength": "30 mg", "unit": "pack", "price": "6.99",
     "cmea": True, "pse_mg_per_unit": 590.4},
    {"ndc": "0904-5053-02", "name": "Nasal Decongestant PSE 30 mg tablets 2s",
     "ingredients": ["pseudoephedrine"], "strength": "30 mg", "unit": "pack", "price": "1.49",
     "cmea": True, "pse_mg_per_unit": 49.2},
    {"ndc": "0904-5053-26", "name": "Pseudoephedrine 30 mg tablets 26s",
     "ingredients": ["pseudoephedrine"], "strength": "30 mg", "unit": "pack", "price": "5.49",
     "cmea": True, "pse_mg_per_unit": 638.82,
     "attrs": {"pse_salt": "HCl", "pse_salt_mg_per_dose_unit": 30, "container_size": 26}},
    {"ndc": "0000-1001-03", "name": "Azee 500 (azithromycin 500 mg) tablets",
     "ingredients": ["azithromycin"], "strength": "500 mg", "unit": "tablet", "price": "0.40",
     "rx_only": True, "india_schedule": "H", "manufacturer": "Cipla"},
    {"ndc": "0000-1002-15", "name": "Atorva 10 (atorvastatin 10 mg) tablets",
     "ingredients": ["atorvastatin"], "strength": "10 mg", "unit": "tablet", "price": "0.20",
     "rx_only": True, "india_schedule": "H"},
    {"ndc": "0000-1101-10", "name": "Taxim-O 200 (cefixime 200 mg) tablets",
     "ingredients": ["cefixime"], "strength": "200 mg", "unit": "tablet", "price": "0.90",
     "rx_only": True, "india_schedule": "H1", "manufacturer": "Alkem"},
    {"ndc": "0000-1105-10", "name": "Levoflox 500 (levofloxacin 500 mg) tablets",
     "ingredients": ["levofloxacin"], "strength": "500 mg", "unit": "tablet", "price": "0.70",
     "rx_only": True, "india_schedule": "H", "manufacturer": "Cipla"},
    {"ndc": "0000-1201-10", "name": "Addwize 10 (methylphenidate 10 mg) tablets",
     "ingredients": ["methylphenidate"], "strength": "10 mg", "unit": "tablet", "price": "1.10",
     "rx_only": True, "india_schedule": "X", "manufacturer": "Sun Pharma",
     "attrs": {"ndps": True}},
    {"ndc": "0000-1301-15", "name": "Avil 25 (pheniramine maleate 25 mg) tablets",
     "ingredients": ["pheniramine"], "strength": "25 mg", "unit": "tablet", "price": "0.05",
     "india_schedule": "G", "manufacturer": "Sanofi"},
]

NDC = {
    "ibuprofen": "0904-6728-60", "amoxicillin": "0093-0058-01", "oxycodone": "0406-0552-01",
    "sudafed12h": "50580-451-01", "apap_codeine": "65162-033-10", "alprazolam": "0781-1077-01",
    "carisoprodol": "65862-455-01", "pregabalin": "62332-373-90", "cough_cv": "0121-0775-04",
    "psilocybin": "99999-001-01", "morphine_sol": "0406-8003-01", "sudafed30": "50580-136-24",
    "pse_single": "0904-5053-02", "pse26": "0904-5053-26", "azee": "0000-1001-03",
    "atorva_nomfr": "0000-1002-15", "taxim": "0000-1101-10", "levoflox": "0000-1105-10",
    "addwize": "0000-1201-10", "avil": "0000-1301-15",
}

PHARMACIST = {"id": "ph-ana", "role": "pharmacist"}
TECH = {"id": "tech-bo", "role": "technician"}
DEA_OK = with_check_digit("AS123456")
PATIENT = {"id": "pat-1", "name": "Jane Q Doe", "address": "12 Elm St, Austin TX 78701",
           "birth_date": "1980-04-02",
           "id_document": {"type": "drivers_license", "number": "TX1234567",
                           "name": "Jane Q Doe"}}


def rx(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "rx_number": "RX-100", "electronic": True, "written_on": "2026-11-01",
        "refill_number": 0, "refills_authorized": 0, "days_supply": 5, "quantity": 20,
        "directions": "1 tablet every 6 hours as needed for pain",
        "prescriber": {"name": "Dr Alan Smith", "address": "1 Main St, Austin TX 78701",
                       "dea": DEA_OK},
        "pmp_checked": True}
    base.update(kw)
    return base


def sale(ndc: str, qty: int, *, j: str = "US", rx: dict[str, Any] | None = None,
         patient: dict[str, Any] | None = PATIENT, user: dict[str, Any] = PHARMACIST,
         **extra: Any) -> dict[str, Any]:
    req: dict[str, Any] = {"lines": [{"ndc": ndc, "qty": qty}], "jurisdiction": j, "user": user}
    if rx is not None:
        req["rx"] = rx
    if patient is not None:
        req["patient"] = patient
    req.update(extra)
    return req


def codes(d: Decision, *severities: str) -> list[str]:
    sev = severities or ("deny", "hold", "warn", "info")
    return [r.code for r in d.reasons if r.severity in sev]


@cache
def hq_key() -> SigningKey:
    return SigningKey.generate()


@lru_cache(maxsize=32)
def signed_bundle(issued: datetime = ISSUED, until: datetime = UNTIL, version: str = "t-1",
                  source: str | None = None, key: SigningKey | None = None) -> bytes:
    raw = build_bundle(source, version=version, jurisdictions=ALL_J, issued_at=issued,
                       offline_until=until)
    return sign_bundle(raw, key or hq_key())


def stock_everything(store: Store) -> None:
    catalog.upsert_products(store, [catalog.product_from_json(p) for p in EXTRA_CATALOG])
    inventory.receive(store, [
        {"ndc": p["ndc"], "lot": f"L{i}", "expiry": "2027-12-31", "qty": 5000,
         "order_form": "222-900001" if p.get("dea_schedule") in ("CI", "CII") else None}
        for i, p in enumerate(EXTRA_CATALOG)])
    inventory.receive(store, [
        {"ndc": NDC["oxycodone"], "lot": "OX9", "expiry": "2027-12-31", "qty": 5000,
         "order_form": "222-900002"},
        {"ndc": NDC["sudafed12h"], "lot": "SU9", "expiry": "2027-12-31", "qty": 5000},
        {"ndc": NDC["amoxicillin"], "lot": "AM9", "expiry": "2027-12-31", "qty": 5000},
        {"ndc": NDC["ibuprofen"], "lot": "IB9", "expiry": "2027-12-31", "qty": 5000}])


class Checker:
    """Decides through the real Dispenser; every check also runs the reference evaluation."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gate: StoreGate = gate_for_store(store)
        self.dispenser = Dispenser(store, self.gate)

    def check(self, req: dict[str, Any]) -> Decision:
        d = self.dispenser.check(req)
        bg = self.gate.bundle_gate
        if bg is not None:
            bg.reference = True
            try:
                ref = self.dispenser.check(req)
            finally:
                bg.reference = False
            assert _shape(d) == _shape(ref), f"compiled {_shape(d)} != reference {_shape(ref)}"
        for r in d.reasons:  # every placeholder filled in
            assert "{" not in r.message and "?" not in r.message, r.message
        return d

    def sell(self, req: dict[str, Any]) -> SaleResult:
        return self.dispenser.sell(req)


def _shape(d: Decision) -> tuple[Any, ...]:
    return (d.decision, sorted((r.code, r.severity, r.line_no, r.message) for r in d.reasons),
            sorted(d.obligations))
