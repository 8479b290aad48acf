"""The counter terminal's main window and entry points (``pharmos terminal``).

Start-up is ordered for a fast first paint: Qt and the window come up on the main thread
while the database worker opens the store; the first thing painted is the sign-in screen.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from terminal.screens.base import Screen
from terminal.screens.login import LoginScreen
from terminal.screens.widgets import STYLE, Action, ErrorBar, FKeyBar, StatusStrip, muted
from terminal.tasks import TaskManager

if TYPE_CHECKING:  # the core and the other screens load after the first paint
    from pharmacy.users import IdleLock, Session
    from terminal.counter import Counter, Status
    from terminal.scanning import InputRouter

log = logging.getLogger("pharmos.terminal")

GLOBAL_KEYS = (("F1", "Help"), ("F2", "Sale"), ("F3", "Prescriptions"), ("F4", "Inventory"),
               ("F11", "Lock"), ("F12", "Sync now"))


class CounterRef:
    """The counter as seen from the main thread: attribute access returns a call that runs
    against the real Counter on the database worker (which opens it first, FIFO)."""

    def __init__(self) -> None:
        self.counter: Counter | None = None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.counter is None:
                raise RuntimeError("the store is not open")
            return getattr(self.counter, name)(*args, **kwargs)

        call.__name__ = name
        return call


class _PaintProbe(QObject):
    """Records the first paint (MainWindow.paintEvent reports to it)."""

    painted = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.at: float | None = None

    def saw_paint(self) -> None:
        if self.at is None:
            self.at = time.time()
            self.painted.emit()


class MainWindow(QMainWindow):
    status_shown = Signal(object)

    def __init__(self, data_dir: Path, tasks: TaskManager, *,
                 counter_factory: Callable[[], Counter] | None = None) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.tasks = tasks
        self.router: InputRouter | None = None
        self.counter = CounterRef()
        self.counter_factory = counter_factory
        self.session: Session | None = None
        self.locked: Session | None = None
        self.status: Status | None = None
        self.idle: IdleLock | None = None
        self.idle_seconds = 120
        self.store_ready = False
        self.started = False
        self.start_scheduler = False
        self.scheduler: Any = None
        self.paint_probe: Any = None
        self.setWindowTitle("pharmos counter")
        self.resize(1366, 768)

        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self._topbar())
        self.errors = ErrorBar()
        outer.addWidget(self.errors)
        self.stack = QStackedWidget()
        outer.addWidget(self.stack, 1)
        self.fkeys = FKeyBar()
        outer.addWidget(self.fkeys)
        self.statusbar_strip = StatusStrip()
        self.statusbar_strip.sync_clicked.connect(self.sync_now)
        outer.addWidget(self.statusbar_strip)
        self.setCentralWidget(central)

        self.login = LoginScreen(self)
        self.stack.addWidget(self.login)
        self.help: QWidget | None = None
        self.current: Screen = self.login
        self.previous: Screen = self.login
        self.show_screen(self.login)
        tasks.failed.connect(self.errors.show_error)

    def finish_startup(self, *, wedge: Any = None, hw_config: Any = None,
                       serial: bool = True) -> None:
        """Everything the first paint does not need: the other screens, the core, the store,
        scanners. Called right after the first paint (or at once in tests)."""
        if self.started:
            return
        self.started = True
        from terminal.screens.widgets import no_focus

        for b in self.nav.values():
            b.setMinimumWidth(b.sizeHint().width() + 24)
        no_focus(*self.nav.values(), self.lock_button, self.statusbar_strip.sync)
        self.errors.polish()
        self.fkeys.polish()
        self.help = self._help_page()
        self.stack.addWidget(self.help)
        from terminal.screens.inventory import InventoryScreen
        from terminal.screens.rx import RxScreen
        from terminal.screens.sale import SaleScreen

        self.sale = SaleScreen(self)
        self.rx = RxScreen(self)
        self.inventory = InventoryScreen(self)
        for s in (self.sale, self.rx, self.inventory):
            self.stack.addWidget(s)
        self.previous = self.sale
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        from terminal.scanning import InputRouter, make_wedge

        if wedge is None:
            wedge = make_wedge(hw_config)
        self.router = InputRouter(app, wedge)
        self.router.fkey.connect(self.handle_fkey)
        self.router.scanned.connect(self.handle_scan)
        self.router.activity.connect(self.touch)
        self.router.scanner_status.connect(self._scanner_status)
        if serial and hw_config is not None:
            try:
                self.router.start_serial(hw_config.scanners)
            except Exception as e:  # a serial scanner problem must not stop the counter
                log.warning("serial scanners not started: %s", e)
        self._idle_timer = QTimer(self)
        self._idle_timer.timeout.connect(self._check_idle)
        self._idle_timer.start(1000)
        self._status_timer = QTimer(self)
        self._status_timer.timeout.connect(self.refresh_status)
        self._status_timer.start(20_000)

        def open_store() -> dict[str, Any]:
            from terminal import integrations
            from terminal.counter import Counter

            factory = self.counter_factory or (lambda: Counter.open(str(self.data_dir)))
            self.counter.counter = factory()
            c = self.counter.counter
            from terminal.wiring import freeze_startup_heap

            freeze_startup_heap()  # start-up is done: keep GC pauses off the sale path
            return {"has_users": c.has_users(), "store_id": c.store.store_id,
                    "enrolled": integrations.sync_status(c.store).available,
                    "pharmacy": c.store.get_setting("pharmacy.name") or "",
                    "idle": c.idle_lock_seconds()}

        self.tasks.db(open_store, on_done=self._store_open)

    # ---- chrome -------------------------------------------------------------------------------
    def _topbar(self) -> QFrame:
        bar = QFrame()
        bar.setObjectName("topbar")
        lay = QHBoxLayout(bar)
        lay.setContentsMargins(6, 0, 10, 0)
        brand = QLabel("℞ pharmos")
        brand.setObjectName("brand")
        lay.addWidget(brand)
        self.nav: dict[str, QPushButton] = {}
        for key, label, target in (("F2", "Sale", "sale"), ("F3", "Prescriptions", "rx"),
                                   ("F4", "Inventory", "inventory")):
            b = QPushButton(f"{key}  {label}")
            b.setObjectName("nav")
            b.setCheckable(True)
            b.clicked.connect(lambda _c=False, t=target: self.go(t))
            lay.addWidget(b)
            self.nav[target] = b
        lay.addStretch(1)
        self.where = QLabel("")
        self.who = QLabel("Not signed in")
        self.who.setObjectName("who")
        lock = QPushButton("F11  Lock")
        lock.setObjectName("lock")
        self.lock_button = lock
        lock.clicked.connect(lambda: self.lock("lock"))
        glass = QPushButton("Emergency access")
        glass.setObjectName("breakglass")
        glass.setToolTip("Open patient information your role is not shown, with a reason; "
                         "logged and reviewed (45 CFR 164.312(a)(2)(ii))")
        glass.clicked.connect(self.open_break_glass)
        glass.hide()
        self.glass_button = glass
        self.glass_dialog: Any = None
        lay.addWidget(self.where)
        lay.addWidget(self.who)
        lay.addWidget(glass)
        lay.addWidget(lock)
        return bar

    # ---- emergency access ---------------------------------------------------------------------
    def _glass_actions(self) -> list[str]:
        from pharmacy import users

        return [] if self.session is None else users.break_glass_actions(self.session.role)

    def open_break_glass(self) -> None:
        """A small form: what to open and why; submitting it asks the core for the grant."""
        from PySide6.QtWidgets import QComboBox, QDialog, QFormLayout, QLineEdit

        from pharmacy import users

        actions = self._glass_actions()
        if not actions:
            return
        dlg = QDialog(self)
        dlg.setWindowTitle("Emergency access")
        form = QFormLayout(dlg)
        what = QComboBox()
        for a in actions:
            what.addItem(users.ACTION_LABELS.get(a, a).capitalize(), a)
        why = QLineEdit()
        why.setPlaceholderText("why, in a sentence (at least 10 characters)")
        ok = QPushButton("Open, and log it for review")
        form.addRow("Open", what)
        form.addRow("Reason", why)
        form.addRow(muted("Logged with your name; a manager or pharmacist reviews every "
                          "emergency access."))
        form.addRow(ok)
        ok.clicked.connect(lambda: self.request_break_glass(str(what.currentData()),
                                                            why.text()))
        dlg.what, dlg.why, dlg.ok = what, why, ok  # type: ignore[attr-defined]
        self.glass_dialog = dlg
        dlg.show()

    def request_break_glass(self, action: str, reason: str) -> None:
        self.tasks.db(self.counter.break_glass, action, reason, on_done=self._glass_granted)

    def _glass_granted(self, grant: dict[str, Any]) -> None:
        from pharmacy import users

        if self.glass_dialog is not None:
            self.glass_dialog.close()
            self.glass_dialog = None
        label = users.ACTION_LABELS.get(grant["action"], grant["action"])
        self.errors.show_warning(
            f"Emergency access: you may {label} until {grant['until'][11:16]} UTC. This is "
            "logged and will be reviewed (45 CFR 164.312(a)(2)(ii)).")
        if self.current is not self.login:
            self.current.refresh_actions()

    def _help_page(self) -> QWidget:
        w = QWidget()
        w.setObjectName("screen")
        lay = QVBoxLayout(w)
        lay.setContentsMargins(40, 30, 40, 30)
        from PySide6.QtCore import Qt

        self.help_text = QLabel()
        self.help_text.setTextFormat(Qt.TextFormat.RichText)
        self.help_text.setWordWrap(True)
        lay.addWidget(self.help_text)
        lay.addWidget(muted("Scans work on every screen. F1 or Esc closes this help."))
        lay.addStretch(1)
        return w

    def _store_open(self, info: dict[str, Any]) -> None:
        self.store_ready = True
        self.idle_seconds = int(info["idle"])
        name = info["pharmacy"] or "Store"
        self.where.setText(f"{name} · {info['store_id']}")
        self.setWindowTitle(f"pharmos counter — {name} {info['store_id']}")
        self.login.set_no_users(not info["has_users"], str(self.data_dir))
        if info.get("enrolled") and self.start_scheduler:
            from terminal import integrations

            self.scheduler = integrations.sync_scheduler(str(self.data_dir))
            if self.scheduler is not None:
                self.tasks.net(self.scheduler.start)
        self.refresh_status()

    # ---- screens --------------------------------------------------------------------------------
    def show_screen(self, screen: Screen) -> None:
        if screen is not self.login and self.current is not self.login:
            self.previous = self.current
        self.current = screen
        self.stack.setCurrentWidget(screen)
        for target, b in self.nav.items():
            b.setChecked(getattr(self, target, None) is screen)
        self.fkeys.set_actions(screen.fkey_actions())
        screen.on_enter()

    def go(self, target: str) -> None:
        if self.session is None or not self.started:
            return
        self.show_screen(getattr(self, target))

    def show_help(self) -> None:
        if self.help is None:
            return
        if self.stack.currentWidget() is self.help:
            self.stack.setCurrentWidget(self.current)
            return
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{label}</td></tr>"
                       for k, label in GLOBAL_KEYS)
        screen_rows = "".join(f"<tr><td><b>{a.key}</b></td><td>{a.label}"
                              f"{'' if a.enabled else ' (not available now)'}</td></tr>"
                              for a in self.current.fkey_actions())
        self.help_text.setText(
            f"<h1>Keyboard</h1><table cellpadding='6'>{rows}</table>"
            f"<h2>{self.current.title}</h2><table cellpadding='6'>{screen_rows}</table>")
        self.stack.setCurrentWidget(self.help)

    # ---- input --------------------------------------------------------------------------------
    def handle_fkey(self, name: str) -> None:
        if self.stack.currentWidget() is self.help and name != "F1":
            self.stack.setCurrentWidget(self.current)
        if name == "F1":
            self.show_help()
            return
        if name == "F12":
            self.sync_now()
            return
        if self.session is None:
            return
        if name in ("F2", "F3", "F4"):
            self.go({"F2": "sale", "F3": "rx", "F4": "inventory"}[name])
            return
        if name == "F11":
            self.lock("lock")
            return
        action: Action | None = next(
            (a for a in self.current.fkey_actions() if a.key == name), None)
        if action is None:
            return
        if not action.enabled:
            self.errors.show_info(f"{action.key} {action.label} is not available here now.")
            return
        action.run()

    def handle_scan(self, event: Any) -> None:
        self.touch()
        if getattr(event, "error", None) is not None:
            self.errors.show_error(event.error)
            return
        if self.session is None:
            self.login.on_scan(event.text)
            return
        if self.stack.currentWidget() is self.help:
            self.stack.setCurrentWidget(self.current)
        self.current.on_scan(event.text)

    def scan_to_sale(self, text: str) -> None:
        """A product scanned where it is not expected goes to the sale."""
        self.show_screen(self.sale)
        self.sale.on_scan(text)

    def _scanner_status(self, st: Any) -> None:
        if st.connected:
            self.errors.show_info(st.message)
        else:
            self.errors.show_warning(st.message)

    # ---- session ------------------------------------------------------------------------------
    def signed_in(self, session: Session) -> None:
        same = self.locked is not None and self.locked.user_id == session.user_id
        self.session = session
        self.locked = None
        from pharmacy.users import IdleLock

        self.who.setText(f"{session.display_name} · {session.role}")
        self.glass_button.setVisible(bool(self._glass_actions()))
        self.idle = IdleLock(self.idle_seconds, _now())
        self.errors.clear()
        if not same:
            for s in (self.sale, self.rx, self.inventory):
                s.reset()
            self.previous = self.rx if session.role == "pharmacist" else self.sale
        self.show_screen(self.previous)
        self.errors.show_info(f"Signed in as {session.display_name} ({session.role}).", 3000)
        self.refresh_status()

    def lock(self, reason: str = "lock") -> None:
        if self.session is None:
            return
        self.tasks.db(self.counter.lock, "idle_lock" if reason == "idle" else reason)
        self.locked = self.session
        self.session = None
        self.glass_button.hide()
        if self.glass_dialog is not None:
            self.glass_dialog.close()
            self.glass_dialog = None
        self.who.setText("Locked")
        self.login.show_locked(self.locked)
        self.show_screen(self.login)
        if reason == "idle":
            self.errors.show_warning(f"Locked after {self.idle_seconds} s idle "
                                     "(45 CFR 164.312(a)(2)(iii)).")

    def touch(self) -> None:
        if self.idle is not None:
            self.idle.touch(_now())

    def _check_idle(self) -> None:
        if self.session is not None and self.idle is not None and self.idle.expired(_now()):
            self.lock("idle")

    # ---- status and sync ------------------------------------------------------------------------
    def refresh_status(self) -> None:
        if not self.store_ready:
            return

        def shown(st: Status) -> None:
            self.status = st
            self.statusbar_strip.show_status(st)
            self.status_shown.emit(st)

        self.tasks.db(self.counter.status, on_done=shown)

    def sync_now(self) -> None:
        from terminal import integrations

        self.statusbar_strip.sync.setEnabled(False)

        def done(result: dict[str, Any]) -> None:
            self.statusbar_strip.sync.setEnabled(True)
            self.errors.show_info(f"Synced: {_summary(result)}")
            self.refresh_status()

        def failed(exc: BaseException) -> bool:
            self.statusbar_strip.sync.setEnabled(True)
            self.refresh_status()
            return False

        self.tasks.net(integrations.sync_now, str(self.data_dir), on_done=done,
                       on_error=failed)

    # ---- closing ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        if getattr(self, "_shut", False):
            return
        self._shut = True
        for timer in (getattr(self, "_idle_timer", None), getattr(self, "_status_timer", None)):
            if timer is not None:
                timer.stop()
        if self.router is not None:
            self.router.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

        def close() -> None:
            if self.counter.counter is not None:
                self.counter.counter.close()
                self.counter.counter = None

        self.tasks.db(close)
        self.tasks.wait_idle(10)
        self.tasks.shutdown()

    def paintEvent(self, event: Any) -> None:
        super().paintEvent(event)
        if self.paint_probe is not None:
            self.paint_probe.saw_paint()

    def closeEvent(self, event: Any) -> None:
        if self.session is not None:
            self.tasks.db(self.counter.logout)
        self.shutdown()
        super().closeEvent(event)


def _summary(result: dict[str, Any]) -> str:
    keys = ("pushed", "pulled", "events", "applied")
    parts = [f"{k} {result[k]}" for k in keys if k in result]
    return ", ".join(parts) or "done"


def _now() -> Any:
    from pharmacy.clock import utcnow

    return utcnow()


# ---- entry points ---------------------------------------------------------------------------
def process_age_ms() -> float | None:
    """Milliseconds since this process started (Linux), for the smoke timing."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        ticks = os.sysconf("SC_CLK_TCK")
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / ticks) * 1000
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _quiet_qt_messages() -> None:
    """Drop the offscreen plugin's size-hint notices; keep every other Qt message."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(mode: Any, context: Any, message: str) -> None:
        if "propagateSizeHints" in message:
            return
        log.warning("qt: %s", message)

    qInstallMessageHandler(handler)


def build(data_dir: Path, *, app: QApplication | None = None, wedge: Any = None,
          counter_factory: Callable[[], Counter] | None = None, serial: bool = True,
          defer: bool = False) -> tuple[QApplication, MainWindow]:
    """The application and its window. ``defer``: finish start-up after the first paint."""
    app = app or QApplication.instance() or QApplication([])  # type: ignore[assignment]
    assert isinstance(app, QApplication)
    if app.styleSheet() != STYLE:  # setting it again re-polishes every widget there is
        app.setStyleSheet(STYLE)
    _quiet_qt_messages()
    tasks = TaskManager()
    win = MainWindow(data_dir, tasks, counter_factory=counter_factory)

    def finish() -> None:
        hw = _hardware_config(data_dir) if wedge is None or serial else None
        win.finish_startup(wedge=wedge, hw_config=hw, serial=serial)

    if defer:
        probe = _PaintProbe()
        win.paint_probe = probe
        probe.painted.connect(lambda: QTimer.singleShot(0, finish))
    else:
        finish()
    return app, win


def _hardware_config(data_dir: Path) -> Any:
    """The hardware settings, read with a short-lived connection (None without a store)."""
    import json
    import sqlite3

    db = Path(data_dir) / "pharmos.db"
    if not db.exists():
        return None
    try:
        from hardware.config import config_from_json

        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT value FROM settings WHERE key = 'hardware'").fetchone()
        finally:
            conn.close()
        return config_from_json(json.loads(row[0]) if row else None)
    except Exception as e:
        log.warning("hardware settings not readable: %s", e)
        return None


def run(app: QApplication, data_dir: Path) -> int:
    _, win = build(data_dir, app=app, defer=True)
    win.start_scheduler = True
    win.show()
    return int(app.exec())


def smoke(app: QApplication, data_dir: Path, qt_ms: float, t0: float,
          timeout_s: float = 10.0) -> dict[str, Any]:
    """Paint the main window once, let start-up finish, exit. ``t0``: launcher start
    (perf_counter); ``qt_ms``: its PySide6 import + QApplication."""
    _, win = build(data_dir, app=app, defer=True, serial=False)
    probe: _PaintProbe = win.paint_probe
    win.show()
    deadline = time.perf_counter() + timeout_s
    while probe.at is None and time.perf_counter() < deadline:
        app.processEvents()
    painted_perf = time.perf_counter()
    if probe.at is None:  # a platform that never exposes: render it ourselves
        win.grab()
        probe.at = time.time()
    age = process_age_ms()
    lag = (time.time() - probe.at) * 1000
    while not win.started and time.perf_counter() < deadline:
        app.processEvents()
    win.tasks.wait_idle(timeout_s)
    out = {"first_paint_ms": round((painted_perf - t0) * 1000, 1),
           "qt_import_ms": round(qt_ms, 1),
           "since_process_start_ms": None if age is None else round(age - lag, 1),
           "paint_at": probe.at, "store_open": win.store_ready,
           "platform": app.platformName()}
    win.shutdown()
    return out
