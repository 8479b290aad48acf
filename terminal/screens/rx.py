"""Prescriptions: intake -> pharmacist verification (interaction alerts, substitution
choices) -> fill with scan-verify -> label -> will-call -> pickup with counselling."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QIntValidator, QKeyEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
    QScrollArea,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from pharmacy import rx as core_rx
from pharmacy.clock import utcnow
from terminal.counter import PrintOutcome, ProductHit
from terminal.models.tables import RxQueueModel
from terminal.screens.base import Screen
from terminal.screens.widgets import Action, esc, form, heading, line, muted, primary, table

FILTERS = (("Open", core_rx.OPEN_STATES), ("Entered", ("intake",)),
           ("Verified", ("verified",)), ("Filled", ("filled", "labeled")),
           ("Will-call", ("will_call",)), ("Done", ("picked_up", "cancelled", "returned")))
MODES = ("details", "intake", "verify", "fill", "will_call", "pickup", "history", "cancel",
         "return")


class RxScreen(Screen):
    title = "Prescriptions"

    def __init__(self, win: Any) -> None:
        super().__init__(win)
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.setSpacing(12)
        left = QVBoxLayout()
        top = QHBoxLayout()
        self.tabs = QTabBar()
        for label, _ in FILTERS:
            self.tabs.addTab(label)
        self.tabs.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.tabs.currentChanged.connect(lambda _i: self.reload())
        self.find_box = line("Rx number  (Shift+F5)", "find")
        self.find_box.setMaximumWidth(260)
        self.find_box.returnPressed.connect(self.do_find)
        top.addWidget(self.tabs, 1)
        top.addWidget(self.find_box)
        self.model = RxQueueModel(self.tasks, self._fetch_rows)
        self.view = table(self.model, stretch=2)
        self.view.selectionModel().currentRowChanged.connect(lambda *_: self._selected())
        self.model.dataChanged.connect(lambda *_: self._selected(refresh_only=True))
        self.model.modelReset.connect(lambda: self._selected(refresh_only=True))
        left.addLayout(top)
        left.addWidget(self.view, 1)

        self.stack = QStackedWidget()
        self.stack.setFixedWidth(560)
        self.pages: dict[str, QWidget] = {}
        self._build_details()
        self._build_intake()
        self._build_verify()
        self._build_fill()
        self._build_will_call()
        self._build_pickup()
        self._build_history()
        self._build_cancel()
        self._build_return()
        root.addLayout(left, 1)
        root.addWidget(self.stack)
        self.mode = "details"
        self.review: dict[str, Any] | None = None
        self.fill_id: str | None = None
        self.last_label: dict[str, Any] | None = None
        self.print_status = ""

    # ---- pages ----------------------------------------------------------------------------------
    def _page(self, name: str, widget: QWidget, scroll: bool = True) -> None:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QScrollArea.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(widget)
        self.pages[name] = area
        self.stack.addWidget(area)

    def _build_details(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        self.details = QLabel("Select a prescription, or F5 to enter a new one.")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.next_step = muted("")
        lay.addWidget(self.details)
        lay.addWidget(self.next_step)
        lay.addStretch(1)
        self._page("details", w)

    def _build_intake(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("New prescription  (F5 saves, Esc cancels)"))
        pg = QGroupBox("Patient")
        pf = form(pg)
        self.i_name = line("full name")
        self.i_birth = line("YYYY-MM-DD")
        self.i_address = line("street, city, state, ZIP")
        self.i_phone = line("phone")
        self.i_allergies = line("allergies")
        pf.addRow("Name", self.i_name)
        pf.addRow("Born", self.i_birth)
        pf.addRow("Address", self.i_address)
        pf.addRow("Phone", self.i_phone)
        pf.addRow("Allergies", self.i_allergies)
        prg = QGroupBox("Prescriber")
        prf = form(prg)
        self.i_prescriber = line("Dr. name")
        self.i_prescriber_address = line("address")
        self.i_dea = line("DEA number (2 letters + 7 digits)")
        self.i_npi = line("NPI")
        prf.addRow("Name", self.i_prescriber)
        prf.addRow("Address", self.i_prescriber_address)
        prf.addRow("DEA", self.i_dea)
        prf.addRow("NPI", self.i_npi)
        dg = QGroupBox("Drug")
        df = form(dg)
        self.i_drug = line("scan the package, or NDC / name + Enter")
        self.i_drug.returnPressed.connect(self._drug_lookup)
        self.i_drug_pick = QComboBox()
        self.i_qty = line("units")
        self.i_qty.setValidator(QIntValidator(1, 99999))
        self.i_days = line("days")
        self.i_days.setValidator(QIntValidator(1, 365))
        self.i_refills = line("0")
        self.i_refills.setValidator(QIntValidator(0, 99))
        self.i_daw = QComboBox()
        for code, text in core_rx.DAW_LABELS.items():
            self.i_daw.addItem(text, code)
        self.i_written = line("YYYY-MM-DD")
        self.i_directions = line("e.g. Take 1 tablet by mouth every 8 hours")
        self.i_electronic = QCheckBox("Electronic prescription (EPCS)")
        self.i_acute = QCheckBox("Acute pain")
        self.i_pmp = QCheckBox("PMP checked")
        df.addRow("Drug", self.i_drug)
        df.addRow("", self.i_drug_pick)
        df.addRow("Quantity", self.i_qty)
        df.addRow("Days supply", self.i_days)
        df.addRow("Refills", self.i_refills)
        df.addRow("DAW", self.i_daw)
        df.addRow("Written", self.i_written)
        df.addRow("Directions", self.i_directions)
        flags = QHBoxLayout()
        for c in (self.i_electronic, self.i_acute, self.i_pmp):
            flags.addWidget(c)
        df.addRow(flags)
        lay.addWidget(pg)
        lay.addWidget(prg)
        lay.addWidget(dg)
        lay.addWidget(primary("Save prescription  (F5)", self.save_intake))
        self._page("intake", w, scroll=True)

    def _build_verify(self) -> None:
        w = QWidget()
        self.v_lay = QVBoxLayout(w)
        self.v_head = heading("Verification")
        self.v_facts = QLabel()
        self.v_facts.setWordWrap(True)
        self.v_facts.setTextFormat(Qt.TextFormat.RichText)
        self.v_alerts_box = QGroupBox("Interaction alerts")
        self.v_alerts_lay = QVBoxLayout(self.v_alerts_box)
        self.v_override = line("reason for dispensing despite a serious alert")
        self.v_subs_box = QGroupBox("Product to dispense")
        self.v_subs_lay = QVBoxLayout(self.v_subs_box)
        self.v_group = QButtonGroup(self)
        self.v_daw = QComboBox()
        for code, text in core_rx.DAW_LABELS.items():
            self.v_daw.addItem(text, code)
        self.v_lay.addWidget(self.v_head)
        self.v_lay.addWidget(self.v_facts)
        self.v_lay.addWidget(self.v_alerts_box)
        self.v_lay.addWidget(self.v_subs_box)
        f = form()
        f.addRow("DAW dispensed", self.v_daw)
        self.v_lay.addLayout(f)
        self.v_lay.addWidget(primary("Confirm verification  (F6)", self.confirm_verify))
        self.v_lay.addStretch(1)
        self.alert_checks: list[tuple[QCheckBox, str, QLabel]] = []
        self._page("verify", w, scroll=True)

    def _build_fill(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Fill: scan the package"))
        self.f_expect = QLabel()
        self.f_expect.setWordWrap(True)
        self.f_expect.setTextFormat(Qt.TextFormat.RichText)
        self.f_manual = line("or type the DataMatrix text and press Enter")
        self.f_manual.returnPressed.connect(lambda: self._fill_scan(self.f_manual.text()))
        lay.addWidget(self.f_expect)
        lay.addWidget(muted("The scanned GTIN must be the verified product, and its lot must be "
                            "on file, sellable and unexpired (DSCSA)."))
        lay.addWidget(self.f_manual)
        lay.addStretch(1)
        self._page("fill", w)

    def _build_will_call(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Place in will-call"))
        self.w_bin = line("bin, e.g. B-12", "bin")
        self.w_bin.returnPressed.connect(self.confirm_will_call)
        f = form()
        f.addRow("Bin", self.w_bin)
        lay.addLayout(f)
        lay.addWidget(primary("Place in bin  (F9)", self.confirm_will_call))
        lay.addStretch(1)
        self._page("will_call", w)

    def _build_pickup(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Pickup"))
        self.p_facts = QLabel()
        self.p_facts.setWordWrap(True)
        self.p_facts.setTextFormat(Qt.TextFormat.RichText)
        cg = QGroupBox("Counselling offered to the patient")
        cl = QVBoxLayout(cg)
        self.p_accepted = QRadioButton("Accepted — pharmacist counsels now")
        self.p_declined = QRadioButton("Declined")
        self.p_counsel = QButtonGroup(self)
        self.p_counsel.addButton(self.p_accepted)
        self.p_counsel.addButton(self.p_declined)
        cl.addWidget(self.p_accepted)
        cl.addWidget(self.p_declined)
        pay = QGroupBox("Payment")
        pf = form(pay)
        self.p_cash = line("cash tendered (Enter completes)", "p_cash")
        self.p_card = line("or card approval code", "p_card")
        self.p_cash.returnPressed.connect(self.confirm_pickup)
        self.p_card.returnPressed.connect(self.confirm_pickup)
        pf.addRow("Cash", self.p_cash)
        pf.addRow("Card", self.p_card)
        lay.addWidget(self.p_facts)
        lay.addWidget(cg)
        lay.addWidget(pay)
        lay.addWidget(primary("Complete pickup  (F10)", self.confirm_pickup))
        lay.addStretch(1)
        self._page("pickup", w)

    def _build_history(self) -> None:
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading("Medication history"))
        self.h_text = QLabel()
        self.h_text.setWordWrap(True)
        self.h_text.setTextFormat(Qt.TextFormat.RichText)
        self.h_text.setAlignment(Qt.AlignmentFlag.AlignTop)
        lay.addWidget(self.h_text)
        lay.addStretch(1)
        self._page("history", w, scroll=True)

    def _reason_page(self, mode: str, title: str, placeholder: str, button: str,
                     confirm: Any, note: str | None = None) -> QLineEdit:
        """A page that asks for the reason of a step and confirms it; returns the field."""
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.addWidget(heading(title))
        if note:
            lay.addWidget(muted(note))
        reason = line(placeholder)
        reason.returnPressed.connect(confirm)
        lay.addWidget(reason)
        lay.addWidget(primary(button, confirm))
        lay.addStretch(1)
        self._page(mode, w)
        return reason

    def _build_cancel(self) -> None:
        self.c_reason = self._reason_page("cancel", "Cancel this fill", "reason (required)",
                                          "Cancel fill  (Shift+F8)", self.confirm_cancel)

    def _build_return(self) -> None:
        self.r_reason = self._reason_page(
            "return", "Return this fill to stock",
            "reason (required), e.g. not picked up in 14 days", "Return to stock  (Shift+F9)",
            self.confirm_return,
            note="For a fill that was never picked up: its units go back to the lots they "
                 "came from (controlled ones with a register entry), and the refill can be "
                 "started again.")

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.stack.setCurrentWidget(self.pages[mode])
        self.refresh_actions()

    # ---- actions --------------------------------------------------------------------------------
    def fkey_actions(self) -> list[Action]:
        row = self.current_row() or {}
        st = row.get("state")
        m = self.mode
        return [
            Action("F5", "Save Rx" if m == "intake" else "New Rx",
                   self.save_intake if m == "intake" else self.start_intake,
                   self.can("rx_intake")),
            Action("F6", "Confirm" if m == "verify" else "Verify",
                   self.confirm_verify if m == "verify" else self.start_verify,
                   self.can("verify_rx") and st == "intake"),
            Action("F7", "Fill (scan)", self.start_fill, self.can("fill_rx") and st == "verified"),
            Action("F8", "Label", self.print_label,
                   self.can("label_rx") and st in ("filled", "labeled", "will_call")),
            Action("F9", "Place in bin" if m == "will_call" else "Will-call",
                   self.confirm_will_call if m == "will_call" else self.start_will_call,
                   self.can("will_call") and st == "labeled"),
            Action("F10", "Complete" if m == "pickup" else "Pickup",
                   self.confirm_pickup if m == "pickup" else self.start_pickup,
                   self.can("pickup_rx") and st == "will_call"),
            Action("Shift+F5", "Find Rx #", self.focus_find),
            Action("Shift+F6", "History", self.show_history, self.can("read_med_history")
                   and bool(row)),
            Action("Shift+F7", "Refill", self.refill, self.can("rx_intake")
                   and st in ("picked_up", "cancelled", "returned")),
            Action("Shift+F8", "Cancel fill",
                   self.confirm_cancel if m == "cancel" else self.start_cancel,
                   self.can("rx_intake") and st in ("intake", "verified")),
            Action("Shift+F9", "Return to stock",
                   self.confirm_return if m == "return" else self.start_return,
                   self.can("return_to_stock") and st in core_rx.RETURNABLE_STATES),
        ]

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape and self.mode != "details":
            self.set_mode("details")
            self.view.setFocus()
            return
        super().keyPressEvent(event)

    def on_enter(self) -> None:
        self.reload()
        self.view.setFocus()

    def reset(self) -> None:
        self.model.set_ids([])
        self.set_mode("details")
        self.details.setText("Select a prescription, or F5 to enter a new one.")
        self.review = None
        self.last_label = None

    # ---- queue ----------------------------------------------------------------------------------
    def _fetch_rows(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = self.counter.rx_rows(ids)
        return rows

    def states(self) -> tuple[str, ...]:
        return tuple(FILTERS[max(0, self.tabs.currentIndex())][1])

    def reload(self, select: str | None = None, changed: tuple[str, ...] = ()) -> None:
        if self.win.session is None:
            return
        keep = select or self.current_id()

        def done(ids: list[str]) -> None:
            self.model.set_ids(ids)
            if changed:
                self.model.refresh(list(changed))
            row = self.model.row_of(keep) if keep else -1
            if row < 0 and ids:
                row = 0
            if row >= 0:
                self.view.selectRow(row)
            self._selected(refresh_only=True)

        self.db(self.counter.rx_queue, self.states(), on_done=done)

    def current_id(self) -> str | None:
        idx = self.view.currentIndex()
        ident = self.model.id_at(idx.row()) if idx.isValid() else None
        return None if ident is None else str(ident)

    def current_row(self) -> dict[str, Any] | None:
        idx = self.view.currentIndex()
        return self.model.row_data(idx.row()) if idx.isValid() else None

    def _selected(self, refresh_only: bool = False) -> None:
        row = self.current_row()
        if not refresh_only and self.mode not in ("details", "intake"):
            self.set_mode("details")
        if self.mode == "details":
            self.details.setText(self._details_html(row) if row else
                                 "Select a prescription, or F5 to enter a new one.")
            self.next_step.setText(self._next_hint(row))
        self.refresh_actions()

    def _details_html(self, r: dict[str, Any]) -> str:
        out = [f"<h2>Rx {esc(r.get('rx_number'))}"
               + (f" · refill {r['refill_number']}" if r.get("refill_number") else "")
               + f" — {esc(r.get('state_label'))}</h2>",
               f"<p><b>{esc(r.get('patient_name'))}</b>"
               + (f" · born {esc(r['birth_date'])}" if r.get("birth_date") else "") + "</p>",
               f"<p><b>{esc(r.get('drug'))}</b> · qty {esc(r.get('qty'))}"
               + (f" · {r['days_supply']} days" if r.get("days_supply") else "") + "</p>"]
        if r.get("directions"):
            out.append(f"<p>Sig: {esc(r['directions'])}</p>")
        if r.get("prescriber"):
            p = r["prescriber"]
            out.append(f"<p>Prescriber: {esc(p.get('name'))}"
                       + (f" · DEA {esc(p.get('dea'))}" if p.get("dea") else "") + "</p>")
        if "daw" in r:
            out.append(f"<p>DAW {r['daw']} · refills authorized "
                       f"{r.get('refills_authorized')} · written {esc(r.get('written_on'))}</p>")
        if r.get("allergies"):
            out.append(f"<p style='color:#a93226'><b>Allergies:</b> {esc(r['allergies'])}</p>")
        if r.get("lot"):
            out.append(f"<p>Dispensed lot {esc(r['lot'])} exp {esc(r.get('expiry'))}</p>")
        if r.get("substitution"):
            out.append(f"<p>Substituted: {esc(r['substitution'])}</p>")
        if r.get("bin"):
            out.append(f"<p><b>Bin {esc(r['bin'])}</b>"
                       + (f" · price {esc(r['price'])}" if r.get("price") else "") + "</p>")
        if self.last_label and self.last_label.get("rx_number") == r.get("rx_number"):
            lab = self.last_label
            out.append("<hr/><p><b>Label</b> (copy {copy}): {drug} · qty {qty} · {directions}"
                       "</p>".format(**{k: esc(v) for k, v in lab.items()}))
        return "".join(out)

    def _next_hint(self, row: dict[str, Any] | None) -> str:
        if not row:
            return ""
        return {"intake": "Next: pharmacist verification (F6).",
                "verified": "Next: fill — F7, then scan the package.",
                "filled": "Next: print the label (F8).",
                "labeled": "Next: place in will-call (F9).",
                "will_call": "Next: pickup with counselling (F10).",
                "picked_up": "Picked up. Shift+F7 starts a refill if any are left.",
                "cancelled": "Cancelled. Shift+F7 starts this fill again.",
                "returned": "Returned to stock. Shift+F7 starts this fill again."
                }.get(row.get("state", ""), "")

    def focus_find(self) -> None:
        self.find_box.setFocus()
        self.find_box.selectAll()

    def do_find(self) -> None:
        text = self.find_box.text().strip()
        if not text:
            return

        def found(fill_id: str) -> None:
            self.tabs.blockSignals(True)
            self.tabs.setCurrentIndex(0)
            self.tabs.blockSignals(False)
            self._select_anywhere(fill_id)

        self.db(self.counter.rx_find, text, on_done=found)

    def _select_anywhere(self, fill_id: str) -> None:
        def done(ids: list[str]) -> None:
            if fill_id not in ids:
                self.tabs.blockSignals(True)
                self.tabs.setCurrentIndex(len(FILTERS) - 1)
                self.tabs.blockSignals(False)
            self.reload(select=fill_id)

        self.db(self.counter.rx_queue, self.states(), on_done=done)

    def after_write(self, changed: core_rx.RxChanged, message: str) -> None:
        self.set_mode("details")
        for w in changed.warnings:
            self.win.errors.show_warning(f"[{w['code']}] {w['message']} ({w['citation']})")
        if not changed.warnings:
            self.info(message)
        self.reload(select=changed.fill_ids[0], changed=changed.fill_ids)
        self.view.setFocus()
        self.win.refresh_status()

    # ---- intake ---------------------------------------------------------------------------------
    def start_intake(self) -> None:
        for w in (self.i_name, self.i_birth, self.i_address, self.i_phone, self.i_allergies,
                  self.i_prescriber, self.i_prescriber_address, self.i_dea, self.i_npi,
                  self.i_drug, self.i_qty, self.i_days, self.i_directions):
            w.clear()
        self.i_drug_pick.clear()
        self.i_refills.setText("0")
        self.i_daw.setCurrentIndex(0)
        self.i_written.setText(utcnow().date().isoformat())  # the store's clock is UTC
        for c in (self.i_electronic, self.i_acute, self.i_pmp):
            c.setChecked(False)
        self.set_mode("intake")
        self.i_name.setFocus()

    def _drug_lookup(self) -> None:
        text = self.i_drug.text().strip()
        if text:
            self.db(self.counter.search, text, on_done=self._drug_hits)

    def _drug_hits(self, hits: list[ProductHit]) -> None:
        self.i_drug_pick.clear()
        for h in hits:
            label = f"{h.name} · {h.ndc}" + (f" · {h.badge}" if h.badge else "")
            self.i_drug_pick.addItem(label, h.ndc)
        if not hits:
            self.info("No product matches; check the NDC or name.")
        else:
            self.i_qty.setFocus()

    def intake_data(self) -> dict[str, Any]:
        def num(w: Any, default: int | None = None) -> int | None:
            return int(w.text()) if w.text().strip() else default

        return {
            "patient": {"name": self.i_name.text().strip(),
                        "birth_date": self.i_birth.text().strip(),
                        "address": self.i_address.text().strip() or None,
                        "phone": self.i_phone.text().strip() or None,
                        "allergies": self.i_allergies.text().strip() or None},
            "prescriber": {"name": self.i_prescriber.text().strip(),
                           "address": self.i_prescriber_address.text().strip() or None,
                           "dea": self.i_dea.text().strip() or None,
                           "npi": self.i_npi.text().strip() or None},
            "ndc": self.i_drug_pick.currentData() or self.i_drug.text().strip(),
            "quantity": num(self.i_qty), "days_supply": num(self.i_days),
            "refills_authorized": num(self.i_refills, 0), "daw": self.i_daw.currentData(),
            "written_on": self.i_written.text().strip(),
            "directions": self.i_directions.text().strip(),
            "electronic": self.i_electronic.isChecked(),
            "flags": {"acute_pain": self.i_acute.isChecked(),
                      "pmp_checked": self.i_pmp.isChecked()},
        }

    def save_intake(self) -> None:
        data = self.intake_data()

        def done(changed: core_rx.RxChanged) -> None:
            self.tabs.setCurrentIndex(0)
            self.after_write(changed, f"Rx {changed.details.get('rx_number')} entered; "
                                      "waiting for pharmacist verification.")

        self.db(self.counter.rx_intake, data, on_done=done)

    # ---- verify ---------------------------------------------------------------------------------
    def start_verify(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return
        self.db(self.counter.rx_review, fill_id, on_done=self._show_review)

    def _show_review(self, review: dict[str, Any]) -> None:
        self.review = review
        r = review["fill"]
        self.v_head.setText(f"Verify Rx {r['rx_number']} — {r['patient_name']}")
        meds = ", ".join(review["current_medications"]) or "none on file here"
        self.v_facts.setText(
            f"<p><b>{esc(r['drug'])}</b> · qty {r['qty']} · {r['days_supply']} days · "
            f"refills {r['refills_authorized']} · DAW {r['daw']}</p>"
            f"<p>Sig: {esc(r['directions'])}</p>"
            f"<p>Prescriber: {esc(r['prescriber'].get('name'))} · DEA "
            f"{esc(r['prescriber'].get('dea') or '—')}</p>"
            f"<p>Allergies: {esc(r.get('allergies') or 'none recorded')}</p>"
            f"<p>Current medications: {esc(meds)}</p>")
        # alerts
        while self.v_alerts_lay.count():
            item = self.v_alerts_lay.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.alert_checks = []
        alerts = review["alerts"]
        if alerts is None:
            self.v_alerts_lay.addWidget(muted("Interaction checking is not available on this "
                                              "terminal; review the profile by hand."))
        elif not alerts:
            self.v_alerts_lay.addWidget(QLabel("✔ No interactions with current medications."))
        else:
            for a in alerts:
                sev = str(a.get("severity", "")).upper()
                serious = core_rx.must_acknowledge(a)
                colour = "#a93226" if serious else "#7e5109"
                cite = f"<br/><i>{esc(a['citation'])}</i>" if a.get("citation") else ""
                text = QLabel(f"<b style='color:{colour}'>{esc(sev)}</b> — "
                              f"{esc(a.get('message', a.get('code')))}{cite}")
                text.setWordWrap(True)
                text.setTextFormat(Qt.TextFormat.RichText)
                box = QCheckBox("Reviewed" + (" (required)" if serious else ""))
                self.v_alerts_lay.addWidget(text)
                self.v_alerts_lay.addWidget(box)
                self.alert_checks.append((box, core_rx.alert_key(a), text))
            self.v_alerts_lay.addWidget(self.v_override)
        # substitution choices
        while self.v_subs_lay.count():
            item = self.v_subs_lay.takeAt(0)
            w = item.widget() if item is not None else None
            if w is not None:
                w.deleteLater()
        self.v_group = QButtonGroup(self)
        as_written = QRadioButton(f"As prescribed: {r['drug']}")
        as_written.setProperty("ndc", r["rx_ndc"])
        as_written.setChecked(True)
        self.v_group.addButton(as_written)
        self.v_subs_lay.addWidget(as_written)
        subs = review["substitution"]
        for c in subs.get("equivalents", []):
            if not c.get("ndc"):
                continue
            stock = f"{c['on_hand']} in stock" if c.get("in_stock") else "not in stock"
            b = QRadioButton(f"{c.get('name')} · {c.get('te_code')} · {c.get('price')} · {stock}")
            b.setToolTip(c.get("why", ""))
            b.setProperty("ndc", c["ndc"])
            self.v_group.addButton(b)
            self.v_subs_lay.addWidget(b)
        law = subs.get("law") or {}
        if law.get("substitution_required"):
            self.v_subs_lay.addWidget(muted(
                f"{law.get('jurisdiction')}: substitution of a cheaper equivalent is required "
                f"unless the prescriber prohibits it ({law.get('citation')})."))
        if subs.get("note"):
            self.v_subs_lay.addWidget(muted(subs["note"]))
        idx = self.v_daw.findData(int(r["daw"]))
        self.v_daw.setCurrentIndex(max(0, idx))
        self.set_mode("verify")

    def confirm_verify(self) -> None:
        if self.review is None:
            return
        fill_id = self.review["fill"]["fill_id"]
        checked = self.v_group.checkedButton()
        ndc = None if checked is None else checked.property("ndc")
        acked = [key for box, key, _t in self.alert_checks if box.isChecked()]
        reason = self.v_override.text().strip() or None
        daw = self.v_daw.currentData()
        self.db(self.counter.rx_verify, fill_id, dispense_ndc=ndc, daw_dispensed=daw,
                acknowledged=acked, override_reason=reason,
                on_done=lambda ch: self.after_write(ch, "Verified. Next: fill (F7)."))

    # ---- fill -----------------------------------------------------------------------------------
    def start_fill(self) -> None:
        row = self.current_row()
        if not row:
            return
        self.fill_id = row["fill_id"]
        self.f_expect.setText(f"<p>Rx <b>{esc(row['rx_number'])}</b> for "
                              f"{esc(row['patient_name'])}</p><p><b>{esc(row['drug'])}</b>"
                              f" · qty {row['qty']} · NDC {esc(row.get('dispense_ndc'))}</p>")
        self.f_manual.clear()
        self.set_mode("fill")
        self.f_manual.setFocus()

    def _fill_scan(self, text: str) -> None:
        if not text.strip() or self.fill_id is None:
            return
        self.f_manual.clear()
        self.db(self.counter.rx_fill, self.fill_id, text,
                on_done=lambda ch: self.after_write(ch, "Filled and dispensed. Next: label (F8)."))

    def on_scan(self, text: str) -> None:
        if self.mode == "fill":
            self._fill_scan(text)
        elif self.mode == "intake":
            def hit(h: ProductHit) -> None:
                self.i_drug.setText(h.ndc)
                self._drug_hits([h])

            self.db(self.counter.product_from_scan, text, on_done=hit)
        else:
            self.win.scan_to_sale(text)

    # ---- label, will-call -----------------------------------------------------------------------
    def print_label(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return

        def done(result: tuple[core_rx.RxChanged, dict[str, Any], PrintOutcome | None]) -> None:
            changed, data, out = result
            self.last_label = data
            self.after_write(changed, f"Label printing (copy {data['copy']}). "
                                      "Next: will-call (F9).")
            if out is not None:
                self._watch(out)

        self.db(self.counter.rx_label, fill_id, on_done=done)

    def _watch(self, out: PrintOutcome) -> None:
        fut: Future[Any] = out.future

        def finished(_f: Future[Any]) -> None:
            self.tasks.post(lambda: self.db(self.counter.record_print, out.job_id, fut,
                                            on_done=self._printed))

        fut.add_done_callback(finished)

    def _printed(self, job: Any) -> None:
        self.print_status = job.status
        if job.status != "done":
            self.win.errors.show_warning(f"[{job.error_code}] {job.error_message} — reprint the "
                                         "label with F8 when the printer is back.")
        self.win.refresh_status()

    def start_will_call(self) -> None:
        self._open_form("will_call", self.w_bin)

    def confirm_will_call(self) -> None:
        fill_id = self.current_id()
        if fill_id is None or not self.w_bin.text().strip():
            return
        self.db(self.counter.rx_will_call, fill_id, self.w_bin.text(),
                on_done=lambda ch: self.after_write(ch, f"In will-call bin "
                                                        f"{self.w_bin.text().upper()}."))

    # ---- pickup ---------------------------------------------------------------------------------
    def start_pickup(self) -> None:
        row = self.current_row()
        if not row:
            return
        self.p_facts.setText(f"<h3>{esc(row['patient_name'])}</h3><p>Rx "
                             f"{esc(row['rx_number'])} · {esc(row['drug'])} · qty {row['qty']}"
                             f"</p><p>Bin <b>{esc(row.get('bin'))}</b> · to pay <b>"
                             f"{esc(row.get('price') or '0.00')}</b></p>")
        self.p_counsel.setExclusive(False)
        self.p_accepted.setChecked(False)
        self.p_declined.setChecked(False)
        self.p_counsel.setExclusive(True)
        self.p_cash.setText(row.get("price") or "")
        self.p_card.clear()
        self.set_mode("pickup")
        self.p_cash.setFocus()
        self.p_cash.selectAll()

    def confirm_pickup(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return
        counseling = ("accepted" if self.p_accepted.isChecked() else
                      "declined" if self.p_declined.isChecked() else "")
        method = "card" if self.p_card.text().strip() else "cash"
        def done(ch: core_rx.RxChanged) -> None:
            tender = ch.details.get("tender") or {}
            change = f" Change due {tender['change']}." if tender.get("method") == "cash" else ""
            self.after_write(ch, "Picked up." + change)
            receipt = ch.details.get("receipt")
            if receipt is not None:
                self._watch(receipt)

        self.db(self.counter.rx_pickup, fill_id, counseling, method,
                self.p_cash.text().strip() or None, self.p_card.text().strip() or None,
                on_done=done)

    # ---- history, refill, cancel ----------------------------------------------------------------
    def show_history(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return

        def done(h: dict[str, Any]) -> None:
            p = h["patient"]
            rows = "".join(
                f"<tr><td>{esc(f['rx_number'])}</td><td>{esc(f['drug'])}</td>"
                f"<td>{f['qty']}</td><td>{esc(core_rx.STATE_LABELS[f['state']])}</td>"
                f"<td>{esc((f['filled_at'] or '')[:10])}</td></tr>" for f in h["fills"])
            self.h_text.setText(
                f"<h3>{esc(p.get('name'))} · born {esc(p.get('birth_date'))}</h3>"
                f"<p>Allergies: {esc(p.get('allergies') or 'none recorded')}</p>"
                "<table cellpadding='4'><tr><th>Rx</th><th>Drug</th><th>Qty</th>"
                f"<th>State</th><th>Filled</th></tr>{rows}</table>")
            self.set_mode("history")

        self.db(self.counter.med_history, fill_id, on_done=done)

    def refill(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return

        def done(ch: core_rx.RxChanged) -> None:
            self.tabs.setCurrentIndex(0)
            self.after_write(ch, "Refill entered; waiting for verification.")

        self.db(self.counter.rx_refill, fill_id, on_done=done)

    def _open_form(self, mode: str, field: QLineEdit) -> None:
        field.clear()
        self.set_mode(mode)
        field.setFocus()

    def start_cancel(self) -> None:
        self._open_form("cancel", self.c_reason)

    def start_return(self) -> None:
        self._open_form("return", self.r_reason)

    def confirm_return(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return
        self.db(self.counter.rx_return_to_stock, fill_id, self.r_reason.text(),
                on_done=lambda ch: self.after_write(ch, "Returned to stock."))

    def confirm_cancel(self) -> None:
        fill_id = self.current_id()
        if fill_id is None:
            return
        self.db(self.counter.rx_cancel, fill_id, self.c_reason.text(),
                on_done=lambda ch: self.after_write(ch, "Fill cancelled."))
