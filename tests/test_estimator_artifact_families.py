"""Every classifier family survives the artifact round trip, inside a `SentinelEstimator`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_sentinel.estimator import FAMILIES, load_estimator, preset, save_estimator
from tests.estimator_data import TWO_DOMAINS, halves

GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "lr": {"C": [2.0]},
    "rf": {"max_depth": [3]},
    "mlp": {"hidden_layer_sizes": [(5,)]},
    "hgb": {"max_leaf_nodes": [4]},
}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_round_trips(tmp_path: Path, family: str) -> None:
    train, test = halves()
    train = train.subset(np.isin(train.slice_values("domain"), TWO_DOMAINS))
    est = preset("paper", family=family, cv=3, random_state=0, param_grid=GRIDS[family])
    est.fit_traces(train)
    loaded = load_estimator(save_estimator(est, tmp_path / f"{family}.skops"))
    assert loaded.classifier_.family_ == family
    np.testing.assert_array_equal(loaded.predict_traces(test), est.predict_traces(test))
