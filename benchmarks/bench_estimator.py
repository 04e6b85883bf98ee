"""The estimator's fixed cost per ``predict_proba`` call: the fast exact path against
scikit-learn's own, side by side, for every family (the default preset's blend included).

    .venv/bin/python benchmarks/bench_estimator.py [--repeats 30]

Fits each family (the `sentinel` preset's classifier: blended with ATC on max entropy
and average confidence of ``nll_avg``; one grid setting, 2 folds, to keep the fits
short) on the
committed SmolLM2 corpus, then times ``predict_proba`` on 1, 20 and all 1,950 rows with
the fast path (`entropy_sentinel.estimator.fastpredict`) and with it switched off
(scikit-learn's path), and prints the largest difference between the two. Medians of
``--repeats`` calls, milliseconds of wall time.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import entropy_sentinel.estimator.model as model_module
from entropy_sentinel.collect import read_corpus
from entropy_sentinel.estimator.presets import classifier_of

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus" / "smollm2" / "corpus.parquet"
ONE_SETTING: dict[str, dict[str, list[Any]]] = {
    "rf": {"max_depth": [10], "min_samples_split": [2]},
    "lr": {"C": [2.0]},
    "hgb": {"learning_rate": [0.1], "max_leaf_nodes": [8]},
    "mlp": {"hidden_layer_sizes": [(15, 8)]},
}


def _off(_est: object, _X: object) -> None:
    """The fast path switched off: `predict_proba` runs scikit-learn's own path."""


def ms(fn: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return 1000 * statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    batch = read_corpus(CORPUS)
    fast_parts = getattr(model_module, "fast_predict_parts")  # noqa: B009
    print(
        "| family | rows | fast ms | scikit-learn ms | largest difference |\n"
        "|---|---:|---:|---:|---:|"
    )
    for family, grid in ONE_SETTING.items():
        est = classifier_of("sentinel", family=family, param_grid=grid, cv=2, random_state=0)
        est.fit_traces(batch)
        X = est.featurize(batch)
        for rows in (1, 20, X.shape[0]):
            x = X[:rows]
            call = functools.partial(est.predict_proba, x)
            fast = ms(call, args.repeats)
            p_fast = est.predict_proba(x)
            setattr(model_module, "fast_predict_parts", _off)  # noqa: B010
            try:
                slow = ms(call, args.repeats)
                p_slow = est.predict_proba(x)
            finally:
                setattr(model_module, "fast_predict_parts", fast_parts)  # noqa: B010
            diff = float(np.abs(p_fast - p_slow).max())
            print(f"| {family} | {rows} | {fast:.3f} | {slow:.3f} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
