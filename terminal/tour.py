"""Demo users and a scripted tour of the counter: sign in, sell, enter and dispense a
prescription, receive stock, check the controlled register. The tour drives the real window
(scans arrive the way a scanner's do) and is what `pharmos terminal --demo` runs when there
is no display, and what `python -m terminal.screenshots` photographs."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

DEMO_USERS = (("ava", "Ava Patel", "pharmacist", "2468"),
              ("tom", "Tom Reyes", "technician", "1357"),
              ("cara", "Cara Kim", "cashier", "3690"),
              ("max", "Max Weber", "manager", "8024"))
DEMO_PHARMACY = ("Main Street Pharmacy", "1200 Main St, Austin TX 78701")
GS = "\x1d"


def ensure_demo_store(data_dir: Path) -> bool:
    """Create the demo store (catalog, stock, policy) and demo users if missing."""
    from pharmacy import users
    from pharmacy.store import Store
    from terminal import demo_day

    created = False
    if not (Path(data_dir) / "pharmos.db").exists():
        demo_day.prepare_demo_store(Path(data_dir))
        created = True
    with Store.open(data_dir) as store:
        have = {u["username"] for u in users.list_users(store.conn)}
        fresh = not have
        for uname, name, role, pin in DEMO_USERS:
            if uname not in have:
                users.add_user(store, uname, name, role, pin)
        if store.get_setting("pharmacy.name") is None:
            store.set_setting("pharmacy.name", DEMO_PHARMACY[0])
            store.set_setting("pharmacy.address", DEMO_PHARMACY[1])
        if fresh:
            seed_prescriptions(store)
    return created


PRESCRIBER = {"name": "Dr. James Okafor", "address": "77 Elm Ave, Austin TX 78702",
              "dea": "AO7654329"}
SEED_RX = (  # patient, born, drug, qty, how far it got
    ("Ana Nguyen", "1980-04-12", "65162-627-10", 30, "intake"),
    ("Ben Smith", "1957-09-03", "68180-513-01", 30, "verified"),
    ("Chloe Garcia", "1992-01-22", "65862-017-01", 21, "will_call"),
    ("Dev Patel", "1975-06-30", "68382-028-01", 60, "verified"),
)


def seed_prescriptions(store: Any) -> int:
    """A few prescriptions in different states, so the demo queue has work in it."""
    from pharmacy import rx, users
    from pharmacy.errors import PharmosError
    from pharmacy.phi import FileKeyProvider
    from pharmacy.sales import Dispenser
    from terminal import wiring

    keys = FileKeyProvider(store.data_dir)
    tech = {"id": users.get_user(store.conn, "tom")["user_id"], "role": "technician"}
    pharm = {"id": users.get_user(store.conn, "ava")["user_id"], "role": "pharmacist"}
    disp = Dispenser(store, wiring.compliance_gate(store), keys=keys)
    today = store.clock().date()
    done = 0
    for name, born, ndc, qty, goal in SEED_RX:
        try:
            ch = rx.intake(store, keys, tech, {
                "patient": {"name": name, "birth_date": born,
                            "address": "Austin TX 78701"},
                "prescriber": PRESCRIBER, "ndc": ndc, "quantity": qty, "days_supply": 30,
                "refills_authorized": 2, "daw": 0, "written_on": (today - timedelta(days=1))
                .isoformat(), "directions": "Take as directed by your doctor",
                "electronic": True})
            fid = ch.fill_ids[0]
            done += 1
            if goal == "intake":
                continue
            rx.verify(store, pharm, fid)
            if goal == "verified":
                continue
            row = store.conn.execute(
                "SELECT p.gtin, b.expiry, b.lot FROM batches b JOIN products p ON "
                "p.ndc = b.ndc WHERE b.ndc = ? AND b.expiry >= ? ORDER BY b.expiry LIMIT 1",
                (ndc, today.isoformat())).fetchone()
            rx.fill(disp, keys, tech, fid, datamatrix(row[0], row[1], row[2]))
            rx.label(store, keys, tech, fid)
            rx.to_will_call(store, tech, fid, "A-3")
        except PharmosError:
            continue  # a seed the installed rules refuse is simply left out
    return done


def datamatrix(gtin: str, expiry: str, lot: str, serial: str | None = None) -> str:
    exp = date.fromisoformat(expiry)
    text = f"]d201{gtin}17{exp:%y%m%d}10{lot}"
    return text + (f"{GS}21{serial}" if serial else "")


class Lookup:
    """Read-only facts for scripting scans (a separate connection, never the worker's)."""

    def __init__(self, data_dir: Path) -> None:
        self.conn = sqlite3.connect(f"file:{Path(data_dir) / 'pharmos.db'}?mode=ro", uri=True)

    def package(self, ndc: str, *, expired: bool = False) -> str:
        today = date.today().isoformat()
        op = "<" if expired else ">="
        row = self.conn.execute(
            "SELECT p.gtin, b.expiry, b.lot FROM batches b JOIN products p ON p.ndc = b.ndc "
            f"WHERE b.ndc = ? AND b.status = 'active' AND b.expiry {op} ? "
            "ORDER BY b.expiry LIMIT 1", (ndc, today)).fetchone()
        if row is None:
            raise LookupError(f"no {'expired' if expired else 'sellable'} lot of {ndc}")
        return datamatrix(row[0], row[1], row[2], serial=f"SN{int(time.time() * 1000) % 10**8}")

    def new_lot(self, ndc: str, lot: str, months: int = 18) -> str:
        gtin = self.conn.execute("SELECT gtin FROM products WHERE ndc = ?", (ndc,)).fetchone()[0]
        exp = (date.today() + timedelta(days=30 * months)).replace(day=1) - timedelta(days=1)
        return datamatrix(gtin, exp.isoformat(), lot)

    def close(self) -> None:
        self.conn.close()


class Tour:
    """Drives a MainWindow step by step; ``shot`` saves the window as a PNG."""

    def __init__(self, win: Any, app: Any, data_dir: Path, out_dir: Path | None = None) -> None:
        self.win = win
        self.app = app
        self.look = Lookup(data_dir)
        self.out_dir = out_dir
        self.shots: list[str] = []
        self.steps: list[dict[str, Any]] = []

    def settle(self, seconds: float = 0.03) -> None:
        end = time.monotonic() + seconds
        while True:
            self.win.tasks.wait_idle(10)
            self.app.processEvents()
            if time.monotonic() >= end and self.win.tasks.pending == 0:
                break
            time.sleep(0.01)

    def scan(self, text: str) -> None:
        from hardware.scans import scan_event

        self.win.router.scanned.emit(scan_event("tour", text, time.monotonic()))
        self.settle()

    def key(self, name: str) -> None:
        self.win.handle_fkey(name)
        self.settle()

    def login(self, user: str) -> None:
        pin = next(p for u, _n, _r, p in DEMO_USERS if u == user)
        self.win.login.user.setText(user)
        self.win.login.secret.setText(pin)
        self.win.login.submit()
        self.settle()

    def step(self, name: str, fn: Callable[[], Any]) -> None:
        self.win.errors.clear()
        try:
            fn()
            self.settle()
            err = self.win.errors.code
            self.steps.append({"step": name, "ok": err is None, "error": err,
                               "message": self.win.errors.label.text() or None})
        except Exception as e:  # a broken step is reported, the tour goes on
            self.steps.append({"step": name, "ok": False, "error": type(e).__name__,
                               "message": str(e)})

    def shot(self, name: str) -> None:
        if self.out_dir is None:
            return
        self.settle(0.3)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{name}.png"
        self.win.grab().save(str(path))
        self.shots.append(str(path))

    # ---- the scripted day -------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        w = self.win
        self.settle(0.3)
        self.shot("01-sign-in")
        self.step("sign in as cashier", lambda: self.login("cara"))
        self.step("scan Advil", lambda: self.scan(self.look.package("0573-0154-40")))
        self.step("scan Claritin", lambda: self.scan(self.look.package("11523-7160-1")))
        self.step("scan Zyrtec", lambda: self.scan(self.look.package("50580-726-30")))
        self.shot("02-sale-cart")
        self.step("pay cash", self._pay_cash)
        self.step("scan pseudoephedrine", lambda: self.scan(self.look.package("50580-136-24")))
        self.shot("03-sale-pseudoephedrine-id")
        self.step("capture ID", lambda: self._capture_id())
        self.step("clear cart", lambda: self.key("Shift+F7"))
        self.step("lock", lambda: self.key("F11"))
        self.step("sign in as pharmacist", lambda: self.login("ava"))
        self.step("go to prescriptions", lambda: self.key("F3"))
        self.step("new Rx", lambda: self.key("F5"))
        self.step("fill intake", lambda: self._intake())
        self.shot("04-rx-intake")
        self.step("save Rx", lambda: self.key("F5"))
        self.step("open verification", lambda: self.key("F6"))
        self.step("choose generic", lambda: self._choose_generic())
        self.shot("05-rx-verify")
        self.step("confirm verification", lambda: self.key("F6"))
        self.step("start fill", lambda: self.key("F7"))
        self.step("scan package", lambda: self.scan(self.look.package(self.dispense_ndc)))
        self.step("print label", lambda: self.key("F8"))
        self.step("will-call", self._will_call)
        self.step("pickup", self._pickup)
        self.step("show the queue", lambda: w.rx.tabs.setCurrentIndex(0))
        self.shot("06-rx-queue")
        self.step("go to inventory", lambda: self.key("F4"))
        self.step("receive", lambda: self.key("F5"))
        self.step("scan carton", lambda: self.scan(self.look.new_lot("0573-0154-40", "ADV9931")))
        self.step("quantity", self._receive_qty)
        self.step("back to batches", lambda: self._top_batch())
        self.shot("07-inventory-batches")
        self.step("register", lambda: self.key("Shift+F7"))
        self.shot("08-controlled-register")
        ok = all(s["ok"] for s in self.steps if s["step"] not in ("capture ID",))
        return {"ok": ok, "steps": self.steps, "screenshots": self.shots}

    def _pay_cash(self) -> None:
        self.win.sale.cash.setText("100.00")
        self.win.sale.pay("cash")

    def _will_call(self) -> None:
        self.key("F9")
        self.win.rx.w_bin.setText("B-12")
        self.key("F9")

    def _pickup(self) -> None:
        self.key("F10")
        self.win.rx.p_declined.setChecked(True)
        self.key("F10")

    def _receive_qty(self) -> None:
        self.win.inventory.r_qty.setText("24")
        self.win.inventory.r_supplier.setText("McKesson")
        self.key("F5")

    def _top_batch(self) -> None:
        inv = self.win.inventory
        inv.set_mode("details")
        inv.batches.selectRow(0)
        inv.batches.scrollToTop()

    def _capture_id(self) -> None:
        s = self.win.sale
        s.customer.show()
        s.c_name.setText("Jordan Blake")
        s.c_address.setText("48 Pecan St, Austin TX 78704")
        s.c_birth.setText("1986-03-14")
        s.c_id_number.setText("TXDL40917731")
        s.c_signature.setChecked(True)
        s.apply_customer()

    def _intake(self) -> None:
        r = self.win.rx
        r.i_name.setText("Ana Nguyen")
        r.i_birth.setText("1980-04-12")
        r.i_address.setText("12 Oak St, Austin TX 78710")
        r.i_allergies.setText("penicillin")
        r.i_prescriber.setText("Dr. Maria Alvarez")
        r.i_prescriber_address.setText("1200 Main St, Austin TX 78701")
        r.i_dea.setText("BA1234563")
        r.i_drug.setText("0049-4900-30")
        r._drug_lookup()
        self.settle()
        r.i_qty.setText("30")
        r.i_days.setText("30")
        r.i_refills.setText("5")
        r.i_directions.setText("Take 1 tablet by mouth once daily")
        r.i_electronic.setChecked(True)

    dispense_ndc = "0049-4900-30"

    def _choose_generic(self) -> None:
        """Review the alerts, and pick the generic when the Orange Book offers it."""
        r = self.win.rx
        for box, _key, _text in r.alert_checks:
            box.setChecked(True)
        if r.alert_checks:
            r.v_override.setText("Prescriber aware; patient counselled on warning signs")
        for b in r.v_group.buttons():
            if b.property("ndc") == "65862-012-30":
                b.setChecked(True)
                self.dispense_ndc = "65862-012-30"


def headless(data_dir: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Run the tour offscreen (no display needed)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from terminal.app import build

    ensure_demo_store(data_dir)
    app, win = build(Path(data_dir), serial=False)
    win.show()
    tour = Tour(win, app, Path(data_dir), out_dir)
    try:
        summary = tour.run()
    finally:
        tour.look.close()
        win.shutdown()
    summary["data_dir"] = str(data_dir)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"pharmos counter tour — {'all steps ok' if s['ok'] else 'SOME STEPS FAILED'}"]
    for st in s["steps"]:
        mark = "ok " if st["ok"] else "ERR"
        extra = f"  [{st['error']}] {st['message']}" if not st["ok"] else ""
        lines.append(f"  {mark} {st['step']}{extra}")
    if s.get("screenshots"):
        lines.append(f"  screenshots: {len(s['screenshots'])} in "
                     f"{Path(s['screenshots'][0]).parent}")
    return "\n".join(lines)
