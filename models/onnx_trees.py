"""Tree ensembles as ONE ``ai.onnx.ml`` TreeEnsembleRegressor node (head office only).

skl2onnx's IsolationForest graph has one branch per tree (97 ms load, ~1 ms per row); the
same forest as a single TreeEnsembleRegressor node loads in a few ms and scores a row in
microseconds. Several gradient-boosting models trained with different seeds (bagging) are
merged into one node the same way: leaf values are scaled by 1/K and summed.

Thresholds: scikit-learn compares float32 inputs with float64 thresholds; ONNX stores float32
thresholds. Each threshold is rounded *down* to the nearest float32, which makes
``x <= t32`` exactly equivalent to ``x <= t64`` for every float32 ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TreeArrays:
    """One binary tree: ``left[i] == -1`` marks a leaf; ``value[i]`` is used at leaves."""

    feature: I64
    threshold: F64
    left: I64
    right: I64
    value: F64


def float32_floor(t: float) -> float:
    f = np.float32(t)
    if float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return float(f)


def sklearn_tree(tree: Any, leaf_values: F64, feature_map: Sequence[int] | None = None
                 ) -> TreeArrays:
    t = tree.tree_
    feat = np.asarray(t.feature, dtype=np.int64)
    if feature_map is not None:
        fm = np.asarray(feature_map, dtype=np.int64)
        feat = np.where(feat >= 0, fm[np.maximum(feat, 0)], feat)
    return TreeArrays(feat, np.asarray(t.threshold, dtype=np.float64),
                      np.asarray(t.children_left, dtype=np.int64),
                      np.asarray(t.children_right, dtype=np.int64),
                      np.asarray(leaf_values, dtype=np.float64))


def node_depths(tree: TreeArrays) -> I64:
    depth = np.zeros(len(tree.left), dtype=np.int64)
    stack = [0]
    while stack:
        i = stack.pop()
        if tree.left[i] != -1:
            for c in (int(tree.left[i]), int(tree.right[i])):
                depth[c] = depth[i] + 1
                stack.append(c)
    return depth


def average_path_length(n: float) -> float:
    """c(n): mean path length of an unsuccessful search in a binary search tree of n items."""
    if n <= 1:
        return 0.0
    if n <= 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


def gradient_boosting_trees(models: Sequence[Any]) -> tuple[list[TreeArrays], float]:
    """Trees of K fitted GradientBoostingRegressors, averaged; returns (trees, base value)."""
    k = len(models)
    trees: list[TreeArrays] = []
    base = 0.0
    for m in models:
        init = float(np.asarray(m._raw_predict_init(np.zeros((1, m.n_features_in_),
                                                             dtype=np.float32))).ravel()[0])
        base += init / k
        for est in m.estimators_[:, 0]:
            values = np.asarray(est.tree_.value[:, 0, 0], dtype=np.float64)
            trees.append(sklearn_tree(est, values * m.learning_rate / k))
    return trees, base


def isolation_forest_trees(forest: Any) -> tuple[list[TreeArrays], float]:
    """Trees whose leaves hold the path length (depth + c(leaf size)); returns (trees, c(psi))."""
    trees: list[TreeArrays] = []
    for est, feats in zip(forest.estimators_, forest.estimators_features_, strict=True):
        t = est.tree_
        arrays = sklearn_tree(est, np.zeros(t.node_count), feats)
        depth = node_depths(arrays)
        leaf = np.array([depth[i] + average_path_length(float(t.n_node_samples[i]))
                         for i in range(t.node_count)], dtype=np.float64)
        trees.append(TreeArrays(arrays.feature, arrays.threshold, arrays.left, arrays.right,
                                leaf))
    return trees, average_path_length(float(forest.max_samples_))


def tree_ensemble_onnx(trees: Iterable[TreeArrays], n_features: int, *, base_value: float = 0.0,
                       aggregate: str = "SUM", input_name: str = "features",
                       output_name: str = "y", doc: str = "") -> bytes:
    """One TreeEnsembleRegressor node, float32 [N, n_features] -> float32 [N, 1]."""
    from onnx import TensorProto, helper

    tids: list[int] = []
    nids: list[int] = []
    fids: list[int] = []
    vals: list[float] = []
    modes: list[str] = []
    trues: list[int] = []
    falses: list[int] = []
    t_tids: list[int] = []
    t_nids: list[int] = []
    t_w: list[float] = []
    for ti, tr in enumerate(trees):
        for i in range(len(tr.left)):
            tids.append(ti)
            nids.append(i)
            if tr.left[i] == -1:
                fids.append(0)
                vals.append(0.0)
                modes.append("LEAF")
                trues.append(0)
                falses.append(0)
                t_tids.append(ti)
                t_nids.append(i)
                t_w.append(float(tr.value[i]))
            else:
                f = int(tr.feature[i])
                if not 0 <= f < n_features:
                    raise ValueError(f"tree {ti} node {i} splits on feature {f}")
                fids.append(f)
                vals.append(float32_floor(float(tr.threshold[i])))
                modes.append("BRANCH_LEQ")
                trues.append(int(tr.left[i]))
                falses.append(int(tr.right[i]))
    node = helper.make_node(
        "TreeEnsembleRegressor", [input_name], [output_name], domain="ai.onnx.ml",
        name="ensemble", n_targets=1, aggregate_function=aggregate, post_transform="NONE",
        base_values=[float(base_value)], nodes_treeids=tids, nodes_nodeids=nids,
        nodes_featureids=fids, nodes_values=vals, nodes_modes=modes,
        nodes_truenodeids=trues, nodes_falsenodeids=falses,
        nodes_missing_value_tracks_true=[0] * len(tids),
        target_ids=[0] * len(t_tids), target_treeids=t_tids, target_nodeids=t_nids,
        target_weights=t_w)
    graph = helper.make_graph(
        [node], "pharmos",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, producer_name="pharmos", doc_string=doc,
                              opset_imports=[helper.make_opsetid("", 17),
                                             helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    data: bytes = model.SerializeToString()
    return data


def op_types(onnx_bytes: bytes) -> list[str]:
    from onnx import load_from_string

    return [n.op_type for n in load_from_string(onnx_bytes).graph.node]


def step_tree(feature: int, thresholds: Sequence[float], values: Sequence[float]) -> TreeArrays:
    """A balanced tree for a step function of one feature.

    ``values[i]`` applies for ``thresholds[i-1] < x <= thresholds[i]`` (``values[0]`` for
    ``x <= thresholds[0]``, ``values[-1]`` above the last threshold).
    """
    if len(values) != len(thresholds) + 1:
        raise ValueError("a step function needs one more value than thresholds")
    feat: list[int] = []
    thr: list[float] = []
    left: list[int] = []
    right: list[int] = []
    val: list[float] = []

    def build(lo: int, hi: int) -> int:
        i = len(feat)
        feat.append(-2)
        thr.append(-2.0)
        left.append(-1)
        right.append(-1)
        val.append(0.0)
        if lo == hi:
            val[i] = float(values[lo])
            return i
        mid = (lo + hi) // 2
        feat[i] = feature
        thr[i] = float(thresholds[mid])
        left[i] = build(lo, mid)
        right[i] = build(mid + 1, hi)
        return i

    build(0, len(values) - 1)
    return TreeArrays(np.asarray(feat, dtype=np.int64), np.asarray(thr, dtype=np.float64),
                      np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64),
                      np.asarray(val, dtype=np.float64))


def tail_trees(x: F64, skip: Sequence[int] = (), max_steps: int = 96,
               extrapolate: int = 24) -> list[TreeArrays]:
    """Per-feature upper-tail surprise, ``-log10 P(X >= x)``, as one step tree per feature.

    P is the empirical tail of the reference rows ``x`` ((1 + count) / (n + 1)); above the
    largest reference value it decays exponentially with the scale of the top decile, so
    values far outside anything seen score higher. Combine the trees with MAX.
    """
    n = x.shape[0]
    out: list[TreeArrays] = []
    for j in range(x.shape[1]):
        if j in skip:
            continue
        # the model sees float32 inputs: compare in float32 so that x == threshold holds
        v = np.sort(x[:, j].astype(np.float32).astype(np.float64))
        uniq = np.unique(v)
        if len(uniq) > max_steps:
            uniq = np.unique(np.quantile(v, np.linspace(0.0, 1.0, max_steps)).astype(
                np.float32).astype(np.float64))
        top = float(v[-1])
        scale = max(top - float(np.quantile(v, 0.9)), 1e-3 * max(abs(top), 1.0), 1e-6)
        # count of reference values strictly above each breakpoint
        above = n - np.searchsorted(v, uniq, side="right")
        ge_first = n - int(np.searchsorted(v, uniq[0], side="left"))
        values = [-math.log10((1 + ge_first) / (n + 1))]
        values += [-math.log10((1 + int(a)) / (n + 1)) for a in above]
        thresholds = [float(u) for u in uniq]
        base = math.log10(n + 1)
        for k in range(1, extrapolate + 1):
            thresholds.append(float(np.float32(top + k * scale / 2.0)))
            values.append(base + (k * 0.5) * math.log10(math.e))
        out.append(step_tree(j, thresholds, values))
    return out
