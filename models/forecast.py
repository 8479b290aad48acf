"""Demand forecasters behind ``pharmacy.reorder.Forecaster``: the ONNX model and the
moving-average fallback, plus the rolling one-step-ahead evaluation that head office and
``pharmos models evaluate`` run through the very same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt

from models import features
from models.dataset import WeeklyDataset
from models.errors import ModelIncompatible
from pharmacy.reorder import (
    FALLBACK_VERSION,
    NO_HISTORY_VERSION,
    DemandForecast,
    ForecastRequest,
)

F64 = npt.NDArray[np.float64]

BASIS_MODEL = "model"
BASIS_MA = "moving-average"
BASIS_SHORT = "short-history"
BASIS_NONE = "no-history"
BASIS_ZEROS = "zeros"


@dataclass(frozen=True)
class Prediction:
    mean: F64
    sigma: F64
    basis: tuple[str, ...]
    versions: tuple[str, ...]

    def forecasts(self, ndcs: tuple[str, ...]) -> list[DemandForecast]:
        return [DemandForecast(n, float(m), float(s), v, b)
                for n, m, s, v, b in zip(ndcs, self.mean.tolist(), self.sigma.tolist(),
                                         self.versions, self.basis, strict=True)]


def _check_rows(request: ForecastRequest, weekly: F64) -> None:
    if weekly.shape[0] != len(request.ndcs):
        raise ValueError(f"{len(request.ndcs)} products but {weekly.shape[0]} history rows")


class MovingAverageForecaster:
    """The no-model fallback: mean of the last 8 observed weeks."""

    window = 8

    @property
    def version(self) -> str:
        return FALLBACK_VERSION

    def predict(self, weekly: Any, target_week_end: date) -> Prediction:
        h = features.as_matrix(weekly)
        mean, sd, observed = features.moving_average(h, self.window)
        basis = tuple(BASIS_MA if o > 0 else BASIS_NONE for o in observed.tolist())
        versions = tuple(FALLBACK_VERSION if o > 0 else NO_HISTORY_VERSION
                         for o in observed.tolist())
        return Prediction(mean, sd, basis, versions)

    def forecast(self, request: ForecastRequest) -> list[DemandForecast]:
        h = features.as_matrix(request.weekly)
        _check_rows(request, h)
        return self.predict(h, request.target_week_end).forecasts(request.ndcs)


@dataclass(frozen=True)
class ForecastMeta:
    feature_set: str
    features: tuple[str, ...]
    scale_window: int
    naive_blend: float
    sigma_k: float      # forecast sigma = max(sigma_k * spread of the last 13 weeks, sqrt(mean))

    @classmethod
    def from_json(cls, meta: dict[str, Any]) -> ForecastMeta:
        if meta.get("feature_set") != features.FEATURE_SET:
            raise ModelIncompatible(
                f"forecast model uses feature set {meta.get('feature_set')!r}; this terminal "
                f"computes {features.FEATURE_SET!r}", code="MODEL_FEATURES_MISMATCH")
        feats = meta.get("features")
        declared = tuple(str(f) for f in feats) if isinstance(feats, list) else ()
        if declared != features.FEATURES:
            missing = [f for f in declared if f not in features.FEATURES]
            raise ModelIncompatible(
                "forecast model declares features this terminal does not compute in that "
                f"order (unknown: {missing or 'none'}; {len(declared)} declared, "
                f"{len(features.FEATURES)} computed)", code="MODEL_FEATURES_MISMATCH",
                declared=list(declared))
        try:
            sw = int(meta["scale_window"])
            blend = float(meta["naive_blend"])
            k = float(meta["sigma_k"])
        except (KeyError, TypeError, ValueError):
            raise ModelIncompatible("forecast model metadata lacks scale_window, naive_blend "
                                    "or sigma_k") from None
        if not (1 <= sw <= features.WINDOW and 0.0 <= blend <= 1.0 and 0.0 <= k < 100.0):
            raise ModelIncompatible("forecast model metadata is out of range")
        return cls(features.FEATURE_SET, declared, sw, blend, k)


class OnnxForecaster:
    """The pooled tree-ensemble model (one TreeEnsembleRegressor node) over ``weekly-v1``."""

    def __init__(self, version: str, model: Any, meta: ForecastMeta) -> None:
        self._version = version
        self.model = model          # runtime.OnnxModel (or anything with run(x) -> array)
        self.meta = meta
        self._fallback = MovingAverageForecaster()

    @classmethod
    def from_bundle(cls, version: str, meta: dict[str, Any],
                    files: dict[str, bytes]) -> OnnxForecaster:
        from models.runtime import OnnxModel

        fm = ForecastMeta.from_json(meta)
        name = str(meta.get("file", "forecast.onnx"))
        if name not in files:
            raise ModelIncompatible(f"forecast model file {name} is not in the bundle")
        return cls(version, OnnxModel(files[name], len(fm.features), name="forecast"), fm)

    @property
    def version(self) -> str:
        return self._version

    def predict(self, weekly: Any, target_week_end: date) -> Prediction:
        h = features.as_matrix(weekly)
        n = h.shape[0]
        batch = features.build(h, target_week_end, self.meta.scale_window)
        use = (batch.observed >= features.MIN_WEEKS) & ~batch.zeros
        mean = np.zeros(n)
        sigma = np.zeros(n)
        basis = [BASIS_MODEL] * n
        versions = [self._version] * n
        if use.any():
            pred = self.model.run(batch.x[use])
            sub = features.FeatureBatch(batch.x[use], batch.scale[use], batch.base[use],
                                        batch.observed[use], batch.zeros[use])
            m = features.combine(sub, pred, self.meta.naive_blend)
            mean[use] = m
            spread = features.recent_std(h[use], 13)
            sigma[use] = np.maximum(self.meta.sigma_k * spread, np.sqrt(m))
        rest = ~use
        if rest.any():
            fb = self._fallback.predict(h[rest], target_week_end)
            idx = np.flatnonzero(rest)
            mean[rest] = fb.mean
            sigma[rest] = fb.sigma
            for i in idx.tolist():
                if batch.zeros[i]:
                    basis[i], versions[i] = BASIS_ZEROS, self._version
                    mean[i] = sigma[i] = 0.0
                elif batch.observed[i] == 0:
                    basis[i], versions[i] = BASIS_NONE, NO_HISTORY_VERSION
                else:
                    basis[i], versions[i] = BASIS_SHORT, FALLBACK_VERSION
        return Prediction(mean, sigma, tuple(basis), tuple(versions))

    def forecast(self, request: ForecastRequest) -> list[DemandForecast]:
        h = features.as_matrix(request.weekly)
        _check_rows(request, h)
        return self.predict(h, request.target_week_end).forecasts(request.ndcs)


# ---- evaluation (the published protocol) ---------------------------------------------------
def rolling_predictions(forecaster: MovingAverageForecaster | OnnxForecaster,
                        data: WeeklyDataset, holdout: int) -> tuple[F64, F64]:
    """One-step-ahead forecasts (mean, sigma) of the last ``holdout`` weeks, each made from
    the weeks before it only."""
    n = data.n_weeks
    if holdout < 1 or n - holdout < features.MIN_WEEKS:
        raise ValueError(f"{n} weeks cannot hold out {holdout}")
    mean = np.zeros((holdout, len(data.names)))
    sigma = np.zeros((holdout, len(data.names)))
    for i, t in enumerate(range(n - holdout, n)):
        p = forecaster.predict(data.values[:t].T, data.weeks[t])
        mean[i] = p.mean
        sigma[i] = p.sigma
    return mean, sigma


def _mape(actual: F64, pred: F64) -> float:
    nz = actual != 0
    if not nz.any():
        return float("nan")
    return float(np.mean(np.abs(actual[nz] - pred[nz]) / np.abs(actual[nz])) * 100.0)


def evaluate(forecaster: MovingAverageForecaster | OnnxForecaster, data: WeeklyDataset,
             holdout: int = 52) -> dict[str, dict[str, float]]:
    """MSE / MAPE of the rolling forecasts against Naive and Seasonal-Naive (52) per series.

    MAPE is over weeks with non-zero actuals. ``mape_excl_last`` leaves out the final week
    (in the pharma_sales file the final week is partial). ``coverage90`` is the share of
    weeks inside mean +/- 1.645 sigma (the spread that safety stock is sized from).
    """
    n = data.n_weeks
    if n - holdout < 52:
        raise ValueError("seasonal naive needs 52 weeks before the holdout")
    pred, sig = rolling_predictions(forecaster, data, holdout)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(data.names):
        a = data.values[n - holdout:, j]
        naive = data.values[n - holdout - 1:n - 1, j]
        snaive = data.values[n - holdout - 52:n - 52, j]
        p = pred[:, j]
        mse = float(np.mean((a - p) ** 2))
        nmse = float(np.mean((a - naive) ** 2))
        smse = float(np.mean((a - snaive) ** 2))
        out[name] = {
            "mse": mse, "mape": _mape(a, p),
            "naive_mse": nmse, "snaive_mse": smse,
            "naive_mape": _mape(a, naive), "snaive_mape": _mape(a, snaive),
            "mape_excl_last": _mape(a[:-1], p[:-1]),
            "coverage90": float(np.mean(np.abs(a - p) <= 1.645 * sig[:, j])),
            "beats_naive": bool(mse < nmse), "beats_snaive": bool(mse < smse),
        }
    return out
