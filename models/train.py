"""Head-office training: demand forecast and diversion detector, exported to ONNX.

scikit-learn and onnx are imported inside the functions that need them (the ``train``
extra); terminals never import them. The forecast is a bag of K gradient-boosting
regressors (different seeds, averaged), exported as one TreeEnsembleRegressor node
(``models.onnx_trees``).

Forecast protocol (honest hold-out):
1. the last ``holdout`` weeks are never seen by training or selection;
2. the scale window and the naive blend are chosen on the ``validation`` weeks before the
   hold-out (a model trained on the weeks before those), by the worst ratio of model MSE to
   the better of Naive / Seasonal-Naive over all series;
3. a model with the chosen settings, trained on everything before the hold-out, is exported
   to ONNX and evaluated through ``models.forecast`` (the terminal's code): rolling
   one-step-ahead, against Naive and Seasonal-Naive;
4. the shipped model is refitted on all weeks with the same settings, but only if step 3
   beat both baselines on every series.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from models import features
from models.dataset import WeeklyDataset
from models.errors import ModelBelowBaseline
from models.forecast import ForecastMeta, OnnxForecaster, evaluate
from models.onnx_trees import gradient_boosting_trees, tree_ensemble_onnx

F64 = npt.NDArray[np.float64]

FORECAST_FILE = "forecast.onnx"
DIVERSION_TAIL_FILE = "diversion_tail.onnx"
DIVERSION_FOREST_FILE = "diversion_forest.onnx"


@dataclass(frozen=True)
class ForecastConfig:
    n_estimators: int = 100
    max_depth: int = 3
    learning_rate: float = 0.1
    subsample: float = 0.8
    loss: str = "huber"
    seeds: Sequence[int] = (0, 1)
    scale_windows: Sequence[int] = (8, 13, 26)
    blends: Sequence[float] = (0.0, 0.2, 0.4)
    first_target: int = features.MIN_WEEKS + 1   # first week used as a training target
    holdout: int = 52
    validation: int = 52

    def estimator_json(self) -> dict[str, Any]:
        return {"type": "bagged GradientBoostingRegressor", "n_estimators": self.n_estimators,
                "max_depth": self.max_depth, "learning_rate": self.learning_rate,
                "subsample": self.subsample, "loss": self.loss, "seeds": list(self.seeds),
                "trees": self.n_estimators * len(self.seeds)}


@dataclass
class TrainedForecast:
    onnx: bytes
    meta: dict[str, Any]
    holdout: dict[str, dict[str, float]]
    selection: list[dict[str, Any]] = field(default_factory=list)


# ---- training rows -----------------------------------------------------------------------------
def training_rows(data: WeeklyDataset, targets: range,
                  scale_window: int) -> tuple[npt.NDArray[np.float32], F64, F64]:
    """Features, residual targets and scales for every series at every target week."""
    xs: list[npt.NDArray[np.float32]] = []
    ys: list[F64] = []
    ss: list[F64] = []
    for t in targets:
        batch = features.build(data.values[:t].T, data.weeks[t], scale_window)
        actual = data.values[t]
        ok = (batch.scale > 0) & np.isfinite(actual) & (batch.observed >= features.MIN_WEEKS)
        if not ok.any():
            continue
        xs.append(batch.x[ok])
        ys.append(actual[ok] / batch.scale[ok] - batch.base[ok])
        ss.append(batch.scale[ok])
    if not xs:
        raise ValueError("no training rows: the series are too short")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)


def fit_regressor(x: npt.NDArray[np.float32], y: F64, cfg: ForecastConfig) -> list[Any]:
    """One GradientBoostingRegressor per seed (a bag, averaged at prediction)."""
    from sklearn.ensemble import GradientBoostingRegressor

    out = []
    for seed in cfg.seeds:
        model = GradientBoostingRegressor(
            n_estimators=cfg.n_estimators, max_depth=cfg.max_depth,
            learning_rate=cfg.learning_rate, subsample=cfg.subsample, loss=cfg.loss,
            random_state=seed)
        model.fit(x.astype(np.float32), y)
        out.append(model)
    return out


def regressor_to_onnx(models: list[Any], n_features: int) -> bytes:
    """The whole bag as one TreeEnsembleRegressor node."""
    trees, base = gradient_boosting_trees(models)
    return tree_ensemble_onnx(trees, n_features, base_value=base, aggregate="SUM",
                              doc="pharmos demand forecast (weekly-v1)")


class _SklearnAdapter:
    """Lets the head office score candidates with sklearn before any ONNX export."""

    def __init__(self, models: list[Any]) -> None:
        self.models = models

    def run(self, x: npt.NDArray[np.float32]) -> F64:
        if x.shape[0] == 0:
            return np.zeros(0)
        preds = np.stack([np.asarray(m.predict(x), dtype=np.float64) for m in self.models])
        out: F64 = preds.mean(axis=0)
        return out


def _meta(sw: int, blend: float, sigma_k: float) -> ForecastMeta:
    return ForecastMeta(features.FEATURE_SET, features.FEATURES, sw, blend, sigma_k)


def _worst_ratio(scores: dict[str, dict[str, float]]) -> tuple[float, float]:
    ratios = [s["mse"] / max(1e-12, min(s["naive_mse"], s["snaive_mse"]))
              for s in scores.values()]
    return max(ratios), float(np.mean(ratios))


def _sigma_k(data: WeeklyDataset, fc: OnnxForecaster, weeks: int) -> float:
    """Scale of the 13-week spread that makes mean +/- 1.645 sigma hold 90 % of the one-step
    errors over the given (out-of-sample) weeks: a quantile, so outliers do not inflate it."""
    n = data.n_weeks
    ratios: list[F64] = []
    for t in range(n - weeks, n):
        h = data.values[:t].T
        pred = fc.predict(h, data.weeks[t]).mean
        spread = features.recent_std(h, 13)
        ok = spread > 0
        ratios.append(np.abs(data.values[t][ok] - pred[ok]) / spread[ok])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if r.size == 0:
        return 1.0
    return float(np.quantile(r, 0.9) / 1.645)


def select_settings(data: WeeklyDataset, cfg: ForecastConfig
                    ) -> tuple[int, float, float, list[dict[str, Any]]]:
    """Choose scale window and naive blend on the validation weeks (before the hold-out).

    Returns (scale_window, naive_blend, sigma_k, table); sigma_k calibrates the forecast
    spread on the out-of-sample validation errors of the chosen settings.
    """
    train_part = data.head(data.n_weeks - cfg.holdout)
    n = train_part.n_weeks
    fit_end = n - cfg.validation
    if fit_end - cfg.first_target < 26:
        raise ValueError(f"{data.n_weeks} weeks are too few for hold-out {cfg.holdout} + "
                         f"validation {cfg.validation}")
    rows: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], int, float] | None = None
    models: dict[int, Any] = {}
    for sw in cfg.scale_windows:
        x, y, _ = training_rows(train_part, range(cfg.first_target, fit_end), sw)
        models[sw] = model = fit_regressor(x, y, cfg)
        for blend in cfg.blends:
            fc = OnnxForecaster("validation", _SklearnAdapter(model), _meta(sw, blend, 0.0))
            scores = evaluate(fc, train_part, cfg.validation)
            worst, mean = _worst_ratio(scores)
            rows.append({"scale_window": sw, "naive_blend": blend,
                         "worst_mse_ratio": round(worst, 4), "mean_mse_ratio": round(mean, 4)})
            key = (round(worst, 6), round(mean, 6))
            if best is None or key < best[0]:
                best = (key, sw, blend)
    assert best is not None
    _, sw, blend = best
    chosen = OnnxForecaster("validation", _SklearnAdapter(models[sw]), _meta(sw, blend, 0.0))
    k = _sigma_k(train_part, chosen, cfg.validation)
    return sw, blend, k, rows


def _onnx_forecaster(onnx_bytes: bytes, meta: ForecastMeta, version: str) -> OnnxForecaster:
    from models.runtime import OnnxModel

    return OnnxForecaster(version, OnnxModel(onnx_bytes, len(meta.features), name="forecast"),
                          meta)


def holdout_forecast(data: WeeklyDataset, cfg: ForecastConfig = ForecastConfig()
                     ) -> tuple[OnnxForecaster, bytes, dict[str, dict[str, float]],
                                list[dict[str, Any]]]:
    """Steps 1-3: select, train before the hold-out, export, evaluate through ONNX."""
    sw, blend, k, selection = select_settings(data, cfg)
    n_train = data.n_weeks - cfg.holdout
    train_part = data.head(n_train)
    x, y, _ = training_rows(train_part, range(cfg.first_target, n_train), sw)
    model = fit_regressor(x, y, cfg)
    onnx_bytes = regressor_to_onnx(model, len(features.FEATURES))
    fc = _onnx_forecaster(onnx_bytes, _meta(sw, blend, k), "holdout")
    scores = evaluate(fc, data, cfg.holdout)
    return fc, onnx_bytes, scores, selection


def train_forecast(data: WeeklyDataset, cfg: ForecastConfig = ForecastConfig(), *,
                   require_beating_baselines: bool = True) -> TrainedForecast:
    fc, _, scores, selection = holdout_forecast(data, cfg)
    losers = [name for name, s in scores.items()
              if not (s["beats_naive"] and s["beats_snaive"])]
    if losers and require_beating_baselines:
        raise ModelBelowBaseline(
            "the forecast does not beat Naive and Seasonal-Naive MSE on the hold-out for "
            f"{', '.join(losers)}; it is not shipped", series=losers,
            holdout={k: {m: round(v, 3) for m, v in s.items() if isinstance(v, float)}
                     for k, s in scores.items()})
    x, y, _ = training_rows(data, range(cfg.first_target, data.n_weeks), fc.meta.scale_window)
    model = fit_regressor(x, y, cfg)
    onnx_bytes = regressor_to_onnx(model, len(features.FEATURES))
    meta = {
        "file": FORECAST_FILE, "kind": "demand-forecast",
        "feature_set": features.FEATURE_SET, "features": list(features.FEATURES),
        "input": "features", "output": "normalised change from last week",
        "scale_window": fc.meta.scale_window, "naive_blend": fc.meta.naive_blend,
        "sigma_k": round(fc.meta.sigma_k, 6),
        "estimator": cfg.estimator_json(),
        "training_window": {"from": data.weeks[0].isoformat(),
                            "to": data.weeks[-1].isoformat(), "weeks": data.n_weeks,
                            "series": list(data.names)},
        "holdout": {"weeks": cfg.holdout, "from": data.weeks[-cfg.holdout].isoformat(),
                    "to": data.weeks[-1].isoformat(), "protocol":
                    "rolling one-step-ahead; model trained before the hold-out",
                    "metrics": {k: {m: (round(v, 4) if isinstance(v, float) else v)
                                    for m, v in s.items()} for k, s in scores.items()}},
        "selection": selection,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
    }
    return TrainedForecast(onnx_bytes, meta, scores, selection)


def new_version(now: datetime | None = None, salt: bytes = b"") -> str:
    at = now or datetime.now(UTC)
    return f"m{at:%Y%m%d%H%M%S}-{hashlib.sha256(salt).hexdigest()[:8]}"


# ---- diversion -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiversionConfig:
    n_estimators: int = 100
    max_samples: int = 256
    seed: int = 0
    train_users: int = 200      # ordinary weeks to fit on
    calib_users: int = 200      # other ordinary weeks to set the thresholds on
    test_users: int = 100       # weeks with injected patterns to measure on
    weeks: int = 12
    test_share: float = 0.1     # share of test user-weeks with an injected pattern
    target_fpr: float = 0.02    # share of ordinary calibration weeks flagged (both scores)


@dataclass
class TrainedDiversion:
    files: dict[str, bytes]
    meta: dict[str, Any]
    metrics: dict[str, Any]


def simulated_features(users: int, weeks: int, share: float, seed: int
                       ) -> tuple[F64, list[str | None]]:
    """Feature rows per simulated user-week, with the injected pattern (or None) of each."""
    from models import diversion, simulate

    cfg = simulate.SimConfig(users=users, weeks=weeks, diversion_share=share, seed=seed)
    sim = simulate.simulate(cfg)
    keys, x = diversion.featurize(
        sim.activities, diversion.Hours(cfg.open_hour, cfg.close_hour),
        key=lambda a: (a.user_id, (a.at - cfg.start).days // 7))
    row = {k: i for i, k in enumerate(keys)}
    all_keys = sorted(sim.labels)
    out = np.zeros((len(all_keys), x.shape[1]))
    for i, k in enumerate(all_keys):
        if k in row:
            out[i] = x[row[k]]
    return out, [sim.labels[k] for k in all_keys]


def precision_recall(flags: npt.NDArray[np.bool_], labels: Sequence[str | None]
                     ) -> dict[str, Any]:
    truth = np.array([lab is not None for lab in labels])
    tp = int(np.sum(flags & truth))
    fp = int(np.sum(flags & ~truth))
    fn = int(np.sum(~flags & truth))
    per: dict[str, dict[str, int | float]] = {}
    for pat in sorted({lab for lab in labels if lab is not None}):
        m = np.array([lab == pat for lab in labels])
        hit = int(np.sum(flags & m))
        per[pat] = {"injected": int(m.sum()), "detected": hit,
                    "recall": round(hit / max(1, int(m.sum())), 4)}
    return {"precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
            "true_positives": tp, "false_positives": fp, "false_negatives": fn,
            "user_weeks": len(labels), "injected": int(truth.sum()),
            "ordinary_flagged_rate": round(fp / max(1, int((~truth).sum())), 4),
            "per_pattern": per}


def train_diversion(cfg: DiversionConfig = DiversionConfig()) -> TrainedDiversion:
    """Fit both scorers on ordinary simulated weeks, set thresholds on other ordinary weeks,
    measure precision/recall on weeks with injected patterns (three separate simulations)."""
    from sklearn.ensemble import IsolationForest

    from models import diversion
    from models.onnx_trees import isolation_forest_trees, tail_trees
    from models.runtime import OnnxModel

    nf = len(diversion.FEATURES)
    x_fit, _ = simulated_features(cfg.train_users, cfg.weeks, 0.0, cfg.seed * 10 + 1)
    x_cal, _ = simulated_features(cfg.calib_users, cfg.weeks, 0.0, cfg.seed * 10 + 2)
    x_test, labels = simulated_features(cfg.test_users, cfg.weeks, cfg.test_share,
                                        cfg.seed * 10 + 3)
    skip = (diversion.FEATURES.index("log_dispenses"),)
    tail_bytes = tree_ensemble_onnx(tail_trees(x_fit, skip=skip), nf, aggregate="MAX",
                                    output_name="surprise",
                                    doc="pharmos diversion tail surprise (diversion-v1)")
    forest = IsolationForest(n_estimators=cfg.n_estimators,
                             max_samples=min(cfg.max_samples, len(x_fit)),
                             random_state=cfg.seed)
    forest.fit(x_fit.astype(np.float32))
    trees, c_psi = isolation_forest_trees(forest)
    forest_bytes = tree_ensemble_onnx(trees, nf, aggregate="AVERAGE", output_name="path_length",
                                      doc="pharmos diversion isolation forest (diversion-v1)")
    p99 = np.quantile(x_fit, 0.99, axis=0)
    med = np.median(x_fit, axis=0)
    model = diversion.DiversionModel(
        "training", OnnxModel(tail_bytes, nf, name="diversion tail"),
        OnnxModel(forest_bytes, nf, name="diversion forest"), c_psi, math.inf, math.inf,
        p99.tolist(), med.tolist())
    cal_tail, cal_forest = model.scores(x_cal)
    t_tail = float(np.quantile(cal_tail, 1.0 - cfg.target_fpr / 2))
    t_forest = float(np.quantile(cal_forest, 1.0 - cfg.target_fpr / 2))
    te_tail, te_forest = model.scores(x_test)
    metrics = precision_recall((te_tail > t_tail) | (te_forest > t_forest), labels)
    metrics["tail_only"] = precision_recall(
        te_tail > float(np.quantile(cal_tail, 1.0 - cfg.target_fpr)), labels)
    metrics["isolation_forest_only"] = precision_recall(
        te_forest > float(np.quantile(cal_forest, 1.0 - cfg.target_fpr)), labels)
    sk = -forest.score_samples(x_test.astype(np.float32))
    metrics["forest_max_abs_diff_vs_sklearn"] = float(np.max(np.abs(sk - te_forest)))
    files = {DIVERSION_TAIL_FILE: tail_bytes, DIVERSION_FOREST_FILE: forest_bytes}
    meta = {
        "files": {"tail": DIVERSION_TAIL_FILE, "forest": DIVERSION_FOREST_FILE},
        "kind": "diversion-anomaly",
        "feature_set": diversion.FEATURE_SET, "features": list(diversion.FEATURES),
        "input": "features",
        "scores": {"tail": "max over features of -log10 P(ordinary week >= value)",
                   "forest": "isolation-forest anomaly score 2^(-path/c(psi))"},
        "c_psi": c_psi, "threshold_tail": t_tail, "threshold_forest": t_forest,
        "reference_p99": [float(v) for v in p99], "reference_median": [float(v) for v in med],
        "estimator": {"tail": "one step tree per feature, MAX",
                      "forest": {"type": "IsolationForest", "n_estimators": cfg.n_estimators,
                                 "max_samples": int(forest.max_samples_),
                                 "random_state": cfg.seed}},
        "training_window": {"source": "simulator, ordinary weeks only", "weeks": cfg.weeks,
                            "fit_users": cfg.train_users, "calibration_users": cfg.calib_users,
                            "user_weeks": len(x_fit)},
        "threshold_rule": f"each score at its {100 * (1 - cfg.target_fpr / 2):.0f}th percentile "
                          "of ordinary calibration weeks; flag when either is reached",
        "evaluation": {"source": "simulator with injected patterns", "users": cfg.test_users,
                       "weeks": cfg.weeks, "injected_share": cfg.test_share, **metrics},
    }
    return TrainedDiversion(files, meta, metrics)
