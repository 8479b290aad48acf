"""Percentiles and ratio helpers shared by the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of samples in seconds → milliseconds."""
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k] * 1000.0


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(pct(samples, 50), 4),
        "p99_ms": round(pct(samples, 99), 4),
        "p999_ms": round(pct(samples, 99.9), 4),
        "max_ms": round(max(samples) * 1000.0, 4) if samples else float("nan"),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else float("inf")


def steady_work(n: int = 4_000) -> float:
    """Seconds a fixed pure-Python loop (no I/O, no allocation to speak of) takes. Timed
    between the operations of a benchmark, its tail is the machine's own: a p99 far above
    its p50 means the host, not the code, stretched the slow samples."""
    import time

    t = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - t


def cpu_reference_ms(n: int = 2_000_000, repeat: int = 3) -> float:
    """Best of ``repeat`` timings of a fixed pure-Python loop: how fast this machine runs
    Python right now, so absolute figures (syncs/s) from different runs can be compared."""
    import time

    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - t)
    return round(best * 1000.0, 1)
