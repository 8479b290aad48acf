"""Shared counter widgets: the one error bar, the F-key bar, the status strip, the
compliance decision panel, and small form helpers. Sized to be read from counter distance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from PySide6.QtWidgets import QFormLayout, QTableView

# The first paint (sign-in screen and chrome) avoids Qt's large enum namespaces (``Qt``,
# ``QEvent``) and QFormLayout: touching ``Qt`` the first time costs ~25 ms. What needs them
# is applied by ``polish()`` once the window is up.


def _qt() -> Any:
    from PySide6.QtCore import Qt

    return Qt


def no_focus(*widgets: QWidget) -> None:
    """Chrome buttons never take keyboard focus (the counter is driven by F-keys)."""
    policy = _qt().FocusPolicy.NoFocus
    for w in widgets:
        w.setFocusPolicy(policy)

STYLE = """
* { font-family: "DejaVu Sans"; font-size: 15px; color: #1b2631; }
QMainWindow, QWidget#screen { background: #f4f6f7; }
QFrame#topbar { background: #17324d; }
QFrame#topbar QLabel { color: #ecf0f1; }
QLabel#brand { color: #ffffff; font-size: 22px; font-weight: bold; padding: 0 12px; }
QPushButton#nav { background: transparent; color: #d6eaf8; border: none; font-size: 17px;
                  font-weight: bold; padding: 10px 16px; border-bottom: 4px solid transparent; }
QPushButton#nav:checked { color: #ffffff; border-bottom: 4px solid #f5b041; }
QPushButton#lock { background: #2e4a66; color: #ffffff; border: 1px solid #5d7a96;
                   border-radius: 4px; padding: 6px 12px; }
QLabel#who { color: #ffffff; font-size: 16px; padding: 0 10px; }
QFrame#errorbar[kind="error"] { background: #c0392b; }
QFrame#errorbar[kind="info"] { background: #1e8449; }
QFrame#errorbar[kind="warn"] { background: #b9770e; }
QFrame#errorbar QLabel { color: #ffffff; font-size: 17px; font-weight: bold; }
QFrame#errorbar QPushButton { color: #ffffff; background: transparent; border: none;
                              font-size: 20px; }
QFrame#fkeys { background: #d5dbdb; border-top: 1px solid #aab7b8; }
QPushButton#fkey { background: #ffffff; border: 1px solid #95a5a6; border-radius: 4px;
                   padding: 4px 8px; font-size: 14px; }
QPushButton#fkey:disabled { color: #95a5a6; background: #eaeded; }
QFrame#status { background: #1c2833; }
QFrame#status QLabel { color: #d5d8dc; font-size: 14px; padding: 0 10px; }
QLabel#online { color: #58d68d; font-weight: bold; }
QLabel#offline { color: #f5b041; font-weight: bold; }
QTableView { background: #ffffff; alternate-background-color: #f8f9f9;
             selection-background-color: #2874a6; selection-color: #ffffff;
             gridline-color: #e5e8e8; font-size: 16px; }
QHeaderView::section { background: #e5e8e8; font-weight: bold; padding: 6px;
                       border: none; border-bottom: 2px solid #aab7b8; }
QLineEdit, QComboBox, QSpinBox, QDateEdit, QPlainTextEdit {
    background: #ffffff; border: 1px solid #aab7b8; border-radius: 4px; padding: 6px;
    font-size: 16px; }
QLineEdit:focus, QComboBox:focus, QSpinBox:focus { border: 2px solid #2874a6; }
QLineEdit#search { font-size: 20px; padding: 10px; }
QGroupBox { font-weight: bold; border: 1px solid #aab7b8; border-radius: 6px;
            margin-top: 14px; background: #ffffff; padding: 8px; }
QGroupBox::title { subcontrol-origin: margin; left: 10px; padding: 0 4px; color: #17324d; }
QLabel#total { font-size: 40px; font-weight: bold; color: #17324d; }
QLabel#big { font-size: 26px; font-weight: bold; }
QLabel#muted { color: #566573; }
QLabel#heading { font-size: 20px; font-weight: bold; color: #17324d; }
QFrame#decision[kind="allow"] { background: #d5f5e3; border: 2px solid #1e8449; }
QFrame#decision[kind="hold"] { background: #fdebd0; border: 2px solid #b9770e; }
QFrame#decision[kind="deny"] { background: #fadbd8; border: 2px solid #c0392b; }
QFrame#decision[kind="none"] { background: #ffffff; border: 1px solid #aab7b8; }
QFrame#decision { border-radius: 6px; }
QLabel#verdict { font-size: 22px; font-weight: bold; }
QPushButton#primary { background: #2874a6; color: #ffffff; border-radius: 4px;
                      padding: 10px 16px; font-weight: bold; font-size: 16px; }
QPushButton { padding: 6px 12px; }
QTabBar::tab { padding: 8px 16px; font-size: 15px; }
QTabBar::tab:selected { font-weight: bold; }
"""


@dataclass(frozen=True)
class Action:
    key: str  # "F9" or "Shift+F9"
    label: str
    run: Callable[[], None]
    enabled: bool = True


def error_text(exc: BaseException) -> tuple[str, str]:
    """(code, message) for the error bar."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if code and message:
        return str(code), str(message)
    return "INTERNAL", f"internal error: {exc} (logged; tell support)"


class ErrorBar(QFrame):
    """The one place where domain errors (with their codes) and confirmations appear."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("errorbar")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(16, 8, 8, 8)
        self.label = QLabel()
        self.label.setWordWrap(True)
        close = QPushButton("×")
        self.close_button = close
        close.clicked.connect(self.clear)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.code: str | None = None
        self.kind = "none"
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.clear)
        self.hide()

    def polish(self) -> None:
        self.label.setTextInteractionFlags(_qt().TextInteractionFlag.TextSelectableByMouse)
        no_focus(self.close_button)

    def _show(self, kind: str, text: str, timeout_ms: int | None) -> None:
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self.show()
        if timeout_ms:
            self._timer.start(timeout_ms)
        else:
            self._timer.stop()

    def show_error(self, exc: BaseException) -> None:
        code, message = error_text(exc)
        self.code = code
        self._show("error", f"[{code}]  {message}", None)

    def show_info(self, text: str, timeout_ms: int = 6000) -> None:
        self.code = None
        self._show("info", text, timeout_ms)

    def show_warning(self, text: str) -> None:
        self.code = None
        self._show("warn", text, 10000)

    def clear(self) -> None:
        self.code = None
        self.kind = "none"
        self.label.clear()
        self.hide()

    @property
    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class FKeyBar(QFrame):
    """The current screen's shortcuts as buttons (they can be clicked too): plain F-keys on
    the first row, Shift+F-keys on the second."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fkeys")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 4, 8, 4)
        outer.setSpacing(4)
        self.rows = (QHBoxLayout(), QHBoxLayout())
        for r in self.rows:
            r.setSpacing(6)
            outer.addLayout(r)
        self.buttons: dict[str, QPushButton] = {}
        self._shown: list[tuple[str, str, bool]] = []
        self._actions: dict[str, Action] = {}
        self.polished = False

    def polish(self) -> None:
        self.polished = True
        no_focus(*self.buttons.values())

    def set_actions(self, actions: Sequence[Action]) -> None:
        self._actions = {a.key: a for a in actions}
        shown = [(a.key, a.label, a.enabled) for a in actions]
        if shown == self._shown:
            return  # same buttons; clicks look the action up when they happen
        self._shown = shown
        for b in self.buttons.values():
            b.setParent(None)
            b.deleteLater()
        for r in self.rows:
            while r.count():
                r.takeAt(0)
        self.buttons = {}
        for a in actions:
            b = QPushButton(f"{a.key}  {a.label}")
            b.setObjectName("fkey")
            if self.polished:
                no_focus(b)
            b.setEnabled(a.enabled)
            b.clicked.connect(lambda _c=False, k=a.key: self._run(k))
            self.rows[1 if a.key.startswith("Shift+") else 0].addWidget(b)
            self.buttons[a.key] = b
        for r in self.rows:
            r.addStretch(1)

    def _run(self, key: str) -> None:
        a = self._actions.get(key)
        if a is not None and a.enabled:
            a.run()


class StatusStrip(QFrame):
    sync_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        self.online = QLabel("● Starting")
        self.last_sync = QLabel("Last sync —")
        self.outbox = QLabel("Outbox —")
        self.policy = QLabel("Policy —")
        self.printer = QLabel("Print queue —")
        self.pmp = QLabel("")
        self.pmp.hide()
        for w in (self.online, self.last_sync, self.outbox, self.policy, self.printer,
                  self.pmp):
            lay.addWidget(w)
        lay.addStretch(1)
        self.sync = QPushButton("F12  Sync now")
        self.sync.setObjectName("fkey")
        self.sync.clicked.connect(self.sync_clicked.emit)
        lay.addWidget(self.sync)

    def show_status(self, st: Any) -> None:
        if st.online is None:
            self.online.setText("● Not synced yet" if st.sync_available
                                else "● Standalone (not enrolled)")
            self.online.setObjectName("offline")
        elif st.online:
            self.online.setText("● Online")
            self.online.setObjectName("online")
        else:
            self.online.setText("● OFFLINE")
            self.online.setObjectName("offline")
        self.online.style().unpolish(self.online)
        self.online.style().polish(self.online)
        last = (st.last_sync or "never")
        self.last_sync.setText(f"Last sync {last[:16].replace('T', ' ')}")
        self.outbox.setText(f"Outbox {st.pending_outbox} pending")
        if st.bundle_version:
            hours = "" if st.hours_left is None else (
                f" · {st.hours_left:.0f} h offline left" if st.hours_left >= 0
                else " · OFFLINE ALLOWANCE EXPIRED")
            self.policy.setText(f"Policy {st.bundle_version}{hours}")
        else:
            self.policy.setText(f"Policy: none installed ({st.engine} rules)")
        self.printer.setText(f"Print queue {st.print_queue}")
        # controlled dispensings the state PMP has not been sent (pharmos pmp report)
        unreported = int(getattr(st, "pmp_unreported", 0) or 0)
        alert = getattr(st, "pmp_alert", None)
        self.pmp.setVisible(unreported > 0)
        self.pmp.setText(f"PMP {unreported} unreported" + (" — DUE" if alert else ""))
        self.pmp.setToolTip(alert or "controlled dispensings not yet in a PMP report")
        self.pmp.setObjectName("offline" if alert else "")
        self.pmp.style().unpolish(self.pmp)
        self.pmp.style().polish(self.pmp)


class DecisionPanel(QFrame):
    """The compliance result for the cart: verdict, reasons with citations, obligations."""

    VERDICTS: ClassVar[dict[str, str]] = {
        "allow": "✔ ALLOWED", "hold": "◆ ON HOLD", "deny": "✖ REFUSED", "none": "No decision yet"}

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("decision")
        self.setProperty("kind", "none")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        self.verdict = QLabel(self.VERDICTS["none"])
        self.verdict.setObjectName("verdict")
        self.reasons = QLabel()
        self.reasons.setWordWrap(True)
        self.reasons.setTextFormat(_qt().TextFormat.RichText)
        self.engine = QLabel()
        self.engine.setObjectName("muted")
        lay.addWidget(self.verdict)
        lay.addWidget(self.reasons)
        lay.addWidget(self.engine)
        self.codes: list[str] = []
        self.kind = "none"

    def show_decision(self, decision: Any) -> None:
        if decision is None:
            kind = "none"
            reasons: list[Any] = []
            obligations: list[str] = []
            engine = ""
        else:
            d = decision.to_json() if hasattr(decision, "to_json") else decision
            kind = d["decision"]
            reasons = d.get("reasons", [])
            obligations = list(d.get("obligations", []))
            engine = (f"{d.get('engine')} · bundle {d.get('bundle_version')}"
                      if d.get("bundle_version") else f"{d.get('engine')} rules")
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.verdict.setText(self.VERDICTS.get(kind, kind))
        self.codes = [r["code"] for r in reasons]
        parts = []
        for r in reasons:
            sev = r.get("severity", "deny")
            icon = {"deny": "✖", "hold": "◆", "warn": "⚠", "info": "ℹ"}.get(sev, "•")
            cite = f"<br/><i>{esc(r['citation'])}</i>" if r.get("citation") else ""
            parts.append(f"<p>{icon} <b>{esc(r['code'])}</b> — {esc(r['message'])}{cite}</p>")
        if obligations:
            parts.append("<p><b>Obligations:</b> " + ", ".join(esc(o) for o in obligations)
                         + "</p>")
        self.reasons.setText("".join(parts))
        self.engine.setText(engine)


def esc(text: Any) -> str:
    """Text for a rich-text label: what people type is never read as markup."""
    return (str("" if text is None else text).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def scroll(widget: QWidget, width: int | None = None) -> QWidget:
    """A column that scrolls instead of growing the window."""
    from PySide6.QtWidgets import QScrollArea

    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(_qt().ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    if width is not None:
        area.setFixedWidth(width)
    return area


def table(model: Any, *, stretch: int | tuple[int, ...] = 1) -> QTableView:
    from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

    v = QTableView()
    v.setModel(model)
    v.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    v.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    v.setAlternatingRowColors(True)
    v.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    v.verticalHeader().setVisible(False)
    v.verticalHeader().setDefaultSectionSize(34)
    h = v.horizontalHeader()
    h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    for col in (stretch if isinstance(stretch, tuple) else (stretch,)):
        h.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
    v.setWordWrap(False)
    return v


def line(placeholder: str = "", name: str | None = None) -> QLineEdit:
    e = QLineEdit()
    e.setPlaceholderText(placeholder)
    if name:
        e.setObjectName(name)
    return e


def heading(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("heading")
    lab.setWordWrap(True)
    return lab


def muted(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("muted")
    lab.setWordWrap(True)
    return lab


def form(parent: QWidget | None = None) -> QFormLayout:
    from PySide6.QtWidgets import QFormLayout

    Qt = _qt()
    f = QFormLayout(parent)
    f.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    f.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    f.setVerticalSpacing(8)
    return f


def primary(text: str, slot: Callable[[], None]) -> QPushButton:
    from PySide6.QtWidgets import QSizePolicy

    b = QPushButton(text)
    b.setObjectName("primary")
    no_focus(b)
    b.clicked.connect(slot)
    b.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
    return b
