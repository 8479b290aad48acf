"""Models benchmark (issue: on-terminal AI).

Figures, each beside a floor measured in the same run on the same machine:
- model load: a full bundle (forecast bag of 4 x 100 depth-3 trees, diversion tail trees and
  a 100-tree isolation forest) from bytes to ready sessions, onnxruntime already imported;
  floor: creating a session for a one-node graph (Identity).
- per-product inference: features + forecast of one product (1 x 104 weeks of history);
  floor: running the one-node graph on the same 1 x 20 feature row.
- 5,000-product reorder run: features, one batched inference and the order-up-to arithmetic
  for 5,000 products with stock and pack sizes; floor: the one-node graph over the same
  5,000 x 20 feature matrix plus a numpy dot product with it.
Targets (absolute): load <= 20 ms, inference p99 <= 1 ms, reorder run <= 50 ms.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import numpy as np

from bench.stats import ratio, summary

TARGETS_MS = {"model_load": 20.0, "inference_p99": 1.0, "reorder_5000": 50.0}


def _bundle_files() -> tuple[str, dict[str, Any], dict[str, bytes]]:
    """A bundle of the shipped sizes, trained on synthetic data (no shared data needed)."""
    from models import features
    from models.forecast import ForecastMeta
    from models.train import (
        FORECAST_FILE,
        DiversionConfig,
        ForecastConfig,
        fit_regressor,
        regressor_to_onnx,
        train_diversion,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.3, size=(2000, len(features.FEATURES))).astype(np.float32)
    y = x[:, 0] - x[:, 1] + rng.normal(0, 0.1, 2000)
    onnx = regressor_to_onnx(fit_regressor(x, y, ForecastConfig()), len(features.FEATURES))
    meta = ForecastMeta(features.FEATURE_SET, features.FEATURES, 13, 0.4, 1.2)
    dv = train_diversion(DiversionConfig(train_users=80, calib_users=40, test_users=20))
    manifest: dict[str, Any] = {"files": {}, "models": {
        "forecast": {"file": FORECAST_FILE, "feature_set": meta.feature_set,
                     "features": list(meta.features), "scale_window": meta.scale_window,
                     "naive_blend": meta.naive_blend, "sigma_k": meta.sigma_k},
        "diversion": dv.meta}}
    files = {FORECAST_FILE: onnx, **dv.files}
    from pharmacy.signing import sha256_files

    manifest["files"] = sha256_files(files)
    return "bench", manifest, files


def _trivial_graph(n_features: int) -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["features"], ["y"])
    graph = helper.make_graph(
        [node], "floor",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_features])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def run(quick: bool = False) -> dict[str, Any]:
    try:
        import onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as e:
        return {"skipped": f"needs the train extra (scikit-learn, onnx): {e}"}
    from models import features
    from models.runtime import OnnxModel, models_from_files, warm_up
    from pharmacy.reorder import BatchStock, ReorderParams, suggest_order

    import_s = warm_up()
    version, manifest, files = _bundle_files()
    floor_bytes = _trivial_graph(len(features.FEATURES))
    OnnxModel(floor_bytes, len(features.FEATURES))       # first-session set-up, not measured
    models_from_files(version, manifest, files)

    loads: list[float] = []
    floor_loads: list[float] = []
    for _ in range(5 if quick else 20):
        t = time.perf_counter()
        floor = OnnxModel(floor_bytes, len(features.FEATURES))
        floor_loads.append(time.perf_counter() - t)
        t = time.perf_counter()
        active = models_from_files(version, manifest, files)
        loads.append(time.perf_counter() - t)
    forecaster = active.forecaster

    rng = np.random.default_rng(1)
    target = date(2026, 11, 8)
    one = rng.poisson(30, size=(1, 104)).astype(np.float64)
    x1 = features.build(one, target, 13).x
    per: list[float] = []
    per_floor: list[float] = []
    for _ in range(300 if quick else 3000):
        t = time.perf_counter()
        forecaster.predict(one, target)      # type: ignore[attr-defined]
        per.append(time.perf_counter() - t)
        t = time.perf_counter()
        floor.run(x1)
        per_floor.append(time.perf_counter() - t)

    n = 5000
    levels = rng.gamma(2.0, 10.0, size=(n, 1))
    hist = rng.poisson(np.repeat(levels, 104, axis=1)).astype(np.float64)
    ndcs = tuple(f"{i:05d}-{i % 1000:03d}-01" for i in range(n))
    batches = [[BatchStock(f"b{i}", "L", target + timedelta(days=int(d)), int(q))]
               for i, (d, q) in enumerate(zip(rng.integers(5, 700, n), rng.integers(0, 400, n),
                                              strict=True))]
    params = [ReorderParams(2, 7, 0.95, int(p)) for p in rng.choice([1, 10, 12, 30, 100], n)]
    from pharmacy.reorder import ForecastRequest

    runs: list[float] = []
    run_floor: list[float] = []
    xs = features.build(hist, target, 13).x
    w = np.asarray(rng.normal(size=xs.shape[1]), dtype=np.float32)
    ordered = 0
    for _ in range(3 if quick else 10):
        t = time.perf_counter()
        fcs = forecaster.forecast(ForecastRequest(ndcs, hist, target))
        sugg = [suggest_order(f, b, 0, p, target)
                for f, b, p in zip(fcs, batches, params, strict=True)]
        runs.append(time.perf_counter() - t)
        ordered = sum(1 for s in sugg if s.order_units > 0)
        t = time.perf_counter()
        floor.run(xs)
        _ = xs @ w
        run_floor.append(time.perf_counter() - t)

    ld, lf = summary(loads), summary(floor_loads)
    pi, pf = summary(per), summary(per_floor)
    rr, rf = summary(runs), summary(run_floor)
    result = {
        "onnxruntime_import_s": round(import_s, 4),
        "model_load": {**ld, "floor": lf, "p50_ratio": ratio(ld["p50_ms"], lf["p50_ms"]),
                       "target_ms": TARGETS_MS["model_load"],
                       "what": "forecast 400 trees + diversion tail + 100-tree forest"},
        "inference_per_product": {**pi, "floor": pf,
                                  "p99_ratio": ratio(pi["p99_ms"], pf["p99_ms"]),
                                  "target_p99_ms": TARGETS_MS["inference_p99"]},
        "reorder_5000": {**rr, "floor": rf, "p50_ratio": ratio(rr["p50_ms"], rf["p50_ms"]),
                         "target_ms": TARGETS_MS["reorder_5000"], "products": n,
                         "to_order": ordered},
        "floor_what": "onnxruntime on a one-node (Identity) graph over the same input; "
                      "the reorder floor adds a numpy dot product over the same matrix",
    }
    result["within_targets"] = bool(
        ld["p50_ms"] <= TARGETS_MS["model_load"]
        and pi["p99_ms"] <= TARGETS_MS["inference_p99"]
        and rr["p50_ms"] <= TARGETS_MS["reorder_5000"])
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
