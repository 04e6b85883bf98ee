"""Array type aliases shared by every module (numpy's typing, spelled once)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "FloatArray", "IntArray", "ObjectArray"]

FloatArray = npt.NDArray[np.float64]
"""float64 array (probabilities, entropies in nats, features)."""
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]
