"""The sale screen: scan or search -> cart with allocated lots -> compliance inline ->
customer / ID capture when the rules ask -> tender (cash with change, card external) ->
receipt -> cash drawer."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from pharmacy.checkout import CartPreview
from pharmacy.money import fmt
from terminal.counter import PaidSale, PrintOutcome, ProductHit, Refunded
from terminal.models.tables import CartModel, SearchModel
from terminal.screens.base import Screen
from terminal.screens.widgets import (
    Action,
    DecisionPanel,
    form,
    line,
    muted,
    primary,
    scroll,
    table,
)

ID_TYPES = ("Driver licence", "State ID", "Passport", "Military ID", "Aadhaar", "Other")


class SaleScreen(Screen):
    title = "Sale"

    def __init__(self, win: Any) -> None:
        super().__init__(win)
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.setSpacing(12)

        # ---- left: search, results, cart, line editor ----
        left = QVBoxLayout()
        self.search = line("Scan a package, or type a name / NDC / GTIN and press Enter   (F5)",
                           "search")
        self.search.returnPressed.connect(self.do_search)
        self.results_model = SearchModel()
        self.results = table(self.results_model, stretch=0)
        self.results.setMaximumHeight(220)
        self.results.activated.connect(lambda idx: self.add_hit(idx.row()))
        self.results.hide()
        self.cart_model = CartModel()
        self.cart = table(self.cart_model, stretch=(1, 3))
        self.cart.selectionModel().currentRowChanged.connect(lambda *_: self._line_selected())
        edit = QHBoxLayout()
        self.line_label = muted("Select a line to change its quantity (F6) or remove it (F7).")
        self.qty = line("qty", "qty")
        self.qty.setValidator(QIntValidator(1, 9999))
        self.qty.setMaximumWidth(120)
        self.qty.returnPressed.connect(self.apply_qty)
        edit.addWidget(self.line_label, 1)
        edit.addWidget(QLabel("Quantity"))
        edit.addWidget(self.qty)
        left.addWidget(self.search)
        left.addWidget(self.results)
        left.addWidget(self.cart, 1)
        left.addLayout(edit)

        # ---- right: totals, decision, customer, tender ----
        right = QVBoxLayout()
        right.setSpacing(10)
        totals = QGroupBox("Total")
        tg = QGridLayout(totals)
        self.subtotal = QLabel("0.00")
        self.tax = QLabel("0.00")
        self.total = QLabel("0.00")
        self.total.setObjectName("total")
        for lab in (self.subtotal, self.tax, self.total):
            lab.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tg.addWidget(QLabel("Subtotal"), 0, 0)
        tg.addWidget(self.subtotal, 0, 1)
        tg.addWidget(QLabel("Tax"), 1, 0)
        tg.addWidget(self.tax, 1, 1)
        tg.addWidget(self.total, 2, 0, 1, 2)
        self.decision = DecisionPanel()

        self.customer = QGroupBox("Customer · ID · register  (F8)")
        cf = form(self.customer)
        self.c_name = line("as on the photo ID")
        self.c_address = line("street, city, state, ZIP")
        self.c_birth = line("YYYY-MM-DD")
        self.c_id_type = QComboBox()
        self.c_id_type.addItems(ID_TYPES)
        self.c_id_number = line("ID number")
        self.c_signature = QCheckBox("Purchaser signed the logbook")
        self.c_prescriber = line("prescriber name (Schedule H/H1/X)")
        self.c_prescriber_address = line("prescriber address")
        self.c_rx_ref = line("prescription reference")
        self.c_duplicate = QCheckBox("Schedule X duplicate copy retained")
        cf.addRow("Name", self.c_name)
        cf.addRow("Address", self.c_address)
        cf.addRow("Born", self.c_birth)
        cf.addRow("ID type", self.c_id_type)
        cf.addRow("ID no.", self.c_id_number)
        cf.addRow("", self.c_signature)
        cf.addRow("Prescriber", self.c_prescriber)
        cf.addRow("Address", self.c_prescriber_address)
        cf.addRow("Rx ref.", self.c_rx_ref)
        cf.addRow("", self.c_duplicate)
        cf.addRow(primary("Apply  (Enter)", self.apply_customer))
        for w in (self.c_name, self.c_address, self.c_birth, self.c_id_number,
                  self.c_prescriber, self.c_prescriber_address, self.c_rx_ref):
            w.returnPressed.connect(self.apply_customer)
        self.customer.hide()

        tender = QGroupBox("Payment")
        tf = form(tender)
        self.cash = line("cash tendered (F9, Enter pays)", "cash")
        self.cash.returnPressed.connect(lambda: self.pay("cash"))
        self.card_ref = line("card terminal approval code (F10, Enter)", "card")
        self.card_ref.returnPressed.connect(lambda: self.pay("card"))
        self.change = QLabel("")
        self.change.setObjectName("big")
        self.last = muted("")
        tf.addRow("Cash", self.cash)
        tf.addRow("Card", self.card_ref)
        tf.addRow(self.change)
        tf.addRow(self.last)

        self.refund_box = QGroupBox("Refund a paid sale  (Shift+F10)")
        rf = form(self.refund_box)
        self.r_sale = line("sale number from the receipt (Enter shows it)", "refund sale")
        self.r_sale.returnPressed.connect(self.show_refundable)
        self.r_summary = muted("")
        self.r_reason = line("reason (required)", "refund reason")
        self.r_method = QComboBox()
        self.r_method.addItems(("cash", "card"))
        self.r_reference = line("card refund reference")
        self.r_restock = QCheckBox("Sealed OTC packs go back on the shelf")
        rf.addRow("Sale", self.r_sale)
        rf.addRow(self.r_summary)
        rf.addRow("Reason", self.r_reason)
        rf.addRow("Pay back by", self.r_method)
        rf.addRow("Card ref.", self.r_reference)
        rf.addRow("", self.r_restock)
        rf.addRow(primary("Refund  (Enter)", self.do_refund))
        for w in (self.r_reason, self.r_reference):
            w.returnPressed.connect(self.do_refund)
        self.refund_box.hide()

        self.day_box = QGroupBox("Day report  (Shift+F11)")
        dl = QVBoxLayout(self.day_box)
        self.day_text = QLabel("")
        self.day_text.setObjectName("mono")
        self.day_text.setStyleSheet("font-family: monospace;")
        self.day_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dl.addWidget(self.day_text)
        self.day_print = primary("Print  (Shift+F11 again)", self.print_day_report)
        dl.addWidget(self.day_print)
        self.day_box.hide()

        right.addWidget(totals)
        right.addWidget(self.decision)
        right.addWidget(self.customer)
        right.addWidget(self.refund_box)
        right.addWidget(self.day_box)
        right.addWidget(tender)
        right.addStretch(1)
        rw = QWidget()
        rw.setLayout(right)
        root.addLayout(left, 1)
        root.addWidget(scroll(rw, 490))
        self.preview: CartPreview | None = None
        self.paid: PaidSale | None = None
        self.print_status = ""

    # ---- actions ----------------------------------------------------------------------------
    def fkey_actions(self) -> list[Action]:
        has = bool(self.preview and self.preview.lines)
        return [
            Action("F5", "Search", self.focus_search),
            Action("F6", "Quantity", self.focus_qty, has),
            Action("F7", "Remove line", self.remove_line, has),
            Action("F8", "Customer / ID", self.toggle_customer),
            Action("F9", "Cash", lambda: self.pay_key("cash"), has),
            Action("F10", "Card", lambda: self.pay_key("card"), has),
            Action("Shift+F7", "Clear cart", self.clear_cart, has),
            Action("Shift+F9", "Reprint receipt", self.reprint),
            Action("Shift+F10", "Refund", self.toggle_refund, self.can("refund_sale")),
            Action("Shift+F11", "Day report", self.toggle_day_report, self.can("day_report")),
        ]

    def on_enter(self) -> None:
        self.search.setFocus()

    def reset(self) -> None:
        self.preview = None
        self.cart_model.set_preview(None)
        self.results_model.set_hits([])
        self.results.hide()
        self.decision.show_decision(None)
        self._totals(None)
        self._clear_customer()
        self.change.clear()
        self.last.clear()
        self.search.clear()

    # ---- scanning and search ----------------------------------------------------------------
    def on_scan(self, text: str) -> None:
        self.db(self.counter.scan_to_cart, text, on_done=self.show_preview)

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def do_search(self) -> None:
        text = self.search.text().strip()
        if not text:
            return
        self.db(self.counter.search, text, on_done=lambda hits: self._hits(text, hits))

    def _hits(self, text: str, hits: list[ProductHit]) -> None:
        if len(hits) == 1 and text.replace("-", "").isdigit():
            self.search.clear()
            self.db(self.counter.add_to_cart, hits[0].ndc, on_done=self.show_preview)
            return
        self.results_model.set_hits(hits)
        self.results.setVisible(bool(hits))
        if hits:
            self.results.selectRow(0)
            self.results.setFocus()
        else:
            self.info(f"Nothing in the catalog matches “{text}”.")

    def add_hit(self, row: int) -> None:
        hit = self.results_model.hit_at(row)
        if hit is None:
            return
        self.results.hide()
        self.search.clear()
        self.search.setFocus()
        self.db(self.counter.add_to_cart, hit.ndc, on_done=self.show_preview)

    # ---- cart ---------------------------------------------------------------------------------
    def show_preview(self, pv: CartPreview) -> None:
        self.preview = pv
        self.paid = None
        self.change.clear()
        self.cart_model.set_preview(pv)
        if pv.changed_line is not None:
            row = self.cart_model.row_of_line(pv.changed_line)
            if row >= 0:
                self.cart.selectRow(row)
        self._totals(pv)
        self.decision.show_decision(pv.decision)
        if pv.needs_capture:
            self.customer.show()
            self._focus_first_empty()
        self.refresh_actions()

    def _totals(self, pv: CartPreview | None) -> None:
        self.subtotal.setText(fmt(pv.subtotal_cents) if pv else "0.00")
        self.tax.setText(fmt(pv.tax_cents) if pv else "0.00")
        self.total.setText(fmt(pv.total_cents) if pv else "0.00")

    def _selected_line(self) -> int | None:
        idx = self.cart.currentIndex()
        ln = self.cart_model.line_at(idx.row()) if idx.isValid() else None
        return None if ln is None else ln.line_id

    def _line_selected(self) -> None:
        idx = self.cart.currentIndex()
        ln = self.cart_model.line_at(idx.row()) if idx.isValid() else None
        if ln is not None:
            self.line_label.setText(f"Line {idx.row() + 1}: {ln.name}")
            self.qty.setText(str(ln.qty))

    def focus_qty(self) -> None:
        if self._selected_line() is None and self.cart_model.rowCount():
            self.cart.selectRow(self.cart_model.rowCount() - 1)
        self.qty.setFocus()
        self.qty.selectAll()

    def apply_qty(self) -> None:
        line_id = self._selected_line()
        if line_id is None or not self.qty.text():
            return
        self.db(self.counter.set_qty, line_id, int(self.qty.text()), on_done=self.show_preview)
        self.search.setFocus()

    def remove_line(self) -> None:
        line_id = self._selected_line()
        if line_id is None:
            return
        self.db(self.counter.remove_line, line_id, on_done=self.show_preview)

    def clear_cart(self) -> None:
        self._clear_customer()
        self.db(self.counter.clear_cart, on_done=self.show_preview)

    # ---- customer / ID capture --------------------------------------------------------------
    def toggle_customer(self) -> None:
        self.customer.setVisible(not self.customer.isVisible())
        if self.customer.isVisible():
            self._focus_first_empty()

    # ---- the day -----------------------------------------------------------------------------
    def toggle_day_report(self) -> None:
        """First press: show today's report; second press: print it and close."""
        if self.day_box.isVisible():
            self.print_day_report()
            self.day_box.hide()
            return
        self.db(self.counter.day_report, on_done=self._day_report)

    def _day_report(self, out: dict[str, Any]) -> None:
        self.day_text.setText(out["text"])
        self.day_box.show()

    def print_day_report(self) -> None:
        def sent(out: PrintOutcome | None) -> None:
            if out is None:
                self.win.errors.show_warning("no receipt printer is configured")
                return

            def finished(fut: Future[Any]) -> None:
                err = fut.exception()
                self.tasks.post(lambda: self.win.errors.show_warning(
                    f"[{getattr(err, 'code', 'PRINT_FAILED')}] the day report did not "
                    f"print: {err}") if err else self.info("Day report printed"))

            out.future.add_done_callback(finished)

        self.db(self.counter.print_day_report, on_done=sent)

    # ---- refunds -----------------------------------------------------------------------------
    def toggle_refund(self) -> None:
        self.refund_box.setVisible(not self.refund_box.isVisible())
        if not self.refund_box.isVisible():
            return
        if not self.r_sale.text() and self.paid is not None:
            self.r_sale.setText(self.paid.sale_id[-12:])
        self.r_summary.clear()
        self.r_sale.setFocus()
        self.r_sale.selectAll()
        if self.r_sale.text():
            self.show_refundable()

    def show_refundable(self) -> None:
        text = self.r_sale.text().strip()
        if text:
            self.db(self.counter.refundable, text, on_done=self._refundable)

    def _refundable(self, out: dict[str, Any]) -> None:
        lines = [f"{ln['refundable']} of {ln['qty']} × {ln['name']}"
                 + ("" if ln["restockable"] else "  (not restocked)")
                 for ln in out["lines"] if ln["refundable"]]
        paid = (f"  — paid by {' and '.join(out['paid_by'])}" if out["paid"]
                else "  — not paid: nothing to refund")
        if len(out["paid_by"]) == 1:  # a refund goes back the way the sale was paid
            self.r_method.setCurrentText(out["paid_by"][0])
        self.r_summary.setText(
            f"Total {out['total']}, refunded {out['refunded']}{paid}\n" + "\n".join(lines))
        self.r_reason.setFocus()

    def do_refund(self) -> None:
        method = self.r_method.currentText()
        self.db(self.counter.refund, self.r_sale.text().strip(), method,
                self.r_reason.text().strip(),
                self.r_reference.text().strip() if method == "card" else None,
                self.r_restock.isChecked(), on_done=self._refunded)

    def _refunded(self, done: Refunded) -> None:
        result = done.result
        back = sum(q for ln in result.lines for *_, q in ln.restocked)
        self.info(f"Refunded {fmt(result.total_cents)} by {result.method}"
                  + (f"; {back} back on the shelf" if back else ""))
        self.last.setText(f"Refund {result.refund_id[-12:]} · sale {result.sale_id[-12:]} · "
                          f"{fmt(result.total_cents)}"
                          + (" · refund slip printing…" if done.slip is not None else ""))
        if done.slip is not None:
            self.watch_print(done.slip)
        for w in (self.r_sale, self.r_reason, self.r_reference):
            w.clear()
        self.r_restock.setChecked(False)
        self.r_summary.clear()
        self.refund_box.hide()
        self.search.setFocus()
        self.win.refresh_status()

    def _focus_first_empty(self) -> None:
        for w in (self.c_name, self.c_address, self.c_birth, self.c_id_number):
            if not w.text():
                w.setFocus()
                return

    def _clear_customer(self) -> None:
        for w in (self.c_name, self.c_address, self.c_birth, self.c_id_number,
                  self.c_prescriber, self.c_prescriber_address, self.c_rx_ref):
            w.clear()
        self.c_signature.setChecked(False)
        self.c_duplicate.setChecked(False)
        self.customer.hide()

    def customer_request(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        purchaser: dict[str, Any] = {
            "name": self.c_name.text().strip(), "address": self.c_address.text().strip(),
            "birth_date": self.c_birth.text().strip(),
            "id_document": self.c_id_number.text().strip(),
            "id_type": self.c_id_type.currentText() if self.c_id_number.text().strip() else "",
            "signature": self.c_signature.isChecked(),
        }
        rx_facts: dict[str, Any] = {}
        if self.c_prescriber.text().strip() or self.c_rx_ref.text().strip():
            rx_facts = {"rx_number": self.c_rx_ref.text().strip(),
                        "prescriber": {"name": self.c_prescriber.text().strip(),
                                       "address": self.c_prescriber_address.text().strip()},
                        "duplicate_retained": self.c_duplicate.isChecked()}
        extra = {"signature_captured": self.c_signature.isChecked()}
        return purchaser, rx_facts, extra

    def apply_customer(self) -> None:
        purchaser, rx_facts, extra = self.customer_request()
        self.db(self.counter.set_customer, purchaser, rx_facts, extra, on_done=self.show_preview)
        self.search.setFocus()

    # ---- payment ------------------------------------------------------------------------------
    def pay_key(self, method: str) -> None:
        """First press: focus the payment field; second press (or Enter there): pay."""
        field = self.cash if method == "cash" else self.card_ref
        if field.hasFocus():
            self.pay(method)
            return
        if method == "cash" and not self.cash.text() and self.preview:
            self.cash.setText(fmt(self.preview.total_cents))
        field.setFocus()
        field.selectAll()

    def pay(self, method: str) -> None:
        tendered = self.cash.text().strip() if method == "cash" else None
        ref = self.card_ref.text().strip() if method == "card" else None
        self.db(self.counter.pay, method, tendered, ref, on_done=self.paid_sale)

    def paid_sale(self, paid: PaidSale) -> None:
        self.paid = paid
        self.preview = None
        self.cart_model.set_preview(None)
        self._totals(None)
        self.decision.show_decision(None)
        self.cash.clear()
        self.card_ref.clear()
        self._clear_customer()
        if paid.method == "cash":
            self.change.setText(f"Change due  {paid.change}")
        else:
            self.change.setText(f"Card  {paid.total}")
        self.last.setText(f"Sale {paid.sale_id[-12:]} · total {paid.total} · receipt printing…")
        self.win.errors.show_info(
            f"Sale complete — {paid.method} {paid.total}"
            + (f", change {paid.change}" if paid.method == "cash" else ""))
        self.search.setFocus()
        self.refresh_actions()
        if paid.receipt is not None:
            self.watch_print(paid.receipt)
        self.win.refresh_status()

    def watch_print(self, out: PrintOutcome) -> None:
        fut: Future[Any] = out.future

        def finished(_f: Future[Any]) -> None:
            self.tasks.post(lambda: self.db(self.counter.record_print, out.job_id, fut,
                                            on_done=self._printed))

        fut.add_done_callback(finished)

    def _printed(self, job: Any) -> None:
        if job.status == "done":
            self.print_status = "printed"
            self.last.setText(self.last.text().replace(" printing…", " printed"))
        else:
            self.print_status = job.error_code or "failed"
            self.last.setText(self.last.text().replace(
                " printing…", f" NOT printed ({job.error_code})"))
            what = ("the refund is saved; Shift+F9 prints its slip" if job.kind == "refund"
                    else "the sale is saved; reprint with Shift+F9")
            self.win.errors.show_warning(
                f"[{job.error_code}] {job.error_message} — {what} when the printer is back.")
        self.win.refresh_status()

    def reprint(self) -> None:
        def done(out: PrintOutcome | None) -> None:
            if out is not None:
                self.last.setText("Reprint: refund slip printing…" if out.kind == "refund"
                                  else "Reprint: receipt printing…")
                self.watch_print(out)

        self.db(self.counter.reprint_last, on_done=done)
