"""Inventory: receive by scanning the GS1 DataMatrix, batches coloured by expiry,
quarantine / recall / release by lot, adjustments with reasons, stocktake, the controlled
register with its chain status, and reorder suggestions."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QIntValidator, QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from pharmacy.inventory import ADJUST_REASONS, StockChanged
from terminal.models.tables import COLOURS, BatchModel, RegisterModel, ReorderModel
from terminal.screens.base import Screen
from terminal.screens.widgets import (
    Action,
    esc,
    form,
    heading,
    line,
    muted,
    primary,
    scroll,
    table,
)

STATUS_FILTERS = (("All batches", "all"), ("Active", "active"), ("Expiring ≤ 90 days",
                  "expiring"), ("Expired", "expired"), ("Quarantined", "quarantined"),
                  ("Recalled", "recalled"), ("Controlled", "controlled"))


class InventoryScreen(Screen):
    title = "Inventory"

    def __init__(self, win: Any) -> None:
        super().__init__(win)
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        self.tabs = QTabWidget()
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.currentChanged.connect(lambda _i: self._tab_changed())
        root.addWidget(self.tabs)

        # ---- batches tab ----
        bt = QWidget()
        bl = QHBoxLayout(bt)
        left = QVBoxLayout()
        filt = QHBoxLayout()
        self.filter = line("filter: product, lot, NDC or scan   (Shift+F5)", "filter")
        self.filter.returnPressed.connect(self.reload)
        self.status_box = QComboBox()
        for label, key in STATUS_FILTERS:
            self.status_box.addItem(label, key)
        self.status_box.currentIndexChanged.connect(lambda _i: self.reload())
        filt.addWidget(self.filter, 1)
        filt.addWidget(self.status_box)
        legend = QHBoxLayout()
        for key, text in (("expired", "expired"), ("exp30", "≤ 30 days"), ("exp90", "≤ 90 days"),
                          ("quarantined", "quarantined"), ("recalled", "recalled")):
            lab = QLabel(f"  {text}  ")
            bg, fg = COLOURS[key]
            lab.setStyleSheet(f"background: {bg}; color: {fg}; border-radius: 3px;"
                              "font-size: 13px; padding: 2px;")
            legend.addWidget(lab)
        legend.addStretch(1)
        self.batch_model = BatchModel(self.tasks, self._fetch_batches)
        self.batches = table(self.batch_model, stretch=0)
        self.batches.selectionModel().currentRowChanged.connect(lambda *_: self._batch_selected())
        self.batch_model.dataChanged.connect(lambda *_: self._batch_selected(refresh_only=True))
        left.addLayout(filt)
        left.addLayout(legend)
        left.addWidget(self.batches, 1)
        self.count = muted("")
        left.addWidget(self.count)
        self.stack = QStackedWidget()
        self.stack.setFixedWidth(470)
        self.pages: dict[str, QWidget] = {}
        self._build_details()
        self._build_receive()
        self._build_status()
        self._build_adjust()
        self._build_stocktake()
        bl.addLayout(left, 1)
        bl.addWidget(self.stack)
        self.tabs.addTab(bt, "Batches")

        # ---- register tab ----
        rt = QWidget()
        rl = QVBoxLayout(rt)
        self.chain = QLabel("Chain not checked yet — Shift+F9 verifies it.")
        self.chain.setObjectName("big")
        self.register_model = RegisterModel(self.tasks, self._fetch_register)
        self.register = table(self.register_model, stretch=3)
        rl.addWidget(self.chain)
        rl.addWidget(self.register, 1)
        self.tabs.addTab(rt, "Controlled register")

        # ---- reorder tab ----
        ot = QWidget()
        ol = QVBoxLayout(ot)
        self.reorder_note = muted("")
        self.reorder_model = ReorderModel()
        self.reorder = table(self.reorder_model, stretch=3)
        ol.addWidget(self.reorder_note)
        ol.addWidget(self.reorder, 1)
        self.tabs.addTab(ot, "Reorder suggestions")
        self.mode = "details"
        self.received: list[str] = []
        self.chain_ok: bool | None = None

    # ---- pages ----------------------------------------------------------------------------------
    def _page(self, name: str, w: QWidget) -> None:
        area = scroll(w)
        self.pages[name] = area
        self.stack.addWidget(area)

    def _build_details(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.details = QLabel("Select a batch. F5 receives stock by scanning the DataMatrix.")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.details)
        lay.addStretch(1)
        self._page("details", w)

    def _build_receive(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Receive: scan each carton's DataMatrix"))
        g = QGroupBox("Batch")
        f = form(g)
        self.r_product = QLabel("—")
        self.r_product.setWordWrap(True)
        self.r_ndc = line("NDC or GTIN")
        self.r_lot = line("lot (AI 10)")
        self.r_expiry = line("YYYY-MM-DD (AI 17)")
        self.r_serial = muted("")
        self.r_qty = line("units received", "r_qty")
        self.r_qty.setValidator(QIntValidator(1, 10_000_000))
        self.r_supplier = line("supplier")
        self.r_reference = line("invoice / delivery note")
        self.r_cost = line("unit cost, e.g. 0.12")
        self.r_order_form = line("DEA 222 / CSOS order number (C-II)")
        f.addRow("Product", self.r_product)
        f.addRow("NDC", self.r_ndc)
        f.addRow("Lot", self.r_lot)
        f.addRow("Expiry", self.r_expiry)
        f.addRow("Serial", self.r_serial)
        f.addRow("Quantity", self.r_qty)
        f.addRow("Supplier", self.r_supplier)
        f.addRow("Reference", self.r_reference)
        f.addRow("Unit cost", self.r_cost)
        f.addRow("Order form", self.r_order_form)
        for e in (self.r_qty, self.r_supplier, self.r_reference, self.r_cost,
                  self.r_order_form):
            e.returnPressed.connect(self.confirm_receive)
        self.r_log = muted("")
        lay.addWidget(g)
        lay.addWidget(primary("Receive  (F5 / Enter)", self.confirm_receive))
        lay.addWidget(self.r_log)
        lay.addStretch(1)
        self._page("receive", w)

    def _build_status(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.s_head = heading("Lot status")
        f = form()
        self.s_lot = line("lot")
        self.s_ndc = line("NDC (blank: every product with this lot)")
        self.s_reason = line("reason: recall notice number, damage, …")
        self.s_reason.returnPressed.connect(self.confirm_status)
        f.addRow("Lot", self.s_lot)
        f.addRow("NDC", self.s_ndc)
        f.addRow("Reason", self.s_reason)
        lay.addWidget(self.s_head)
        lay.addLayout(f)
        self.s_button = primary("Apply", self.confirm_status)
        lay.addWidget(self.s_button)
        lay.addStretch(1)
        self.s_status = "quarantined"
        self._page("status", w)

    def _build_adjust(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Adjust stock"))
        f = form()
        self.a_batch = QLabel("—")
        self.a_delta = line("+5 or -3", "delta")
        self.a_reason = QComboBox()
        for code, text in ADJUST_REASONS.items():
            self.a_reason.addItem(f"{code} — {text}", code)
        self.a_note = line("note")
        self.a_delta.returnPressed.connect(self.confirm_adjust)
        self.a_note.returnPressed.connect(self.confirm_adjust)
        f.addRow("Batch", self.a_batch)
        f.addRow("Change", self.a_delta)
        f.addRow("Reason", self.a_reason)
        f.addRow("Note", self.a_note)
        lay.addLayout(f)
        lay.addWidget(primary("Adjust  (F8 / Enter)", self.confirm_adjust))
        lay.addWidget(muted("Controlled substances: the adjustment is written to the "
                            "hash-chained register. Theft or significant loss also needs DEA "
                            "Form 106 (21 CFR 1301.76(b))."))
        lay.addStretch(1)
        self._page("adjust", w)

    def _build_stocktake(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Stocktake: count the selected batch"))
        f = form()
        self.t_batch = QLabel("—")
        self.t_counted = line("units counted", "counted")
        self.t_counted.setValidator(QIntValidator(0, 10_000_000))
        self.t_counted.returnPressed.connect(self.confirm_stocktake)
        f.addRow("Batch", self.t_batch)
        f.addRow("Counted", self.t_counted)
        lay.addLayout(f)
        lay.addWidget(primary("Record count  (F9 / Enter)", self.confirm_stocktake))
        lay.addWidget(muted("Scan the next package to move to its batch. The difference to "
                            "what this terminal sees enters as a delta."))
        self.t_log = muted("")
        lay.addWidget(self.t_log)
        lay.addStretch(1)
        self._page("stocktake", w)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.stack.setCurrentWidget(self.pages[mode])
        self.refresh_actions()

    # ---- actions --------------------------------------------------------------------------------
    def fkey_actions(self) -> list[Action]:
        row = self.current_row() or {}
        has = bool(row)
        m = self.mode
        return [
            Action("F5", "Receive", self.confirm_receive if m == "receive"
                   else self.start_receive, self.can("receive_stock")),
            Action("F6", "Quarantine", lambda: self.start_status("quarantined"),
                   self.can("quarantine_lot") and has),
            Action("F7", "Recall", lambda: self.start_status("recalled"),
                   self.can("recall_lot") and has),
            Action("F8", "Adjust", self.confirm_adjust if m == "adjust" else self.start_adjust,
                   self.can("adjust_stock") and has),
            Action("F9", "Stocktake", self.confirm_stocktake if m == "stocktake"
                   else self.start_stocktake, self.can("stocktake") and has),
            Action("F10", "Release", lambda: self.start_status("active"),
                   self.can("release_lot") and has),
            Action("Shift+F5", "Filter", self.focus_filter),
            Action("Shift+F6", "Batches", lambda: self.tabs.setCurrentIndex(0)),
            Action("Shift+F7", "Register", lambda: self.tabs.setCurrentIndex(1),
                   self.can("view_register")),
            Action("Shift+F8", "Reorder", lambda: self.tabs.setCurrentIndex(2)),
            Action("Shift+F9", "Verify chain", self.verify_chain, self.can("view_register")),
        ]

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.mode != "details":
            self.set_mode("details")
            self.batches.setFocus()
            return
        super().keyPressEvent(event)

    def on_enter(self) -> None:
        self.reload()

    def reset(self) -> None:
        self.batch_model.set_ids([])
        self.register_model.set_ids([])
        self.reorder_model.set_rows([])
        self.set_mode("details")
        self.received = []
        self.chain_ok = None

    def _tab_changed(self) -> None:
        i = self.tabs.currentIndex()
        if i == 1:
            self.load_register()
        elif i == 2:
            self.load_reorder()
        self.refresh_actions()

    # ---- batches ---------------------------------------------------------------------------------
    def _fetch_batches(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = self.counter.batch_rows(ids)
        return rows

    def reload(self, select: str | None = None, changed: tuple[str, ...] = ()) -> None:
        if self.win.session is None:
            return
        keep = select or self.current_id()

        def done(ids: list[str]) -> None:
            self.batch_model.set_ids(ids)
            if changed:
                self.batch_model.refresh(list(changed))
            self.count.setText(f"{len(ids)} batches")
            row = self.batch_model.row_of(keep) if keep else -1
            if row >= 0:
                self.batches.selectRow(row)
                self.batches.scrollTo(self.batch_model.index(row, 0))
            self._batch_selected(refresh_only=True)

        self.db(self.counter.batch_ids, self.filter.text(), self.status_box.currentData(),
                on_done=done)

    def focus_filter(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.filter.setFocus()
        self.filter.selectAll()

    def current_id(self) -> str | None:
        idx = self.batches.currentIndex()
        ident = self.batch_model.id_at(idx.row()) if idx.isValid() else None
        return None if ident is None else str(ident)

    def current_row(self) -> dict[str, Any] | None:
        idx = self.batches.currentIndex()
        row = self.batch_model.row_data(idx.row()) if idx.isValid() else None
        return row or None

    def _batch_selected(self, refresh_only: bool = False) -> None:
        r = self.current_row()
        if not refresh_only and self.mode in ("status", "adjust"):
            self.set_mode("details")
        if r:
            sched = f" · <b>{esc(r['schedule'])}</b>" if r.get("schedule") else ""
            reason = f"<p>Reason: {esc(r['reason'])}</p>" if r.get("reason") else ""
            self.details.setText(
                f"<h2>{esc(r['name'])}</h2><p>NDC {esc(r['ndc'])}{sched}</p>"
                f"<p>Lot <b>{esc(r['lot'])}</b> · expires {esc(r['expiry'])} "
                f"({r['days_left']} days)</p>"
                f"<p>Status <b>{esc(r['status'])}</b> · on hand <b>{r['on_hand']}</b></p>"
                f"{reason}<p>Supplier {esc(r.get('supplier') or '—')}</p>")
            self.a_batch.setText(f"{r['name']} · lot {r['lot']} · {r['on_hand']} on hand")
            self.t_batch.setText(f"{r['name']} · lot {r['lot']} · {r['on_hand']} on hand")
        self.refresh_actions()

    def after_write(self, changed: StockChanged, message: str) -> None:
        reg = (f" · {changed.register_entries} controlled-register entr"
               f"{'y' if changed.register_entries == 1 else 'ies'}"
               if changed.register_entries else "")
        self.info(message + reg)
        self.reload(select=changed.batch_ids[0] if changed.batch_ids else None,
                    changed=changed.batch_ids)
        self.win.refresh_status()

    # ---- receive ---------------------------------------------------------------------------------
    def start_receive(self) -> None:
        self.tabs.setCurrentIndex(0)
        for e in (self.r_ndc, self.r_lot, self.r_expiry, self.r_qty):
            e.clear()
        self.r_product.setText("Scan the carton's DataMatrix now.")
        self.r_serial.setText("")
        self.set_mode("receive")
        self.r_ndc.setFocus()

    def _draft(self, d: dict[str, Any]) -> None:
        sched = f" [{d['schedule']}]" if d.get("schedule") else ""
        self.r_product.setText(f"<b>{d['name']}</b>{sched}")
        self.r_ndc.setText(d["ndc"])
        self.r_lot.setText(d.get("lot") or "")
        self.r_expiry.setText(d.get("expiry") or "")
        self.r_serial.setText(d.get("serial") or "")
        if not self.r_qty.text():
            self.r_qty.setText("1")
        self.r_order_form.setEnabled(bool(d.get("controlled")))
        self.r_qty.setFocus()
        self.r_qty.selectAll()

    def receive_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"ndc": self.r_ndc.text().strip(), "lot": self.r_lot.text().strip(),
                                "expiry": self.r_expiry.text().strip(),
                                "qty": int(self.r_qty.text() or 0)}
        if self.r_cost.text().strip():
            item["unit_cost"] = self.r_cost.text().strip()
        if self.r_order_form.text().strip():
            item["order_form"] = self.r_order_form.text().strip()
        return item

    def confirm_receive(self) -> None:
        item = self.receive_item()
        supplier = self.r_supplier.text().strip() or None
        ref = self.r_reference.text().strip() or None

        def done(ch: StockChanged) -> None:
            self.received.append(f"{item['ndc']} lot {item['lot']} ×{item['qty']}")
            self.r_log.setText("Received this session:\n" + "\n".join(self.received[-8:]))
            for e in (self.r_ndc, self.r_lot, self.r_expiry, self.r_qty):
                e.clear()
            self.r_product.setText("Scan the next carton.")
            self.after_write(ch, f"Received {item['qty']} of lot {item['lot']}")

        self.db(self.counter.receive, [item], supplier, ref, on_done=done)

    # ---- lot status, adjust, stocktake -----------------------------------------------------------
    def start_status(self, status: str) -> None:
        r = self.current_row()
        if not r:
            return
        self.s_status = status
        verb = {"quarantined": "Quarantine", "recalled": "Recall", "active": "Release"}[status]
        key = {"quarantined": "F6", "recalled": "F7", "active": "F10"}[status]
        self.s_head.setText(f"{verb} lot {r['lot']}")
        self.s_button.setText(f"{verb}  (Enter)")
        self.s_lot.setText(r["lot"])
        self.s_ndc.setText(r["ndc"] if status != "recalled" else "")
        self.s_reason.clear()
        self.set_mode("status")
        self.s_reason.setFocus()
        self.info(f"{verb}: give the reason and press Enter ({key} chose this).")

    def confirm_status(self) -> None:
        lot, ndc = self.s_lot.text().strip(), self.s_ndc.text().strip() or None
        status = self.s_status
        word = {"quarantined": "quarantined", "recalled": "recalled", "active": "released"}

        def done(ch: StockChanged) -> None:
            self.set_mode("details")
            self.after_write(ch, f"Lot {lot} {word[status]} ({len(ch.batch_ids)} batch(es))")

        self.db(self.counter.set_lot_status, lot, ndc, status, self.s_reason.text(),
                on_done=done)

    def start_adjust(self) -> None:
        if not self.current_row():
            return
        self.a_delta.clear()
        self.a_note.clear()
        self.set_mode("adjust")
        self.a_delta.setFocus()

    def confirm_adjust(self) -> None:
        r = self.current_row()
        text = self.a_delta.text().strip().replace("+", "")
        if not r or not text.lstrip("-").isdigit():
            self.a_delta.setFocus()
            return
        delta = int(text)

        def done(ch: StockChanged) -> None:
            self.set_mode("details")
            self.after_write(ch, f"Adjusted lot {r['lot']} by {delta:+d}")

        self.db(self.counter.adjust, r["ndc"], r["lot"], delta, self.a_reason.currentData(),
                self.a_note.text().strip() or None, on_done=done)

    def start_stocktake(self) -> None:
        if not self.current_row():
            return
        self.t_counted.clear()
        self.set_mode("stocktake")
        self.t_counted.setFocus()

    def confirm_stocktake(self) -> None:
        r = self.current_row()
        if not r or not self.t_counted.text():
            return
        counted = int(self.t_counted.text())

        def done(ch: StockChanged) -> None:
            delta = ch.details.get("deltas", {}).get(r["batch_id"], 0)
            self.t_log.setText(f"Lot {r['lot']}: counted {counted}, delta {delta:+d}")
            self.t_counted.clear()
            self.after_write(ch, f"Count recorded for lot {r['lot']} (delta {delta:+d})")

        self.db(self.counter.stocktake, [{"ndc": r["ndc"], "lot": r["lot"], "counted": counted}],
                on_done=done)

    # ---- scans --------------------------------------------------------------------------------
    def on_scan(self, text: str) -> None:
        if self.mode == "receive":
            self.db(self.counter.receive_draft, text, on_done=self._draft)
            return

        def found(d: dict[str, Any]) -> None:
            self.filter.setText(d.get("lot") or d["ndc"])
            if d.get("lot"):
                self.status_box.setCurrentIndex(0)
            self.reload()
            if self.mode == "stocktake":
                self.t_counted.setFocus()

        def product(h: Any) -> None:
            found({"ndc": h.ndc, "lot": None})

        if self.can("receive_stock"):
            self.db(self.counter.receive_draft, text, on_done=found)
        else:
            self.db(self.counter.product_from_scan, text, on_done=product)

    # ---- register and reorder --------------------------------------------------------------------
    def _fetch_register(self, keys: list[tuple[str, int]]) -> dict[Any, dict[str, Any]]:
        rows: dict[Any, dict[str, Any]] = self.counter.register_rows(keys)
        return rows

    def load_register(self) -> None:
        if not self.can("view_register"):
            self.chain.setText("The controlled register is for pharmacists and managers.")
            return
        self.db(self.counter.register_ids, on_done=self.register_model.set_ids)
        self.verify_chain()

    def verify_chain(self) -> None:
        def done(v: Any) -> None:
            self.chain_ok = v.ok
            if v.ok:
                self.chain.setText(f"✔ Chain verified: {v.entries} entries in {v.chains} "
                                   "chain(s)")
                self.chain.setStyleSheet("color: #1e8449;")
            else:
                b = v.broken or {}
                self.chain.setText(f"✖ CHAIN BROKEN at entry {b.get('seq')} of replica "
                                   f"{str(b.get('replica_id'))[-4:]}: {b.get('reason')}")
                self.chain.setStyleSheet("color: #c0392b;")

        self.db(self.counter.register_verify, on_done=done)

    def load_reorder(self) -> None:
        def done(d: dict[str, Any]) -> None:
            self.reorder_model.set_rows(d.get("rows", []))
            note = d.get("note") or (f"Model {d.get('model_version')}" if d.get("model_version")
                                     else "")
            self.reorder_note.setText(note)

        self.db(self.counter.reorder_suggestions, on_done=done)
