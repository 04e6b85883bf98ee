"""Fast exact prediction: a fitted estimator's P(correct) without scikit-learn's per-call cost.

Scoring a few traces at a time (the service scores each group commit, the proxy each
batch of answers) is dominated by scikit-learn's fixed cost per ``predict_proba`` call,
not by the arithmetic: input validation, ``joblib`` dispatch over a forest's 100 trees,
``scipy.stats.norm.ppf``'s argument handling in the quantile scaler, a thread-pool
limit per call. About 4.5 ms per call for the default random forest, whatever the rows.

`compile_estimator` turns a fitted `CorrectnessEstimator` once into a plain function of
``X`` built from the fitted arrays and the same compiled kernels scikit-learn runs
(each tree's Cython ``apply``, each boosting predictor's), and `fast_predict_parts`
(the hook `CorrectnessEstimator.predict_parts` calls first) applies it. Results equal
scikit-learn's to 1e-9 (tests/test_estimator_fastpredict.py compares every family,
calibration and blend): the same formulas, with at most a different order of a few
floating-point sums.

What is covered, and everything else falls back to scikit-learn (`fast_predict_proba`
returns None): the families of `entropy_sentinel.estimator.grids` — random forest,
L1 logistic regression and MLP behind `NormalScores` (the quantile scaler, normal or
uniform output) or bare, histogram gradient boosting without categorical features, an
MLP inside `RandomOversampler` — binary, the isotonic and sigmoid calibration maps, and
the ATC and average-confidence blend members. Input that is not a finite float64
matrix with the fitted number of columns, or an estimator fitted on named columns,
goes to scikit-learn, which validates it and raises its own errors.

The compiled function is cached per estimator and rebuilt when its fitted parts are
replaced (a refit).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, ndtri
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import QuantileTransformer

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence
from entropy_sentinel.estimator.calibration import Calibrator
from entropy_sentinel.estimator.grids import RandomOversampler
from entropy_sentinel.scores import confidence_of

__all__ = [
    "Parts",
    "Predictor",
    "compile_calibrator",
    "compile_classifier",
    "compile_estimator",
    "fast_predict_parts",
    "fast_predict_proba",
]

Predictor = Callable[[FloatArray], FloatArray]
"""A compiled map from ``X`` ``(n, d)`` (finite float64) to ``(n,)`` values."""

_BOUNDS_THRESHOLD = 1e-7  # sklearn.preprocessing._data.BOUNDS_THRESHOLD
_SPACING = float(np.spacing(1))
_NORMAL_CLIP = (
    float(ndtri(_BOUNDS_THRESHOLD - _SPACING)),
    float(ndtri(1 - (_BOUNDS_THRESHOLD - _SPACING))),
)


# ----------------------------------------------------------------- classifiers
def compile_classifier(model: Any) -> Predictor | None:
    """P(class 1) of a fitted binary classifier (or pipeline), or None if not covered."""
    if isinstance(model, Pipeline):
        return _pipeline(model)
    if isinstance(model, RandomOversampler):
        return compile_classifier(getattr(model, "estimator_", None))
    if not _binary(model):
        return None
    if isinstance(model, RandomForestClassifier):
        return _forest(model)
    if isinstance(model, LogisticRegression):
        return _logistic(model)
    if isinstance(model, HistGradientBoostingClassifier):
        return _boosting(model)
    if isinstance(model, MLPClassifier):
        return _mlp(model)
    return None


def _binary(model: Any) -> bool:
    classes = getattr(model, "classes_", None)
    return classes is not None and len(classes) == 2


def _pipeline(pipe: Pipeline) -> Predictor | None:
    steps: list[Predictor] = []
    for _, step in pipe.steps[:-1]:
        if step is None or step == "passthrough":
            continue
        transform = _transformer(step)
        if transform is None:
            return None
        steps.append(transform)
    final = compile_classifier(pipe.steps[-1][1])
    if final is None:
        return None

    def predict(X: FloatArray) -> FloatArray:
        for transform in steps:
            X = transform(X)
        return final(X)

    return predict


def _transformer(step: Any) -> Predictor | None:
    if type(step).transform is not QuantileTransformer.transform or not hasattr(step, "quantiles_"):
        return None  # only the quantile scaler (NormalScores) is covered
    quantiles = np.asarray(step.quantiles_, dtype=np.float64)
    references = np.asarray(step.references_, dtype=np.float64)
    normal = step.output_distribution == "normal"
    columns = [
        (q, -q[::-1], references, -references[::-1], float(q[0]), float(q[-1]))
        for q in (np.ascontiguousarray(quantiles[:, j]) for j in range(quantiles.shape[1]))
    ]

    def transform(X: FloatArray) -> FloatArray:
        # QuantileTransformer._transform_col, column by column, for finite input
        out = np.empty_like(X)
        for j, (q, neg_q, ref, neg_ref, lo, hi) in enumerate(columns):
            col = X[:, j]
            if normal:
                low = col - _BOUNDS_THRESHOLD < lo
                high = col + _BOUNDS_THRESHOLD > hi
            else:
                low = col == lo
                high = col == hi
            v = 0.5 * (np.interp(col, q, ref) - np.interp(-col, neg_q, neg_ref))
            v[high] = 1.0
            v[low] = 0.0
            out[:, j] = v
        if normal:
            np.clip(ndtri(out), *_NORMAL_CLIP, out=out)
        return out

    return transform


def _forest(forest: RandomForestClassifier) -> Predictor | None:
    trees = [e.tree_ for e in forest.estimators_]
    if not trees or any(t.n_outputs != 1 for t in trees):
        return None
    # each node's fraction of class 1 (what a tree's predict_proba gives for its leaves),
    # all trees' nodes in one array: tree t's node i is at offsets[t] + i
    fractions = []
    for tree in trees:
        value = tree.value.reshape(tree.node_count, -1)[:, :2]
        norm = value.sum(axis=1)
        norm[norm == 0.0] = 1.0
        fractions.append(value[:, 1] / norm)
    offsets = np.cumsum([0] + [t.node_count for t in trees[:-1]]).astype(np.intp)
    class_1 = np.concatenate(fractions)
    n_trees = len(trees)

    def predict(X: FloatArray) -> FloatArray:
        # the forest predicts on float32 input (sklearn's DTYPE) and averages its trees'
        # leaf fractions; Tree.apply is the compiled traversal the trees run
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        leaves = np.empty((n_trees, X.shape[0]), dtype=np.intp)
        for t, tree in enumerate(trees):
            leaves[t] = tree.apply(X32)
        leaves += offsets[:, None]
        return np.asarray(class_1[leaves].sum(axis=0) / n_trees, dtype=np.float64)

    return predict


def _logistic(lr: LogisticRegression) -> Predictor | None:
    coef = np.asarray(lr.coef_, dtype=np.float64)
    if coef.shape[0] != 1:
        return None
    weights = np.ascontiguousarray(coef.T)
    intercept = np.asarray(lr.intercept_, dtype=np.float64)

    def predict(X: FloatArray) -> FloatArray:
        return np.asarray(expit((X @ weights + intercept).ravel()), dtype=np.float64)

    return predict


def _boosting(hgb: HistGradientBoostingClassifier) -> Predictor | None:
    if getattr(hgb, "n_trees_per_iteration_", 1) != 1:
        return None
    predictors = [p for per_iteration in hgb._predictors for p in per_iteration]
    if any(np.asarray(p.nodes["is_categorical"]).any() for p in predictors):
        return None
    known, f_idx_map = hgb._bin_mapper.make_known_categories_bitsets()
    baseline = np.asarray(hgb._baseline_prediction, dtype=np.float64).ravel()

    def predict(X: FloatArray) -> FloatArray:
        raw = np.zeros(X.shape[0]) + baseline
        for predictor in predictors:
            raw += predictor.predict(X, known, f_idx_map, 1)
        return np.asarray(expit(raw), dtype=np.float64)

    return predict


def _mlp(mlp: MLPClassifier) -> Predictor | None:
    from sklearn.neural_network._base import ACTIVATIONS

    if mlp.out_activation_ != "logistic" or mlp.activation not in ACTIVATIONS:
        return None
    hidden = ACTIVATIONS[mlp.activation]
    layers = list(zip(mlp.coefs_, mlp.intercepts_, strict=True))

    def predict(X: FloatArray) -> FloatArray:
        a = X
        for i, (w, b) in enumerate(layers):
            a = a @ w
            a += b
            if i != len(layers) - 1:
                hidden(a)
        return np.asarray(expit(a.ravel()), dtype=np.float64)

    return predict


# ---------------------------------------------------------------- calibration
def compile_calibrator(calibrator: Calibrator) -> Predictor | None:
    """`Calibrator.transform` as a compiled map of a score vector, or None."""
    model = calibrator.model
    if calibrator.method == "isotonic" and isinstance(model, IsotonicRegression):
        iso = _isotonic(model)
        if iso is None:
            return None
        return lambda s: np.clip(iso(s), 0.0, 1.0)
    if calibrator.method == "sigmoid" and isinstance(model, LogisticRegression):
        platt = _logistic(model)
        if platt is None:
            return None

        def sigmoid(s: FloatArray) -> FloatArray:
            c = np.clip(s, 1e-6, 1.0 - 1e-6)  # calibration._logit
            logit = (np.log(c) - np.log1p(-c)).reshape(-1, 1)
            return np.clip(platt(logit), 0.0, 1.0)

        return sigmoid
    return None


def _isotonic(iso: IsotonicRegression) -> Predictor | None:
    """IsotonicRegression.predict with out_of_bounds="clip": scipy's linear interp1d."""
    if iso.out_of_bounds != "clip" or not hasattr(iso, "X_thresholds_"):
        return None
    x = np.asarray(iso.X_thresholds_, dtype=np.float64)
    y = np.asarray(iso.y_thresholds_, dtype=np.float64)
    lo_x, hi_x = float(iso.X_min_), float(iso.X_max_)
    if x.shape[0] == 1:
        return lambda s: np.full(s.shape[0], y[0])

    def predict(s: FloatArray) -> FloatArray:
        t = np.clip(s, lo_x, hi_x)
        hi = np.clip(np.searchsorted(x, t), 1, x.shape[0] - 1)
        lo = hi - 1
        slope = (y[hi] - y[lo]) / (x[hi] - x[lo])
        return np.asarray(slope * (t - x[lo]) + y[lo], dtype=np.float64)

    return predict


# ------------------------------------------------------------------ estimators
def _member(model: Any, name: str) -> Predictor | None:
    """One blend member's per-response value from its score column (blend.member_value)."""
    if isinstance(model, ATC):
        threshold, weight = model.threshold_, model.tie_weight_

        def atc(col: FloatArray) -> FloatArray:
            conf = confidence_of(name, col)
            return np.asarray((conf > threshold) + (conf == threshold) * weight, np.float64)

        return atc
    if isinstance(model, AverageConfidence) and model.calibrator_ is not None:
        calibrate = compile_calibrator(model.calibrator_)
        if calibrate is None:
            return None
        return lambda col: calibrate(confidence_of(name, col))
    return None


Parts = Callable[[FloatArray], tuple[FloatArray, FloatArray]]
"""A compiled estimator: ``X`` to ``(p, blended)`` (`CorrectnessEstimator.predict_parts`)."""


def compile_estimator(est: Any) -> Parts | None:
    """``(p, blended)`` of a fitted `CorrectnessEstimator` from its ``X``
    (`CorrectnessEstimator.predict_parts`), or None if not covered."""
    from entropy_sentinel.estimator.blend import parse_blend

    classify = compile_classifier(getattr(est, "model_", None))
    if classify is None:
        return None
    calibrator = getattr(est, "calibrator_", None)
    calibrate = None if calibrator is None else compile_calibrator(calibrator)
    if calibrator is not None and calibrate is None:
        return None
    blend_models = getattr(est, "blend_models_", [])
    members = [
        _member(model, name)
        for (_, name), model in zip(parse_blend(est.blend), blend_models, strict=True)
    ]
    if any(m is None for m in members):
        return None
    parts: Sequence[Predictor] = [m for m in members if m is not None]
    n_features = int(est.n_features_in_) - len(parts)

    def predict(X: FloatArray) -> tuple[FloatArray, FloatArray]:
        p = classify(X[:, :n_features])
        if calibrate is not None:
            p = calibrate(p)
        if not parts:
            return p, p
        values = np.column_stack([m(X[:, n_features + j]) for j, m in enumerate(parts)])
        blended = np.asarray((p + values.sum(axis=1)) / (1 + values.shape[1]), dtype=np.float64)
        return p, blended

    return predict


_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Parts | None]] = (
    weakref.WeakKeyDictionary()
)


def _fitted_parts(est: Any) -> tuple[Any, ...]:
    return (
        getattr(est, "model_", None),
        getattr(est, "calibrator_", None),
        *getattr(est, "blend_models_", ()),
        est.blend,
    )


def fast_predict_parts(est: Any, X: Any) -> tuple[FloatArray, FloatArray] | None:
    """``est.predict_parts(X)`` the fast way, or None to use scikit-learn's.

    None when ``est`` is not fitted, has parts `compile_estimator` does not cover, was
    fitted on named columns, or ``X`` is not a finite float64 ``(n, n_features_in_)``
    array (scikit-learn then validates it and says what is wrong).
    """
    if (
        not isinstance(X, np.ndarray)
        or X.dtype != np.float64
        or X.ndim != 2
        or not hasattr(est, "model_")
        or hasattr(est, "feature_names_in_")
        or X.shape[1] != getattr(est, "n_features_in_", -1)
        or X.shape[0] == 0
        or not np.isfinite(X).all()
    ):
        return None
    parts = _fitted_parts(est)
    cached = _CACHE.get(est)
    if (
        cached is None
        or len(cached[0]) != len(parts)
        or any(a is not b for a, b in zip(cached[0], parts, strict=True))
    ):
        cached = (parts, compile_estimator(est))
        _CACHE[est] = cached
    predict = cached[1]
    if predict is None:
        return None
    return predict(np.ascontiguousarray(X))


def fast_predict_proba(est: Any, X: Any) -> FloatArray | None:
    """``est.predict_proba(X)`` ``(n, 2)`` the fast way, or None (see `fast_predict_parts`)."""
    parts = fast_predict_parts(est, X)
    if parts is None:
        return None
    return np.column_stack([1.0 - parts[1], parts[1]])
