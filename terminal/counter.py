"""The counter's service object: what the screens ask for, as plain calls into the core.

Qt-free and owned by the database worker (terminal/tasks.py): every method runs there and
returns immutable values the screens display. Each method is a few lines around one core
call (``pharmacy.checkout``, ``pharmacy.rx``, ``pharmacy.inventory``, ``pharmacy.users``);
role checks come from ``pharmacy.users``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pharmacy import (
    catalog,
    checkout,
    gs1,
    inventory,
    print_queue,
    refunds,
    register,
    rx,
    users,
)
from pharmacy.compliance import ComplianceGate
from pharmacy.errors import BadInput, NotFound, PharmosError, UnknownProduct
from pharmacy.gs1 import ScanData, parse_scan
from pharmacy.maintenance import IdleCheckpointer
from pharmacy.money import fmt
from pharmacy.phi import FileKeyProvider, KeyProvider, PhiVault
from pharmacy.sales import Dispenser, sale_record
from pharmacy.store import DB_NAME, Store
from terminal import integrations, wiring

PMP_EVERY = timedelta(minutes=10)


class NotSignedIn(PharmosError):
    code = "NOT_SIGNED_IN"
    exit_code = 2


@dataclass(frozen=True)
class ProductHit:
    ndc: str
    gtin: str
    name: str
    strength: str | None
    price: str
    sellable: int
    badge: str | None
    rx_only: bool


@dataclass(frozen=True)
class PrintOutcome:
    job_id: str
    kind: str
    future: Future[Any]


@dataclass(frozen=True)
class Refunded:
    result: refunds.RefundResult
    slip: PrintOutcome | None
    drawer_opened: bool


@dataclass(frozen=True)
class PaidSale:
    sale_id: str
    total: str
    change: str
    method: str
    receipt: PrintOutcome | None
    drawer_opened: bool
    decision: dict[str, Any]


@dataclass(frozen=True)
class Status:
    user: dict[str, Any] | None
    online: bool | None
    sync_available: bool
    last_sync: str | None
    last_error: str | None
    pending_outbox: int
    engine: str
    bundle_version: str | None
    offline_until: str | None
    hours_left: float | None
    print_queue: int
    jurisdiction: str | None
    pmp_unreported: int = 0
    pmp_alert: str | None = None


@dataclass
class Counter:
    store: Store
    gate: ComplianceGate
    keys: KeyProvider
    receipt_printer: Any = None
    label_printer: Any = None
    scan_parser: Callable[[str], ScanData] = parse_scan
    session: users.Session | None = None
    cart: checkout.Cart = field(default_factory=checkout.Cart)
    offline: bool = False
    last_sale_id: str | None = None
    last_refund: tuple[str, str] | None = None  # (sale_id, refund_id) of the last thing done
    checkpointer: IdleCheckpointer | None = None
    dispenser: Dispenser = field(init=False)
    # PMP status is read at most every PMP_EVERY (it scans the register's recent weeks)
    _pmp: tuple[datetime, integrations.PmpStatus | None] | None = field(default=None,
                                                                          init=False)

    def __post_init__(self) -> None:
        self.dispenser = Dispenser(self.store, self.gate, scan_parser=self.scan_parser,
                                   keys=self.keys)

    @classmethod
    def open(cls, data_dir: str, *, gate: ComplianceGate | None = None,
             receipt_printer: Any = None, label_printer: Any = None) -> Counter:
        from terminal import devices

        store = Store.open(data_dir)
        try:
            cfg = devices.hardware_config(store)
            scan = devices.scan_settings(store, cfg)
            parser = functools.partial(parse_scan, **scan) if scan else parse_scan
            if receipt_printer is None:
                receipt_printer, default_label = devices.open_printers(store, cfg)
                label_printer = label_printer or default_label
            counter = cls(store, gate or wiring.compliance_gate(store),
                          FileKeyProvider(store.data_dir), receipt_printer,
                          label_printer or receipt_printer, parser)
            counter.checkpointer = IdleCheckpointer(store.data_dir / DB_NAME).start()
            store.on_commit.append(counter.checkpointer.touch)
            return counter
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        for p in {id(self.receipt_printer): self.receipt_printer,
                  id(self.label_printer): self.label_printer}.values():
            closer = getattr(p, "close", None)
            if closer is not None:
                closer()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.store.close()

    # ---- session ------------------------------------------------------------------------------
    @property
    def user(self) -> dict[str, Any]:
        if self.session is None:
            raise NotSignedIn("sign in first")
        return self.session.user

    def has_users(self) -> bool:
        return users.user_count(self.store.conn) > 0

    def idle_lock_seconds(self) -> int:
        return users.idle_lock_seconds(self.store)

    def login(self, username: str, secret: str) -> users.Session:
        session = users.login(self.store, username, secret)
        if self.session is None or self.session.user_id != session.user_id:
            self.cart.clear()  # another person: nothing of the previous cart carries over
        self.session = session
        return session

    def lock(self, reason: str = "lock") -> None:
        if self.session is not None:
            users.logout(self.store, self.session, reason=reason)

    def logout(self) -> None:
        if self.session is not None:
            users.logout(self.store, self.session)
        self.session = None
        self.cart.clear()

    @property
    def jurisdiction(self) -> str:
        return self.store.get_setting("jurisdiction") or "US"

    # ---- catalog ------------------------------------------------------------------------------
    def _hit(self, p: catalog.Product) -> ProductHit:
        today = self.store.clock().date()
        sellable = sum(b[3] for b in inventory.sellable_batches(self.store.conn, p.ndc, today))
        return ProductHit(p.ndc, p.gtin, p.name, p.strength, fmt(p.price_cents), sellable,
                          checkout.schedule_badge(p), p.rx_only)

    def search(self, text: str, limit: int = 30) -> list[ProductHit]:
        """By name, generic name, NDC (any form) or GTIN."""
        t = text.strip()
        if not t:
            return []
        hits: list[catalog.Product] = []
        if any(ch.isdigit() for ch in t) and all(ch.isdigit() or ch == "-" for ch in t):
            try:
                hits.append(catalog.lookup(self.store.conn, t))
            except (UnknownProduct, BadInput):
                pass
            if not hits:
                digits = t.replace("-", "")
                rows = self.store.conn.execute(
                    "SELECT * FROM products WHERE ndc_digits LIKE ? OR gtin LIKE ? "
                    "ORDER BY name LIMIT ?", (f"{digits}%", f"%{digits}%", limit)).fetchall()
                hits = [catalog.Product.from_row(r) for r in rows]
        else:
            hits = catalog.search(self.store.conn, t, limit)
        return [self._hit(p) for p in hits]

    def product_from_scan(self, text: str) -> ProductHit:
        return self._hit(gs1.product_for_scan(self.store.conn, self.scan_parser(text)))

    # ---- cart ---------------------------------------------------------------------------------
    def preview(self, changed_line: int | None = None, *,
                decide: bool = True) -> checkout.CartPreview:
        return checkout.preview(self.store.conn, self.dispenser, self.cart, self.user,
                                self.store.clock(), jurisdiction=self.jurisdiction,
                                offline=self.offline, changed_line=changed_line, decide=decide)

    def scan_to_cart(self, text: str) -> checkout.CartPreview:
        users.require(self.user, "sell")
        data = self.scan_parser(text)
        product = gs1.product_for_scan(self.store.conn, data)
        gs1.check_package(data, today=self.store.clock().date())
        line = self.cart.add_scan(product.ndc, data)
        return self.preview(line.line_id)

    def add_to_cart(self, ndc: str, qty: int = 1) -> checkout.CartPreview:
        users.require(self.user, "sell")
        product = catalog.lookup(self.store.conn, ndc)
        line = self.cart.add_product(product.ndc, qty)
        return self.preview(line.line_id)

    def set_qty(self, line_id: int, qty: int) -> checkout.CartPreview:
        self.cart.set_qty(line_id, qty)
        return self.preview(line_id)

    def remove_line(self, line_id: int) -> checkout.CartPreview:
        self.cart.void(self.store, self.user["id"], line_id)
        return self.preview()

    def clear_cart(self) -> checkout.CartPreview:
        self.cart.void(self.store, self.user["id"])
        return self.preview()

    def set_customer(self, purchaser: dict[str, Any] | None, rx_facts: dict[str, Any] | None,
                     extra: dict[str, Any] | None = None) -> checkout.CartPreview:
        """Purchaser / ID capture and register facts that the decision asked for. A purchaser
        with a name and birth date gets their stable patient id, so purchase limits (CMEA,
        C-V 48 h) add up over visits."""
        p = {k: v for k, v in (purchaser or {}).items() if v}
        if p.get("name") and p.get("birth_date") and not p.get("id"):
            p["id"] = rx.known_patient(self.store.conn, self.keys, str(p["name"]),
                                       str(p["birth_date"]))
        self.cart.purchaser = p or None
        self.cart.rx = {k: v for k, v in (rx_facts or {}).items() if v} or None
        self.cart.extra = dict(extra or {})
        return self.preview()

    def pay(self, method: str, tendered: str | None = None,
            reference: str | None = None) -> PaidSale:
        users.require(self.user, "sell")
        if not self.cart.lines:
            raise BadInput("the cart is empty", code="EMPTY_CART")
        pv = self.preview(decide=False)  # totals and line errors; sell() decides
        bad = [ln for ln in pv.lines if ln.error_code]
        if bad:
            raise BadInput(f"{bad[0].name}: {bad[0].error}", code=bad[0].error_code or "BAD_LINE")
        tender = checkout.tender_for(method, pv.total_cents, tendered, reference)
        checkout.change_due(pv.total_cents, tender)  # refuse short cash before selling
        req = self.cart.request(self.user, jurisdiction=self.jurisdiction, offline=self.offline)
        result = checkout.checkout(self.dispenser, req, tender)
        self.cart.clear()
        self.last_sale_id = result.sale.sale_id
        self.last_refund = None
        receipt = self._print(result.sale.sale_id, "receipt")
        drawer = False
        if method == "cash":  # a cash receipt carries the drawer kick; without one, kick alone
            drawer = self._receipt_kicks_drawer() if receipt is not None else self._open_drawer()
        return PaidSale(result.sale.sale_id, fmt(result.sale.total_cents),
                        fmt(result.change_cents), method, receipt, drawer,
                        result.sale.decision.to_json())

    # ---- printing -----------------------------------------------------------------------------
    def _print(self, sale_id: str, kind: str, *, line_no: int | None = None,
               reprint: bool = False, refund_id: str | None = None) -> PrintOutcome | None:
        printer = self.label_printer if kind == "rx_label" else self.receipt_printer
        if printer is None:
            return None
        job = print_queue.job_for_print(self.store, sale_id, kind, line_no=line_no,
                                        reprint=reprint, refund_id=refund_id)
        vault = PhiVault(self.store.conn, self.keys, self.store.clock)
        uid = self.user["id"]

        def patient_name(pid: str) -> str | None:
            return vault.get(pid, uid).get("name")

        fut = print_queue.dispatch(self.store, printer, job,
                                   patient_name=patient_name if kind == "rx_label" else None)
        return PrintOutcome(job.job_id, kind, fut)

    def record_print(self, job_id: str, fut: Future[Any]) -> print_queue.PrintJob:
        return print_queue.record(self.store, job_id, fut)

    def reprint_last(self) -> PrintOutcome | None:
        users.require(self.user, "reprint_receipt")
        if self.last_refund is not None:  # the refund's slip (the one waiting, if it failed)
            sale_id, refund_id = self.last_refund
            return self._print(sale_id, "refund", refund_id=refund_id, reprint=True)
        if self.last_sale_id is None:
            row = self.store.conn.execute(
                "SELECT sale_id FROM sales WHERE user_id = ? ORDER BY created_at DESC LIMIT 1",
                (self.user["id"],)).fetchone()
            if row is None:
                raise NotFound("no sale to reprint yet", code="NOTHING_TO_REPRINT")
            self.last_sale_id = str(row[0])
        return self._print(self.last_sale_id, "receipt", reprint=True)

    def _open_drawer(self) -> bool:
        """True when the drawer opens: by a separate command, or by the kick the receipt
        renderer puts at the top of a cash receipt (a configured drawer pin)."""
        opener = getattr(self.receipt_printer, "open_drawer", None)
        if opener is not None:
            opener()
            return True
        cfg = getattr(self.receipt_printer, "cfg", None)
        return bool(cfg is not None and cfg.printer.drawer_pin)

    def _receipt_kicks_drawer(self) -> bool:
        cfg = getattr(self.receipt_printer, "cfg", None)
        if cfg is None:  # a printer without a layout config: open the drawer by command
            return self._open_drawer()
        return bool(cfg.printer.drawer_pin)

    def open_drawer(self) -> bool:
        users.require(self.user, "sell")
        return self._open_drawer()

    def sale(self, sale_id: str) -> dict[str, Any]:
        rec = sale_record(self.store.conn, sale_id)
        rec["tenders"] = checkout.tenders_for(self.store.conn, sale_id)
        return rec

    # ---- the day ------------------------------------------------------------------------------
    def day_report(self) -> dict[str, Any]:
        """Today's end-of-day report, in the store's time zone."""
        from pharmacy import daybook

        users.require(self.user, "day_report")
        out = daybook.store_day_report(self.store)
        out["text"] = daybook.report_text(out)
        return out

    def print_day_report(self) -> PrintOutcome | None:
        """Today's day report on the receipt printer. Not queued: a report is printed again
        by asking for it again. None without a receipt printer."""
        if self.receipt_printer is None:
            users.require(self.user, "day_report")
            return None
        job, doc = print_queue.day_report_document(self.store, self.day_report())
        return PrintOutcome(job.job_id, "day_report", self.receipt_printer.submit(job, doc))

    # ---- refunds ------------------------------------------------------------------------------
    def refundable(self, sale_id: str) -> dict[str, Any]:
        users.require(self.user, "refund_sale")
        return refunds.refundable(self.store.conn, sale_id, self.store.clock().date())

    def refund(self, sale_id: str, method: str, reason: str, reference: str | None = None,
               restock_sealed: bool = False) -> Refunded:
        """Refund what of a paid sale is not refunded yet (by its id or the end of it a
        receipt prints); sealed OTC units go back on the shelf when ``restock_sealed``. The
        refund slip prints after the refund committed; a cash refund opens the drawer."""
        users.require(self.user, "refund_sale")
        result = refunds.refund(self.store, self.user, sale_id, method=method, reason=reason,
                                reference=reference, restock_sealed=restock_sealed)
        self.last_refund = (result.sale_id, result.refund_id)
        slip = self._print(result.sale_id, "refund", refund_id=result.refund_id)
        drawer = False
        if method == "cash":  # the slip carries the drawer kick; without one, kick alone
            drawer = self._receipt_kicks_drawer() if slip is not None else self._open_drawer()
        return Refunded(result, slip, drawer)

    # ---- prescriptions ------------------------------------------------------------------------
    def rx_queue(self, states: Sequence[str] = rx.OPEN_STATES) -> list[str]:
        users.require(self.user, "read_pickup_essentials")
        return rx.queue(self.store.conn, states)

    def rx_rows(self, fill_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return rx.fill_rows(self.store, self.keys, self.user, fill_ids)

    def rx_intake(self, data: dict[str, Any]) -> rx.RxChanged:
        return rx.intake(self.store, self.keys, self.user, data)

    def rx_review(self, fill_id: str) -> dict[str, Any]:
        """What the pharmacist sees to verify: the fill, interaction alerts and the products
        that may be dispensed instead (when DAW allows)."""
        users.require(self.user, "verify_rx")
        row = rx.fill_rows(self.store, self.keys, self.user, [fill_id]).get(fill_id)
        if row is None:
            raise NotFound(f"no fill {fill_id}", code="UNKNOWN_FILL")
        current = rx.active_medications(self.store.conn, row["patient_id"],
                                        self.store.clock().date(), exclude_rx=row["rx_id"])
        alerts = integrations.interaction_alerts(self.store, row["rx_ndc"], current)
        allowed = int(row["daw"]) not in rx.NO_SUBSTITUTION_DAW
        subs = (integrations.substitution_choices(self.store, row["rx_ndc"], self.jurisdiction)
                if allowed else {"available": True, "equivalents": [],
                                 "note": f"DAW {row['daw']}: substitution not allowed"})
        current_names = [integrations.product_label(self.store, n) for n in current]
        return {"fill": row, "alerts": alerts, "alerts_available": alerts is not None,
                "current_medications": current_names, "substitution": subs,
                "substitution_allowed": allowed}

    def _substitution_check(self, daw: int) -> rx.SubstitutionChecker:
        def check(prescribed: catalog.Product, chosen: catalog.Product) -> None:
            reasons = integrations.substitution_reasons(self.store, prescribed.ndc, chosen.ndc,
                                                        daw, self.jurisdiction)
            if reasons is None:
                rx.basic_equivalence(prescribed, chosen)
                return
            deny = [r for r in reasons if r.get("severity") == "deny"]
            if deny:
                cite = f" [{deny[0]['citation']}]" if deny[0].get("citation") else ""
                raise rx.RxRefused(deny[0]["message"] + cite, code=deny[0]["code"])
        return check

    def rx_verify(self, fill_id: str, *, dispense_ndc: str | None = None,
                  daw_dispensed: int | None = None, acknowledged: Sequence[str] = (),
                  override_reason: str | None = None) -> rx.RxChanged:
        users.require(self.user, "verify_rx")
        # the alerts alone (no second read of the patient record the review showed)
        def checker(candidate_ndc: str, current_ndcs: Sequence[str]) -> list[dict[str, Any]]:
            return integrations.interaction_alerts(self.store, candidate_ndc,
                                                   current_ndcs) or []

        alerts = rx.interaction_alerts(self.store, fill_id, checker)
        daw = (rx.prescribed_daw(self.store, fill_id) if daw_dispensed is None
               else int(daw_dispensed))
        return rx.verify(self.store, self.user, fill_id, dispense_ndc=dispense_ndc,
                         daw_dispensed=daw_dispensed, alerts=alerts or (),
                         acknowledged=acknowledged, override_reason=override_reason,
                         substitution_check=self._substitution_check(daw))

    def rx_fill(self, fill_id: str, scan: str) -> rx.RxChanged:
        res = rx.fill(self.dispenser, self.keys, self.user, fill_id, scan,
                      jurisdiction=self.jurisdiction, offline=self.offline)
        return res.changed

    def rx_label(self, fill_id: str) -> tuple[rx.RxChanged, dict[str, Any], PrintOutcome | None]:
        changed, data = rx.label(self.store, self.keys, self.user, fill_id)
        sale_id = self.store.conn.execute("SELECT sale_id FROM fills WHERE fill_id = ?",
                                          (fill_id,)).fetchone()[0]
        out = self._print(sale_id, "rx_label", line_no=1, reprint=data["copy"] > 1)
        return changed, data, out

    def rx_will_call(self, fill_id: str, bin_: str) -> rx.RxChanged:
        return rx.to_will_call(self.store, self.user, fill_id, bin_)

    def rx_pickup(self, fill_id: str, counseling: str, method: str = "cash",
                  tendered: str | None = None, reference: str | None = None) -> rx.RxChanged:
        total = rx.sale_total_cents(self.store.conn, fill_id)
        tender = (None if total is None
                  else checkout.tender_for(method, total, tendered, reference))
        changed = rx.pickup(self.store, self.user, fill_id, counseling=counseling,
                            tender=tender)
        if tender is not None:  # the pickup's receipt (and, for cash, the drawer)
            sale_id = self.store.conn.execute("SELECT sale_id FROM fills WHERE fill_id = ?",
                                              (fill_id,)).fetchone()[0]
            changed.details["receipt"] = self._print(sale_id, "receipt")
        return changed

    def rx_cancel(self, fill_id: str, reason: str) -> rx.RxChanged:
        return rx.cancel(self.store, self.user, fill_id, reason)

    def rx_return_to_stock(self, fill_id: str, reason: str) -> rx.RxChanged:
        return rx.return_to_stock(self.store, self.user, fill_id, reason)

    def rx_refill(self, fill_id: str) -> rx.RxChanged:
        rx_id = self.store.conn.execute("SELECT rx_id FROM fills WHERE fill_id = ?",
                                        (fill_id,)).fetchone()
        if rx_id is None:
            raise NotFound(f"no fill {fill_id}", code="UNKNOWN_FILL")
        return rx.refill(self.store, self.user, str(rx_id[0]))

    def rx_find(self, rx_number: str) -> str:
        users.require(self.user, "read_pickup_essentials")
        return rx.find_fill(self.store.conn, rx_number)

    def med_history(self, fill_id: str) -> dict[str, Any]:
        users.require(self.user, "read_med_history")
        pid = self.store.conn.execute(
            "SELECT p.patient_id FROM fills f JOIN prescriptions p ON p.rx_id = f.rx_id "
            "WHERE f.fill_id = ?", (fill_id,)).fetchone()
        if pid is None:
            raise NotFound(f"no fill {fill_id}", code="UNKNOWN_FILL")
        return rx.med_history(self.store, self.keys, self.user, str(pid[0]))

    def break_glass(self, action: str, reason: str) -> dict[str, Any]:
        """Emergency access to ``action`` for the signed-in person (pharmacy.users)."""
        if self.session is None:
            raise users.PermissionDenied("sign in first", code="HIPAA_UNIQUE_USER")
        return users.break_glass(self.store, self.session, action, reason)

    # ---- inventory ----------------------------------------------------------------------------
    def batch_ids(self, text: str = "", status: str = "all") -> list[str]:
        today = self.store.clock().date().isoformat()
        where, params = [], []
        t = catalog.search_text(text)
        if t:
            where.append("(p.name LIKE ? OR b.lot LIKE ? OR b.ndc LIKE ? OR p.gtin = ?)")
            params += [f"%{t}%", f"{t}%", f"{t}%", t]
        if status == "expired":
            where.append("b.status = 'active' AND b.expiry < ?")
            params.append(today)
        elif status == "expiring":
            where.append("b.status = 'active' AND b.expiry >= ? AND b.expiry <= date(?, "
                         "'+90 days')")
            params += [today, today]
        elif status in ("active", "quarantined", "recalled"):
            where.append("b.status = ?")
            params.append(status)
        elif status == "controlled":
            where.append("p.dea_schedule IS NOT NULL")
        sql = ("SELECT b.batch_id FROM batches b JOIN products p ON p.ndc = b.ndc "
               + ("WHERE " + " AND ".join(where) + " " if where else "")
               + "ORDER BY b.expiry, p.name, b.lot")
        return [str(r[0]) for r in self.store.conn.execute(sql, params)]

    def batch_rows(self, batch_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """`pharmos stock` rows (inventory.batch_row) plus what the batch table shows."""
        if not batch_ids:
            return {}
        today = self.store.clock().date()
        marks = ",".join("?" * len(batch_ids))
        rows = self.store.conn.execute(
            "SELECT b.batch_id, b.ndc, p.name, p.strength, b.lot, b.expiry, b.status, "
            "b.status_reason, p.dea_schedule, p.cmea, p.india_schedule, b.supplier, "
            "b.unit_cost_cents FROM batches b JOIN products p ON p.ndc = b.ndc "
            f"WHERE b.batch_id IN ({marks})", tuple(batch_ids)).fetchall()
        out = {}
        for r in rows:
            row = inventory.batch_row(
                r["batch_id"], r["ndc"], r["name"], r["lot"], r["expiry"], r["status"],
                r["dea_schedule"], r["india_schedule"], r["cmea"], r["unit_cost_cents"],
                inventory.on_hand(self.store.conn, r["batch_id"]), today)
            out[r["batch_id"]] = {
                **row, "strength": r["strength"], "reason": r["status_reason"],
                "supplier": r["supplier"],
                "days_left": (inventory.parse_expiry(r["expiry"]) - today).days,
                "schedule": r["dea_schedule"] or ("PSE" if r["cmea"] else r["india_schedule"]),
            }
        return out

    def receive_draft(self, text: str) -> dict[str, Any]:
        """A scanned case or package to receive: product, lot, expiry, serial."""
        users.require(self.user, "receive_stock")
        data = self.scan_parser(text)
        p = gs1.product_for_scan(self.store.conn, data)
        return {"ndc": p.ndc, "name": p.name, "strength": p.strength, "gtin": data.gtin,
                "lot": data.lot, "expiry": None if data.expiry is None
                else data.expiry.isoformat(), "serial": data.serial,
                "schedule": checkout.schedule_badge(p), "controlled": bool(p.dea_schedule)}

    def receive(self, items: list[dict[str, Any]], supplier: str | None = None,
                reference: str | None = None) -> inventory.StockChanged:
        users.require(self.user, "receive_stock")
        return inventory.receive(self.store, items, user_id=self.user["id"], supplier=supplier,
                                 reference=reference)

    def set_lot_status(self, lot: str, ndc: str | None, status: str,
                       reason: str) -> inventory.StockChanged:
        action = {"quarantined": "quarantine_lot", "recalled": "recall_lot",
                  "active": "release_lot"}.get(status)
        if action is None:
            raise BadInput(f"status {status!r} is not quarantined, recalled or active",
                           code="BAD_STATUS")
        users.require(self.user, action)
        if not reason.strip():
            raise BadInput("give a reason (recall notice, damage, ...)", code="REASON_REQUIRED")
        return inventory.set_status(self.store, lot, status, ndc=ndc, reason=reason,
                                    user_id=self.user["id"])

    def adjust(self, ndc: str, lot: str, delta: int, reason: str,
               note: str | None = None) -> inventory.StockChanged:
        users.require(self.user, "adjust_stock")
        return inventory.adjust(self.store, ndc, lot, delta, reason, user_id=self.user["id"],
                                note=note)

    def stocktake(self, counts: list[dict[str, Any]]) -> inventory.StockChanged:
        users.require(self.user, "stocktake")
        return inventory.stocktake(self.store, counts, user_id=self.user["id"])

    def register_ids(self) -> list[tuple[str, int]]:
        users.require(self.user, "view_register")
        rows = self.store.conn.execute(
            "SELECT replica_id, seq FROM register ORDER BY created_at DESC, seq DESC").fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def register_rows(self, keys: Sequence[tuple[str, int]]
                      ) -> dict[tuple[str, int], dict[str, Any]]:
        out: dict[tuple[str, int], dict[str, Any]] = {}
        for (replica, seq), r in register.entries(self.store.conn, keys).items():
            body = r["body"] if isinstance(r["body"], dict) else {}  # verify names a bad one
            out[(replica, seq)] = {
                "replica": replica[-4:], "seq": seq, "at": r["created_at"][:19].replace("T", " "),
                "kind": r["kind"], "ndc": r["ndc"], "name": r["name"] or body.get("name"),
                "qty": r["qty"], "lot": body.get("lot"), "schedule": body.get("schedule"),
                "user": body.get("user_id"), "hash": r["hash"][:12],
            }
        return out

    def register_verify(self) -> register.VerifyResult:
        users.require(self.user, "view_register")
        return register.verify(self.store.conn)

    def reorder_suggestions(self) -> dict[str, Any]:
        return integrations.reorder_suggestions(self.store)

    # ---- status -------------------------------------------------------------------------------
    def status(self) -> Status:
        sync = integrations.sync_status(self.store)
        pol = integrations.policy_status(self.store, self.gate)
        now = self.store.clock()
        if sync.online is not None:
            self.offline = not sync.online
        queued = print_queue.pending_count(self.store.conn)
        if self._pmp is None or now - self._pmp[0] >= PMP_EVERY or now < self._pmp[0]:
            self._pmp = (now, integrations.pmp_status(self.store))
        pmp = self._pmp[1]
        return Status(
            None if self.session is None else self.session.user, sync.online, sync.available,
            sync.last_success, sync.last_error, sync.pending_outbox, pol.engine,
            pol.bundle_version, None if pol.offline_until is None else
            pol.offline_until.isoformat(), pol.hours_left(now), queued, pol.jurisdiction,
            0 if pmp is None else pmp.unreported, None if pmp is None else pmp.alert)
