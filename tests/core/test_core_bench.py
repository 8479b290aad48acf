"""`pharmos bench`: the dispense benchmark's JSON contract, run for real (quick size).

The figures themselves are not asserted (performance is measured, not tested); what is
tested is that the benchmark does what it says: the sales went through the real gate
without refusals on a store of the promised size, each ratio is the stated figure over the
stated floor figure of the same run, and the percentiles are ordered."""

from __future__ import annotations

import math

from tests.core.test_core_cli import pharmos


def test_bench_dispense_quick_reports_ratios_against_its_floor() -> None:
    out = pharmos("bench", "--quick", "--only", "dispense", "--json")
    assert out["quick"] is True and out["machine"]["cpus"] >= 1
    assert out["machine"]["cpu_reference_ms"] > 0
    d, f = out["dispense"], out["floor"]
    for key in ("p50_ms", "p99_ms", "max_ms", "p50_ratio", "p99_ratio", "max_ratio"):
        assert isinstance(d[key], float) and math.isfinite(d[key]) and d[key] > 0, key
    assert 0 < d["p50_ms"] <= d["p99_ms"] <= d["max_ms"]
    assert 0 < f["p50_ms"] <= f["p99_ms"] <= f["p999_ms"] <= f["max_ms"]
    assert d["p50_ratio"] == round(d["p50_ms"] / f["p99_ms"], 3)
    assert d["p99_ratio"] == round(d["p99_ms"] / f["p99_ms"], 3)
    assert d["max_ratio"] == round(d["max_ms"] / f["p999_ms"], 3)
    # every measured sale went through: a refusal would be timed as a much cheaper operation
    assert d["n"] == f["n"] == 300 and d["refused"] == 0
    assert d["gate"] == "cedar" and d["prior_rows"] >= 100_000
    assert d["first_after_pause"]["n"] + d["others"]["n"] == d["n"]
    assert d["warm_up"]["sales"] >= 1 and out["checkpoints"]["count"] >= 1
    assert out["targets"] == {"p50_ratio": 2.0, "p99_ratio": 3.0, "max_ratio": 5.0}
    host = d["host"]
    assert 0 < host["p50_ms"] <= host["p99_ms"] <= host["max_ms"]
    assert host["p99_over_p50"] == round(host["p99_ms"] / host["p50_ms"], 3)
    # the disk's part of a sale: a bare commit of as many pages as a sale writes, counted
    wide = out["sale_sized_commit"]
    assert wide["n"] == d["n"] and 5 <= wide["sale_pages"] <= 40
    assert abs(wide["pages"] - wide["sale_pages"]) <= 1
    assert 0 < wide["p50_ms"] <= wide["p99_ms"] <= wide["p999_ms"] <= wide["max_ms"]
    assert wide["p99_ratio"] == round(wide["p99_ms"] / f["p99_ms"], 3)
    assert wide["max_ratio"] == round(wide["max_ms"] / f["p999_ms"], 3)
    assert set(out) >= {"machine", "quick", "dispense", "floor"}
    assert "policy" not in out and "sync" not in out  # --only


def test_bench_unknown_name_is_bad_input() -> None:
    out = pharmos("bench", "--quick", "--only", "dispence", "--json", code=1)
    assert out["error"]["code"] == "UNKNOWN_BENCHMARK"
    assert "dispense" in out["error"]["message"]
