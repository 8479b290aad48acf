"""Dependencies point inward (DESIGN.md, STYLE.md 2): checked on every import statement."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "pharmacy": {"PySide6", "shiboken6", "fastapi", "starlette", "uvicorn", "httpx", "terminal",
                 "sync_server", "policy_cache", "models", "hardware", "onnxruntime", "serial",
                 "escpos", "keyring", "apscheduler"},
    "crdt": {"PySide6", "fastapi", "starlette", "terminal", "sync_server", "pharmacy",
             "policy_cache", "models", "hardware"},
    "policy_cache": {"PySide6", "shiboken6", "fastapi", "starlette", "terminal", "sync_server"},
    "models": {"PySide6", "shiboken6", "fastapi", "starlette", "terminal", "sync_server"},
    "hardware": {"PySide6", "shiboken6", "fastapi", "starlette", "terminal", "sync_server"},
    "sync_server": {"PySide6", "shiboken6", "terminal"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_packages_import_only_inward() -> None:
    violations = []
    checked = 0
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            checked += 1
            bad = imports_of(path) & forbidden
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert checked > 10
    assert not violations, "\n".join(violations)


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    f = tmp_path / "bad.py"
    f.write_text("import PySide6.QtWidgets\nfrom terminal.app import x\n")
    assert imports_of(f) == {"PySide6", "terminal"}
