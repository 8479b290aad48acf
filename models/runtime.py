"""ONNX inference on the terminal and the registry of active models.

``onnxruntime`` is imported inside functions only: importing this module costs nothing, and
the first ``load_session`` (call it from a worker thread, e.g. ``warm_up()`` at start) pays
the ~0.1 s import. ``ModelRegistry`` keeps the active models per data directory and swaps
them atomically when a new bundle is installed (in this process, or in another one: the
installed version is checked on every ``active()`` call), so no restart is needed.
Inference sessions are safe to share across threads.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.errors import BundleCorrupt, ModelIncompatible
from pharmacy.errors import PharmosError
from pharmacy.reorder import FALLBACK_VERSION, Forecaster
from pharmacy.signing import sha256_files

if TYPE_CHECKING:
    from models.diversion import DiversionModel
    from pharmacy.store import Store

MODELS_DIR = "models"


# A one-node graph (Identity, float [N, 1]); running it creates onnxruntime's environment.
_WARM_GRAPH = base64.b64decode(
    "CAg6PgoQCgF4EgF5IghJZGVudGl0eRIEd2FybVoRCgF4EgwKCggBEgYKAAoCCAFiEQoBeRIMCgoIARIGCgAKAggB"
    "QgQKABAR")


def warm_up() -> float:
    """Import onnxruntime and create its environment (call from a worker thread at start,
    never the GUI thread), so the first model load costs only the model. Returns seconds."""
    t = time.perf_counter()
    import models.diversion
    import models.forecast  # noqa: F401

    OnnxModel(_WARM_GRAPH, 1, name="warm-up").run(np.zeros((1, 1), dtype=np.float32))
    return time.perf_counter() - t


class OnnxModel:
    """One ONNX graph with a single float32 input of ``n_features`` columns."""

    def __init__(self, onnx_bytes: bytes, n_features: int, *, name: str = "model") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(onnx_bytes, opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelIncompatible(f"the {name} model cannot be loaded by this terminal: "
                                    f"{str(e).splitlines()[0][:200]}",
                                    code="MODEL_INCOMPATIBLE") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelIncompatible(f"the {name} model has {len(inputs)} inputs, expected 1")
        shape = inputs[0].shape
        width = shape[-1] if shape else None
        if not isinstance(width, int) or width != n_features:
            raise ModelIncompatible(
                f"the {name} model takes {width} features but its metadata declares "
                f"{n_features}", declared=n_features, graph=width)
        if inputs[0].type != "tensor(float)":
            raise ModelIncompatible(f"the {name} model input is {inputs[0].type}, "
                                    "expected tensor(float)")
        self.input_name = inputs[0].name
        self.n_features = n_features
        self.name = name

    def run(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})
        return np.asarray(out[0], dtype=np.float64).reshape(x.shape[0], -1)[:, 0]


@dataclass(frozen=True)
class ActiveModels:
    """What the terminal uses now. ``version`` is None when no bundle is in use."""

    version: str | None
    forecaster: Forecaster
    diversion: DiversionModel | None
    note: str
    load_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "forecast": self.forecaster.version,
                "diversion": None if self.diversion is None else self.diversion.version,
                "note": self.note, "load_ms": round(self.load_ms, 3)}


def fallback(note: str) -> ActiveModels:
    from models.forecast import MovingAverageForecaster

    return ActiveModels(None, MovingAverageForecaster(), None, note)


def check_files(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    """Files read back from disk must still be the ones the signed manifest names."""
    declared = manifest.get("files")
    if not isinstance(declared, dict):
        raise BundleCorrupt("the model manifest lists no files")
    actual = sha256_files(files)
    for name, digest in declared.items():
        if actual.get(name) != digest:
            raise BundleCorrupt(f"model file {name} does not match the signed manifest",
                                file=name)


def models_from_files(version: str, manifest: dict[str, Any],
                      files: dict[str, bytes]) -> ActiveModels:
    """Load the models of a verified bundle (raises ModelIncompatible / BundleCorrupt)."""
    from models.diversion import DiversionModel
    from models.forecast import OnnxForecaster

    t = time.perf_counter()
    entries = manifest.get("models")
    if not isinstance(entries, dict) or "forecast" not in entries:
        raise ModelIncompatible("the bundle has no forecast model")
    fmeta = entries["forecast"]
    dmeta = entries.get("diversion")
    if not isinstance(fmeta, dict) or not (dmeta is None or isinstance(dmeta, dict)):
        raise ModelIncompatible("the bundle's model metadata is malformed")
    forecaster = OnnxForecaster.from_bundle(version, fmeta, files)
    diversion = None
    if dmeta is not None:
        diversion = DiversionModel.from_bundle(version, dmeta, files)
    ms = (time.perf_counter() - t) * 1000.0
    return ActiveModels(version, forecaster, diversion, f"model bundle {version}", ms)


def bundle_dir(data_dir: Path, version: str) -> Path:
    return data_dir / MODELS_DIR / version


def load_installed(store: Store) -> ActiveModels:
    """The newest installed bundle whose files still verify, else the moving average."""
    rows = store.conn.execute(
        "SELECT version, manifest, status FROM model_bundles "
        "WHERE status IN ('active', 'superseded') ORDER BY installed_seq DESC"
    ).fetchall()
    if not rows:
        return fallback("no model installed: forecasts use a moving average")
    problems: list[str] = []
    for row in rows:
        version = str(row["version"])
        try:
            manifest = json.loads(row["manifest"])
            d = bundle_dir(store.data_dir, version)
            files = {}
            for name in manifest.get("files", {}):
                try:
                    files[name] = (d / name).read_bytes()
                except OSError:
                    raise BundleCorrupt(f"model file {name} of {version} is missing") from None
            check_files(manifest, files)
            active = models_from_files(version, manifest, files)
        except (PharmosError, ValueError) as e:
            problems.append(f"{version}: {getattr(e, 'message', str(e))}")
            continue
        if row["status"] != "active":
            note = (f"model bundle {version} (the newest installed bundle failed to load: "
                    f"{'; '.join(problems)})")
            return ActiveModels(active.version, active.forecaster, active.diversion, note,
                                active.load_ms)
        return active
    return fallback("installed models failed to load (" + "; ".join(problems)
                    + "): forecasts use a moving average")


def installed_version(store: Store) -> str | None:
    row = store.conn.execute(
        "SELECT version FROM model_bundles WHERE status = 'active' "
        "ORDER BY installed_seq DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


class ModelRegistry:
    """Active models per data directory; thread-safe; hot-swapped on install."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, tuple[str | None, ActiveModels]] = {}

    @staticmethod
    def _key(data_dir: Path) -> str:
        return str(Path(data_dir).resolve())

    def active(self, store: Store) -> ActiveModels:
        """The models to use now; reloads when the installed bundle changed."""
        key = self._key(store.data_dir)
        want = installed_version(store)
        with self._lock:
            cached = self._active.get(key)
        if cached is not None and cached[0] == want:
            return cached[1]
        loaded = load_installed(store)
        with self._lock:
            self._active[key] = (want, loaded)
        return loaded

    def get(self, data_dir: Path) -> ActiveModels | None:
        """The models loaded for a data directory, without touching the store (any thread)."""
        with self._lock:
            cached = self._active.get(self._key(data_dir))
        return None if cached is None else cached[1]

    def swap(self, data_dir: Path, installed: str | None, models: ActiveModels) -> None:
        with self._lock:
            self._active[self._key(data_dir)] = (installed, models)

    def forget(self, data_dir: Path) -> None:
        with self._lock:
            self._active.pop(self._key(data_dir), None)


REGISTRY = ModelRegistry()

__all__ = ["FALLBACK_VERSION", "REGISTRY", "ActiveModels", "ModelRegistry", "OnnxModel",
           "warm_up"]
