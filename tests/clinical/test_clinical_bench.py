"""The clinical benchmark runs (quick) and reports ratios against its floors."""

from __future__ import annotations

import math

from bench import clinical_bench


def test_quick_bench_reports_figures_and_floors() -> None:
    out = clinical_bench.run(quick=True)
    inter = out["interactions"]
    assert inter["pairs"] > 1000 and isinstance(inter["meets_target"], bool)
    assert math.isfinite(inter["ratio_p99"]) and inter["profile_all_pairs"]["n"] == 400
    if "skipped" not in out["substitution"]:
        sub = out["substitution"]
        assert sub["lookup"]["n"] == 400 and math.isfinite(sub["ratio_p99"])
        assert sub["floor"]["p50_ms"] > 0 and sub["max_equivalents"] >= 20
        assert out["import"]["rows"] == 45_752 and out["import"]["floor_seconds"] > 0
