"""A counter screen: a few widgets, its F-key actions, and what it does with a scan.

Screens never touch the store: every call into the core goes through ``self.db(...)`` to the
database worker, and the result comes back to a slot on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QWidget

from terminal.screens.widgets import Action

if TYPE_CHECKING:
    from terminal.app import MainWindow


class Screen(QWidget):
    title = ""

    def __init__(self, win: MainWindow) -> None:
        super().__init__()
        self.setObjectName("screen")
        self.win = win
        self.tasks = win.tasks
        self.counter = win.counter

    # ---- helpers -----------------------------------------------------------------------------
    def db(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
           on_error: Callable[[BaseException], bool | None] | None = None, **kw: Any) -> Any:
        return self.tasks.db(fn, *args, on_done=on_done, on_error=on_error, **kw)

    def can(self, action: str) -> bool:
        s = self.win.session
        return s is not None and s.can(action)  # the role, or an emergency-access grant

    def info(self, text: str) -> None:
        self.win.errors.show_info(text)

    def error(self, exc: BaseException) -> None:
        self.win.errors.show_error(exc)

    def refresh_actions(self) -> None:
        if getattr(self.win, "current", None) is self:
            self.win.fkeys.set_actions(self.fkey_actions())

    # ---- to override -------------------------------------------------------------------------
    def fkey_actions(self) -> list[Action]:
        return []

    def on_scan(self, text: str) -> None:
        """A scan arrived while this screen is shown."""

    def on_enter(self) -> None:
        """The screen became current."""

    def reset(self) -> None:
        """Another person signed in: forget everything shown."""
