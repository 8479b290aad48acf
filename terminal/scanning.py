"""Keyboard input for the whole application: wedge scans, F-keys and activity.

One application-wide event filter feeds every key press to the hardware package's wedge
capture state machine (``hardware.wedge.WedgeCapture``, Qt-free). Keys are held while they
might be a scan (a wedge types 1-15 ms per character, people 60+ ms); a fast burst ending in
Enter becomes one scan event, anything else is replayed, in order, to the widget it was meant
for. So scans work on every screen whatever has focus. F-keys are taken here too and routed
to the current screen; every key or click counts as activity for the idle lock.

Serial scanners have their own reader threads (``hardware.scanner.SerialScanner``); their
events arrive here through a queued signal.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication, QWidget

_KEYS: dict[str, Any] = {}


def _keys() -> dict[str, Any]:
    """Key tables, built on first use (Qt's key enum is large; not needed for first paint)."""
    if not _KEYS:
        k = Qt.Key
        _KEYS["fkeys"] = {int(getattr(k, f"Key_F{n}").value): f"F{n}" for n in range(1, 13)}
        _KEYS["enter"] = {int(k.Key_Return.value), int(k.Key_Enter.value)}
        _KEYS["pass"] = {int(x.value) for x in (
            k.Key_Escape, k.Key_Tab, k.Key_Backtab, k.Key_Up, k.Key_Down, k.Key_Left,
            k.Key_Right, k.Key_PageUp, k.Key_PageDown, k.Key_Home, k.Key_End,
            k.Key_Backspace, k.Key_Delete)}
    return _KEYS


def make_wedge(store_config: Any = None) -> Any:
    """The wedge state machine from the hardware settings (defaults without them)."""
    from hardware.wedge import WedgeCapture

    if store_config is not None:
        for sc in store_config.scanners:
            if sc.kind == "wedge":
                return WedgeCapture.from_config(sc)
    return WedgeCapture()


class InputRouter(QObject):
    """Application-wide event filter: wedge scans, F-keys, activity."""

    scanned = Signal(object)  # hardware.scans.ScanEvent
    scanner_status = Signal(object)  # hardware.scans.ScannerStatus
    fkey = Signal(str)  # "F9", "Shift+F9"
    activity = Signal()
    _from_thread = Signal(object)

    def __init__(self, app: QApplication, wedge: Any) -> None:
        super().__init__()
        self._app = app
        self.wedge = wedge
        self._held: deque[tuple[QWidget, QKeyEvent]] = deque()
        self._replaying = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._poll)
        self._last_activity = 0.0
        self._from_thread.connect(self._thread_event, Qt.ConnectionType.QueuedConnection)
        self.serial: list[Any] = []
        self.enabled = True
        app.installEventFilter(self)

    # ---- serial scanners ------------------------------------------------------------------------
    def start_serial(self, configs: Any) -> list[str]:
        """Start a reader thread per configured serial scanner; returns their ports."""
        from hardware.scanner import SerialScanner

        ports = []
        for sc in configs:
            if sc.kind != "serial" or not sc.port:
                continue
            reader = SerialScanner.from_config(sc, on_event=self._from_thread.emit)
            reader.start()
            self.serial.append(reader)
            ports.append(sc.port)
        return ports

    def _thread_event(self, event: Any) -> None:
        if hasattr(event, "connected"):
            self.scanner_status.emit(event)
        else:
            self.scanned.emit(event)

    def stop(self) -> None:
        self._app.removeEventFilter(self)
        for reader in self.serial:
            reader.stop()
        self.serial.clear()

    # ---- the filter -----------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        et = event.type()
        if et in (QEvent.Type.MouseButtonPress, QEvent.Type.Wheel):
            self._touch()
            if self._held:
                self._deliver(self.wedge.flush())
            return False
        if et != QEvent.Type.KeyPress or self._replaying or not self.enabled:
            return False
        if not isinstance(obj, QWidget) or not isinstance(event, QKeyEvent):
            return False
        self._touch()
        tables = _keys()
        raw_key: Any = event.key()
        key = int(raw_key.value) if hasattr(raw_key, "value") else int(raw_key)
        mods = event.modifiers()
        if key in tables["fkeys"]:
            if self._held:
                self._deliver(self.wedge.flush())
            name = tables["fkeys"][key]
            if mods & Qt.KeyboardModifier.ShiftModifier:
                name = "Shift+" + name
            self.fkey.emit(name)
            return True
        text = "\r" if key in tables["enter"] else event.text()
        ctrl_like = mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                            | Qt.KeyboardModifier.MetaModifier)
        gs = text == "\x1d"
        if not text or (ctrl_like and not gs) or (key in tables["pass"] and not gs):
            if self._held:
                self._deliver(self.wedge.flush())
            return False
        self._held.append((obj, QKeyEvent(event.type(), event.key(), event.modifiers(),
                                          event.text(), event.isAutoRepeat(), event.count())))
        self._deliver(self.wedge.feed(time.monotonic(), text))
        self._arm()
        return True

    def _touch(self) -> None:
        now = time.monotonic()
        if now - self._last_activity > 0.25:
            self._last_activity = now
            self.activity.emit()

    def _arm(self) -> None:
        deadline = self.wedge.deadline()
        if deadline is None:
            self._timer.stop()
            return
        ms = max(1, int((deadline - time.monotonic()) * 1000) + 2)
        self._timer.start(ms)

    def _poll(self) -> None:
        self._deliver(self.wedge.poll(time.monotonic()))
        self._arm()

    def _deliver(self, events: list[Any]) -> None:
        for ev in events:
            keys = getattr(ev, "keys", None)
            if keys is not None:  # PassThrough: replay the first len(keys) held key presses
                for _ in range(len(keys)):
                    if not self._held:
                        break
                    target, kev = self._held.popleft()
                    self._replay(target, kev)
            else:  # a scan: the keys that made it are swallowed
                self._held.clear()
                self.scanned.emit(ev)

    def _replay(self, target: QWidget, kev: QKeyEvent) -> None:
        self._replaying = True
        try:
            QApplication.sendEvent(target, kev)
        finally:
            self._replaying = False
