"""Drives the counter window in tests: sign in, scan like a wedge scanner (fast key events
with Enter), press F-keys, wait for the database worker, read what the screen shows."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget

from pharmacy import catalog
from pharmacy.compliance import InterimGate
from pharmacy.store import Store

PINS = {"pharmacist": ("paula", "2580"), "technician": ("tom", "7391"),
        "cashier": ("cara", "4826"), "manager": ("max", "9035")}
GS = "\x1d"


def datamatrix(gtin: str, expiry: str, lot: str, serial: str | None = None) -> str:
    exp = date.fromisoformat(expiry)
    text = f"]d201{gtin}17{exp:%y%m%d}10{lot}"
    return text + (f"{GS}21{serial}" if serial else "")


class Term:
    """The real MainWindow over a store in ``data_dir`` opened with the test clock."""

    def __init__(self, qtbot: Any, win: Any, app: QApplication, data_dir: Path,
                 clock: Any, backend: Any, label_backend: Any) -> None:
        self.qtbot = qtbot
        self.win = win
        self.app = app
        self.data_dir = data_dir
        self.clock = clock
        self.backend = backend
        self.label_backend = label_backend

    @classmethod
    def start(cls, qtbot: Any, data_dir: Path, clock: Any, *, gate: Any = None,
              # a ComplianceGate, or a function of the worker's store returning one
              drawer_pin: int | None = 2) -> Term:
        from hardware.backends import RecordingBackend
        from hardware.config import HardwareConfig, PrinterConfig
        from hardware.printing import EscposPrinter
        from hardware.wedge import WedgeCapture
        from terminal.app import build
        from terminal.counter import Counter
        from terminal.devices import scan_settings

        cfg = HardwareConfig(printer=PrinterConfig(drawer_pin=drawer_pin))
        backend, label_backend = RecordingBackend(), RecordingBackend()
        receipt = EscposPrinter(cfg, backend=backend)
        label = EscposPrinter(cfg, backend=label_backend)

        def factory() -> Counter:
            from pharmacy.phi import FileKeyProvider

            store = Store.open(data_dir, clock=clock)
            import functools

            from pharmacy.gs1 import parse_scan

            parser = functools.partial(parse_scan, **scan_settings(store))
            g = gate(store) if callable(gate) else (gate or InterimGate())
            return Counter(store, g, FileKeyProvider(store.data_dir), receipt, label, parser)

        app = QApplication.instance()
        assert isinstance(app, QApplication)
        _, win = build(data_dir, app=app, wedge=WedgeCapture(), counter_factory=factory,
                       serial=False)
        win.show()
        qtbot.waitExposed(win)
        t = cls(qtbot, win, app, data_dir, clock, backend, label_backend)
        t.settle()
        return t

    def stop(self) -> None:
        self.win.shutdown()
        self.win.close()
        self.win.deleteLater()
        from PySide6.QtCore import QCoreApplication, QEvent

        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        self.app.processEvents()

    # ---- waiting ------------------------------------------------------------------------------
    def settle(self, extra_ms: int = 0) -> None:
        """Until the database worker is idle and every delivery has run."""
        for _ in range(3):
            assert self.win.tasks.wait_idle(20), "database worker did not finish"
            self.app.processEvents()
        if extra_ms:
            self.qtbot.wait(extra_ms)
            self.win.tasks.wait_idle(20)
            self.app.processEvents()

    def wait_until(self, cond: Any, timeout: int = 5000) -> None:
        def check() -> None:
            self.win.tasks.wait_idle(5)
            assert cond()

        self.qtbot.waitUntil(check, timeout=timeout)

    # ---- input --------------------------------------------------------------------------------
    def focus(self) -> QWidget:
        w = QApplication.focusWidget() or self.win
        return w

    def key(self, key: Qt.Key, text: str = "", mods: Any = Qt.KeyboardModifier.NoModifier,
            target: QWidget | None = None) -> None:
        w = target or self.focus()
        QApplication.sendEvent(w, QKeyEvent(QEvent.Type.KeyPress, key, mods, text))
        QApplication.sendEvent(w, QKeyEvent(QEvent.Type.KeyRelease, key, mods, text))

    def wedge_scan(self, text: str) -> None:
        """What a keyboard-wedge scanner does: every character within a few ms, then Enter.
        GS goes as a key event whose text is "\\x1d" (QTest.keyClicks would abort)."""
        for ch in text:
            if ch == GS:
                self.key(Qt.Key.Key_BracketRight, GS, Qt.KeyboardModifier.ControlModifier)
            else:
                self.key(Qt.Key.Key_A if ch.isalpha() else Qt.Key.Key_0, ch)
        self.key(Qt.Key.Key_Return, "\r")
        self.settle()

    def type_slowly(self, text: str, widget: QWidget) -> None:
        """A person typing (80 ms a key): the wedge capture must hand every key back."""
        widget.setFocus()
        for ch in text:
            self.key(Qt.Key.Key_A, ch, target=widget)
            self.qtbot.wait(80)
        self.qtbot.wait(80)

    def fkey(self, name: str) -> None:
        shift = name.startswith("Shift+")
        n = int(name.split("F")[-1])
        key = getattr(Qt.Key, f"Key_F{n}")
        mods = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
        self.key(key, "", mods)
        self.settle()

    # ---- session -----------------------------------------------------------------------------
    def sign_in(self, role: str) -> None:
        uname, pin = PINS[role]
        lg = self.win.login
        lg.user.setText(uname)
        lg.secret.setText(pin)
        lg.submit()
        self.settle()
        assert self.win.session is not None and self.win.session.role == role, \
            self.win.errors.text

    # ---- reading -------------------------------------------------------------------------------
    @property
    def error(self) -> str:
        return self.win.errors.text

    @property
    def error_code(self) -> str | None:
        return self.win.errors.code

    def gtin(self, ndc: str) -> str:
        with Store.open(self.data_dir, clock=self.clock) as s:
            return catalog.lookup(s.conn, ndc).gtin

    def counter_call(self, name: str, *args: Any) -> Any:
        """Run a Counter method on the worker and return its result (for assertions)."""
        fut = self.win.tasks.db(getattr(self.win.counter, name), *args)
        self.settle()
        return fut.result(5)

    def sql(self, query: str, *params: Any) -> list[Any]:
        def run() -> list[Any]:
            assert self.win.counter.counter is not None
            return [tuple(r) for r in self.win.counter.counter.store.conn.execute(query,
                                                                                  params)]
        fut = self.win.tasks.db(run)
        self.settle()
        return fut.result(5)


def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        QApplication.processEvents()
        if cond():
            return True
        time.sleep(0.01)
    return cond()
