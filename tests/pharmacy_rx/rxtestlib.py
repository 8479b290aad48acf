"""Helpers shared by the users / Rx / checkout core tests."""

from __future__ import annotations

from datetime import date
from typing import Any

from pharmacy import catalog
from pharmacy.store import Store

GS = "\x1d"
PRESCRIBER = {"name": "Dr. Maria Alvarez", "address": "1200 Main St, Austin TX 78701",
              "dea": "BA1234563"}
PATIENT = {"name": "Ana Nguyen", "address": "12 Oak St, Austin TX 78710",
           "birth_date": "1980-04-12", "allergies": "penicillin? no"}


def datamatrix(gtin: str, expiry: date, lot: str, serial: str | None = None) -> str:
    text = f"]d201{gtin}17{expiry:%y%m%d}10{lot}"
    if serial:
        text += f"{GS}21{serial}"
    return text


def rx_data(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "patient": dict(PATIENT), "prescriber": dict(PRESCRIBER), "ndc": "0093-0058-01",
        "quantity": 30, "days_supply": 10, "refills_authorized": 2, "daw": 0,
        "written_on": "2026-11-01", "directions": "Take 1 capsule by mouth three times daily",
        "electronic": True,
    }
    base.update(over)
    return base


def gtin_of(store: Store, ndc: str) -> str:
    return catalog.lookup(store.conn, ndc).gtin
