"""Bad input: missing / NaN features, no history, all zeros, mismatched model features."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import numpy as np
import pytest

from models import features
from models.bundle import install_model_bundle
from models.errors import ModelIncompatible
from models.forecast import MovingAverageForecaster
from models.runtime import ModelRegistry, models_from_files
from pharmacy.reorder import NO_HISTORY_VERSION, ForecastRequest
from pharmacy.store import Store
from tests.models.conftest import QuickBundle, build

TARGET = date(2026, 11, 8)


@pytest.fixture
def forecaster(quick_bundle: QuickBundle) -> Any:
    return models_from_files(quick_bundle.version, json.loads(
        _manifest(quick_bundle)), quick_bundle.files).forecaster


def _manifest(b: QuickBundle) -> str:
    from models.bundle import read_bundle

    return read_bundle(b.data, b.trust).manifest_bytes.decode()


def test_nan_and_missing_weeks_give_finite_forecasts(forecaster: Any) -> None:
    rng = np.random.default_rng(0)
    h = rng.poisson(20, size=(4, 60)).astype(float)
    h[0, -1] = np.nan                 # last week missing
    h[1, ::3] = np.nan                # scattered gaps
    h[2, -5:] = np.inf                # garbage
    h[3, -2] = -7                     # negative sales are errors
    out = forecaster.forecast(ForecastRequest(("a", "b", "c", "d"), h, TARGET))
    for f in out:
        assert np.isfinite(f.weekly_mean) and f.weekly_mean >= 0
        assert np.isfinite(f.weekly_sigma) and f.weekly_sigma >= 0
        assert f.basis == "model"
    batch = features.build(h, TARGET, 13)
    assert np.isfinite(batch.x).all()
    assert batch.x[0, 0] == features.MISSING


def test_product_with_no_history(forecaster: Any) -> None:
    h = np.full((2, 30), np.nan)
    h[1, -3:] = [4, 5, 6]             # 3 weeks: too short for the model
    out = forecaster.forecast(ForecastRequest(("new", "short"), h, TARGET))
    assert out[0].basis == "no-history" and out[0].weekly_mean == 0.0
    assert out[0].model_version == NO_HISTORY_VERSION
    assert out[1].basis == "short-history" and out[1].weekly_mean == pytest.approx(5.0)
    assert out[1].model_version == "fallback: moving average"
    # an empty table and ragged lists work too
    assert forecaster.forecast(ForecastRequest((), np.zeros((0, 0)), TARGET)) == []
    ragged = forecaster.forecast(ForecastRequest(("x", "y"), [[], [1, 2, 3]], TARGET))
    assert [f.basis for f in ragged] == ["no-history", "short-history"]
    ma = MovingAverageForecaster().forecast(ForecastRequest(("n",), [[]], TARGET))
    assert ma[0].basis == "no-history"


def test_series_of_zeros(forecaster: Any) -> None:
    h = np.zeros((1, 80))
    f = forecaster.forecast(ForecastRequest(("z",), h, TARGET))[0]
    assert (f.weekly_mean, f.weekly_sigma, f.basis) == (0.0, 0.0, "zeros")
    stopped = np.concatenate([np.full(60, 30.0), np.zeros(20)]).reshape(1, -1)
    g = forecaster.forecast(ForecastRequest(("s",), stopped, TARGET))[0]
    assert g.weekly_mean < 3.0        # a discontinued product is not forecast at its old rate


def test_rows_must_match_products(forecaster: Any) -> None:
    with pytest.raises(ValueError):
        forecaster.forecast(ForecastRequest(("a",), np.zeros((2, 10)), TARGET))


def test_model_whose_declared_features_do_not_match(store: Store, quick_bundle: QuickBundle,
                                                    registry: ModelRegistry) -> None:
    models = {k: dict(v) for k, v in quick_bundle.models.items()}
    models["forecast"]["features"] = [*features.FEATURES[:-1], "price_elasticity"]
    bad = build(quick_bundle.key, quick_bundle.files, models, "m20261102000000-bad00001",
                datetime(2026, 11, 2))
    with pytest.raises(ModelIncompatible) as e:
        install_model_bundle(store, bad, trust=quick_bundle.trust, registry=registry)
    assert e.value.code == "MODEL_FEATURES_MISMATCH"
    assert e.value.exit_code == 2
    # another feature set name, and a diversion model with the wrong feature count
    models = {k: dict(v) for k, v in quick_bundle.models.items()}
    models["forecast"]["feature_set"] = "weekly-v9"
    with pytest.raises(ModelIncompatible):
        install_model_bundle(store, build(quick_bundle.key, quick_bundle.files, models,
                                          "m20261102000000-bad00002", datetime(2026, 11, 2)),
                             trust=quick_bundle.trust, registry=registry)
    models = {k: dict(v) for k, v in quick_bundle.models.items()}
    models["diversion"]["features"] = models["diversion"]["features"][:-1]
    with pytest.raises(ModelIncompatible):
        install_model_bundle(store, build(quick_bundle.key, quick_bundle.files, models,
                                          "m20261102000000-bad00003", datetime(2026, 11, 2)),
                             trust=quick_bundle.trust, registry=registry)
    assert registry.active(store).version is None
    refused = store.conn.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'model.refused'").fetchone()[0]
    assert refused == 3


def test_graph_width_must_match_declared_features(store: Store, quick_bundle: QuickBundle,
                                                  registry: ModelRegistry) -> None:
    from models.onnx_trees import TreeArrays, tree_ensemble_onnx

    leaf = TreeArrays(np.array([-2]), np.array([0.0]), np.array([-1]), np.array([-1]),
                      np.array([1.0]))
    files = dict(quick_bundle.files)
    files["forecast.onnx"] = tree_ensemble_onnx([leaf], 7)      # 7 inputs, 20 declared
    with pytest.raises(ModelIncompatible) as e:
        install_model_bundle(store, build(quick_bundle.key, files, quick_bundle.models,
                                          "m20261102000000-bad00004", datetime(2026, 11, 2)),
                             trust=quick_bundle.trust, registry=registry)
    assert "takes 7 features" in e.value.message
    files["forecast.onnx"] = b"not an onnx graph"
    with pytest.raises(ModelIncompatible):
        install_model_bundle(store, build(quick_bundle.key, files, quick_bundle.models,
                                          "m20261102000000-bad00005", datetime(2026, 11, 2)),
                             trust=quick_bundle.trust, registry=registry)


def _signed(qb: QuickBundle, models: dict[str, Any] | None = None,
            **manifest_over: Any) -> bytes:
    """A bundle the trusted key signed, with manifest fields replaced: well signed, badly
    made."""
    import io
    import zipfile

    from models.bundle import FORMAT
    from pharmacy.canonical import canonical_json
    from pharmacy.signing import sha256_files

    manifest = {"format": FORMAT, "version": qb.version, "issued_at": "2026-11-01T00:00:00Z",
                "key_id": qb.key.key_id, "files": sha256_files(qb.files),
                "models": models if models is not None else qb.models}
    manifest.update(manifest_over)
    body = canonical_json(manifest).encode()
    sig = canonical_json({"key_id": qb.key.key_id, "signature": qb.key.sign(body)}).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", body)
        z.writestr("signature.json", sig)
        for n, d in qb.files.items():
            z.writestr(n, d)
    return buf.getvalue()


@pytest.mark.parametrize("over", [{"issued_at": "0001-01-01T00:00:00+05:00"},
                                  {"version": "m1\x00x"}, {"version": "../m1"},
                                  {"version": "m1.2"}])
def test_signed_bundle_with_an_unusable_version_or_time(store: Store,
                                                        quick_bundle: QuickBundle,
                                                        over: dict[str, Any]) -> None:
    from models.errors import BundleCorrupt

    with pytest.raises(BundleCorrupt):
        install_model_bundle(store, _signed(quick_bundle, **over), trust=quick_bundle.trust,
                             registry=ModelRegistry())
    assert store.conn.execute("SELECT COUNT(*) FROM model_bundles").fetchone()[0] == 0


def test_odd_manifest_metrics_are_left_out_of_listings(store: Store,
                                                       quick_bundle: QuickBundle) -> None:
    """Holdout metrics of the wrong shape: the bundle installs (its models are fine) and
    listings show what they can instead of failing every time."""
    from models.bundle import installed

    models = {k: dict(v) for k, v in quick_bundle.models.items()}
    models["forecast"]["holdout"] = ["odd"]
    models["diversion"]["evaluation"] = "n/a"
    out = install_model_bundle(store, _signed(quick_bundle, models=models),
                               trust=quick_bundle.trust, registry=ModelRegistry())
    assert out["status"] == "installed"
    listed = installed(store)
    assert listed[0]["models"]["forecast"]["holdout"] == {}
    assert listed[0]["models"]["diversion"]["evaluation"] == {
        "precision": None, "recall": None, "ordinary_flagged_rate": None}
