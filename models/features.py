"""Demand-forecast features (feature set ``weekly-v1``), shared by training and the terminal.

Input: an n x W table of weekly quantities, oldest week first, NaN where there is no data
(before a product was stocked). Every feature is divided by the series' level (``scale``,
the mean of the last ``scale_window`` weeks) so one pooled model serves products that sell
2 or 2,000 units a week. A lag or mean that does not exist yet is -1 (normalised values are
never negative, so the trees can tell "unknown" from "zero").

The model predicts ``y / scale - lag1 / scale`` (the change from last week, in levels). The
forecast is ``scale * (lag1n + (1 - naive_blend) * prediction)``, clipped at zero.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

FEATURE_SET = "weekly-v1"
LAGS = (1, 2, 3, 4, 5, 6, 7, 8)
SEASONAL = (52, 51, 53)
MEANS = (4, 8, 13, 26, 52)
FEATURES: tuple[str, ...] = (
    *(f"lag{k}" for k in LAGS),
    *(f"lag{k}" for k in SEASONAL),
    *(f"mean{w}" for w in MEANS),
    "std8",
    "woy_sin",
    "woy_cos",
    "history_len",
)
WINDOW = 53          # weeks of history the features look at
MIN_WEEKS = 8        # fewer observed weeks: moving average instead of the model
MISSING = -1.0
WEEKS_PER_YEAR = 52.1775

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FeatureBatch:
    x: F32                 # n x len(FEATURES), ready for the model
    scale: F64             # level per row (0 where the recent window has no sales)
    base: F64              # normalised last week (the naive forecast / scale)
    observed: npt.NDArray[np.int64]   # weeks with data per row
    zeros: npt.NDArray[np.bool_]      # observed history, all zero


def woy_angle(target_week_end: date) -> float:
    return 2.0 * np.pi * target_week_end.isocalendar()[1] / WEEKS_PER_YEAR


def as_matrix(weekly: object) -> F64:
    """Coerce a list of lists / array to float64 n x W (ragged rows are left-padded NaN)."""
    if isinstance(weekly, np.ndarray):
        arr = np.asarray(weekly, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        return arr
    rows = [np.asarray(r, dtype=np.float64).ravel() for r in weekly]  # type: ignore[attr-defined]
    if not rows:
        return np.zeros((0, 0), dtype=np.float64)
    w = max(len(r) for r in rows)
    out = np.full((len(rows), w), np.nan, dtype=np.float64)
    for i, r in enumerate(rows):
        if len(r):
            out[i, w - len(r):] = r
    return out


def build(weekly: F64, target_week_end: date, scale_window: int) -> FeatureBatch:
    """Features for forecasting the week ending ``target_week_end`` from ``weekly``."""
    h = np.asarray(weekly, dtype=np.float64)
    n, w = h.shape
    h = np.where(np.isfinite(h), h, np.nan)
    h = np.where(h < 0, np.nan, h)          # negative sales are data errors: unknown
    observed = np.sum(~np.isnan(h), axis=1).astype(np.int64)
    if w < WINDOW:
        h = np.concatenate([np.full((n, WINDOW - w), np.nan), h], axis=1)
    else:
        h = h[:, -WINDOW:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN slices: handled below
        recent = np.nanmean(h[:, -scale_window:], axis=1)
        overall = np.nanmean(h, axis=1)
        scale = np.where(np.isfinite(recent) & (recent > 0), recent,
                         np.where(np.isfinite(overall) & (overall > 0), overall, 0.0))
        # No sales in the whole recent window: the product is not selling (forecast 0).
        zeros = (observed > 0) & ((scale <= 0) | (np.isfinite(recent) & (recent <= 0)))
        scale = np.where(zeros, 0.0, scale)
        div = np.where(scale > 0, scale, 1.0)[:, None]
        x = np.empty((n, len(FEATURES)), dtype=np.float64)
        col = 0
        for k in LAGS + SEASONAL:
            x[:, col] = h[:, -k] / div[:, 0]
            col += 1
        for m in MEANS:
            x[:, col] = np.nanmean(h[:, -m:], axis=1) / div[:, 0]
            col += 1
        last8 = h[:, -8:]
        cnt8 = np.sum(~np.isnan(last8), axis=1)
        std8 = np.nanstd(last8, axis=1) / div[:, 0]
        x[:, col] = np.where(cnt8 >= 2, std8, np.nan)
        col += 1
    ang = woy_angle(target_week_end)
    x[:, col] = np.sin(ang)
    x[:, col + 1] = np.cos(ang)
    x[:, col + 2] = np.minimum(observed, 104) / 104.0
    x = np.where(np.isnan(x), MISSING, x)
    base = x[:, 0].copy()
    # No last week: fall back to the 4-week mean, then to the level itself.
    base = np.where(base >= 0, base, np.where(x[:, len(LAGS) + len(SEASONAL)] >= 0,
                                              x[:, len(LAGS) + len(SEASONAL)], 1.0))
    return FeatureBatch(x.astype(np.float32), scale, base, observed, zeros)


def combine(batch: FeatureBatch, prediction: F64, naive_blend: float) -> F64:
    """Forecast in units from the model's normalised residual prediction."""
    pred = np.asarray(prediction, dtype=np.float64).reshape(-1)
    out = batch.scale * (batch.base + (1.0 - naive_blend) * pred)
    out = np.where(batch.scale > 0, out, 0.0)
    return np.maximum(out, 0.0)


def recent_std(weekly: F64, window: int = 13) -> F64:
    """Spread of the last ``window`` observed weeks (0 with fewer than 2)."""
    h = np.asarray(weekly, dtype=np.float64)
    last = h[:, -window:]
    last = np.where(np.isfinite(last) & (last >= 0), last, np.nan)
    cnt = np.sum(~np.isnan(last), axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(last, axis=1)
    return np.where((cnt >= 2) & np.isfinite(sd), sd, 0.0)


def moving_average(weekly: F64, window: int = 8) -> tuple[F64, F64, npt.NDArray[np.int64]]:
    """Mean and spread of the last ``window`` observed weeks (the no-model fallback)."""
    h = np.asarray(weekly, dtype=np.float64)
    if h.ndim == 1:
        h = h.reshape(1, -1)
    h = np.where(np.isfinite(h) & (h >= 0), h, np.nan)
    observed = np.sum(~np.isnan(h), axis=1).astype(np.int64)
    last = h[:, -window:] if h.shape[1] else np.full((h.shape[0], 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(last, axis=1)
        sd = np.nanstd(last, axis=1)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    sd = np.where(np.isfinite(sd), sd, 0.0)
    sd = np.maximum(sd, np.sqrt(mean))
    return mean, sd, observed
