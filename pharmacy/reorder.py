"""Reorder suggestions and expiry risk: pure arithmetic over a demand forecast.

The forecast comes through the ``Forecaster`` port (``models`` implements it with an ONNX
model, or a moving average when no model is installed). Everything here is deterministic
and side-effect free; the store adapters in ``models`` gather the inputs and record results.

Units: quantities are dispensing units (the product's ``unit``); ``pack_size`` units make one
orderable pack. Demand is in units per week.

Order-up-to policy (periodic review): the protection interval is lead time + review period.
Order-up-to level = expected demand over the interval + safety stock, safety stock =
z(service level) * sigma * sqrt(interval in weeks). The inventory position counts stock on
hand that is expected to sell before it expires (FEFO), plus stock on order. The suggestion
is the shortfall, rounded up to whole packs and at least the minimum order.

Expiry risk (FEFO): a batch is sold after every batch that expires before it. Cumulative
demand until the batch's expiry is taken as Normal(rate * days, sigma^2 * weeks). The
probability that the batch still holds stock on its expiry date is P(D < ahead + qty), and
the expected leftover is E[max(0, ahead + qty - D)] - E[max(0, ahead - D)], where ``ahead``
is the stock of earlier-expiring batches that is expected to sell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist
from typing import Any, Protocol

FALLBACK_VERSION = "fallback: moving average"
NO_HISTORY_VERSION = "none: no sales history"

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---- the port ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemandForecast:
    """Expected demand for one product in the coming week, with its spread."""

    ndc: str
    weekly_mean: float
    weekly_sigma: float
    model_version: str          # the model that made it, FALLBACK_VERSION or NO_HISTORY_VERSION
    basis: str                  # "model", "moving-average", "short-history", "no-history", "zeros"

    def to_json(self) -> dict[str, Any]:
        return {"ndc": self.ndc, "weekly_mean": round(self.weekly_mean, 3),
                "weekly_sigma": round(self.weekly_sigma, 3),
                "model_version": self.model_version, "basis": self.basis}


@dataclass(frozen=True)
class ForecastRequest:
    """Weekly demand of several products, one row each, oldest week first.

    ``weekly`` is an n x W table (a list of lists or a numpy array) of complete weeks, the
    last one ending the day before ``target_week_end - 6 days``; NaN marks a week with no
    data (before the product was stocked). ``target_week_end`` is the Sunday that ends the
    week being forecast.
    """

    ndcs: tuple[str, ...]
    weekly: Any
    target_week_end: date


class Forecaster(Protocol):
    """Anything that turns weekly history into next-week demand."""

    @property
    def version(self) -> str: ...

    def forecast(self, request: ForecastRequest) -> list[DemandForecast]: ...


# ---- normal helpers ------------------------------------------------------------------------------
def norm_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / _SQRT2))


def norm_pdf(z: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


def shortfall(level: float, mean: float, sigma: float) -> float:
    """E[max(0, level - D)] for D ~ Normal(mean, sigma); exact when sigma is 0."""
    if sigma <= 1e-12:
        return max(0.0, level - mean)
    z = (level - mean) / sigma
    return (level - mean) * norm_cdf(z) + sigma * norm_pdf(z)


_Z_CACHE: dict[float, float] = {}


def z_for(service_level: float) -> float:
    """The standard normal quantile of a cycle service level in (0, 1)."""
    z = _Z_CACHE.get(service_level)
    if z is None:
        if not 0.5 <= service_level < 1.0:
            raise ValueError(f"service level {service_level} must be in [0.5, 1)")
        z = NormalDist().inv_cdf(service_level)
        _Z_CACHE[service_level] = z
    return z


# ---- expiry risk -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchStock:
    batch_id: str
    lot: str
    expiry: date        # last day the lot may be sold
    qty: int            # units on hand, sellable


@dataclass(frozen=True)
class BatchRisk:
    batch_id: str
    lot: str
    expiry: date
    qty: int
    days_left: int
    ahead: float            # units of earlier-expiring batches expected to sell first
    p_expire: float         # probability the batch still holds stock at expiry
    expected_leftover: float  # units expected to be left unsold at expiry

    def to_json(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "lot": self.lot, "expiry": self.expiry.isoformat(),
                "qty": self.qty, "days_left": self.days_left, "ahead": round(self.ahead, 2),
                "p_expire": round(self.p_expire, 4),
                "expected_leftover": round(self.expected_leftover, 2)}


def expiry_risks(batches: Sequence[BatchStock], weekly_mean: float, weekly_sigma: float,
                 today: date) -> list[BatchRisk]:
    """Risk for each batch of one product, in FEFO order (expiry, then lot)."""
    rate = max(0.0, weekly_mean) / 7.0
    var_per_day = max(0.0, weekly_sigma) ** 2 / 7.0
    out: list[BatchRisk] = []
    ahead = 0.0
    for b in sorted(batches, key=lambda x: (x.expiry, x.lot)):
        if b.qty <= 0:
            continue
        days = (b.expiry - today).days + 1  # the expiry day itself is still sellable
        if days <= 0:
            out.append(BatchRisk(b.batch_id, b.lot, b.expiry, b.qty, days, ahead, 1.0,
                                 float(b.qty)))
            continue
        mean = rate * days
        sigma = math.sqrt(var_per_day * days)
        top = ahead + b.qty
        left = shortfall(top, mean, sigma) - shortfall(ahead, mean, sigma)
        left = min(float(b.qty), max(0.0, left))
        p = (1.0 if mean < top else 0.0) if sigma <= 1e-12 else norm_cdf((top - mean) / sigma)
        out.append(BatchRisk(b.batch_id, b.lot, b.expiry, b.qty, days, ahead, p, left))
        ahead += b.qty - left
    return out


@dataclass(frozen=True)
class ExpiryAction:
    action: str          # "transfer", "markdown", "return-to-supplier", "none"
    reason: str


def expiry_action(risk: BatchRisk, *, controlled: bool, rx_only: bool,
                  min_p: float = 0.5, min_units: float = 1.0) -> ExpiryAction:
    """What to do with a batch that is likely to expire unsold.

    Controlled substances go back through the supplier or a reverse distributor. A markdown
    only moves over-the-counter stock. Transfers need time for another store to sell it.
    """
    if risk.p_expire < min_p or risk.expected_leftover < min_units:
        return ExpiryAction("none", "expected to sell before expiry")
    left = f"{risk.expected_leftover:.0f} of {risk.qty} expected unsold in {risk.days_left} days"
    if risk.days_left <= 0:
        return ExpiryAction("return-to-supplier",
                            f"expired: return to the supplier or a reverse distributor ({left})")
    if controlled:
        return ExpiryAction("return-to-supplier",
                            f"controlled: return to the supplier or a reverse distributor ({left})")
    if rx_only:
        if risk.days_left >= 45:
            return ExpiryAction("transfer", f"transfer to a store with more demand ({left})")
        return ExpiryAction("return-to-supplier", f"too close to expiry to transfer ({left})")
    if risk.days_left >= 90:
        return ExpiryAction("transfer", f"transfer to a store with more demand ({left})")
    if risk.days_left >= 14:
        return ExpiryAction("markdown", f"mark down to sell before expiry ({left})")
    return ExpiryAction("return-to-supplier", f"too close to expiry to sell ({left})")


# ---- reorder -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReorderParams:
    lead_time_days: int = 2
    review_days: int = 7
    service_level: float = 0.95
    pack_size: int = 1          # units per orderable pack
    min_order_packs: int = 1

    def __post_init__(self) -> None:
        if self.lead_time_days < 0 or self.review_days < 0:
            raise ValueError("lead time and review period must not be negative")
        if self.lead_time_days + self.review_days <= 0:
            raise ValueError("lead time + review period must be at least one day")
        if self.pack_size < 1 or self.min_order_packs < 1:
            raise ValueError("pack size and minimum order must be at least 1")
        z_for(self.service_level)


@dataclass(frozen=True)
class ReorderSuggestion:
    ndc: str
    order_units: int
    order_packs: int
    order_up_to: float
    safety_stock: float
    demand_over_interval: float
    on_hand: int
    usable_on_hand: float      # on hand expected to sell before it expires
    expiring_unsold: float     # on hand expected to expire within the interval
    on_order: int
    position: float            # usable on hand + on order
    forecast: DemandForecast
    params: ReorderParams
    reason_code: str           # "order", "covered", "no-demand", "no-history"

    @property
    def model_version(self) -> str:
        return self.forecast.model_version

    @property
    def reason(self) -> str:
        if self.reason_code == "no-history":
            return "no sales history: order by hand"
        if self.reason_code == "no-demand":
            return "no demand expected"
        if self.reason_code == "covered":
            return "stock and orders cover the interval"
        interval = self.params.lead_time_days + self.params.review_days
        text = (f"{self.demand_over_interval:.1f} expected over {interval} days + "
                f"{self.safety_stock:.1f} safety stock; position {self.position:.1f}")
        if self.expiring_unsold >= 0.5:
            text += f" ({self.expiring_unsold:.1f} on hand expected to expire unsold)"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "ndc": self.ndc, "order_units": self.order_units, "order_packs": self.order_packs,
            "pack_size": self.params.pack_size,
            "order_up_to": round(self.order_up_to, 2),
            "safety_stock": round(self.safety_stock, 2),
            "demand_over_interval": round(self.demand_over_interval, 2),
            "on_hand": self.on_hand, "usable_on_hand": round(self.usable_on_hand, 2),
            "expiring_unsold": round(self.expiring_unsold, 2), "on_order": self.on_order,
            "position": round(self.position, 2),
            "lead_time_days": self.params.lead_time_days,
            "review_days": self.params.review_days,
            "service_level": self.params.service_level,
            "forecast": self.forecast.to_json(),
            "model_version": self.forecast.model_version,
            "reason": self.reason,
        }


def suggest_order(forecast: DemandForecast, batches: Sequence[BatchStock], on_order: int,
                  params: ReorderParams, today: date) -> ReorderSuggestion:
    """Order-up-to suggestion for one product (expiry-aware, pack-rounded)."""
    interval = params.lead_time_days + params.review_days
    weeks = interval / 7.0
    mean = forecast.weekly_mean if forecast.weekly_mean > 0.0 else 0.0
    sigma = forecast.weekly_sigma if forecast.weekly_sigma > 0.0 else 0.0
    demand = mean * weeks
    safety = z_for(params.service_level) * sigma * math.sqrt(weeks)
    out = demand + safety
    on_hand = 0
    unsold = 0.0
    short: list[BatchStock] = []
    for b in batches:
        if b.qty <= 0:
            continue
        on_hand += b.qty
        # Only batches that expire inside the interval can fail to cover it.
        if (b.expiry - today).days < interval:
            short.append(b)
    if short:
        # Earlier-expiring stock is sold first, so every short batch sees the full demand.
        for r in expiry_risks(short, mean, sigma, today):
            unsold += r.expected_leftover
    usable = on_hand - unsold
    on_order = on_order if on_order > 0 else 0
    position = usable + on_order
    need = out - position
    units = packs = 0
    if forecast.basis == "no-history":
        code = "no-history"
    elif mean <= 0.0:
        code = "no-demand"
    elif need <= 1e-9:
        code = "covered"
    else:
        code = "order"
        packs = max(params.min_order_packs, math.ceil(need / params.pack_size - 1e-9))
        units = packs * params.pack_size
    return ReorderSuggestion(forecast.ndc, units, packs, out, safety, demand, on_hand, usable,
                             unsold, on_order, position, forecast, params, code)
