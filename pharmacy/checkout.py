"""The counter cart, its live preview (FEFO lots, totals, compliance decision) and tenders.

A cart is plain data owned by whoever runs database work (the terminal's worker); a preview is
an immutable snapshot the screens show. Checkout is one durable transaction: the sale
(``Dispenser.sell``) and how it was paid. A refused sale still records its decision and
records no tender.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from pharmacy import catalog, inventory, outbox
from pharmacy.canonical import is_utf8_text
from pharmacy.clock import iso
from pharmacy.compliance import Decision
from pharmacy.errors import BadInput, ComplianceDenied, PharmosError
from pharmacy.gs1 import ScanData
from pharmacy.ids import new_id
from pharmacy.inventory import Allocation
from pharmacy.money import fmt, tax_cents, to_cents
from pharmacy.sales import Dispenser, SaleResult
from pharmacy.store import Store

TenderMethod = Literal["cash", "card"]


@dataclass(frozen=True)
class CartLine:
    line_id: int
    ndc: str
    qty: int
    lot: str | None = None
    scan: str | None = None  # raw scan text, passed to the dispense transaction
    serial: str | None = None


@dataclass
class Cart:
    """What is being sold. Lines merge when the same product (and lot) is added again."""

    lines: list[CartLine] = field(default_factory=list)
    purchaser: dict[str, Any] | None = None  # PHI: name, address, birth_date, id_document
    rx: dict[str, Any] | None = None  # prescription facts for H/H1/X or C-V register
    extra: dict[str, Any] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_product(self, ndc: str, qty: int = 1) -> CartLine:
        qty = inventory.parse_qty(qty)
        for i, ln in enumerate(self.lines):
            if ln.ndc == ndc and ln.lot is None and ln.scan is None:
                self.lines[i] = replace(ln, qty=ln.qty + qty)
                return self.lines[i]
        line = CartLine(next(self._ids), ndc, qty)
        self.lines.append(line)
        return line

    def add_scan(self, ndc: str, scan: ScanData) -> CartLine:
        """A scanned package: one unit of its lot. A serial number is one unit, once."""
        if scan.serial is not None and any(
                ln.serial == scan.serial and ln.ndc == ndc for ln in self.lines):
            raise BadInput(f"this package (serial {scan.serial}) is already in the cart",
                           code="DUPLICATE_SERIAL")
        if scan.lot is None:
            return self.add_product(ndc)
        if scan.serial is None:
            for i, ln in enumerate(self.lines):
                if ln.ndc == ndc and ln.lot == scan.lot and ln.serial is None:
                    self.lines[i] = replace(ln, qty=ln.qty + 1)
                    return self.lines[i]
        line = CartLine(next(self._ids), ndc, 1, scan.lot, scan.raw, scan.serial)
        self.lines.append(line)
        return line

    def set_qty(self, line_id: int, qty: int) -> CartLine:
        qty = inventory.parse_qty(qty)
        for i, ln in enumerate(self.lines):
            if ln.line_id == line_id:
                if ln.serial is not None and qty != 1:
                    raise BadInput("a serialised package is one unit; scan each package",
                                   code="SERIALISED_QTY")
                self.lines[i] = replace(ln, qty=qty)
                return self.lines[i]
        raise BadInput(f"no cart line {line_id}", code="UNKNOWN_LINE")

    def remove(self, line_id: int) -> None:
        before = len(self.lines)
        self.lines = [ln for ln in self.lines if ln.line_id != line_id]
        if len(self.lines) == before:
            raise BadInput(f"no cart line {line_id}", code="UNKNOWN_LINE")

    def clear(self) -> None:
        self.lines.clear()
        self.purchaser = None
        self.rx = None
        self.extra = {}

    def void(self, store: Store, user_id: str, line_id: int | None = None) -> int:
        """Remove one line (or, with no line, the whole cart) and audit it as a void.

        Voids are one of the diversion detector's signals (models/diversion.py), so each one
        is recorded with who did it and what was taken off. Returns the lines voided.
        """
        gone = [ln for ln in self.lines if line_id is None or ln.line_id == line_id]
        if line_id is not None and not gone:
            raise BadInput(f"no cart line {line_id}", code="UNKNOWN_LINE")
        if gone:
            now = iso(store.clock())
            with store.transaction() as c:
                c.executemany(
                    "INSERT INTO audit_log(created_at, user_id, action, subject, detail) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(now, user_id, "cart.void_line" if line_id is not None else "cart.void",
                      ln.ndc, json.dumps({"qty": ln.qty, "lot": ln.lot})) for ln in gone])
        if line_id is None:
            self.clear()
        else:
            self.remove(line_id)
        return len(gone)

    def request(self, user: dict[str, Any], *, jurisdiction: str | None = None,
                offline: bool = False) -> dict[str, Any]:
        """The dispense request for ``Dispenser.check`` / ``sell``."""
        lines: list[dict[str, Any]] = []
        for ln in self.lines:
            item: dict[str, Any] = {"ndc": ln.ndc, "qty": ln.qty}
            if ln.lot is not None:
                item["lot"] = ln.lot
            if ln.scan is not None and ln.qty == 1:
                item["scan"] = ln.scan
            lines.append(item)
        req: dict[str, Any] = {**self.extra, "lines": lines, "user": user, "offline": offline}
        if jurisdiction:
            req["jurisdiction"] = jurisdiction
        if self.purchaser:
            req["patient"] = self.purchaser
        if self.rx:
            req["rx"] = self.rx
        return req


@dataclass(frozen=True)
class LinePreview:
    line_id: int
    ndc: str
    name: str
    strength: str | None
    qty: int
    unit: str
    unit_price_cents: int
    amount_cents: int
    allocations: tuple[Allocation, ...]
    schedule: str | None  # "CII", "PSE", "H1", ... for the badge
    rx_only: bool
    error_code: str | None = None
    error: str | None = None

    @property
    def lots_text(self) -> str:
        return ", ".join(f"{a.lot} exp {a.expiry} ×{a.qty}" for a in self.allocations)


# reason codes that need the purchaser's identity or register facts before the sale
CAPTURE_PREFIXES = ("CMEA_", "DEA_CV_OTC_", "IN_")


@dataclass(frozen=True)
class CartPreview:
    """A snapshot of the cart as the counter shows it (rebuilt after every cart change)."""

    lines: tuple[LinePreview, ...]
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    decision: Decision | None
    purchaser_captured: bool
    changed_line: int | None = None

    @property
    def needs_capture(self) -> bool:
        """The decision asks for the purchaser's identity or register facts first (CMEA log,
        C-V without prescription, India H/H1/X registers)."""
        return self.decision is not None and any(
            r.code.startswith(CAPTURE_PREFIXES) for r in self.decision.reasons)

    @property
    def ok_to_tender(self) -> bool:
        return (bool(self.lines) and self.decision is not None and self.decision.allowed
                and all(ln.error_code is None for ln in self.lines))

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": [{"line_id": ln.line_id, "ndc": ln.ndc, "name": ln.name, "qty": ln.qty,
                       "amount": fmt(ln.amount_cents), "lots": [a.to_json() for a in
                                                                 ln.allocations],
                       "error": ln.error_code} for ln in self.lines],
            "subtotal": fmt(self.subtotal_cents), "tax": fmt(self.tax_cents),
            "total": fmt(self.total_cents),
            "decision": None if self.decision is None else self.decision.to_json(),
        }


def schedule_badge(p: catalog.Product) -> str | None:
    if p.dea_schedule:
        return p.dea_schedule
    if p.cmea:
        return "PSE"
    if p.india_schedule:
        return p.india_schedule
    return None


def preview(conn: sqlite3.Connection, dispenser: Dispenser, cart: Cart, user: dict[str, Any],
            at: datetime, *, jurisdiction: str | None = None, offline: bool = False,
            changed_line: int | None = None, decide: bool = True) -> CartPreview:
    """FEFO lots per line (errors stay on their line) and, when every line resolves and
    ``decide`` is set, the compliance decision the sale would get now. Writes nothing."""
    lines: list[LinePreview] = []
    subtotal = tax = 0
    taken: dict[str, int] = {}  # as the sale will: a unit goes to one line only
    for ln in cart.lines:
        p = catalog.lookup(conn, ln.ndc)
        amount = p.price_cents * ln.qty
        err_code = err = None
        allocs: tuple[Allocation, ...] = ()
        try:
            allocs = tuple(inventory.allocate(conn, p, ln.qty, at.date(), ln.lot, taken=taken))
        except PharmosError as e:
            err_code, err = e.code, e.message
        subtotal += amount
        tax += tax_cents(amount, p.tax_rate_bp)
        lines.append(LinePreview(ln.line_id, p.ndc, p.name, p.strength, ln.qty, p.unit,
                                 p.price_cents, amount, allocs, schedule_badge(p), p.rx_only,
                                 err_code, err))
    decision = None
    if decide and lines and all(lp.error_code is None for lp in lines):
        decision = dispenser.check(cart.request(user, jurisdiction=jurisdiction,
                                                offline=offline))
    return CartPreview(tuple(lines), subtotal, tax, subtotal + tax, decision,
                       bool(cart.purchaser), changed_line)


# ---- tender ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tender:
    method: TenderMethod
    tendered_cents: int
    reference: str | None = None  # card: the external terminal's approval or reference


MAX_TENDER_TEXT = 100


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_short_text(value: Any, limit: int) -> bool:
    """Text a store can keep, send and print on one line: a str of at most ``limit``
    characters, no control characters (NUL, tab, a bell or an escape would reach the
    receipt printer as commands), and UTF-8 (no lone surrogate escape, as undecodable bytes
    on a command line become)."""
    return (is_utf8_text(value) and len(value) <= limit
            and not _CONTROL.search(value))


def tender_for(method: str, total_cents: int, tendered: str | None = None,
               reference: str | None = None) -> Tender:
    """How the customer pays: cash (the amount handed over, default the total) or card
    (recorded as external, with the card terminal's reference). The amount handed over and
    the reference are text of at most 100 characters (``BAD_TENDER``)."""
    for name, value in (("tendered", tendered), ("reference", reference)):
        if value is not None and not is_short_text(value, MAX_TENDER_TEXT):
            raise BadInput(f"tender {name} must be text of at most {MAX_TENDER_TEXT} "
                           "characters (no NUL)", code="BAD_TENDER")
    if method == "cash":
        return Tender("cash", total_cents if not tendered
                      else to_cents(tendered, field="cash tendered"))
    if method == "card":
        return Tender("card", total_cents, (reference or "").strip() or None)
    raise BadInput(f"tender {method!r} is not cash or card", code="BAD_TENDER")


@dataclass(frozen=True)
class TenderRecord:
    tender_id: str
    sale_id: str
    method: TenderMethod
    amount_cents: int
    tendered_cents: int
    change_cents: int
    reference: str | None

    def to_json(self) -> dict[str, Any]:
        return {"tender_id": self.tender_id, "sale_id": self.sale_id, "method": self.method,
                "amount": fmt(self.amount_cents), "tendered": fmt(self.tendered_cents),
                "change": fmt(self.change_cents), "reference": self.reference}


def change_due(total_cents: int, tender: Tender) -> int:
    """Cash: change = tendered - total (never negative). Card: exactly the total."""
    if tender.method == "cash":
        if tender.tendered_cents < total_cents:
            raise BadInput(f"cash tendered {fmt(tender.tendered_cents)} is less than the total "
                           f"{fmt(total_cents)}", code="INSUFFICIENT_TENDER",
                           short=fmt(total_cents - tender.tendered_cents))
        return tender.tendered_cents - total_cents
    if tender.method == "card":
        if tender.tendered_cents != total_cents:
            raise BadInput(f"a card payment is the exact total {fmt(total_cents)}",
                           code="CARD_AMOUNT")
        return 0
    raise BadInput(f"tender method {tender.method!r} is not cash or card", code="BAD_TENDER")


def record_tender(conn: sqlite3.Connection, sale_id: str, total_cents: int, tender: Tender,
                  user_id: str, now_s: str, replica_id: str) -> TenderRecord:
    """Record how a committed sale was paid (call inside the sale's transaction), and send it
    to head office (a ``tender`` event) for the store's takings by method."""
    change = change_due(total_cents, tender)
    rec = TenderRecord(new_id(), sale_id, tender.method, total_cents, tender.tendered_cents,
                       change, tender.reference)
    conn.execute(
        "INSERT INTO tenders(tender_id, sale_id, created_at, user_id, method, amount_cents, "
        "tendered_cents, change_cents, reference) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.tender_id, sale_id, now_s, user_id, tender.method, total_cents,
         tender.tendered_cents, change, tender.reference))
    outbox.append_event(conn, replica_id, "tender", now_s, {
        "tender_id": rec.tender_id, "sale_id": sale_id, "created_at": now_s,
        "user_id": user_id, "method": tender.method, "amount_cents": total_cents,
        "tendered_cents": tender.tendered_cents, "change_cents": change,
        "reference": tender.reference})
    return rec


@dataclass(frozen=True)
class CheckoutResult:
    sale: SaleResult
    tender: TenderRecord

    @property
    def change_cents(self) -> int:
        return self.tender.change_cents

    def to_json(self) -> dict[str, Any]:
        return {**self.sale.to_json(), "tender": self.tender.to_json()}


def checkout(dispenser: Dispenser, request: dict[str, Any],
             tender: Tender | Callable[[int], Tender]) -> CheckoutResult:
    """Sell and record the tender in one transaction. A refusal keeps its decision record.
    ``tender`` may be made from the sale's total once it is known (``tender_for`` curried:
    a card pays exactly it, cash with no amount given hands over exactly it)."""
    store = dispenser.store
    refused: ComplianceDenied | None = None
    result: CheckoutResult | None = None
    with store.transaction() as c:
        try:
            sale = dispenser.sell(request)
        except ComplianceDenied as e:
            refused = e  # the decision row is already in the (released) savepoint: keep it
        else:
            paid = tender(sale.total_cents) if callable(tender) else tender
            rec = record_tender(c, sale.sale_id, sale.total_cents, paid,
                                str(request["user"]["id"]), iso(store.clock()),
                                store.replica_id)
            result = CheckoutResult(sale, rec)
    if refused is not None:
        raise refused
    assert result is not None
    return result


def tenders_for(conn: sqlite3.Connection, sale_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT method, amount_cents, tendered_cents, change_cents, reference "
                        "FROM tenders WHERE sale_id = ? ORDER BY created_at",
                        (sale_id,)).fetchall()
    return [{"method": r[0], "amount": fmt(r[1]), "tendered": fmt(r[2]), "change": fmt(r[3]),
             "reference": r[4]} for r in rows]
