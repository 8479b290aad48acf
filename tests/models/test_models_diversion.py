"""Diversion anomaly: simulator, features, single-node ONNX scorers, store adapter."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from models import diversion, simulate
from models.bundle import install_model_bundle
from models.onnx_trees import isolation_forest_trees, op_types, tail_trees, tree_ensemble_onnx
from models.runtime import ModelRegistry, OnnxModel
from models.suggest import diversion_run
from models.train import DiversionConfig, simulated_features, train_diversion
from pharmacy import inventory
from pharmacy.sales import Dispenser
from pharmacy.store import Store
from tests.models.conftest import QUICK_DIVERSION, AllowAll, QuickBundle

OXY = "0406-0552-01"


def test_simulator_is_deterministic_and_labels_patterns() -> None:
    cfg = simulate.SimConfig(users=5, weeks=4, diversion_share=0.5, seed=7)
    a, b = simulate.simulate(cfg), simulate.simulate(cfg)
    assert a.activities == b.activities and a.labels == b.labels
    assert len(a.labels) == 20
    assert {p for p in a.labels.values() if p} <= set(simulate.PATTERNS)
    assert any(a.labels.values())
    ordinary = simulate.simulate(simulate.SimConfig(users=5, weeks=4, seed=7))
    assert not any(ordinary.labels.values())


def test_features_of_known_activity() -> None:
    t = datetime(2026, 11, 2, 10, 0)
    acts = [
        diversion.Activity("u1", t, "dispense", 30, "RX1", True),
        diversion.Activity("u1", t + timedelta(hours=12), "dispense", 30, "RX1", True),  # 22:00
        diversion.Activity("u1", t, "void"),
        diversion.Activity("u1", t, "adjust", -5),
        diversion.Activity("u1", t, "adjust", 3),          # found stock is not a loss
        diversion.Activity("u1", t, "count", -4),
        diversion.Activity("u2", t, "refusal"),
    ]
    users, x = diversion.featurize(acts)
    assert users == ["u1", "u2"]
    f = dict(zip(diversion.FEATURES, x[0], strict=True))
    assert f["log_dispenses"] == pytest.approx(np.log1p(2))
    assert f["off_hours_share"] == pytest.approx(1 / 4)
    assert f["void_rate"] == pytest.approx(1 / 4)
    assert f["adjust_loss_rate"] == pytest.approx(5 / 110)
    assert f["count_shrink_rate"] == pytest.approx(4 / 110)
    assert f["partial_share"] == pytest.approx(2 / 4)
    assert f["max_partials_per_rx"] == pytest.approx(np.log1p(2))
    assert dict(zip(diversion.FEATURES, x[1], strict=True))["refusal_rate"] == \
        pytest.approx(1 / 3)
    assert diversion.Hours.parse("07:30-21:00").off(datetime(2026, 1, 1, 7, 0))
    assert not diversion.Hours.parse("garbage").off(datetime(2026, 1, 1, 12, 0))


def test_single_node_scorers_match_their_definitions() -> None:
    from sklearn.ensemble import IsolationForest

    x, _ = simulated_features(30, 6, 0.0, 5)
    probe, _ = simulated_features(20, 6, 0.3, 6)
    forest = IsolationForest(n_estimators=40, max_samples=128, random_state=0)
    forest.fit(x.astype(np.float32))
    trees, c = isolation_forest_trees(forest)
    b = tree_ensemble_onnx(trees, x.shape[1], aggregate="AVERAGE")
    assert op_types(b) == ["TreeEnsembleRegressor"]
    ours = 2.0 ** (-OnnxModel(b, x.shape[1]).run(probe.astype(np.float32)) / c)
    assert np.max(np.abs(ours - (-forest.score_samples(probe.astype(np.float32))))) < 1e-5
    exact = tree_ensemble_onnx(tail_trees(x, skip=(0,), max_steps=10**6), x.shape[1],
                               aggregate="MAX")
    tb = tree_ensemble_onnx(tail_trees(x, skip=(0,)), x.shape[1], aggregate="MAX")
    assert op_types(tb) == ["TreeEnsembleRegressor"]
    tail = OnnxModel(exact, x.shape[1]).run(x.astype(np.float32))
    thinned = OnnxModel(tb, x.shape[1]).run(x.astype(np.float32))
    # exact on the reference rows: -log10((1 + #{v >= x}) / (n + 1)), max over features
    n = len(x)
    want = np.zeros(n)
    for j in range(1, x.shape[1]):
        col = x[:, j].astype(np.float32)
        ge = (col[None, :] >= col[:, None]).sum(axis=1)
        want = np.maximum(want, -np.log10((1 + ge) / (n + 1)))
    assert np.max(np.abs(tail - want)) < 1e-5
    assert np.all(thinned <= want + 1e-5)      # fewer steps only ever lower the score
    # far beyond anything seen scores higher than the most extreme reference row
    far = x[:1].copy()
    far[0, 2] = x[:, 2].max() * 10 + 1
    assert OnnxModel(tb, x.shape[1]).run(far.astype(np.float32))[0] > tail.max()


def test_precision_and_recall_on_injected_patterns() -> None:
    r = train_diversion(DiversionConfig(**QUICK_DIVERSION))
    m = r.metrics
    assert m["injected"] > 10
    assert m["precision"] >= 0.5 and m["recall"] >= 0.3, m
    assert m["ordinary_flagged_rate"] <= 0.05
    assert m["forest_max_abs_diff_vs_sklearn"] < 1e-5
    assert set(m["per_pattern"]) <= set(simulate.PATTERNS)


def _sell(disp: Dispenser, at: datetime, user: str, qty: int, rx: str,
          partial: bool = False) -> None:
    disp.sell({"lines": [{"ndc": OXY, "qty": qty}], "at": at.isoformat(),
               "user": {"id": user, "role": "pharmacist"},
               "rx": {"rx_number": rx, "partial_fill": partial, "quantity_prescribed": 60}})


def test_store_activity_features_and_review(stocked: Store, clock: Any,
                                            quick_bundle: QuickBundle,
                                            registry: ModelRegistry) -> None:
    disp = Dispenser(stocked, AllowAll())
    start = clock.now - timedelta(days=6)
    for d in range(5):
        day = start.replace(hour=14) + timedelta(days=d)
        for k in range(3):
            clock.now = day + timedelta(minutes=10 * k)
            _sell(disp, clock.now, "u-normal", 10, f"RXN{d}{k}")
    for k in range(4):   # at night, partial fills of one prescription
        clock.now = start.replace(hour=23) + timedelta(days=k)
        _sell(disp, clock.now, "u-night", 5, "RX-NIGHT", partial=True)
    clock.now = start + timedelta(days=5, hours=1)
    inventory.adjust(stocked, OXY, "OX1", -12, "DAMAGED", user_id="u-night")
    inventory.stocktake(stocked, [{"ndc": OXY, "lot": "OX1", "counted": 100}],
                        user_id="u-night")
    clock.now = start + timedelta(days=6, hours=2)

    acts = diversion.store_activities(stocked, clock.now - timedelta(days=7), clock.now)
    users, x = diversion.featurize(acts)
    f = {u: dict(zip(diversion.FEATURES, x[i], strict=True)) for i, u in enumerate(users)}
    assert f["u-normal"]["off_hours_share"] == 0.0
    assert f["u-night"]["off_hours_share"] == pytest.approx(4 / 6)
    assert f["u-night"]["partial_share"] == pytest.approx(4 / 6)
    assert f["u-night"]["max_partials_per_rx"] == pytest.approx(np.log1p(4))
    assert f["u-night"]["adjust_loss_rate"] > 0 and f["u-night"]["count_shrink_rate"] > 0

    unscored = diversion_run(stocked, registry)
    assert unscored["scored"] is False and "no diversion model" in unscored["note"]
    install_model_bundle(stocked, quick_bundle.data, trust=quick_bundle.trust,
                         registry=registry)
    out = diversion_run(stocked, registry)
    assert out["scored"] and out["model_version"] == quick_bundle.version
    top = out["users"][0]
    assert top["user_id"] == "u-night" and top["flagged"]
    assert any("outside opening hours" in r for r in top["reasons"])
    normal = next(u for u in out["users"] if u["user_id"] == "u-normal")
    assert not normal["flagged"]
    rec = stocked.conn.execute(
        "SELECT subject, action, model_version FROM model_suggestions WHERE kind = 'diversion'"
    ).fetchall()
    assert [tuple(r) for r in rec] == [("u-night", "review", quick_bundle.version)]
