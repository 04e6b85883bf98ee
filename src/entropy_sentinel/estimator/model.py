"""`CorrectnessEstimator`: P(correct) of each response from its entropy features.

A scikit-learn binary classifier over a feature matrix ``X`` (by default the
11-D entropy profile), fitted in four steps:

1. **Tune** the family's grid (`entropy_sentinel.estimator.grids`) by stratified
   ``cv``-fold cross-validation on ROC-AUC: every (setting, fold) pair is one
   task, run in parallel with ``n_jobs``.
2. **Keep the out-of-fold scores** of the best setting: the classifier's
   P(correct) for each training row, from the fold model that did not see it.
3. **Calibrate** on those out-of-fold scores (``isotonic`` or ``sigmoid``,
   `entropy_sentinel.estimator.calibration`), so that the map learns how the
   classifier behaves on rows it has not seen.
4. **Refit** the best setting on all rows; predictions are the calibration map
   applied to this final model's scores.

No second cross-validation round is needed for calibration: the tuning folds
already produced the out-of-fold scores.

Honest metrics (in ``card_["metrics"]``) come from *cross-calibrated*
out-of-fold probabilities, where each fold is calibrated by a map fitted on the
other folds: cross-validated AUROC, Brier score, expected calibration error and
the reliability bins of the model card.

``model_sd_``: the standard deviation of the estimator's own error in a slice's
estimated accuracy, the part that does not shrink as the slice grows. With the
cross-calibrated residuals ``r = y - p`` over the ``n`` training rows,
``model_sd = sqrt(mean(r)^2 + var(r) / n)``: the remaining bias of the mean
prediction plus the uncertainty of the calibration map's level, which was
learnt from ``n`` labels. It holds for slices drawn like the training data;
for slices from other domains the error is larger (see docs/estimator.md).

**Blend** (``blend``, optional): score baselines averaged with the calibrated P, as
``METHOD:SCORE`` members (`entropy_sentinel.estimator.blend`): ATC or isotonic average
confidence on a registered score. Their score columns follow the classifier's
features in ``X`` (``featurize`` appends them; the classifier sees the columns
before them), and each response's value is the equal-weight mean of the calibrated P
and the members' values in [0, 1]. ``preset("sentinel")`` is the paper's configuration
blended with ATC on max entropy and average confidence of ``nll_avg``, which beat both
on the SmolLM2 corpus (docs/results/README.md).

Edge cases: one class only in the training labels is an `EstimatorError`;
fewer than ``cv`` examples of the rarer class reduce the number of folds to
that count (recorded as ``n_splits_``), and fewer than 2 is an `EstimatorError`.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 3)); y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
>>> est = CorrectnessEstimator(family="lr", random_state=0).fit(X, y)
>>> est.predict_proba(X[:2]).shape, est.classes_.tolist()
((2, 2), [0, 1])
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy
import sklearn
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError, EstimatorError
from entropy_sentinel.estimator.blend import (
    BlendModel,
    blend_values,
    fit_blend,
    parse_blend,
)
from entropy_sentinel.estimator.calibration import (
    Calibrator,
    brier_score,
    check_calibration,
    cross_calibrate,
    expected_calibration_error,
    fit_calibrator,
    reliability_bins,
)
from entropy_sentinel.estimator.fastpredict import fast_predict_parts
from entropy_sentinel.estimator.features import (
    TraceSignature,
    check_feature_set,
    feature_names,
    featurize,
    trace_signature,
)
from entropy_sentinel.estimator.grids import candidate_settings, check_family, make_model
from entropy_sentinel.scores import SCORES, baseline_scores
from entropy_sentinel.steps import StepStats, check_mode
from entropy_sentinel.traces.batch import TraceBatch

if TYPE_CHECKING:
    from entropy_sentinel.estimator.slices import SliceAccuracy

__all__ = ["CorrectnessEstimator"]

Folds = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]]

MISSING_SLICE = "(missing)"
"""Training-slice name of traces that lack the slice dimension."""


class CorrectnessEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated P(correct) from entropy features (see the module docstring).

    Parameters:
        family: ``"rf"`` (random forest), ``"lr"`` (L1 logistic regression),
            ``"mlp"`` or ``"hgb"`` (histogram gradient boosting).
        calibration: ``"isotonic"``, ``"sigmoid"`` or None (the classifier's own
            probabilities).
        balance: balance the classes (class weights; oversampling for ``mlp``).
        features: feature set used by the trace-level helpers (`featurize`,
            `fit_traces`, `predict_traces`): ``profile``, ``profile10``, ``sea``,
            ``profile+baselines``. `fit` itself takes any ``X``.
        entropy_mode: entropy mode of the features (``topk``, ``topk_renorm``,
            ``topk_tail``).
        cv: number of stratified folds for tuning and calibration (>= 2).
        param_grid: hyper-parameter grid (dict or list of dicts of the family's
            classifier parameters); None for the family's default grid.
        n_jobs: parallel (setting, fold) fits (joblib; None = 1, -1 = all cores).
            Each fit runs single-threaded.
        random_state: seed for the folds and the classifiers.
        blend: score baselines averaged with P, e.g. ``("atc:max_entropy",
            "ac:nll_avg")`` (see the module docstring); empty: P alone.

    Attributes (after fit):
        classes_: the two labels; ``predict_proba[:, 1]`` is P(``classes_[1]``).
        best_params_: the chosen grid setting.
        cv_results_: per setting, the mean and per-fold ROC-AUC.
        n_splits_: folds actually used.
        model_: the best setting refitted on all rows.
        calibrator_: the calibration map (None without calibration).
        blend_models_: the fitted blend members (`ATC` / `AverageConfidence`).
        oof_scores_: out-of-fold P(correct) of the best setting, before calibration.
        model_sd_: estimator-error standard deviation for slice intervals.
        card_: the model card (a JSON-compatible dict): parameters, training data,
            metrics, library versions.
        signature_: the `TraceSignature` of the training traces (None after `fit`
            on a bare matrix).
    """

    def __init__(
        self,
        family: str = "rf",
        calibration: str | None = "isotonic",
        balance: bool = True,
        features: str = "profile",
        entropy_mode: str = "topk",
        cv: int = 5,
        param_grid: Mapping[str, Sequence[Any]]
        | Sequence[Mapping[str, Sequence[Any]]]
        | None = None,
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        blend: tuple[str, ...] = (),
    ) -> None:
        self.family = family
        self.calibration = calibration
        self.balance = balance
        self.features = features
        self.entropy_mode = entropy_mode
        self.cv = cv
        self.param_grid = param_grid
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.blend = blend

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the columns of ``X`` that `featurize` builds: the feature set's,
        then one score per blend member."""
        return feature_names(self.features) + tuple(n for _, n in parse_blend(self.blend))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # ------------------------------------------------------------------ fit
    def _check_params(self) -> None:
        check_family(self.family, allow_auto=True)
        check_calibration(self.calibration)
        check_feature_set(self.features)
        check_mode(self.entropy_mode)
        parse_blend(self.blend)
        if not isinstance(self.balance, bool | np.bool_):
            raise ConfigError(f"balance={self.balance!r} must be True or False")
        if isinstance(self.cv, bool) or not isinstance(self.cv, int | np.integer) or self.cv < 2:
            raise ConfigError(f"cv={self.cv!r} must be an integer >= 2 (number of folds)")

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> CorrectnessEstimator:
        """Tune, calibrate on out-of-fold scores and refit (see the module docstring).

        Args:
            X: ``(n, d)`` features, finite. With a blend, ``X`` must name its columns (a
                pandas DataFrame whose columns are `input_names`, e.g. from
                ``featurize(..., frame=True)``), so that no column is taken for a score
                it is not; `fit_traces` builds it from traces.
            y: ``(n,)`` binary labels (``classes_[1]``, e.g. 1 or True, is "correct").
        """
        members = parse_blend(self.blend)
        columns = getattr(X, "columns", None)
        if columns is not None:
            names = tuple(str(c) for c in columns)
            X = np.asarray(X, dtype=np.float64)  # names checked here, recorded in the card
            if members and names != self.input_names:
                raise ConfigError(
                    f"X has columns {list(names)}, but this estimator's inputs are "
                    f"{list(self.input_names)} (its feature set {self.features!r}, then the "
                    f"blend's scores); build X with featurize(traces, frame=True)"
                )
        elif members:
            raise ConfigError(
                f"X has no column names, but the blend {list(self.blend)} reads the scores "
                f"{[n for _, n in members]} from named columns; pass a DataFrame with columns "
                f"{list(self.input_names)} (featurize(traces, frame=True)) or use fit_traces"
            )
        self._fit(X, y)
        if columns is not None:
            self.card_["features"]["names"] = list(names)
        return self

    def _fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> CorrectnessEstimator:
        started = time.perf_counter()
        self._check_params()
        X_arr, y_raw = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y_raw)
        y_type = type_of_target(y_raw, input_name="y")
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        classes, y_enc = np.unique(y_raw, return_inverse=True)
        if classes.shape[0] < 2:
            raise EstimatorError(
                f"the training labels have one class only ({classes[0]!r} for all "
                f"{y_enc.shape[0]} rows); a correctness estimator needs both correct and "
                "incorrect examples"
            )
        members = parse_blend(self.blend)
        n_features = X_arr.shape[1] - len(members)
        if n_features < 1:
            raise ConfigError(
                f"X has {X_arr.shape[1]} column(s), but the {len(members)} blend member(s) "
                f"{list(self.blend)} take the last {len(members)} and the classifier needs "
                "at least one; build X with featurize()"
            )
        X_blend, X_arr = X_arr[:, n_features:], X_arr[:, :n_features]
        counts = np.bincount(y_enc, minlength=2)
        minority = int(counts.min())
        if minority < 2:
            raise EstimatorError(
                f"the rarer class ({classes[int(np.argmin(counts))]!r}) has {minority} example; "
                "cross-validated tuning and calibration need at least 2 of each class "
                f"(class counts: {dict(zip(classes.tolist(), counts.tolist(), strict=True))})"
            )
        n_splits = min(int(self.cv), minority)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        y01 = y_enc.astype(np.float64)
        settings = candidate_settings(self.family, self.param_grid)
        folds: Folds = list(
            StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X_arr, y_enc)
        )
        tasks = [(s, f) for s in range(len(settings)) for f in range(n_splits)]
        outputs = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_fold)(*settings[s], self.balance, seed, X_arr, y_enc, *folds[f])
            for s, f in tasks
        )
        fold_scores = np.empty((len(settings), n_splits))
        oof = np.empty((len(settings), y_enc.shape[0]))
        n_unconverged = 0
        for (s, f), (pred, unconverged) in zip(tasks, outputs, strict=True):
            test = folds[f][1]
            oof[s, test] = pred
            fold_scores[s, f] = roc_auc_score(y_enc[test], pred)
            n_unconverged += unconverged
        mean_scores = fold_scores.mean(axis=1)
        best = int(np.argmax(mean_scores))  # ties: the first setting in grid order
        scores = oof[best]
        method = check_calibration(self.calibration)
        family, best_params = settings[best]
        final, unconverged = _fit_model(family, best_params, self.balance, seed, X_arr, y_enc)
        n_unconverged += unconverged

        self.classes_ = classes
        self.n_splits_ = n_splits
        self.family_ = family
        self.best_params_ = dict(best_params)
        self.cv_results_ = {
            "family": [f for f, _ in settings],
            "params": [dict(p) for _, p in settings],
            "mean_auroc": mean_scores.tolist(),
            "fold_auroc": fold_scores.tolist(),
        }
        self.model_ = final
        self.oof_scores_ = scores
        self.calibrator_: Calibrator | None = (
            None if method is None else fit_calibrator(method, scores, y01)
        )
        honest = cross_calibrate(method, scores, y01, folds)
        self.oof_proba_ = honest
        self.blend_models_: list[BlendModel] = fit_blend(members, X_blend, y01)
        if members:  # the blended value; the members' parts are in-sample
            honest = self._blend(honest, X_blend)
        residual = y01 - honest
        n = y01.shape[0]
        self.model_sd_ = float(math.sqrt(residual.mean() ** 2 + residual.var(ddof=1) / n))
        self.signature_: TraceSignature | None = None
        self.card_ = self._card(X_arr, y01, scores, honest, n_unconverged, started)
        return self

    def _card(
        self,
        X: FloatArray,
        y: FloatArray,
        scores: FloatArray,
        honest: FloatArray,
        n_unconverged: int,
        started: float,
    ) -> dict[str, Any]:
        names = None
        from entropy_sentinel import __version__

        return {
            "params": {
                "family": self.family,
                "family_chosen": self.family_,
                "calibration": self.calibration,
                "balance": bool(self.balance),
                "cv": int(self.cv),
                "blend": list(self.blend),
                "random_state": self.random_state
                if isinstance(self.random_state, int | None)
                else repr(self.random_state),
            },
            "features": {
                "set": None,
                "names": [str(c) for c in names] if names is not None else None,
                "n_features": int(X.shape[1]),
                "entropy_mode": None,
                "source": None,
                "k": None,
            },
            "training": {
                "n": int(y.shape[0]),
                "n_correct": int(y.sum()),
                "accuracy": float(y.mean()),
                "classes": [_jsonable(c) for c in self.classes_],
                "slice_dimension": None,
                "slices": {},
                "n_unlabelled_ignored": 0,
            },
            "tuning": {
                "n_splits": self.n_splits_,
                "best_params": {k: _jsonable(v) for k, v in self.best_params_.items()},
                "grid": [
                    {
                        "family": f,
                        "params": {k: _jsonable(v) for k, v in p.items()},
                        "mean_auroc": m,
                    }
                    for f, p, m in zip(
                        self.cv_results_["family"],
                        self.cv_results_["params"],
                        self.cv_results_["mean_auroc"],
                        strict=True,
                    )
                ],
                "fits_not_converged": n_unconverged,
            },
            "metrics": {
                "cv_auroc": float(roc_auc_score(y, scores)),
                "cv_auroc_calibrated": float(roc_auc_score(y, honest)),
                "brier": brier_score(y, honest),
                "brier_uncalibrated": brier_score(y, scores),
                "ece": expected_calibration_error(y, honest),
                "mean_p": float(honest.mean()),
                "model_sd": self.model_sd_,
                "reliability": reliability_bins(y, honest),
            },
            "versions": {
                "entropy_sentinel": __version__,
                "scikit_learn": sklearn.__version__,
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "python": platform.python_version(),
            },
            "fit_seconds": round(time.perf_counter() - started, 3),
        }

    # -------------------------------------------------------------- predict
    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """``(n, 2)`` probabilities of ``classes_[0]`` and ``classes_[1]`` (correct): the
        calibrated classifier's P, averaged with the blend members' values if any."""
        blended = self.predict_parts(X)[1]
        return np.column_stack([1.0 - blended, blended])

    def predict_parts(self, X: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(p, blended)``, each ``(n,)``: the calibrated classifier's P(correct) alone, and
        its equal-weight mean with the blend members' values (``p`` itself without a blend).
        ``p`` is a smooth probability (what per-response decisions and recalibration use);
        ``blended`` is what `predict_proba` returns."""
        fast = fast_predict_parts(self, X)  # same values without scikit-learn's per-call cost
        if fast is not None:
            return fast
        check_is_fitted(self)
        columns = getattr(X, "columns", None)
        if columns is not None:  # a frame: its names must be this estimator's inputs
            names = tuple(str(c) for c in columns)
            fitted = self.card_["features"].get("names")
            expected = tuple(fitted) if fitted else self.input_names
            if names != expected:
                raise ConfigError(
                    f"X has columns {list(names)}, but this estimator was fitted on "
                    f"{list(expected)}; build X with featurize(traces, frame=True)"
                )
            X = np.asarray(X, dtype=np.float64)
        X_arr = validate_data(self, X, reset=False, dtype=np.float64)
        n_features = X_arr.shape[1] - len(self.blend_models_)
        with _single_thread():
            scores = np.asarray(
                self.model_.predict_proba(X_arr[:, :n_features])[:, 1], dtype=np.float64
            )
        p = scores if self.calibrator_ is None else self.calibrator_.transform(scores)
        if not self.blend_models_:
            return p, p
        return p, self._blend(p, X_arr[:, n_features:])

    def _blend(self, p: FloatArray, X_blend: FloatArray) -> FloatArray:
        """Equal-weight mean of ``p`` and the blend members' values."""
        values = blend_values(parse_blend(self.blend), self.blend_models_, X_blend)
        return np.asarray((p + values.sum(axis=1)) / (1 + values.shape[1]), dtype=np.float64)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """The more probable class per row (``classes_[1]`` when P > 0.5; ties go to
        ``classes_[0]``, like ``argmax`` of `predict_proba`)."""
        best = np.argmax(self.predict_proba(X), axis=1)
        return np.asarray(self.classes_[best])

    # --------------------------------------------------------- trace level
    def featurize(
        self,
        traces: TraceBatch | StepStats,
        *,
        profile: FloatArray | None = None,
        frame: bool = False,
    ) -> Any:
        """``X`` for this estimator's feature set and entropy mode: a float64 array
        ``(n, len(input_names))``, or with ``frame=True`` a pandas DataFrame whose columns
        are `input_names` (what `fit` needs when there is a blend).

        When fitted with `fit_traces`, first checks that the traces are like the
        training traces (`ArtifactMismatchError` otherwise) and cuts traces wider than
        its top-k to it. ``profile``: the traces' entropy profile if the caller has it
        already (see `featurize`).
        """
        X = self._featurize(traces, profile)
        if not frame:
            return X
        import pandas as pd

        return pd.DataFrame(X, columns=list(self.input_names))

    def _featurize(self, traces: TraceBatch | StepStats, profile: FloatArray | None) -> FloatArray:
        signature = getattr(self, "signature_", None)
        if signature is not None:
            batch = traces.batch if isinstance(traces, StepStats) else traces
            signature.check(batch)
            conformed = signature.conform(batch)
            if conformed is not batch:  # steps cut to the estimator's k: recompute them
                mode = traces.mode if isinstance(traces, StepStats) else self.entropy_mode
                traces, profile = StepStats(conformed, mode), None
        return self._inputs(traces, profile)

    def _inputs(
        self, traces: TraceBatch | StepStats, profile: FloatArray | None = None
    ) -> FloatArray:
        """The feature set's columns, then the blend members' scores."""
        members = parse_blend(self.blend)
        if not members:
            return featurize(traces, self.features, self.entropy_mode, profile=profile)
        stats = traces if isinstance(traces, StepStats) else StepStats(traces, self.entropy_mode)
        X = featurize(stats, self.features, self.entropy_mode, profile=profile)
        names = tuple(dict.fromkeys(n for _, n in members))
        scores = baseline_scores(stats, names)
        extra = np.column_stack([scores[n] for _, n in members])
        missing = np.isnan(extra).any(axis=1)
        if missing.any():
            first = stats.batch.ids[int(np.flatnonzero(missing)[0])]
            need = [n for n in names if SCORES[n].needs_logprobs]
            raise ConfigError(
                f"the blend members {list(self.blend)} need the scores {need}, which need "
                f"logprobs, but {int(missing.sum())} trace(s) (first: {first!r}) carry only "
                "precomputed entropies; for such traces use the preset 'sentinel-entropy' "
                "(blend=('atc:max_entropy',)) or 'paper' (no blend), e.g. sentinel fit "
                "--preset sentinel-entropy"
            )
        return np.hstack([X, extra])

    def fit_traces(
        self, batch: TraceBatch, slice_dim: str | None = "domain"
    ) -> CorrectnessEstimator:
        """Fit on the labelled traces of ``batch``; unlabelled ones are counted, not used.

        Records in ``card_`` the feature set and names, entropy mode, where the
        entropies come from and ``k``, and the training slices along
        ``slice_dim`` with their sizes and accuracies.
        """
        self._check_params()
        labelled = batch.has_label
        if not labelled.any():
            raise EstimatorError(
                f"none of the {len(batch)} traces has a correctness label ('correct'); "
                "fitting needs labelled traces"
            )
        train = batch if labelled.all() else batch.subset(labelled)
        signature = trace_signature(train)
        self._fit(self._inputs(train), train.labels)
        self.signature_ = signature
        card = self.card_
        card["features"].update(
            set=self.features,
            names=list(feature_names(self.features)),
            entropy_mode=self.entropy_mode,
            source=signature.source,
            k=signature.k,
        )
        card["training"]["n_unlabelled_ignored"] = int((~labelled).sum())
        if slice_dim is not None:
            card["training"]["slice_dimension"] = slice_dim
            card["training"]["slices"] = _slice_summary(train, slice_dim)
        return self

    def predict_traces(self, batch: TraceBatch | StepStats) -> FloatArray:
        """P(correct) per trace, float64 ``(n,)`` (an empty batch gives an empty array)."""
        check_is_fitted(self)
        n = len(batch.batch) if isinstance(batch, StepStats) else len(batch)
        if n == 0:
            return np.zeros(0)
        return np.ascontiguousarray(self.predict_proba(self._featurize(batch, None))[:, 1])

    def estimate(
        self,
        analysis: TraceBatch,
        by: str | Sequence[str] | None = "domain",
        level: float = 0.95,
        *,
        inclusion: npt.ArrayLike | None = None,
    ) -> SliceAccuracy:
        """Per-slice accuracy as the mean P(correct), with the classic interval: sampling
        error and ``model_sd_`` (the estimator's error on data drawn like its training
        data) in quadrature; no slice calibration, no transfer term. `SentinelEstimator`
        wraps this estimator with both."""
        from entropy_sentinel.aggregate import SliceStats
        from entropy_sentinel.estimator.intervals import finish
        from entropy_sentinel.estimator.slices import group_records, slice_keys

        check_is_fitted(self)
        dims: tuple[str, ...] = () if by is None else (by,) if isinstance(by, str) else tuple(by)
        keys = slice_keys(analysis, dims)
        p = self.predict_traces(analysis)
        labels = analysis.labels if analysis.has_label.any() else None
        model_sd = float(self.model_sd_)
        return group_records(
            keys,
            SliceStats.contributions(p, labels, pi=inclusion),
            p,
            labels,
            by=dims,
            level=level,
            finish=lambda s, lv: finish(s, lv, model_sd=model_sd),
            shift_words=False,
        )

    # ------------------------------------------------------------ artifacts
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator and its card as a versioned artifact (skops, no pickle)."""
        from entropy_sentinel.estimator.artifact import save_estimator

        return save_estimator(self, path)

    @classmethod
    def load(cls, path: str | Path) -> CorrectnessEstimator:
        """The per-response classifier inside an artifact (`ArtifactError` if it cannot be
        trusted or read); `load_estimator` gives the whole slice estimator."""
        from entropy_sentinel.estimator.artifact import load_estimator

        return load_estimator(path).classifier_


# ------------------------------------------------------------------ helpers
@cache
def _controller() -> ThreadpoolController:
    """Native thread pools (OpenMP, BLAS) of this process, inspected once (~6 ms)."""
    return ThreadpoolController()


def _single_thread() -> Any:
    """Run native code single-threaded: parallelism comes from ``n_jobs`` instead, and
    OpenMP pools competing for shared cores slow histogram boosting down ~15x."""
    return _controller().limit(limits=1)


def _fit_model(
    family: str,
    params: Mapping[str, Any],
    balance: bool,
    seed: int,
    X: FloatArray,
    y: npt.NDArray[np.intp],
) -> tuple[BaseEstimator, int]:
    """Fit one model single-threaded; returns it and 1 if it did not converge."""
    model = make_model(family, params, balance=balance, seed=seed, n_samples=X.shape[0])
    with _single_thread(), warnings.catch_warnings(record=True) as caught:
        # Not converging is counted in the card (tuning.fits_not_converged), not raised:
        # the grid search judges every setting on held-out AUROC either way.
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    unconverged = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, int(unconverged)


def _fit_fold(
    family: str,
    params: Mapping[str, Any],
    balance: bool,
    seed: int,
    X: FloatArray,
    y: npt.NDArray[np.intp],
    train: npt.NDArray[np.intp],
    test: npt.NDArray[np.intp],
) -> tuple[FloatArray, int]:
    """P(class 1) on ``test`` of a model fitted on ``train`` (one grid task)."""
    model, unconverged = _fit_model(family, params, balance, seed, X[train], y[train])
    with _single_thread():
        pred = np.asarray(model.predict_proba(X[test])[:, 1], dtype=np.float64)
    return pred, unconverged


def _slice_summary(batch: TraceBatch, dim: str) -> dict[str, dict[str, float | int]]:
    values = batch.slice_values(dim)
    keys = np.array([MISSING_SLICE if v is None else str(v) for v in values], dtype=object)
    out: dict[str, dict[str, float | int]] = {}
    for key in sorted(set(keys.tolist())):
        mask = keys == key
        out[key] = {"n": int(mask.sum()), "accuracy": float(batch.labels[mask].mean())}
    return out


def _jsonable(value: Any) -> Any:
    """Plain Python (JSON-compatible) version of a label or grid value."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
