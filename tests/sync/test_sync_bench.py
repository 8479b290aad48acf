"""The sync benchmark runs (quick) and reports ratios against a floor from the same run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_quick_sync_bench_reports_ratios() -> None:
    from bench import sync_bench

    out = sync_bench.run(quick=True)
    assert out["events_per_day"] >= sync_bench.SALES_PER_DAY  # one event a sale (or more)
    assert out["upload_gzip_bytes"] < out["upload_raw_bytes"]
    for engine in ("sqlite", "postgresql"):
        res = out[engine]
        if "skipped" in res:
            continue
        assert res["syncs"] == out["terminals"]
        assert res["syncs_per_s"] > 0 and res["p99_ms"] >= res["p50_ms"]
        assert res["ratio_to_floor"] > 0 and res["floor"]["commits_per_s"] > 0
