"""Every estimator family survives the artifact round trip (the default is a random forest)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import entropy_sentinel as es
from entropy_sentinel.estimator import FAMILIES, CorrectnessEstimator


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_round_trips(tmp_path: Path, phi35_path: Path, family: str) -> None:
    batch = es.read_traces(phi35_path).subset(range(300))
    grids: dict[str, dict[str, Sequence[Any]]] = {
        "lr": {"C": [2.0]},
        "rf": {"max_depth": [3]},
        "mlp": {"hidden_layer_sizes": [(5,)]},
        "hgb": {"max_depth": [3]},
    }
    grid = grids[family]
    est = CorrectnessEstimator(family=family, cv=3, random_state=0, param_grid=grid)
    est.fit_traces(batch)
    loaded = CorrectnessEstimator.load(est.save(tmp_path / f"{family}.skops"))
    np.testing.assert_array_equal(loaded.predict_traces(batch), est.predict_traces(batch))
