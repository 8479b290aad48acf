"""`pharmos bench`: every benchmark prints figures as ratios against floors measured in the
same run. Each area contributes a module with ``run(quick) -> dict``."""

from __future__ import annotations

import importlib
import platform
from typing import Any

BENCHES = {
    "dispense": "bench.dispense",
    "policy": "bench.policy_bench",
    "clinical": "bench.clinical_bench",
    "sync": "bench.sync_bench",
    "models": "bench.models_bench",
    "gui": "bench.gui_bench",
}


def machine() -> dict[str, Any]:
    import os

    from bench.stats import cpu_reference_ms

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cpu_reference_ms": cpu_reference_ms()}


def run(quick: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    unknown = sorted(set(only or ()) - BENCHES.keys())
    if unknown:
        from pharmacy.errors import BadInput

        raise BadInput(f"no benchmark named {', '.join(unknown)}; choose from "
                       f"{', '.join(BENCHES)}", code="UNKNOWN_BENCHMARK")
    out: dict[str, Any] = {"machine": machine(), "quick": quick}
    for name, module in BENCHES.items():
        if only and name not in only:
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            out[name] = {"skipped": f"not available: {e}"}
            continue
        result = mod.run(quick)
        if name == "dispense":
            out.update(result)  # top-level {"dispense", "floor"} per the CLI contract
        else:
            out[name] = result
    return out


def format_result(result: dict[str, Any]) -> str:
    import json

    return json.dumps(result, indent=2)
