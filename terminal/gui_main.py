"""The counter terminal's light launcher.

``pharmos terminal`` ends up here, and so does ``python -m terminal.gui_main`` (no CLI
parser, no other areas imported: the quickest cold start). Nothing heavy is imported before
Qt: the first paint shows the sign-in screen while the core and the store load behind it.

    python -m terminal.gui_main --data-dir D [--smoke] [--json]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or sys.platform in ("win32", "darwin"))


def launch(data_dir: Path, *, smoke: bool = False, as_json: bool = False,
           t0: float | None = None) -> int:
    t_start = T0 if t0 is None else t0
    if smoke and not has_display():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t = time.perf_counter()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    qt_ms = (time.perf_counter() - t) * 1000
    assert isinstance(app, QApplication)
    from terminal import app as gui

    if not smoke:
        return gui.run(app, data_dir)
    result = gui.smoke(app, data_dir, qt_ms, t_start)
    if as_json:
        print(json.dumps(result))
    else:
        print(f"first paint {result['first_paint_ms']} ms after start "
              f"(PySide6 import + QApplication {result['qt_import_ms']} ms)")
    return 0


def resolve(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("PHARMOS_DATA_DIR"):
        return Path(os.environ["PHARMOS_DATA_DIR"])
    import platformdirs

    return Path(platformdirs.user_data_dir("pharmos", "pharmos"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m terminal.gui_main")
    p.add_argument("--data-dir")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    d = resolve(args.data_dir)
    if not (d / "pharmos.db").exists():
        print(json.dumps({"error": {"code": "NO_STORE", "message": f"no store in {d}"}})
              if args.json else f"error [NO_STORE]: no store in {d}", file=sys.stderr)
        return 1
    return launch(d, smoke=args.smoke, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
