"""Regenerate docs/screenshots/*.png: the real window under Xvfb, driven by the demo tour.

    python -m terminal.screenshots [--out docs/screenshots]

Without a display it starts itself again under ``xvfb-run`` (Debian: xvfb xauth and the
libxcb packages listed in docs/terminal.md). The screens are rendered on a fresh demo store
(opening stock relative to today, demo users, a few prescriptions in progress); when
../shared/data holds the FDA Orange Book it is imported so the verification screen shows
real substitution choices.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1366, 768)
ORANGE_BOOK = ("orange_book", "2024-11", "products.txt")


def _shared_data() -> Path:
    return Path(os.environ.get("PHARMOS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def render(out_dir: Path) -> list[str]:
    os.environ.pop("QT_QPA_PLATFORM", None)  # the real X11 platform (xcb) under Xvfb
    from PySide6.QtWidgets import QApplication

    from terminal import tour
    from terminal.app import build

    tmp = Path(tempfile.mkdtemp(prefix="pharmos-shots-"))
    try:
        data = tmp / "store"
        tour.ensure_demo_store(data)
        ob = _shared_data().joinpath(*ORANGE_BOOK)
        if ob.exists():
            from pharmacy import orange_book
            from pharmacy.store import Store

            with Store.open(data) as store:
                orange_book.import_orange_book(store, ob)
        app = QApplication.instance() or QApplication([sys.argv[0]])
        assert isinstance(app, QApplication)
        _, win = build(data, app=app, serial=False)
        win.setFixedSize(*SIZE)
        win.show()
        t = tour.Tour(win, app, data, out_dir)
        try:
            summary = t.run()
        finally:
            t.look.close()
            win.shutdown()
        failed = [s for s in summary["steps"] if not s["ok"]]
        if failed:
            print(f"warning: {len(failed)} tour step(s) failed: {failed}", file=sys.stderr)
        return list(summary["screenshots"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m terminal.screenshots")
    p.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.inside and not os.environ.get("DISPLAY"):
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("no display and no xvfb-run: apt-get install xvfb xauth (see "
                  "docs/terminal.md)", file=sys.stderr)
            return 2
        cmd = [xvfb, "-a", "-s", f"-screen 0 {SIZE[0]}x{SIZE[1]}x24", sys.executable, "-m",
               "terminal.screenshots", "--out", str(out), "--inside"]
        return subprocess.call(cmd, cwd=ROOT)
    out.mkdir(parents=True, exist_ok=True)
    shots = render(out)
    for s in shots:
        print(s)
    return 0 if len(shots) == 8 else 1


if __name__ == "__main__":
    sys.exit(main())
