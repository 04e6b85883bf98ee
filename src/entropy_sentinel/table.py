"""One row per trace: id, slices, label, the 11 features and the baseline scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.csv_safety import write_csv
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.scores import SCORES, baseline_scores
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["RESERVED_COLUMNS", "feature_frame", "write_table"]

RESERVED_COLUMNS: frozenset[str] = frozenset({"id", "correct", *FEATURE_NAMES, *SCORES})


def feature_frame(
    batch: TraceBatch, mode: str = "topk", *, precision: str = "float32"
) -> pd.DataFrame:
    """A DataFrame with one row per trace.

    Columns: ``id``; one column per slice dimension (string, missing where a
    trace lacks it); ``correct`` (nullable boolean) when any trace is labelled;
    the 11 `FEATURE_NAMES`; then every registered baseline score.

    >>> from entropy_sentinel import read_traces
    >>> b = read_traces([{"id": "a", "slice": {"domain": "x"}, "token_entropy": [0.1]}])
    >>> list(feature_frame(b).columns[:3])
    ['id', 'domain', 'h_max']
    """
    stats = StepStats(batch, mode, precision=precision)
    columns: dict[str, object] = {"id": pd.array(batch.ids, dtype="string")}
    for dim in batch.slice_dimensions:
        if dim in RESERVED_COLUMNS:
            raise ConfigError(
                f"slice dimension {dim!r} clashes with an output column; rename it in the input"
            )
        columns[dim] = pd.array(batch.slice_values(dim), dtype="string")
    if batch.has_label.any():
        labels = pd.array(np.where(batch.has_label, batch.labels == 1.0, False), dtype="boolean")
        labels[~batch.has_label] = pd.NA
        columns["correct"] = labels
    profile = entropy_profile(stats)
    for j, name in enumerate(FEATURE_NAMES):
        columns[name] = profile[:, j]
    columns.update(baseline_scores(stats))
    return pd.DataFrame(columns)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as CSV or Parquet (zstd), chosen by the file suffix.

    CSV text cells that could start a spreadsheet formula are neutralised
    (`entropy_sentinel.csv_safety`): ids and slice values come from the input records.
    """
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        write_csv(frame, path)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False, compression="zstd")
    else:
        raise ConfigError(f"output {str(path)!r}: use a .csv or .parquet file name")
