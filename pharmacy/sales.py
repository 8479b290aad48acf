"""The dispense transaction (DESIGN.md): resolve → decide → write → register → outbox, all in
one durable transaction. A refused attempt commits only its decision record."""

from __future__ import annotations

import getpass
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from crdt.pncounter import SQL_LOCAL_ADD, local_add_params
from pharmacy import catalog, gs1, inventory, outbox, register
from pharmacy.canonical import canonical_json, compact_json
from pharmacy.clock import iso, parse_iso
from pharmacy.compliance import ComplianceGate, ComplianceRequest, Decision, LineFacts
from pharmacy.errors import BadInput, ComplianceDenied, DomainRefusal, NotFound
from pharmacy.gs1 import ScanData, parse_scan
from pharmacy.history import SqlHistory
from pharmacy.ids import new_id
from pharmacy.inventory import Allocation, StockChanged
from pharmacy.money import fmt, tax_cents
from pharmacy.phi import FileKeyProvider, KeyProvider, PhiVault
from pharmacy.store import Store

ScanParser = Callable[[str], ScanData]
JURISDICTIONS = ("US", "US-TX", "US-FL", "US-NY", "US-CA", "IN")


# Built for every sale, these write their __init__ out: the generated one of a frozen dataclass
# sets each field through object.__setattr__, several times the cost.
@dataclass(frozen=True, init=False)
class ResolvedLine:
    line_no: int
    product: catalog.Product
    qty: int
    allocations: tuple[Allocation, ...]
    scan: ScanData | None

    def __init__(self, line_no: int, product: catalog.Product, qty: int,
                 allocations: tuple[Allocation, ...], scan: ScanData | None) -> None:
        self.__dict__.update(line_no=line_no, product=product, qty=qty,
                             allocations=allocations, scan=scan)


@dataclass(frozen=True, init=False)
class SaleResult:
    sale_id: str
    lines: tuple[ResolvedLine, ...]
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    decision: Decision
    decision_id: str
    register_entries: int
    changed: StockChanged

    def __init__(self, sale_id: str, lines: tuple[ResolvedLine, ...], subtotal_cents: int,
                 tax_cents: int, total_cents: int, decision: Decision, decision_id: str,
                 register_entries: int, changed: StockChanged) -> None:
        self.__dict__.update(
            sale_id=sale_id, lines=lines, subtotal_cents=subtotal_cents, tax_cents=tax_cents,
            total_cents=total_cents, decision=decision, decision_id=decision_id,
            register_entries=register_entries, changed=changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "sale_id": self.sale_id,
            "lines": [
                {"ndc": ln.product.ndc, "name": ln.product.name, "qty": ln.qty,
                 "unit_price": fmt(ln.product.price_cents),
                 "allocations": [a.to_json() for a in ln.allocations]}
                for ln in self.lines
            ],
            "subtotal": fmt(self.subtotal_cents),
            "tax": fmt(self.tax_cents),
            "total": fmt(self.total_cents),
            "decision": self.decision.to_json(),
            "register_entries": self.register_entries,
        }


def default_user() -> dict[str, Any]:
    return {"id": f"os:{getpass.getuser()}", "role": "pharmacist"}


class Dispenser:
    """Sells and dispenses through a compliance gate. One per open store."""

    def __init__(self, store: Store, gate: ComplianceGate, *,
                 scan_parser: ScanParser = parse_scan, keys: KeyProvider | None = None) -> None:
        self.store = store
        self.gate = gate
        self.scan_parser = scan_parser
        self.phi = PhiVault(store.conn, keys or FileKeyProvider(store.data_dir), store.clock)
        self.history = SqlHistory(store.conn)

    # ---- request parsing --------------------------------------------------------------------
    def _request_basics(self, req: Any) -> tuple[list[dict[str, Any]], datetime, str,
                                                 dict[str, Any]]:
        if not isinstance(req, dict):
            raise BadInput("the sale request must be a JSON object", code="BAD_REQUEST")
        lines = req.get("lines")
        if not isinstance(lines, list) or not lines:
            raise BadInput("'lines' must be a non-empty list", code="BAD_REQUEST")
        if len(lines) > 200:
            raise BadInput("a sale has at most 200 lines", code="BAD_REQUEST")
        at = self.store.clock()
        if req.get("at") is not None:
            try:
                at = parse_iso(str(req["at"]))
                iso(at)  # a time whose UTC form falls outside years 1-9999 (OverflowError)
            except (ValueError, OverflowError):
                raise BadInput(f"'at' {req['at']!r} is not an ISO time", code="BAD_TIME") from None
        jurisdiction = str(req.get("jurisdiction") or self.store.get_setting("jurisdiction", "US"))
        if jurisdiction not in JURISDICTIONS:
            raise BadInput(f"jurisdiction {jurisdiction!r} is not one of "
                           f"{', '.join(JURISDICTIONS)}", code="BAD_JURISDICTION")
        user = req.get("user") or default_user()
        if not isinstance(user, dict) or not user.get("id") or not isinstance(user["id"], str):
            raise BadInput("'user' must be an object with an 'id'", code="BAD_USER")
        return lines, at, jurisdiction, user

    def _resolve_lines(self, c: sqlite3.Connection, lines: list[Any], at: datetime
                       ) -> list[ResolvedLine]:
        """Every line, in order. Units a line takes are not available to the lines after it
        (the same product on two lines never sells the same units twice)."""
        taken: dict[str, int] = {}
        today = at.date()
        # resolving writes no product row: the lines' lookups share one read of the catalog
        # version token
        token = catalog.version_token(c)
        return [self._resolve(c, i, ln, today, token, taken) for i, ln in enumerate(lines, 1)]

    def _resolve(self, c: sqlite3.Connection, i: int, line: Any, today: date,
                 token: int | None, taken: dict[str, int]) -> ResolvedLine:
        if not isinstance(line, dict):
            raise BadInput(f"line {i} is not an object", code="BAD_REQUEST")
        qty = inventory.parse_qty(line.get("qty"), field=f"line {i} qty")
        scan: ScanData | None = None
        lot = line.get("lot")
        if line.get("scan") is not None:
            scan = self.scan_parser(str(line["scan"]))
            product = gs1.product_for_scan(c, scan)
            selected = (catalog.lookup_at(c, token, str(line["ndc"])).ndc if line.get("ndc")
                        else None)
            gs1.check_package(scan, today=today, selected_ndc=selected)
            if scan.lot is not None:
                if lot is not None and lot != scan.lot:
                    raise BadInput(f"line {i}: scanned lot {scan.lot} is not the selected lot "
                                   f"{lot}", code="DSCSA_LOT_MISMATCH")
                lot = scan.lot
        elif line.get("ndc") is not None or line.get("gtin") is not None:
            product = catalog.lookup_at(c, token, str(line.get("ndc") or line.get("gtin")))
        else:
            raise BadInput(f"line {i} needs 'ndc', 'gtin' or 'scan'", code="BAD_REQUEST")
        if lot is not None:
            lot = inventory.parse_lot(lot)
        allocs = inventory.allocate(c, product, qty, today, lot, taken=taken)
        if scan is not None and scan.expiry is not None and scan.lot is not None and (
            allocs[0].expiry != scan.expiry.isoformat()
        ):
            raise BadInput(f"line {i}: the barcode says lot {scan.lot} expires "
                           f"{scan.expiry.isoformat()}, the store has {allocs[0].expiry}",
                           code="DSCSA_EXPIRY_MISMATCH")
        return ResolvedLine(i, product, qty, tuple(allocs), scan)

    def build_request(self, req: dict[str, Any], resolved: list[ResolvedLine], at: datetime,
                      jurisdiction: str, user: dict[str, Any]) -> ComplianceRequest:
        facts = tuple(
            LineFacts(
                line_no=r.line_no, ndc=r.product.ndc, name=r.product.name, qty=r.qty,
                unit=r.product.unit, rx_only=r.product.rx_only,
                dea_schedule=r.product.dea_schedule, india_schedule=r.product.india_schedule,
                cmea=r.product.cmea, pse_mg_per_unit=r.product.pse_mg_per_unit,
                ingredients=r.product.ingredients,
                attrs={"manufacturer": r.product.manufacturer,
                       "strength": r.product.strength, **r.product.attrs},
                allocations=tuple(a.to_json() for a in r.allocations),
            )
            for r in resolved
        )
        known = {"lines", "rx", "patient", "jurisdiction", "user", "at", "offline"}
        return ComplianceRequest(
            at=at, jurisdiction=jurisdiction, lines=facts, offline=bool(req.get("offline")),
            user=user, patient=req.get("patient"), rx=req.get("rx"),
            extra={k: v for k, v in req.items() if k not in known}, history=self.history,
        )

    # ---- decide only --------------------------------------------------------------------------
    def check(self, req: Any) -> Decision:
        """The decision a sale would get, without selling or recording anything."""
        lines, at, jurisdiction, user = self._request_basics(req)
        c = self.store.conn
        resolved = self._resolve_lines(c, lines, at)
        return self.gate.decide(self.build_request(req, resolved, at, jurisdiction, user))

    # ---- sell ---------------------------------------------------------------------------------
    def sell(self, req: Any) -> SaleResult:
        lines, at, jurisdiction, user = self._request_basics(req)
        now_s = iso(self.store.clock())
        refused: ComplianceDenied | None = None
        with self.store.transaction() as c:
            resolved = self._resolve_lines(c, lines, at)
            creq = self.build_request(req, resolved, at, jurisdiction, user)
            decision = self.gate.decide(creq)
            decision_id = new_id()
            if decision.allowed:
                result = self._write_sale(c, new_id(), decision_id, decision, creq, resolved,
                                          now_s)
            else:
                # a refused attempt travels on its own, with the request it refused
                record = creq.to_json()
                c.execute(
                    "INSERT INTO refusals(decision_id, created_at, replica_id, user_id, "
                    "decision, reasons, obligations, bundle_version, request) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (decision_id, now_s, self.store.replica_id, user["id"], decision.decision,
                     json.dumps([r.to_json() for r in decision.reasons]),
                     json.dumps(list(decision.obligations)), decision.bundle_version,
                     canonical_json(record)),
                )
                outbox.append_event(c, self.store.replica_id, "decision", now_s, {
                    "decision_id": decision_id, "sale_id": None, "user_id": user["id"],
                    **decision.to_json(), "request": record,
                })
                refused = ComplianceDenied(_refusal_message(decision), decision=decision,
                                           code=decision.reasons[0].code if decision.reasons
                                           else "COMPLIANCE_DENIED")
                result = None
        if refused is not None:
            raise refused
        assert result is not None
        return result

    def _write_sale(self, c: sqlite3.Connection, sale_id: str, decision_id: str,
                    decision: Decision, creq: ComplianceRequest, resolved: list[ResolvedLine],
                    now_s: str) -> SaleResult:
        replica = self.store.replica_id
        user, rx, at = creq.user, creq.rx, creq.at
        if rx is not None:
            # the decision has judged the prescription (one it cannot read holds an Rx
            # line); what is written must still be one
            number = rx.get("rx_number") if isinstance(rx, dict) else None
            if not isinstance(rx, dict) or (number is not None and (
                    isinstance(number, bool) or not isinstance(number, (str, int)))):
                raise BadInput("'rx' must be an object whose rx_number is text, got "
                               f"{rx!r:.60}", code="BAD_REQUEST")
        at_s = iso(at)
        patient_id = None
        if creq.patient is not None:
            patient_id = self.phi.upsert(creq.patient, user["id"])
        kind = "rx" if rx is not None else "otc"
        rx_number = None if rx is None else rx.get("rx_number")
        subtotal = tax = 0
        line_rows = []
        for r in resolved:
            amount = r.product.price_cents * r.qty
            line_tax = tax_cents(amount, r.product.tax_rate_bp)
            subtotal += amount
            tax += line_tax
            line_rows.append((sale_id, r.line_no, r.product.ndc, r.qty, r.product.price_cents,
                              amount, _allocations_json(r.allocations), line_tax))
        total = subtotal + tax
        # the decision is kept on the sale row; of its request, only what the row lacks. Its
        # time as isoformat() writes it, which for a UTC time with microseconds is at_s's text
        at_text = at_s[:-1] + "+00:00" if at.tzinfo is UTC and at.microsecond else at.isoformat()
        request = {"at": at_text, "offline": creq.offline, "user": user, "extra": creq.extra}
        c.execute(
            "INSERT INTO sales(sale_id, created_at, replica_id, user_id, kind, jurisdiction, "
            "patient_id, rx, rx_number, subtotal_cents, tax_cents, total_cents, decision_id, "
            "decided_at, reasons, obligations, bundle_version, decision_request, engine) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sale_id, at_s, replica, user["id"], kind, creq.jurisdiction, patient_id,
             None if rx is None else canonical_json(rx), rx_number, subtotal, tax, total,
             decision_id, now_s, _json_list([r.to_json() for r in decision.reasons]),
             _json_list(list(decision.obligations)), decision.bundle_version,
             canonical_json(request), decision.engine),
        )
        c.executemany("INSERT INTO sale_lines(sale_id, line_no, ndc, qty, unit_price_cents, "
                      "line_total_cents, allocations, tax_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      line_rows)
        if creq.offline:  # offline allowances count units per (UTC) day and product
            c.executemany(_COUNT_OFFLINE, [(at_s[:10], r.product.ndc, r.qty) for r in resolved])
        c.executemany(SQL_LOCAL_ADD, [
            local_add_params(inventory.counter_id(a.batch_id), replica, -a.qty)
            for r in resolved for a in r.allocations])
        reg = 0
        for r in resolved:
            if not r.product.dea_schedule:
                continue
            for a in r.allocations:
                register.append(c, replica, now_s, "dispense", {
                    "ndc": r.product.ndc, "name": r.product.name,
                    "schedule": r.product.dea_schedule, "batch_id": a.batch_id, "lot": a.lot,
                    "expiry": a.expiry, "qty": a.qty, "sale_id": sale_id,
                    "patient_id": patient_id, "user_id": user["id"], "rx_number": rx_number,
                    "prescriber_dea": None if rx is None else
                    (rx.get("prescriber") or {}).get("dea"),
                })
                reg += 1
        # the sale's event is rebuilt from these rows when it is pushed (outbox.with_bodies)
        outbox.append_refs(c, replica, now_s, [("sale", sale_id)])
        changed = StockChanged(
            tuple(a.batch_id for r in resolved for a in r.allocations),
            tuple(dict.fromkeys(r.product.ndc for r in resolved)), reg)
        return SaleResult(sale_id, tuple(resolved), subtotal, tax, total, decision, decision_id,
                          reg, changed)


_COUNT_OFFLINE = ("INSERT INTO offline_usage(day, ndc, units) VALUES (?, ?, ?) "
                  "ON CONFLICT(day, ndc) DO UPDATE SET units = units + excluded.units")


def _refusal_message(decision: Decision) -> str:
    if not decision.reasons:
        return f"sale refused ({decision.decision})"
    first = decision.reasons[0]
    cite = f" [{first.citation}]" if first.citation else ""
    more = f" (+{len(decision.reasons) - 1} more)" if len(decision.reasons) > 1 else ""
    verb = "on hold" if decision.decision == "hold" else "refused"
    return f"sale {verb}: {first.message}{cite}{more}"


def sale_record(conn: sqlite3.Connection, sale_id: str) -> dict[str, Any]:
    """A committed sale as printed on a receipt or reprinted."""
    row = conn.execute("SELECT * FROM sales WHERE sale_id = ?", (sale_id,)).fetchone()
    if row is None:
        raise BadInput(f"no sale {sale_id}", code="UNKNOWN_SALE")
    lines = conn.execute(
        "SELECT l.line_no, l.ndc, p.name, p.strength, l.qty, l.unit_price_cents, "
        "l.line_total_cents FROM sale_lines l JOIN products p ON p.ndc = l.ndc "
        "WHERE sale_id = ? ORDER BY line_no", (sale_id,)).fetchall()
    allocs = conn.execute("SELECT line_no, lot, expiry, qty FROM allocations WHERE sale_id = ?",
                          (sale_id,)).fetchall()
    return {
        "sale_id": sale_id, "created_at": row["created_at"], "kind": row["kind"],
        "user_id": row["user_id"], "jurisdiction": row["jurisdiction"],
        "subtotal": fmt(row["subtotal_cents"]), "tax": fmt(row["tax_cents"]),
        "total": fmt(row["total_cents"]),
        "lines": [
            {"ndc": ln["ndc"], "name": ln["name"], "strength": ln["strength"], "qty": ln["qty"],
             "unit_price": fmt(ln["unit_price_cents"]), "amount": fmt(ln["line_total_cents"]),
             "allocations": [{"lot": a["lot"], "expiry": a["expiry"], "qty": a["qty"]}
                             for a in allocs if a["line_no"] == ln["line_no"]]}
            for ln in lines
        ],
    }


class SaleNotReturnable(DomainRefusal):
    code = "SALE_NOT_RETURNABLE"


def return_sale(conn: sqlite3.Connection, replica_id: str, sale_id: str, user_id: str,
                reason: str, now_s: str, *, fill_id: str | None = None) -> StockChanged:
    """Put a committed sale's units back into the batches they came from (call inside a
    transaction): a prescription filled and never handed over. Each controlled line gets a
    ``return`` register entry; the return is recorded (``sale_returns``) and synced as its own
    event, and the sale's row stays as it was committed. A sale is returned at most once, and
    never once it has been paid."""
    sale = conn.execute("SELECT total_cents, rx_number, patient_id FROM sales WHERE sale_id = ?",
                        (sale_id,)).fetchone()
    if sale is None:
        raise NotFound(f"no sale {sale_id}", code="UNKNOWN_SALE")
    if conn.execute("SELECT 1 FROM sale_returns WHERE sale_id = ?", (sale_id,)).fetchone():
        raise SaleNotReturnable(f"sale {sale_id} was already returned to stock",
                                code="SALE_ALREADY_RETURNED")
    if conn.execute("SELECT 1 FROM tenders WHERE sale_id = ?", (sale_id,)).fetchone():
        raise SaleNotReturnable(f"sale {sale_id} has been paid: a paid sale is not returned "
                                "to stock", code="SALE_PAID")
    rows = conn.execute("SELECT a.line_no, a.batch_id, a.lot, a.expiry, a.qty, l.ndc "
                        "FROM allocations a JOIN sale_lines l ON l.sale_id = a.sale_id AND "
                        "l.line_no = a.line_no WHERE a.sale_id = ? ORDER BY a.line_no",
                        (sale_id,)).fetchall()
    conn.executemany(SQL_LOCAL_ADD, [
        local_add_params(inventory.counter_id(r[1]), replica_id, int(r[4])) for r in rows])
    reg = 0
    for _line, batch_id, lot, expiry, qty, ndc in rows:
        product = catalog.lookup(conn, ndc)
        if product.dea_schedule:
            register.append(conn, replica_id, now_s, "return", {
                "ndc": product.ndc, "name": product.name, "schedule": product.dea_schedule,
                "batch_id": batch_id, "lot": lot, "expiry": expiry, "qty": int(qty),
                "sale_id": sale_id, "fill_id": fill_id, "rx_number": sale[1],
                "patient_id": sale[2], "user_id": user_id, "reason": reason,
            })
            reg += 1
    allocations = [[r[1], r[2], r[3], int(r[4])] for r in rows]
    conn.execute("INSERT INTO sale_returns(sale_id, created_at, replica_id, user_id, reason, "
                 "fill_id, allocations) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (sale_id, now_s, replica_id, user_id, reason, fill_id,
                  compact_json(allocations)))
    outbox.append_event(conn, replica_id, "sale_return", now_s, {
        "sale_id": sale_id, "created_at": now_s, "user_id": user_id, "reason": reason,
        "fill_id": fill_id, "total_cents": int(sale[0]), "allocations": allocations})
    return StockChanged(tuple(dict.fromkeys(r[1] for r in rows)),
                        tuple(dict.fromkeys(r[5] for r in rows)), reg)


def _allocations_json(allocations: tuple[Allocation, ...]) -> str:
    """A line's allocations as stored on it: [[batch_id, lot, expiry, qty], ...], FEFO order."""
    return compact_json([[a.batch_id, a.lot, a.expiry, a.qty] for a in allocations])


def _json_list(items: list[Any]) -> str:
    return compact_json(items) if items else "[]"  # an allowed sale's are usually empty
