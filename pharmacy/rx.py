"""Prescriptions and the Rx workflow.

A prescription (the document) has fills; each fill moves through

    intake -> verified -> filled -> labeled -> will_call -> picked_up     (or cancelled)

* intake: a pharmacist or technician enters patient, prescriber (DEA number checked),
  drug, quantity, days supply, refills, DAW and date written;
* verified: only a pharmacist; interaction alerts must be acknowledged, and the product to
  dispense is chosen (a substitute only where DAW allows and it is equivalent);
* filled: the package is scanned; its GTIN must be the chosen product and its lot must be on
  file, sellable and unexpired; the dispense itself is ``Dispenser.sell`` (stock, compliance
  decision, controlled register), in the same transaction as the state change;
* labeled -> will_call (a bin) -> picked_up (counselling accepted or declined, payment).

Every transition is recorded in ``rx_events``. Patient data goes only through ``PhiVault``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from pharmacy import catalog, checkout, gs1, users
from pharmacy.clock import iso
from pharmacy.errors import BadInput, ComplianceDenied, DomainRefusal, NotFound
from pharmacy.ids import dea_check_digit, new_id
from pharmacy.inventory import StockChanged, parse_qty
from pharmacy.money import fmt
from pharmacy.phi import KeyProvider, PhiVault
from pharmacy.sales import Dispenser, SaleResult, return_sale
from pharmacy.store import Store

STATES = ("intake", "verified", "filled", "labeled", "will_call", "picked_up", "cancelled",
          "returned")
OPEN_STATES = ("intake", "verified", "filled", "labeled", "will_call")
STATE_LABELS = {"intake": "Entered", "verified": "Verified", "filled": "Filled",
                "labeled": "Labeled", "will_call": "Will-call", "picked_up": "Picked up",
                "cancelled": "Cancelled", "returned": "Returned to stock"}
RETURNABLE_STATES = ("filled", "labeled", "will_call")  # filled, not handed over
NO_SUBSTITUTION_DAW = (1, 7)  # NCPDP 408-D8: prescriber (1) or law (7) mandates the brand
DAW_LABELS = {
    0: "0 No product selection indicated", 1: "1 Substitution not allowed by prescriber",
    2: "2 Substitution allowed - patient requested brand",
    3: "3 Substitution allowed - pharmacist selected", 4: "4 Generic not in stock",
    5: "5 Brand dispensed as generic", 6: "6 Override", 7: "7 Brand mandated by law",
    8: "8 Generic not available", 9: "9 Other",
}
TRANSFER_WARNING = ("Caution: Federal law prohibits the transfer of this drug to any person "
                    "other than the patient for whom it was prescribed.")

_DEA = re.compile(r"^[A-Z][A-Z9]\d{7}$")
_DEA_FIRST = set("ABCDEFGHJKLMPRSTUX")
_TITLES = {"DR", "DR.", "MD", "M.D.", "DO", "D.O.", "NP", "PA", "PA-C", "DDS", "DMD", "DPM",
           "JR", "JR.", "SR", "SR.", "II", "III", "IV", "PHD", "RN", "APRN", "FNP"}


class RxRefused(DomainRefusal):
    code = "RX_REFUSED"


# ---- DEA numbers ----------------------------------------------------------------------------
def dea_checksum_ok(dea: str) -> bool:
    """DEA numbering convention: (d1+d3+d5) + 2*(d2+d4+d6); its last digit is d7."""
    d = dea.strip().upper()
    if not _DEA.match(d):
        return False
    return dea_check_digit(d[2:8]) == int(d[8])


def prescriber_last_name(name: str) -> str | None:
    words = [w for w in re.split(r"[\s]+", name.split(",")[0].strip()) if w]
    words = [w for w in words if w.upper() not in _TITLES]
    return words[-1] if words else None


def validate_dea(dea: str, *, prescriber_name: str | None = None) -> str:
    """Format, first letter, check digit and (for a person) the last-name letter.
    Raises BadInput ``DEA_PRESCRIBER_INVALID`` (REGULATIONS.md §7 #12)."""
    d = (dea or "").strip().upper()
    cite = "21 CFR 1306.03; DEA numbering convention"
    if not _DEA.match(d):
        raise BadInput(f"DEA number {dea!r} is not 2 letters and 7 digits [{cite}]",
                       code="DEA_PRESCRIBER_INVALID", field="prescriber.dea")
    if d[0] not in _DEA_FIRST:
        raise BadInput(f"DEA number {d}: {d[0]!r} is not a DEA registrant type [{cite}]",
                       code="DEA_PRESCRIBER_INVALID", field="prescriber.dea")
    if not dea_checksum_ok(d):
        raise BadInput(f"DEA number {d} fails its check digit; re-read it from the "
                       f"prescription [{cite}]", code="DEA_PRESCRIBER_INVALID",
                       field="prescriber.dea")
    if prescriber_name and d[1] != "9":
        last = prescriber_last_name(prescriber_name)
        if last and _fold(last)[:1].upper() != d[1]:
            raise BadInput(f"DEA number {d}: the second letter should be the initial of the "
                           f"prescriber's last name ({last}) [{cite}]",
                           code="DEA_PRESCRIBER_INVALID", field="prescriber.dea")
    return d


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


# ---- patients -------------------------------------------------------------------------------
def _index_key(keys: KeyProvider) -> bytes:
    return hashlib.sha256(b"pharmos patient index v1\x00" + keys.key()).digest()


def patient_lookup_key(keys: KeyProvider, name: str, birth_date: str) -> str:
    norm = " ".join(_fold(name).lower().replace(",", " ").split())
    return hmac.new(_index_key(keys), f"{norm}|{birth_date}".encode(), "sha256").hexdigest()


def patient_id_for(keys: KeyProvider, name: str, birth_date: str) -> str:
    """A stable id for a person who has none yet: the same name and birth date give the same
    id at every terminal of the chain (keyed, so the id reveals neither)."""
    return "pt-" + patient_lookup_key(keys, name, birth_date)[:32]


def known_patient(conn: sqlite3.Connection, keys: KeyProvider, name: str,
                  birth_date: str) -> str:
    """The id under which this person is on file here, else their stable new id."""
    row = conn.execute("SELECT patient_id FROM patient_index WHERE lookup = ?",
                       (patient_lookup_key(keys, name, birth_date),)).fetchone()
    return str(row[0]) if row is not None else patient_id_for(keys, name, birth_date)


def find_patient(store: Store, keys: KeyProvider, user_id: str, name: str,
                 birth_date: str) -> str | None:
    """A returning patient's id by name and birth date, without unsealing every record."""
    if not user_id:
        raise users.PermissionDenied("patient lookup needs a signed-in user",
                                     code="HIPAA_UNIQUE_USER")
    row = store.conn.execute("SELECT patient_id FROM patient_index WHERE lookup = ?",
                             (patient_lookup_key(keys, name, birth_date),)).fetchone()
    with store.transaction() as c:
        c.execute("INSERT INTO audit_log(created_at, user_id, action, subject) "
                  "VALUES (?, ?, 'phi.lookup', ?)",
                  (iso(store.clock()), user_id, None if row is None else row[0]))
    return None if row is None else str(row[0])


# ---- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RxChanged:
    """What an Rx write changed, so the queue refreshes only those rows."""

    fill_ids: tuple[str, ...]
    rx_ids: tuple[str, ...] = ()
    state: str | None = None
    warnings: tuple[dict[str, str], ...] = ()
    stock: StockChanged | None = None
    details: dict[str, Any] = field(default_factory=dict)


# ---- intake ---------------------------------------------------------------------------------
def _date(value: Any, fld: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"{fld} {value!r} is not a date YYYY-MM-DD", code="BAD_DATE",
                       field=fld) from None


def _int(value: Any, fld: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadInput(f"{fld} must be a whole number from {lo} to {hi}, got {value!r}",
                       code="BAD_RX_FIELD", field=fld)
    return value


def _next_rx_number(c: sqlite3.Connection, replica_id: str) -> str:
    """The next automatic number of this terminal, past any entered by hand that took it."""
    row = c.execute("SELECT value FROM settings WHERE key = 'rx.next_number'").fetchone()
    n = int(row[0]) if row else 100001
    suffix = replica_id.replace("-", "")[-4:].upper()
    while c.execute("SELECT 1 FROM prescriptions WHERE rx_number = ?",
                    (f"{n}-{suffix}",)).fetchone():
        n += 1
    c.execute("INSERT INTO settings(key, value) VALUES ('rx.next_number', ?) "
              "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (str(n + 1),))
    return f"{n}-{suffix}"


def _event(c: sqlite3.Connection, fill_id: str, now_s: str, user_id: str, action: str,
           detail: dict[str, Any] | None = None) -> None:
    c.execute("INSERT INTO rx_events(fill_id, at, user_id, action, detail) "
              "VALUES (?, ?, ?, ?, ?)",
              (fill_id, now_s, user_id, action, json.dumps(detail or {}, sort_keys=True,
                                                           default=str)))


def intake(store: Store, keys: KeyProvider, user: dict[str, Any],
           data: dict[str, Any]) -> RxChanged:
    """Enter a prescription; creates the Rx and its first fill in state ``intake``."""
    users.require(user, "rx_intake")
    if not isinstance(data, dict):
        raise BadInput("the prescription must be an object", code="BAD_REQUEST")
    today = store.clock().date()
    warnings: list[dict[str, str]] = []
    patient = data.get("patient")
    if not isinstance(patient, dict):
        raise BadInput("the prescription needs a patient", code="BAD_RX_FIELD", field="patient")
    prescriber = data.get("prescriber")
    if not isinstance(prescriber, dict) or not str(prescriber.get("name") or "").strip():
        raise BadInput("the prescription needs the prescriber's name", code="BAD_RX_FIELD",
                       field="prescriber.name")
    product = catalog.lookup(store.conn, str(data.get("ndc") or ""))
    qty = parse_qty(data.get("quantity"), field="quantity")
    days = _int(data.get("days_supply"), "days_supply", 1, 365)
    refills = _int(data.get("refills_authorized", 0), "refills_authorized", 0, 99)
    daw = _int(data.get("daw", 0), "daw", 0, 9)
    written = _date(data.get("written_on"), "written_on")
    if written > today:
        raise BadInput(f"date written {written} is in the future", code="BAD_DATE",
                       field="written_on")
    directions = str(data.get("directions") or "").strip()
    if not directions:
        raise BadInput("the prescription needs directions for use", code="BAD_RX_FIELD",
                       field="directions")
    dea_raw = str(prescriber.get("dea") or "").strip()
    if product.dea_schedule:
        missing = [f for f, v in (("prescriber.dea", dea_raw),
                                  ("prescriber.address", prescriber.get("address")),
                                  ("patient.address", patient.get("address")),
                                  ("strength", product.strength)) if not v]
        if missing:
            raise BadInput(f"a controlled-substance prescription needs {', '.join(missing)} "
                           "[21 CFR 1306.05(a)]", code=f"DEA_RX_MISSING_FIELD:{missing[0]}",
                           field=missing[0])
    dea = validate_dea(dea_raw, prescriber_name=str(prescriber["name"])) if dea_raw else None
    if product.dea_schedule == "CII" and refills > 0:
        warnings.append({"code": "DEA_CII_REFILLS_IGNORED",
                         "message": f"C-II prescriptions cannot be refilled; the {refills} "
                                    "refills written were recorded as 0",
                         "citation": "21 CFR 1306.12(a)"})
        refills = 0
    name = str(patient.get("name") or "").strip()
    birth = str(patient.get("birth_date") or "").strip()
    if not name or not birth:
        raise BadInput("the patient needs a name and a birth date", code="BAD_RX_FIELD",
                       field="patient.name" if not name else "patient.birth_date")
    _date(birth, "patient.birth_date")
    raw_flags = data.get("flags") or {}
    if not isinstance(raw_flags, dict):
        raise BadInput("'flags' must be an object such as {\"acute_pain\": true}",
                       code="BAD_RX_FIELD", field="flags")
    flags = {str(k): bool(v) for k, v in raw_flags.items()}
    pres = {"name": str(prescriber["name"]).strip(),
            "address": str(prescriber.get("address") or "").strip() or None,
            "dea": dea, "npi": str(prescriber.get("npi") or "").strip() or None}
    now_s = iso(store.clock())
    rx_id, fill_id = new_id(), new_id()
    vault = PhiVault(store.conn, keys, store.clock)
    with store.transaction() as c:
        lookup = patient_lookup_key(keys, name, birth)
        pid = patient.get("id") or known_patient(c, keys, name, birth)
        pid = vault.upsert({**patient, "id": pid}, user["id"])
        c.execute("INSERT OR IGNORE INTO patient_index(lookup, patient_id) VALUES (?, ?)",
                  (lookup, pid))
        rx_number = str(data.get("rx_number") or "").strip() or _next_rx_number(
            c, store.replica_id)
        if c.execute("SELECT 1 FROM prescriptions WHERE rx_number = ?", (rx_number,)).fetchone():
            raise BadInput(f"prescription number {rx_number} is already on file",
                           code="RX_NUMBER_EXISTS")
        c.execute(
            "INSERT INTO prescriptions(rx_id, rx_number, patient_id, prescriber, ndc, quantity, "
            "days_supply, refills_authorized, daw, written_on, directions, electronic, flags, "
            "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rx_id, rx_number, pid, json.dumps(pres, sort_keys=True), product.ndc, qty, days,
             refills, daw, written.isoformat(), directions, int(bool(data.get("electronic"))),
             json.dumps(flags, sort_keys=True), now_s, user["id"]))
        c.execute("INSERT INTO fills(fill_id, rx_id, refill_number, state, created_at, "
                  "updated_at) VALUES (?, ?, 0, 'intake', ?, ?)", (fill_id, rx_id, now_s, now_s))
        _event(c, fill_id, now_s, user["id"], "intake",
               {"rx_number": rx_number, "warnings": warnings})
    return RxChanged((fill_id,), (rx_id,), "intake", tuple(warnings),
                     details={"rx_number": rx_number, "patient_id": pid})


def refill(store: Store, user: dict[str, Any], rx_id: str) -> RxChanged:
    """Start the next fill of a prescription that has refills left and no open fill."""
    users.require(user, "rx_intake")
    now_s = iso(store.clock())
    with store.transaction() as c:
        rx = _rx_row(c, rx_id)
        open_ = c.execute(f"SELECT COUNT(*) FROM fills WHERE rx_id = ? AND state IN "
                          f"({','.join('?' * len(OPEN_STATES))})",
                          (rx_id, *OPEN_STATES)).fetchone()[0]
        if open_:
            raise RxRefused(f"Rx {rx['rx_number']} already has a fill in progress",
                            code="RX_FILL_OPEN")
        last = c.execute("SELECT MAX(refill_number) FROM fills WHERE rx_id = ? AND state NOT "
                         "IN ('cancelled', 'returned')", (rx_id,)).fetchone()[0]
        n = 0 if last is None else int(last) + 1
        if n > int(rx["refills_authorized"]):
            raise RxRefused(f"Rx {rx['rx_number']} has no refills left "
                            f"({rx['refills_authorized']} authorized)", code="RX_NO_REFILLS")
        # a fill of this number that was cancelled, or filled and returned to stock, is
        # started again: the number is the prescription's; what happened to it stays in the
        # fill's events (and a returned fill's sale and its return in theirs)
        cancelled = c.execute("SELECT fill_id FROM fills WHERE rx_id = ? AND refill_number = ? "
                              "AND state IN ('cancelled', 'returned')", (rx_id, n)).fetchone()
        if cancelled is None:
            fill_id = new_id()
            c.execute("INSERT INTO fills(fill_id, rx_id, refill_number, state, created_at, "
                      "updated_at) VALUES (?, ?, ?, 'intake', ?, ?)", (fill_id, rx_id, n, now_s,
                                                                        now_s))
            _event(c, fill_id, now_s, user["id"], "refill", {"refill_number": n})
        else:
            fill_id = cancelled[0]
            c.execute("UPDATE fills SET state = 'intake', dispense_ndc = NULL, "
                      "daw_dispensed = NULL, substitution = NULL, alerts = '[]', "
                      "verified_by = NULL, verified_at = NULL, filled_by = NULL, "
                      "filled_at = NULL, sale_id = NULL, lot = NULL, expiry = NULL, "
                      "serial = NULL, label_count = 0, labeled_at = NULL, bin = NULL, "
                      "will_call_at = NULL, updated_at = ? WHERE fill_id = ?", (now_s, fill_id))
            _event(c, fill_id, now_s, user["id"], "refill",
                   {"refill_number": n, "reopened": True})
    return RxChanged((fill_id,), (rx_id,), "intake")


# ---- loading --------------------------------------------------------------------------------
def _rx_row(c: sqlite3.Connection, rx_id: str) -> sqlite3.Row:
    row = c.execute("SELECT * FROM prescriptions WHERE rx_id = ?", (rx_id,)).fetchone()
    if row is None:
        raise NotFound(f"no prescription {rx_id}", code="UNKNOWN_RX")
    return row  # type: ignore[no-any-return]


def _fill_row(c: sqlite3.Connection, fill_id: str) -> sqlite3.Row:
    row = c.execute(
        "SELECT f.*, p.rx_number, p.patient_id, p.prescriber, p.ndc AS rx_ndc, p.quantity, "
        "p.days_supply, p.refills_authorized, p.daw, p.written_on, p.directions, p.electronic, "
        "p.flags, p.created_by FROM fills f JOIN prescriptions p ON p.rx_id = f.rx_id "
        "WHERE f.fill_id = ?", (fill_id,)).fetchone()
    if row is None:
        raise NotFound(f"no prescription fill {fill_id}", code="UNKNOWN_FILL")
    return row  # type: ignore[no-any-return]


def _expect(row: sqlite3.Row, *states: str) -> None:
    if row["state"] not in states:
        want = " or ".join(STATE_LABELS[s].lower() for s in states)
        raise RxRefused(f"Rx {row['rx_number']} is {STATE_LABELS[row['state']].lower()}; "
                        f"this step needs it {want}", code="RX_WRONG_STATE",
                        state=row["state"])


def find_fill(conn: sqlite3.Connection, rx_number: str) -> str:
    """The open fill (or the latest) of an Rx by its number, e.g. typed or scanned at pickup."""
    row = conn.execute(
        "SELECT f.fill_id FROM fills f JOIN prescriptions p ON p.rx_id = f.rx_id "
        "WHERE p.rx_number = ? ORDER BY (f.state IN ('picked_up','cancelled','returned')), "
        "f.refill_number DESC LIMIT 1", (rx_number.strip(),)).fetchone()
    if row is None:
        raise NotFound(f"no prescription {rx_number}", code="UNKNOWN_RX")
    return str(row[0])


def queue(conn: sqlite3.Connection, states: Sequence[str] = OPEN_STATES) -> list[str]:
    """Fill ids in the given states, oldest change first (the work queue)."""
    bad = [s for s in states if s not in STATES]
    if bad:
        raise BadInput(f"unknown Rx states {bad}", code="BAD_STATE")
    rows = conn.execute(
        f"SELECT fill_id FROM fills WHERE state IN ({','.join('?' * len(states))}) "
        "ORDER BY updated_at, fill_id", tuple(states)).fetchall()
    return [str(r[0]) for r in rows]


PICKUP_FIELDS = ("fill_id", "rx_number", "refill_number", "state", "patient_name", "drug",
                 "qty", "bin", "price", "counseling")


def fill_rows(store: Store, keys: KeyProvider, user: dict[str, Any],
              fill_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Rows for the Rx queue. Every patient name shown is an audited PHI read; a cashier
    gets pick-up essentials only (minimum necessary)."""
    users.require(user, "read_pickup_essentials")
    full = users.can(str(user.get("role")), "read_med_history")
    vault = PhiVault(store.conn, keys, store.clock)
    out: dict[str, dict[str, Any]] = {}
    ids = list(fill_ids)
    if not ids:
        return out
    with store.transaction() as c:
        patients: dict[str, dict[str, Any]] = {}
        for fid in ids:
            try:
                r = _fill_row(c, fid)
            except NotFound:
                continue
            pid = r["patient_id"]
            if pid not in patients:
                patients[pid] = vault.get(pid, user["id"])
            pt = patients[pid]
            shown = r["dispense_ndc"] or r["rx_ndc"]
            prod = catalog.lookup(c, shown)
            price = None
            if r["sale_id"]:
                s = c.execute("SELECT total_cents FROM sales WHERE sale_id = ?",
                              (r["sale_id"],)).fetchone()
                price = None if s is None else fmt(int(s[0]))
            row: dict[str, Any] = {
                "fill_id": fid, "rx_number": r["rx_number"], "refill_number": r["refill_number"],
                "state": r["state"], "state_label": STATE_LABELS[r["state"]],
                "patient_name": pt.get("name"), "drug": _drug_label(prod), "qty": r["quantity"],
                "bin": r["bin"], "price": price, "counseling": r["counseling"],
                "updated_at": r["updated_at"],
            }
            if full:
                pres = json.loads(r["prescriber"])
                row.update({
                    "rx_id": r["rx_id"], "patient_id": pid, "birth_date": pt.get("birth_date"),
                    "address": pt.get("address"), "allergies": pt.get("allergies"),
                    "prescriber": pres, "rx_ndc": r["rx_ndc"], "dispense_ndc": r["dispense_ndc"],
                    "days_supply": r["days_supply"], "refills_authorized":
                        r["refills_authorized"], "daw": r["daw"], "written_on": r["written_on"],
                    "directions": r["directions"], "electronic": bool(r["electronic"]),
                    "flags": json.loads(r["flags"]), "schedule": prod.dea_schedule,
                    "lot": r["lot"], "expiry": r["expiry"], "verified_by": r["verified_by"],
                    "filled_by": r["filled_by"], "sale_id": r["sale_id"],
                    "alerts": json.loads(r["alerts"]),
                    "substitution": None if r["substitution"] is None
                    else json.loads(r["substitution"]),
                })
            out[fid] = row
    return out


def _drug_label(p: catalog.Product) -> str:
    return p.name if not p.strength or p.strength in p.name else f"{p.name} {p.strength}"


def active_medications(conn: sqlite3.Connection, patient_id: str, today: date,
                       exclude_rx: str | None = None) -> list[str]:
    """NDCs the patient is currently taking per this pharmacy's fills (within days supply)."""
    rows = conn.execute(
        "SELECT COALESCE(f.dispense_ndc, p.ndc), f.filled_at, p.days_supply, p.rx_id "
        "FROM fills f JOIN prescriptions p ON p.rx_id = f.rx_id "
        "WHERE p.patient_id = ? AND f.state NOT IN ('cancelled')", (patient_id,)).fetchall()
    out: list[str] = []
    for ndc, filled_at, days, rx_id in rows:
        if rx_id == exclude_rx:
            continue
        if filled_at is None or date.fromisoformat(filled_at[:10]) + timedelta(
                days=int(days) + 7) >= today:
            out.append(str(ndc))
    return sorted(set(out))


def med_history(store: Store, keys: KeyProvider, user: dict[str, Any],
                patient_id: str) -> dict[str, Any]:
    """The patient's record and every fill here. Pharmacist and technician only
    (45 CFR 164.502(b): a cashier gets ``HIPAA_MIN_NECESSARY``)."""
    users.require(user, "read_med_history")
    vault = PhiVault(store.conn, keys, store.clock)
    with store.transaction() as c:
        patient = vault.get(patient_id, user["id"])
        rows = c.execute(
            "SELECT p.rx_number, f.refill_number, f.state, COALESCE(f.dispense_ndc, p.ndc), "
            "p.quantity, p.days_supply, f.filled_at, f.picked_up_at, p.directions "
            "FROM fills f JOIN prescriptions p ON p.rx_id = f.rx_id WHERE p.patient_id = ? "
            "ORDER BY f.created_at DESC", (patient_id,)).fetchall()
        fills = []
        for r in rows:
            prod = catalog.lookup(c, r[3])
            fills.append({"rx_number": r[0], "refill_number": r[1], "state": r[2],
                          "drug": _drug_label(prod), "ndc": r[3], "qty": r[4],
                          "days_supply": r[5], "filled_at": r[6], "picked_up_at": r[7],
                          "directions": r[8]})
    return {"patient": patient, "fills": fills}


# ---- verification ---------------------------------------------------------------------------
class InteractionChecker(Protocol):
    def __call__(self, candidate_ndc: str, current_ndcs: Sequence[str]) -> list[dict[str, Any]]:
        """Alerts: dicts with at least code, severity, message (and citation if any)."""
        ...


SubstitutionChecker = Callable[[catalog.Product, catalog.Product], None]
_MUST_ACK = ("major", "contraindicated", "severe", "high")


def must_acknowledge(alert: Mapping[str, Any]) -> bool:
    """A pharmacist must acknowledge this interaction alert before verifying."""
    return str(alert.get("severity", "")).lower() in _MUST_ACK


def basic_equivalence(prescribed: catalog.Product, candidate: catalog.Product) -> None:
    """Fallback when no Orange Book data is wired: same ingredients, strength and form."""
    same = (sorted(i.lower() for i in prescribed.ingredients)
            == sorted(i.lower() for i in candidate.ingredients)
            and (prescribed.strength or "").lower() == (candidate.strength or "").lower()
            and (prescribed.dosage_form or "").lower() == (candidate.dosage_form or "").lower())
    if not same:
        raise RxRefused(f"{candidate.name} is not an equivalent of {prescribed.name} (same "
                        "ingredients, strength and dosage form required)",
                        code="TE_NOT_EQUIVALENT")


def interaction_alerts(store: Store, fill_id: str, checker: InteractionChecker | None,
                       dispense_ndc: str | None = None) -> list[dict[str, Any]]:
    if checker is None:
        return []
    r = _fill_row(store.conn, fill_id)
    current = active_medications(store.conn, r["patient_id"], store.clock().date(),
                                 exclude_rx=r["rx_id"])
    return checker(dispense_ndc or r["rx_ndc"], current)


def prescribed_daw(store: Store, fill_id: str) -> int:
    """The DAW code the prescriber wrote for this fill's prescription."""
    return int(_fill_row(store.conn, fill_id)["daw"])


def alert_key(alert: dict[str, Any]) -> str:
    return str(alert.get("key") or f"{alert.get('code')}:{alert.get('with', '')}")


def verify(store: Store, user: dict[str, Any], fill_id: str, *,
           dispense_ndc: str | None = None, daw_dispensed: int | None = None,
           alerts: Sequence[dict[str, Any]] = (), acknowledged: Iterable[str] = (),
           override_reason: str | None = None,
           substitution_check: SubstitutionChecker | None = None,
           substitution: dict[str, Any] | None = None) -> RxChanged:
    """Pharmacist verification: alerts reviewed, product to dispense chosen."""
    users.require(user, "verify_rx")
    acked = set(acknowledged)
    must = [a for a in alerts if must_acknowledge(a)]
    missing = [alert_key(a) for a in must if alert_key(a) not in acked]
    if missing:
        raise RxRefused(f"{len(missing)} serious interaction alert(s) must be reviewed and "
                        "acknowledged before verification", code="INTERACTION_UNACKNOWLEDGED",
                        alerts=missing)
    if must and not (override_reason or "").strip():
        raise RxRefused("give a reason for dispensing despite a serious interaction",
                        code="INTERACTION_REASON_REQUIRED")
    now_s = iso(store.clock())
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, "intake")
        prescribed = catalog.lookup(c, r["rx_ndc"])
        chosen = prescribed if not dispense_ndc else catalog.lookup(c, dispense_ndc)
        daw = int(r["daw"]) if daw_dispensed is None else _int(daw_dispensed, "daw", 0, 9)
        if chosen.ndc != prescribed.ndc:
            if int(r["daw"]) in NO_SUBSTITUTION_DAW:
                raise RxRefused(f"DAW {r['daw']}: the prescriber did not allow substitution; "
                                f"dispense {prescribed.name} [NCPDP 408-D8]",
                                code="DAW1_NO_SUBSTITUTION")
            (substitution_check or basic_equivalence)(prescribed, chosen)
        c.execute("UPDATE fills SET state = 'verified', dispense_ndc = ?, daw_dispensed = ?, "
                  "substitution = ?, alerts = ?, verified_by = ?, verified_at = ?, "
                  "updated_at = ? WHERE fill_id = ?",
                  (chosen.ndc, daw,
                   None if chosen.ndc == prescribed.ndc else json.dumps(
                       substitution or {"from": prescribed.ndc, "to": chosen.ndc},
                       sort_keys=True),
                   json.dumps([{**a, "acknowledged": alert_key(a) in acked} for a in alerts],
                              sort_keys=True, default=str),
                   user["id"], now_s, now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "verify",
               {"dispense_ndc": chosen.ndc, "daw": daw, "alerts": [alert_key(a) for a in alerts],
                "override_reason": override_reason})
    return RxChanged((fill_id,), (r["rx_id"],), "verified")


def cancel(store: Store, user: dict[str, Any], fill_id: str, reason: str) -> RxChanged:
    users.require(user, "rx_intake")
    if not reason.strip():
        raise BadInput("cancelling a prescription fill needs a reason", code="REASON_REQUIRED")
    now_s = iso(store.clock())
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, "intake", "verified")
        c.execute("UPDATE fills SET state = 'cancelled', updated_at = ? WHERE fill_id = ?",
                  (now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "cancel", {"reason": reason})
    return RxChanged((fill_id,), (r["rx_id"],), "cancelled")


def return_to_stock(store: Store, user: dict[str, Any], fill_id: str,
                    reason: str) -> RxChanged:
    """A fill that was filled but not handed over goes back on the shelf: its sale's units
    return to the lots they came from (controlled ones with a register entry), the fill is
    ``returned``, and the refill is not used up (``refill`` starts it again). A PMP report
    leaves the dispensing out, or voids it if a report already sent it."""
    users.require(user, "return_to_stock")
    if not reason.strip():
        raise BadInput("returning a fill to stock needs a reason", code="REASON_REQUIRED")
    now_s = iso(store.clock())
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, *RETURNABLE_STATES)
        stock = StockChanged()
        if r["sale_id"]:
            stock = return_sale(c, store.replica_id, r["sale_id"], user["id"], reason.strip(),
                                now_s, fill_id=fill_id)
        c.execute("UPDATE fills SET state = 'returned', updated_at = ? WHERE fill_id = ?",
                  (now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "return_to_stock",
               {"reason": reason.strip(), "sale_id": r["sale_id"], "bin": r["bin"]})
    return RxChanged((fill_id,), (r["rx_id"],), "returned", stock=stock,
                     details={"sale_id": r["sale_id"], "bin": r["bin"]})


# ---- fill -----------------------------------------------------------------------------------
def dispense_request(store: Store, keys: KeyProvider, user: dict[str, Any], fill_id: str,
                     scan: str, *, jurisdiction: str | None = None, offline: bool = False,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``Dispenser.sell`` request for a fill (compliance helper's rx format)."""
    r = _fill_row(store.conn, fill_id)
    vault = PhiVault(store.conn, keys, store.clock)
    with store.transaction():
        patient = vault.get(r["patient_id"], user["id"])
    flags = json.loads(r["flags"])
    rx = {
        "rx_number": r["rx_number"], "electronic": bool(r["electronic"]),
        "written_on": r["written_on"], "refill_number": int(r["refill_number"]),
        "refills_authorized": int(r["refills_authorized"]),
        "days_supply": int(r["days_supply"]), "quantity_prescribed": int(r["quantity"]),
        "directions": r["directions"],
        "daw": int(r["daw_dispensed"] if r["daw_dispensed"] is not None else r["daw"]),
        "prescriber": json.loads(r["prescriber"]),
        "emergency_oral": bool(flags.get("emergency_oral", False)),
        "partial_fill": False,
        "pmp_checked": bool(flags.get("pmp_checked", False)),
        "acute_pain": bool(flags.get("acute_pain", False)),
        "verified_by": r["verified_by"],
    }
    req: dict[str, Any] = {**(extra or {}),
                           "lines": [{"ndc": r["dispense_ndc"], "qty": int(r["quantity"]),
                                      "scan": scan}],
                           "rx": rx, "patient": patient, "user": user, "offline": offline}
    if jurisdiction:
        req["jurisdiction"] = jurisdiction
    return req


@dataclass(frozen=True)
class FillResult:
    changed: RxChanged
    sale: SaleResult


def fill(dispenser: Dispenser, keys: KeyProvider, user: dict[str, Any], fill_id: str,
         scan: str, *, jurisdiction: str | None = None, offline: bool = False,
         extra: dict[str, Any] | None = None) -> FillResult:
    """Scan-verify and dispense: the scanned GTIN must be the verified product and its lot must
    be on file, active and unexpired (DSCSA; REGULATIONS.md §7 #48). One transaction with the
    sale; a compliance refusal keeps its decision record and leaves the fill verified."""
    users.require(user, "fill_rx")
    store = dispenser.store
    r = _fill_row(store.conn, fill_id)
    _expect(r, "verified")
    data = dispenser.scan_parser(scan)
    scanned = gs1.product_for_scan(store.conn, data)
    if scanned.ndc != r["dispense_ndc"]:
        chosen = catalog.lookup(store.conn, r["dispense_ndc"])
        raise BadInput(f"wrong product: scanned {scanned.name} ({scanned.ndc}), the verified "
                       f"product is {chosen.name} ({chosen.ndc})", code="DSCSA_PRODUCT_MISMATCH")
    if data.lot is None:
        raise BadInput("scan the 2D DataMatrix on the package: it carries the lot and expiry",
                       code="FILL_SCAN_NO_LOT")
    req = dispense_request(store, keys, user, fill_id, scan, jurisdiction=jurisdiction,
                           offline=offline, extra=extra)
    now_s = iso(store.clock())
    refused: ComplianceDenied | None = None
    sale: SaleResult | None = None
    with store.transaction() as c:
        try:
            sale = dispenser.sell(req)
        except ComplianceDenied as e:
            refused = e
            _event(c, fill_id, now_s, user["id"], "fill.refused",
                   {"code": e.code, "decision": e.decision.to_json()})
        else:
            alloc = sale.lines[0].allocations[0]
            c.execute("UPDATE fills SET state = 'filled', filled_by = ?, filled_at = ?, "
                      "sale_id = ?, lot = ?, expiry = ?, serial = ?, updated_at = ? "
                      "WHERE fill_id = ? AND state = 'verified'",
                      (user["id"], now_s, sale.sale_id, alloc.lot, alloc.expiry, data.serial,
                       now_s, fill_id))
            _event(c, fill_id, now_s, user["id"], "fill",
                   {"sale_id": sale.sale_id, "lot": alloc.lot, "serial": data.serial})
    if refused is not None:
        raise refused
    assert sale is not None
    return FillResult(RxChanged((fill_id,), (r["rx_id"],), "filled", stock=sale.changed,
                                details={"sale_id": sale.sale_id}), sale)


# ---- label, will-call, pickup ---------------------------------------------------------------
def label(store: Store, keys: KeyProvider, user: dict[str, Any], fill_id: str,
          *, pharmacy: dict[str, str] | None = None) -> tuple[RxChanged, dict[str, Any]]:
    """Mark a fill labeled and return what the label shows (print after commit; reprint ok)."""
    users.require(user, "label_rx")
    now_s = iso(store.clock())
    vault = PhiVault(store.conn, keys, store.clock)
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, "filled", "labeled", "will_call")
        patient = vault.get(r["patient_id"], user["id"])
        prod = catalog.lookup(c, r["dispense_ndc"])
        prescribed = catalog.lookup(c, r["rx_ndc"])
        pres = json.loads(r["prescriber"])
        data = {
            "pharmacy": pharmacy or {"name": store.get_setting("pharmacy.name")
                                     or f"Pharmacy {store.store_id}",
                                     "address": store.get_setting("pharmacy.address") or "",
                                     "phone": store.get_setting("pharmacy.phone") or ""},
            "rx_number": r["rx_number"], "refill_number": int(r["refill_number"]),
            "refills_left": max(0, int(r["refills_authorized"]) - int(r["refill_number"])),
            "date": store.clock().date().isoformat(), "patient_name": patient.get("name"),
            "drug": _drug_label(prod), "ndc": prod.ndc, "manufacturer": prod.manufacturer,
            "substituted_for": None if prod.ndc == prescribed.ndc else prescribed.name,
            "qty": int(r["quantity"]), "unit": prod.unit, "directions": r["directions"],
            "prescriber": pres.get("name"), "lot": r["lot"], "expiry": r["expiry"],
            "schedule": prod.dea_schedule,
            "warning": TRANSFER_WARNING if prod.dea_schedule else None,
            "copy": int(r["label_count"]) + 1,
        }
        new_state = "labeled" if r["state"] == "filled" else r["state"]
        c.execute("UPDATE fills SET state = ?, label_count = label_count + 1, labeled_at = ?, "
                  "updated_at = ? WHERE fill_id = ?", (new_state, now_s, now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "label", {"copy": data["copy"]})
    return RxChanged((fill_id,), (r["rx_id"],), new_state), data


def to_will_call(store: Store, user: dict[str, Any], fill_id: str, bin_: str) -> RxChanged:
    users.require(user, "will_call")
    b = bin_.strip().upper()
    if not b or len(b) > 12:
        raise BadInput("a will-call bin is 1-12 characters", code="BAD_BIN")
    now_s = iso(store.clock())
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, "labeled")
        c.execute("UPDATE fills SET state = 'will_call', bin = ?, will_call_at = ?, "
                  "updated_at = ? WHERE fill_id = ?", (b, now_s, now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "will_call", {"bin": b})
    return RxChanged((fill_id,), (r["rx_id"],), "will_call")


def pickup(store: Store, user: dict[str, Any], fill_id: str, *, counseling: str,
           tender: checkout.Tender | None = None) -> RxChanged:
    """Hand the fill over: the counselling offer is acknowledged (accepted -> a pharmacist
    counsels and records it) and the fill's sale is paid."""
    users.require(user, "pickup_rx")
    if counseling not in ("accepted", "declined"):
        raise BadInput("record whether the patient accepted or declined counselling",
                       code="COUNSELING_REQUIRED")
    if counseling == "accepted" and not users.can(str(user.get("role")), "counsel"):
        raise users.PermissionDenied("the patient accepted counselling: a pharmacist must "
                                     "counsel and complete this pickup",
                                     code="COUNSEL_NEEDS_PHARMACIST")
    now_s = iso(store.clock())
    details: dict[str, Any] = {}
    with store.transaction() as c:
        r = _fill_row(c, fill_id)
        _expect(r, "will_call")
        if r["sale_id"] and tender is not None:
            paid = c.execute("SELECT COUNT(*) FROM tenders WHERE sale_id = ?",
                             (r["sale_id"],)).fetchone()[0]
            if not paid:
                total = int(c.execute("SELECT total_cents FROM sales WHERE sale_id = ?",
                                      (r["sale_id"],)).fetchone()[0])
                rec = checkout.record_tender(c, r["sale_id"], total, tender, user["id"], now_s,
                                             store.replica_id)
                details["tender"] = rec.to_json()
        c.execute("UPDATE fills SET state = 'picked_up', picked_up_by = ?, picked_up_at = ?, "
                  "counseling = ?, counseled_by = ?, updated_at = ? WHERE fill_id = ?",
                  (user["id"], now_s, counseling,
                   user["id"] if counseling == "accepted" else None, now_s, fill_id))
        _event(c, fill_id, now_s, user["id"], "pickup", {"counseling": counseling})
    return RxChanged((fill_id,), (r["rx_id"],), "picked_up", details=details)


def sale_total_cents(conn: sqlite3.Connection, fill_id: str) -> int | None:
    row = conn.execute("SELECT s.total_cents FROM fills f JOIN sales s ON s.sale_id = f.sale_id "
                       "WHERE f.fill_id = ?", (fill_id,)).fetchone()
    return None if row is None else int(row[0])


def events(conn: sqlite3.Connection, fill_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT at, user_id, action, detail FROM rx_events WHERE fill_id = ? "
                        "ORDER BY seq", (fill_id,)).fetchall()
    return [{"at": r[0], "user_id": r[1], "action": r[2], "detail": json.loads(r[3])}
            for r in rows]
