"""Start-up cost and dependency rules: nothing the GUI imports at start pulls in
onnxruntime or the training libraries."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import sys
import models, models.runtime, models.bundle, models.suggest, models.forecast, models.diversion
import pharmacy.reorder, terminal.cli.models
heavy = [m for m in ("onnxruntime", "sklearn", "skl2onnx", "onnx", "PySide6", "fastapi")
         if m in sys.modules]
print(",".join(heavy))
"""


def test_models_import_without_onnxruntime_or_training_libraries() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       cwd=ROOT, check=True)
    assert r.stdout.strip() == ""


def test_models_package_imports_nothing_of_terminal_or_server() -> None:
    import ast

    for path in [*sorted((ROOT / "models").glob("*.py")), ROOT / "pharmacy" / "reorder.py"]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                top = n.split(".")[0]
                assert top not in ("terminal", "sync_server", "PySide6", "fastapi",
                                   "starlette"), (path, n)
                if path.name == "reorder.py":
                    assert top not in ("models", "numpy"), (path, n)


def test_benchmark_quick_run() -> None:
    from bench import models_bench

    r = models_bench.run(quick=True)
    for k in ("model_load", "inference_per_product", "reorder_5000"):
        assert r[k]["p50_ms"] > 0 and r[k]["floor"]["p50_ms"] > 0
    assert r["reorder_5000"]["products"] == 5000
