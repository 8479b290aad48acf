"""Diversion anomaly: per-user features from controlled-substance activity and a score.

Activity comes from the controlled register (dispenses, adjustments, stocktake variances),
the decision log (refused attempts), the sales' prescription facts (partial fills) and the
audit log (voids and overrides, recorded as audit actions containing "void" / "override").
The simulator (``models.simulate``) produces the same ``Activity`` records, so the detector
is trained and evaluated on exactly the features the terminal computes.

Two scorers, each exported as one TreeEnsembleRegressor node:
- the tail surprise: for every feature, ``-log10 P(ordinary week >= value)`` as a step tree,
  combined with MAX (catches one behaviour far outside what ordinary staff do);
- an IsolationForest whose trees' leaves hold path lengths, combined with AVERAGE; the
  score is ``2 ** (-path / c(psi))`` (0.5 ordinary, towards 1 unusual) and catches unusual
  combinations.
A user is flagged when either score reaches its threshold (set on ordinary weeks).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.errors import ModelIncompatible
from pharmacy.clock import parse_iso

if TYPE_CHECKING:
    from pharmacy.store import Store

FEATURE_SET = "diversion-v1"
FEATURES: tuple[str, ...] = (
    "log_dispenses",
    "off_hours_share",
    "void_rate",
    "override_rate",
    "refusal_rate",
    "adjust_loss_rate",
    "adjust_loss_count",
    "count_shrink_rate",
    "partial_share",
    "max_partials_per_rx",
)
EXPLAIN = {
    "off_hours_share": "controlled dispensing outside opening hours",
    "void_rate": "voided sales",
    "override_rate": "overridden warnings",
    "refusal_rate": "refused controlled attempts",
    "adjust_loss_rate": "units written off by adjustments",
    "adjust_loss_count": "write-off adjustments",
    "count_shrink_rate": "units missing at counts",
    "partial_share": "partial fills",
    "max_partials_per_rx": "repeated partial fills of one prescription",
    "log_dispenses": "controlled dispenses",
}
LOSS_REASONS = {"DAMAGED", "THEFT", "LOSS", "CORRECTION", "SAMPLE"}

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Activity:
    user_id: str
    at: datetime          # local wall-clock time of the pharmacy
    kind: str             # dispense | void | override | refusal | adjust | count
    qty: int = 0          # dispense: units; adjust / count: signed change in units
    rx: str | None = None
    partial: bool = False


@dataclass(frozen=True)
class Hours:
    open_hour: float = 8.0
    close_hour: float = 20.0

    def off(self, at: datetime) -> bool:
        h = at.hour + at.minute / 60.0
        return not (self.open_hour <= h < self.close_hour)

    @classmethod
    def parse(cls, text: str | None) -> Hours:
        """``"08:00-20:00"`` (local time)."""
        if not text:
            return cls()
        try:
            a, b = text.split("-")
            ha, ma = (int(x) for x in a.split(":"))
            hb, mb = (int(x) for x in b.split(":"))
        except ValueError:
            return cls()
        return cls(ha + ma / 60.0, hb + mb / 60.0)


@dataclass
class _Acc:
    n: int = 0
    units: int = 0
    off: int = 0
    voids: int = 0
    overrides: int = 0
    refusals: int = 0
    loss_units: int = 0
    loss_count: int = 0
    shrink: int = 0
    partials: int = 0
    per_rx: dict[str, int] = field(default_factory=dict)


def featurize(acts: Iterable[Activity], hours: Hours = Hours(),
              key: Any = None) -> tuple[list[Any], F64]:
    """Feature rows per group (default: per user; ``key(activity)`` to group otherwise)."""
    groups: dict[Any, _Acc] = defaultdict(_Acc)
    for a in acts:
        g = groups[a.user_id if key is None else key(a)]
        if a.kind == "dispense":
            g.n += 1
            g.units += max(0, a.qty)
            if hours.off(a.at):
                g.off += 1
            if a.partial:
                g.partials += 1
                if a.rx:
                    g.per_rx[a.rx] = g.per_rx.get(a.rx, 0) + 1
        elif a.kind == "void":
            g.voids += 1
        elif a.kind == "override":
            g.overrides += 1
        elif a.kind == "refusal":
            g.refusals += 1
        elif a.kind == "adjust" and a.qty < 0:
            g.loss_units += -a.qty
            g.loss_count += 1
        elif a.kind == "count" and a.qty < 0:
            g.shrink += -a.qty
    keys = sorted(groups, key=str)
    x = np.zeros((len(keys), len(FEATURES)))
    for i, k in enumerate(keys):
        g = groups[k]
        n2 = g.n + 2.0
        x[i] = (
            math.log1p(g.n),
            g.off / n2,
            g.voids / n2,
            g.overrides / n2,
            g.refusals / (g.n + g.refusals + 2.0),
            g.loss_units / (g.units + 50.0),
            math.log1p(g.loss_count),
            g.shrink / (g.units + 50.0),
            g.partials / n2,
            math.log1p(max(g.per_rx.values(), default=0)),
        )
    return keys, x


# ---- the model on the terminal -------------------------------------------------------------
@dataclass(frozen=True)
class UserScore:
    user_id: str
    score: float            # tail surprise: -log10 of how rare the most unusual feature is
    forest_score: float     # isolation-forest score (0.5 ordinary, towards 1 unusual)
    flagged: bool
    reasons: tuple[str, ...]
    features: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "score": round(self.score, 4),
                "forest_score": round(self.forest_score, 4), "flagged": self.flagged,
                "reasons": list(self.reasons),
                "features": {k: round(v, 4) for k, v in self.features.items()}}


class DiversionModel:
    """Two single-node tree ensembles over the same features: the per-feature tail surprise
    (MAX of step trees) and an isolation forest (AVERAGE of path lengths)."""

    def __init__(self, version: str, tail: Any, forest: Any, c_psi: float,
                 threshold_tail: float, threshold_forest: float,
                 reference_p99: Sequence[float], reference_median: Sequence[float]) -> None:
        self.version = version
        self.tail = tail              # runtime.OnnxModel: features -> surprise
        self.forest = forest          # runtime.OnnxModel: features -> mean path length
        self.c_psi = c_psi
        self.threshold_tail = threshold_tail
        self.threshold_forest = threshold_forest
        self.p99 = np.asarray(reference_p99, dtype=np.float64)
        self.median = np.asarray(reference_median, dtype=np.float64)

    @classmethod
    def from_bundle(cls, version: str, meta: dict[str, Any],
                    files: dict[str, bytes]) -> DiversionModel:
        from models.runtime import OnnxModel

        feats = meta.get("features")
        declared = tuple(str(f) for f in feats) if isinstance(feats, list) else ()
        if meta.get("feature_set") != FEATURE_SET or declared != FEATURES:
            raise ModelIncompatible(
                f"diversion model uses feature set {meta.get('feature_set')!r} with "
                f"{len(declared)} features; this terminal computes "
                f"{FEATURE_SET!r} ({len(FEATURES)})", code="MODEL_FEATURES_MISMATCH")
        try:
            names = meta["files"]
            tail_name, forest_name = str(names["tail"]), str(names["forest"])
            c_psi = float(meta["c_psi"])
            t_tail = float(meta["threshold_tail"])
            t_forest = float(meta["threshold_forest"])
            p99 = [float(v) for v in meta["reference_p99"]]
            med = [float(v) for v in meta["reference_median"]]
        except (KeyError, TypeError, ValueError):
            raise ModelIncompatible("diversion model metadata is incomplete") from None
        if len(p99) != len(FEATURES) or len(med) != len(FEATURES) or c_psi <= 0:
            raise ModelIncompatible("diversion model reference statistics do not match its "
                                    "features")
        for name in (tail_name, forest_name):
            if name not in files:
                raise ModelIncompatible(f"diversion model file {name} is not in the bundle")
        return cls(version, OnnxModel(files[tail_name], len(FEATURES), name="diversion tail"),
                   OnnxModel(files[forest_name], len(FEATURES), name="diversion forest"),
                   c_psi, t_tail, t_forest, p99, med)

    def scores(self, x: F64) -> tuple[F64, F64]:
        """(tail surprise, isolation-forest score) per row."""
        x32 = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        tail = self.tail.run(x32)
        path = self.forest.run(x32)
        return tail, np.asarray(2.0 ** (-path / self.c_psi), dtype=np.float64)

    def explain(self, row: F64) -> tuple[str, ...]:
        out = []
        for j, name in enumerate(FEATURES):
            if name == "log_dispenses":
                continue
            if row[j] > self.p99[j] and row[j] > 0:
                out.append(f"{EXPLAIN[name]}: {_fmt(name, row[j])} "
                           f"(usual {_fmt(name, self.median[j])})")
        return tuple(out) or ("unusual combination of activity",)

    def score_users(self, users: Sequence[str], x: F64) -> list[UserScore]:
        if not len(users):
            return []
        tail, forest = self.scores(x)
        out = []
        for i, u in enumerate(users):
            flagged = bool(tail[i] > self.threshold_tail or forest[i] > self.threshold_forest)
            reasons = self.explain(x[i]) if flagged else ()
            out.append(UserScore(u, float(tail[i]), float(forest[i]), flagged, reasons,
                                 dict(zip(FEATURES, x[i].tolist(), strict=True))))
        out.sort(key=lambda us: (-us.flagged, -us.score))
        return out


def _fmt(name: str, v: float) -> str:
    if name in ("adjust_loss_count", "max_partials_per_rx", "log_dispenses"):
        return f"{math.expm1(v):.0f}"
    return f"{100 * v:.1f} %"


# ---- the store adapter --------------------------------------------------------------------------
def _local(text: str, offset: timedelta) -> datetime:
    return (parse_iso(text).astimezone(UTC) + offset).replace(tzinfo=None)


def store_offset(store: Store, at: datetime) -> timedelta:
    """The store's UTC offset at ``at`` (setting "timezone", an IANA name; default UTC)."""
    tz = store.get_setting("timezone")
    if not tz:
        return timedelta(0)
    try:
        from zoneinfo import ZoneInfo

        off = at.astimezone(ZoneInfo(tz)).utcoffset()
    except (ValueError, KeyError, OSError):
        return timedelta(0)
    return off or timedelta(0)


def store_activities(store: Store, since: datetime, until: datetime) -> list[Activity]:
    """Controlled activity per user between two UTC times, in the store's local time."""
    from pharmacy.clock import iso

    off = store_offset(store, until)
    lo, hi = iso(since), iso(until)
    c = store.conn
    acts: list[Activity] = []
    dispenses: list[tuple[str, str, int, str | None, str | None]] = []
    for row in c.execute(
            "SELECT created_at, kind, qty, body FROM register "
            "WHERE created_at >= ? AND created_at < ?", (lo, hi)):
        try:
            body = json.loads(row["body"])
        except ValueError:
            continue
        user = str(body.get("user_id") or "unknown")
        kind = row["kind"]
        if kind == "dispense":
            dispenses.append((user, row["created_at"], int(row["qty"]), body.get("rx_number"),
                              body.get("sale_id")))
        elif kind == "adjust":
            if str(body.get("reason") or "") in LOSS_REASONS:
                acts.append(Activity(user, _local(row["created_at"], off), "adjust",
                                     int(row["qty"])))
        elif kind == "stocktake":
            acts.append(Activity(user, _local(row["created_at"], off), "count", int(row["qty"])))
    partial: dict[str, bool] = {}
    sale_ids = sorted({d[4] for d in dispenses if d[4]})
    for i in range(0, len(sale_ids), 500):
        chunk = sale_ids[i:i + 500]
        q = ",".join("?" * len(chunk))
        for sid, rx in c.execute(f"SELECT sale_id, rx FROM sales WHERE sale_id IN ({q})", chunk):
            try:
                facts = json.loads(rx) if rx else None
            except ValueError:
                facts = None
            partial[sid] = isinstance(facts, dict) and bool(facts.get("partial_fill"))
    for user, at, qty, rx, sid in dispenses:
        acts.append(Activity(user, _local(at, off), "dispense", qty, rx,
                             bool(sid and partial.get(sid))))
    for row in c.execute(
            "SELECT created_at, user_id FROM refusals WHERE created_at >= ? AND created_at < ? "
            "AND decision IN ('deny', 'hold')", (lo, hi)):
        acts.append(Activity(str(row["user_id"] or "unknown"), _local(row["created_at"], off),
                             "refusal"))
    for row in c.execute(
            "SELECT created_at, user_id, action FROM audit_log WHERE created_at >= ? "
            "AND created_at < ? AND (action LIKE '%void%' OR action LIKE '%override%')",
            (lo, hi)):
        kind = "void" if "void" in str(row["action"]).lower() else "override"
        acts.append(Activity(str(row["user_id"] or "unknown"), _local(row["created_at"], off),
                             kind))
    return acts
