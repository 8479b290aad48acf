"""Sign-in and lock screen. Each person signs in with their own user name and PIN or
password (45 CFR 164.312(a)(2)(i)); the terminal locks after the idle time (164.312(a)(2)(iii))."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from terminal.screens.base import Screen
from terminal.screens.widgets import Action, heading, line, muted

if TYPE_CHECKING:
    from pharmacy.users import Session


class LoginScreen(Screen):
    title = "Sign in"

    def __init__(self, win: object) -> None:
        super().__init__(win)  # type: ignore[arg-type]
        outer = QGridLayout(self)
        card = QFrame()
        card.setObjectName("card")
        card.setStyleSheet("QFrame#card { background: #ffffff; border: 1px solid #aab7b8; "
                           "border-radius: 10px; }")
        card.setFixedWidth(520)
        lay = QVBoxLayout(card)
        lay.setContentsMargins(32, 28, 32, 28)
        lay.setSpacing(12)
        self.head = heading("Sign in")
        self.head.setStyleSheet("font-size: 26px;")
        self.sub = muted("Your own user name and PIN. Shared counter logins are not allowed.")
        self.user = line("user name", "user")
        self.secret = line("PIN or password", "secret")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        f = QGridLayout()  # not QFormLayout: the sign-in screen is the first paint
        f.addWidget(QLabel("User"), 0, 0)
        f.addWidget(self.user, 0, 1)
        f.addWidget(QLabel("PIN"), 1, 0)
        f.addWidget(self.secret, 1, 1)
        self.button = QPushButton("Sign in  (Enter)")
        self.button.setObjectName("primary")
        self.button.clicked.connect(self.submit)
        self.hint = muted("")
        lay.addWidget(self.head)
        lay.addWidget(self.sub)
        lay.addLayout(f)
        lay.addWidget(self.button)
        lay.addWidget(self.hint)
        outer.setRowStretch(0, 1)
        outer.setRowStretch(2, 2)
        outer.setColumnStretch(0, 1)
        outer.setColumnStretch(2, 1)
        outer.addWidget(card, 1, 1)
        self.user.returnPressed.connect(self.secret.setFocus)
        self.secret.returnPressed.connect(self.submit)
        self.locked_user: str | None = None
        self._busy = False

    def fkey_actions(self) -> list[Action]:
        return [Action("F1", "Help", self.win.show_help)]

    def show_locked(self, session: Session | None) -> None:
        self.secret.clear()
        if session is None:
            self.locked_user = None
            self.head.setText("Sign in")
            self.user.clear()
            self.user.setEnabled(True)
            self.user.setFocus()
        else:
            self.locked_user = session.username
            self.head.setText(f"Locked — {session.display_name}")
            self.sub.setText("The terminal locked itself after being idle. Sign in again to "
                             "continue, or another person signs in to start afresh.")
            self.user.setText(session.username)
            self.secret.setFocus()

    def set_no_users(self, none: bool, data_dir: str) -> None:
        if none:
            self.hint.setText(
                "No users on this terminal yet. A manager creates them:\n"
                f"pharmos user add --data-dir {data_dir} --username NAME --role manager")
        else:
            self.hint.setText("")

    def submit(self) -> None:
        if self._busy:
            return
        name, secret = self.user.text().strip(), self.secret.text()
        if not name or not secret:
            self.user.setFocus() if not name else self.secret.setFocus()
            return
        self._busy = True
        self.secret.clear()

        def done(session: Session) -> None:
            self._busy = False
            self.win.signed_in(session)

        def failed(exc: BaseException) -> bool:
            self._busy = False
            self.secret.setFocus()
            return False  # shown in the error bar

        self.db(self.counter.login, name, secret, on_done=done, on_error=failed)

    def on_scan(self, text: str) -> None:
        self.info("Sign in first; the scan was not used.")
