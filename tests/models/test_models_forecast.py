"""The demand forecast on the real weekly series and on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import features
from models.dataset import load_weekly, parse_date
from models.forecast import MovingAverageForecaster, evaluate
from models.onnx_trees import op_types
from models.train import ForecastConfig, fit_regressor, regressor_to_onnx, training_rows
from pharmacy.errors import BadInput
from tests.conftest import shared_data
from tests.models.conftest import QUICK_FORECAST, synthetic_weekly, write_weekly_csv

README_BASELINES = {  # ../shared/data/README.md section 3: (Naive MSE, S-Naive MSE)
    "M01AB": (111.6, 107.1), "M01AE": (90.5, 105.9), "N02BA": (45.1, 52.1),
    "N02BE": (2716.4, 3605.2), "N05B": (280.5, 450.8), "N05C": (14.6, 21.8),
    "R03": (960.6, 1142.6), "R06": (81.2, 137.8),
}


def test_mixed_month_first_dates() -> None:
    assert parse_date("01-05-2014").isoformat() == "2014-01-05"
    assert parse_date("1/19/2014").isoformat() == "2014-01-19"
    assert parse_date("2014-01-12").isoformat() == "2014-01-12"
    with pytest.raises(BadInput):
        parse_date("19/1/2014")


@pytest.mark.shared_data
def test_weekly_file_matches_its_iso_copy() -> None:
    raw = load_weekly(shared_data("pharma_sales", "salesweekly.csv"))
    iso = load_weekly(shared_data("pharma_sales", "derived", "salesweekly_isodate.csv"))
    assert raw.weeks == iso.weeks and raw.names == iso.names
    assert np.array_equal(raw.values, iso.values)
    assert raw.n_weeks == 302 and len(raw.names) == 8


@pytest.mark.shared_data
def test_real_series_beat_naive_and_seasonal_naive(capsys: pytest.CaptureFixture[str]) -> None:
    """The acceptance test: `pharmos models evaluate --json` on salesweekly.csv."""
    from terminal.cli import main

    path = shared_data("pharma_sales", "salesweekly.csv")
    assert main(["models", "evaluate", "--dataset", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    classes = out["classes"]
    assert sorted(classes) == sorted(README_BASELINES)
    for name, (naive, snaive) in README_BASELINES.items():
        c = classes[name]
        assert c["naive_mse"] == pytest.approx(naive, abs=0.06), name
        assert c["snaive_mse"] == pytest.approx(snaive, abs=0.06), name
        assert c["mse"] < c["naive_mse"] and c["mse"] < c["snaive_mse"], (name, c)
        assert 0 < c["mape"] < 100
    assert out["all_beat_baselines"] is True
    assert out["published_xgboost_mape"]["M01AB"] == 17.89


def test_export_is_one_tree_ensemble_node_equal_to_sklearn() -> None:
    from models.runtime import OnnxModel
    from models.train import _SklearnAdapter

    data = synthetic_weekly(120)
    x, y, _ = training_rows(data, range(9, 120), 13)
    models = fit_regressor(x, y, ForecastConfig(n_estimators=40, seeds=(0, 1)))
    onnx_bytes = regressor_to_onnx(models, len(features.FEATURES))
    assert op_types(onnx_bytes) == ["TreeEnsembleRegressor"]
    got = OnnxModel(onnx_bytes, len(features.FEATURES)).run(x)
    want = _SklearnAdapter(models).run(x)
    assert np.max(np.abs(got - want)) < 1e-4


def test_quick_model_beats_baselines_on_synthetic_data() -> None:
    from models.train import holdout_forecast

    _, _, scores, _ = holdout_forecast(synthetic_weekly(), ForecastConfig(**QUICK_FORECAST))
    for name, s in scores.items():
        assert s["beats_naive"] and s["beats_snaive"], (name, s)
    ma = evaluate(MovingAverageForecaster(), synthetic_weekly())
    assert set(ma) == {"A", "B", "C", "D"}


def test_load_weekly_rejects_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("datum,A\n01-05-2014,x\n")
    with pytest.raises(BadInput) as e:
        load_weekly(p)
    assert e.value.code == "BAD_DATASET"
    p.write_text("datum,A\n01-12-2014,1\n01-05-2014,2\n")
    with pytest.raises(BadInput):
        load_weekly(p)
    with pytest.raises(BadInput):
        load_weekly(tmp_path / "missing.csv")
    write_weekly_csv(synthetic_weekly(60), p)
    assert load_weekly(p).n_weeks == 60
