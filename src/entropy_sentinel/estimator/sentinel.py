"""`SentinelEstimator`: per-slice accuracy whose intervals hold on slices unlike the training data.

The product's slice estimator (the ``sentinel`` presets; the paper's configuration is
the same class around the paper's classifier, without slice calibration). Fitted on
labelled reference traces (`fit_traces`), it estimates the accuracy of each slice of
analysis traces (`estimate`) with an interval that carries three kinds of error
(`entropy_sentinel.estimator.intervals`):

1. **Per response**: a `CorrectnessEstimator` (``classifier``) gives P(correct) from the
   entropy profile, calibrated on out-of-fold scores; its blend members (score baselines
   such as ATC on max entropy) are averaged in for responses of slice values the
   training data did not have, where their errors partly cancel the classifier's.
2. **Slice values seen in training** (in ``slice_dim``, e.g. the domain) get their own
   calibration offset fitted on the training labels (`entropy_sentinel.estimator.
   slicecal`): the estimate for such a slice is calibrated for it, and its interval
   carries the offset's uncertainty, which shrinks with the training labels of that value.
3. **Slice values not seen** carry transfer error: the shipped relation between a
   slice's shift score (`entropy_sentinel.estimator.shiftscore`, computed against the
   training traces) and how far estimates were off on such slices offline
   (`entropy_sentinel.estimator.transfer`, named by ``transfer``).

Labels in the analysis traces (with their inclusion probabilities when a design chose
them, `entropy_sentinel.estimator.design`) give the label-corrected estimate.

Every per-response quantity becomes mergeable sums (`TraceScores.contributions`,
`entropy_sentinel.aggregate.SliceStats`), so the service and the Spark engine sum the
same numbers and finish them with the same function.

>>> import entropy_sentinel as es
>>> rng = np.random.default_rng(1)
>>> recs = [{"id": str(i), "slice": {"domain": "ab"[i % 2]}, "correct": bool(i % 3),
...          "token_entropy": rng.gamma(1.0, 0.3 + 0.2 * (i % 3 == 0), 20).tolist()}
...         for i in range(240)]
>>> batch = es.read_traces(recs)
>>> clf = es.CorrectnessEstimator(family="lr", random_state=0)
>>> est = SentinelEstimator(clf, transfer=None).fit_traces(batch)
>>> res = est.estimate(batch, by="domain")
>>> sorted((r.key, r.n, r.shift_word) for r in res)
[(('a',), 120, 'seen in training'), (('b',), 120, 'seen in training')]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.design import LabelDesign, plan
from entropy_sentinel.estimator.intervals import SliceFinisher, SliceInterval
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.estimator.shiftscore import ShiftReference
from entropy_sentinel.estimator.slicecal import SliceCalibration
from entropy_sentinel.estimator.slices import SliceAccuracy, group_records, slice_keys
from entropy_sentinel.estimator.transfer import TransferModel, load_transfer
from entropy_sentinel.profile import entropy_profile
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["SentinelEstimator", "TraceScores"]


@dataclass(frozen=True, eq=False)
class TraceScores:
    """Per-response outputs of a fitted `SentinelEstimator`, one row per trace.

    Attributes:
        p: estimated P(correct), the value whose slice mean is the label-free estimate.
        p_classifier: the calibrated classifier's P alone (slice-calibrated where seen):
            a smooth probability, what sampling designs and rankings use.
        seen: whether the trace's slice value has a calibration offset.
        cal: ``p (1 - p) sd(b)`` where seen, else 0.
        w: ``(n, 11)`` whitened profile coordinates (for the shift score).
    """

    p: FloatArray
    p_classifier: FloatArray
    seen: BoolArray
    cal: FloatArray
    w: FloatArray

    def contributions(
        self, labels: npt.ArrayLike | None = None, inclusion: npt.ArrayLike | None = None
    ) -> FloatArray:
        """Each trace's contribution to the mergeable sums (`SliceStats.contributions`)."""
        return SliceStats.contributions(
            self.p, labels, pi=inclusion, unseen=~self.seen, cal=self.cal, w=self.w
        )


class SentinelEstimator(BaseEstimator):  # type: ignore[misc]
    """Per-slice accuracy with honest intervals (see the module docstring).

    Parameters:
        classifier: the per-response `CorrectnessEstimator` (cloned before fitting;
            None: ``preset("sentinel")``'s).
        slice_dim: the slice dimension whose values get a calibration offset each.
        calibrate: fit those offsets (False: the pooled calibration everywhere, as the
            paper does).
        transfer: name of the shipped transfer relation (`entropy_sentinel.estimator.
            transfer`) for slices the training data did not calibrate; None leaves the
            transfer term out (only right when every slice is drawn like the training
            data).
        prior_sd: prior standard deviation of each calibration offset, log-odds.
        min_labels: labelled training traces a slice value needs to be calibrated.

    Attributes (after fit):
        classifier_: the fitted `CorrectnessEstimator`.
        calibration_: the `SliceCalibration`.
        shift_: the `ShiftReference` of the training traces (None in an estimator migrated
            from a version-1 artifact: shift scores are then unknown).
        transfer_: the `TransferModel` (None without one).
        card_: the model card: the classifier's, plus the calibration offsets, the shift
            reference and the transfer relation.
    """

    def __init__(
        self,
        classifier: CorrectnessEstimator | None = None,
        slice_dim: str = "domain",
        calibrate: bool = True,
        transfer: str | None = "sentinel",
        prior_sd: float = 1.5,
        min_labels: int = 20,
    ) -> None:
        self.classifier = classifier
        self.slice_dim = slice_dim
        self.calibrate = calibrate
        self.transfer = transfer
        self.prior_sd = prior_sd
        self.min_labels = min_labels

    # ------------------------------------------------------------------ fit
    def fit_traces(self, reference: TraceBatch) -> SentinelEstimator:
        """Fit on the labelled traces of ``reference`` (unlabelled ones are counted in the
        card, not used)."""
        if not self.slice_dim:
            raise ConfigError("slice_dim must name a slice dimension, e.g. 'domain'")
        template = self.classifier
        if template is None:
            from entropy_sentinel.estimator.presets import classifier_of

            template = classifier_of("sentinel")
        clf: CorrectnessEstimator = clone(template).fit_traces(reference, self.slice_dim)
        train = reference if reference.has_label.all() else reference.subset(reference.has_label)
        y01 = (train.labels == 1.0).astype(np.float64)
        values = train.slice_values(self.slice_dim)
        calibration = SliceCalibration(self.prior_sd, self.min_labels)
        if self.calibrate:
            calibration.fit(clf.oof_proba_, y01, values)
        profile = self._profile(clf, train)
        self.classifier_ = clf
        self.calibration_ = calibration
        self.shift_: ShiftReference | None = ShiftReference().fit(profile)
        self.transfer_: TransferModel | None = (
            None if self.transfer is None else load_transfer(self.transfer)
        )
        self.card_ = self._card()
        return self

    def _card(self) -> dict[str, Any]:
        card: dict[str, Any] = dict(self.classifier_.card_)
        card["slice_estimator"] = {
            "class": type(self).__name__,
            "slice_dimension": self.slice_dim,
            "calibrate": bool(self.calibrate),
            "prior_sd": float(self.prior_sd),
            "min_labels": int(self.min_labels),
            "offsets": {
                v: {"b": o.b, "sd": o.sd, "n": o.n, "accuracy": o.accuracy, "mean_p": o.mean_p}
                for v, o in self.calibration_.offsets_.items()
            },
            "shift_reference_n": 0 if self.shift_ is None else int(self.shift_.n_reference_),
            "transfer": None if self.transfer_ is None else self.transfer_.to_dict(),
        }
        return card

    # -------------------------------------------------------------- scoring
    @staticmethod
    def _profile(clf: CorrectnessEstimator, batch: TraceBatch) -> FloatArray:
        signature = clf.signature_
        conformed = batch if signature is None else signature.conform(batch)
        return entropy_profile(StepStats(conformed, clf.entropy_mode))

    def score(self, traces: TraceBatch) -> TraceScores:
        """Per-response outputs (`TraceScores`) for ``traces``.

        Raises `ArtifactMismatchError` for traces the classifier cannot score (another
        entropy source, fewer alternatives than its top-k); wider ones are cut to it.
        """
        self._check_fitted()
        clf = self.classifier_
        n = len(traces)
        if n == 0:
            empty = np.zeros(0)
            return TraceScores(empty, empty, np.zeros(0, bool), empty, np.zeros((0, 11)))
        if clf.signature_ is not None:
            clf.signature_.check(traces)
            traces = clf.signature_.conform(traces)
        stats = StepStats(traces, clf.entropy_mode)
        profile = entropy_profile(stats)
        X = clf.featurize(stats, profile=profile)
        return self.score_inputs(X, profile, traces.slice_values(self.slice_dim))

    def score_inputs(
        self,
        X: npt.ArrayLike,
        profile: npt.ArrayLike,
        values: Sequence[object] | npt.NDArray[np.object_],
    ) -> TraceScores:
        """`score` from inputs computed (and stored) before: the classifier's inputs ``X``
        (``classifier_.featurize``, columns ``classifier_.input_names``), the entropy
        profiles ``(n, 11)`` (nats) and each trace's value of ``slice_dim`` (None where
        absent). What a store of traces needs to rescore them without their steps."""
        self._check_fitted()
        Xa = np.asarray(X, dtype=np.float64)
        prof = np.asarray(profile, dtype=np.float64)
        n = prof.shape[0]
        if n == 0:
            empty = np.zeros(0)
            return TraceScores(empty, empty, np.zeros(0, bool), empty, np.zeros((0, 11)))
        p_cls, p_blend = self.classifier_.predict_parts(Xa)
        p_cal, cal, seen = self.calibration_.apply(p_cls, values)
        return TraceScores(
            p=np.where(seen, p_cal, p_blend),
            p_classifier=p_cal,
            seen=seen,
            cal=cal,
            w=np.zeros((n, 11)) if self.shift_ is None else self.shift_.transform(prof),
        )

    def predict_traces(self, traces: TraceBatch) -> FloatArray:
        """Estimated P(correct) per trace, float64 ``(n,)`` (`TraceScores.p`)."""
        return self.score(traces).p

    # ------------------------------------------------------------ estimates
    def finish(self, stats: SliceStats, level: float = 0.95) -> SliceInterval:
        """A slice's estimates from its summed statistics (what the service and the
        Spark engine call after summing `TraceScores.contributions`)."""
        return self.finisher()(stats, level)

    def finisher(self) -> SliceFinisher:
        """`finish` as a plain, JSON-serialisable value (`SliceFinisher`): for processes
        that keep a slice's sums but not the estimator (the service's database)."""
        self._check_fitted()
        n_reference = 0 if self.shift_ is None else int(self.shift_.n_reference_)
        return SliceFinisher(self.transfer_, n_reference)

    def estimate(
        self,
        analysis: TraceBatch,
        by: str | tuple[str, ...] | list[str] | None = "domain",
        level: float = 0.95,
        *,
        inclusion: npt.ArrayLike | None = None,
    ) -> SliceAccuracy:
        """Estimated accuracy per slice of ``analysis`` with intervals, worst first.

        Args:
            analysis: the traces; their labels, where present, give the true accuracy
                (when every trace of a slice is labelled) and the label-corrected estimate.
            by: a slice dimension, several, or None for one slice of everything.
            level: nominal coverage of the intervals.
            inclusion: per trace, the inclusion probability of its label under the
                sampling design that chose it (NaN: a plain label); None: all plain.
        """
        dims: tuple[str, ...] = () if by is None else (by,) if isinstance(by, str) else tuple(by)
        keys = slice_keys(analysis, dims)
        scores = self.score(analysis)
        labels = analysis.labels if analysis.has_label.any() else None
        contributions = scores.contributions(labels, inclusion)
        return group_records(
            keys,
            contributions,
            scores.p,
            labels,
            by=dims,
            level=level,
            finish=lambda s, lv: self.finish(s, lv),
            model_sd=math.nan,
        )

    def design(
        self,
        analysis: TraceBatch,
        budget: int,
        by: str | tuple[str, ...] | list[str] | None = "domain",
        *,
        minimum: int = 5,
        seed: int = 0,
    ) -> LabelDesign:
        """Which unlabelled responses of ``analysis`` to label with ``budget`` labels: the
        budget shared out over the slices by their label-free interval widths, each
        slice sampled actively (`entropy_sentinel.estimator.design`). Label the chosen
        ones, then pass ``design.inclusion_of(ids)`` to `estimate` as ``inclusion``."""
        dims: tuple[str, ...] = () if by is None else (by,) if isinstance(by, str) else tuple(by)
        open_ = ~analysis.has_label
        candidates = analysis if open_.all() else analysis.subset(open_)
        keys = slice_keys(candidates, dims)
        result = self.estimate(candidates, by=dims)
        half = {r.key: (r.upper - r.lower) / 2.0 for r in result}
        scores = self.score(candidates)
        return plan(candidates.ids, keys, scores.p_classifier, half, budget,
                    minimum=minimum, seed=seed)  # fmt: skip

    # -------------------------------------------------------------- helpers
    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise NotFittedError(
                "this SentinelEstimator is not fitted yet: call fit_traces(reference) first"
            )

    @property
    def entropy_mode(self) -> str:
        return str(self.classifier_.entropy_mode)

    def save(self, path: Any) -> Any:
        """Write the fitted estimator as a versioned artifact (`save_estimator`)."""
        from entropy_sentinel.estimator.artifact import save_estimator

        return save_estimator(self, path)
