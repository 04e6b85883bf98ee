"""One row per trace: id, slices, label, the 11 features and the baseline scores."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from entropy_sentinel.csv_safety import safe_frame, write_csv
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.scores import SCORES, baseline_scores
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["RESERVED_COLUMNS", "FeatureTableWriter", "feature_frame", "write_table"]

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


class FeatureTableWriter:
    """Write the `feature_frame`s of successive batches as one table (CSV or Parquet),
    in memory independent of the number of batches; a context manager.

    The columns of the whole table depend on every batch (the union of slice dimensions;
    ``correct`` when any trace is labelled), so the frames go to temporary Parquet parts
    next to the output first, and `close` writes the table part by part: the result is
    what `write_table` writes for the `feature_frame` of all traces at once.
    """

    def __init__(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ConfigError(f"output {str(path)!r}: use a .csv or .parquet file name")
        self.path = path
        self.n_rows = 0
        self.n_columns = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = tempfile.TemporaryDirectory(prefix=".features-", dir=path.parent)
        self._parts: list[Path] = []
        self._dims: set[str] = set()
        self._labelled = False
        self._tail: list[str] = []

    def write(self, frame: pd.DataFrame) -> None:
        """Add the rows of one batch's `feature_frame`."""
        if not len(frame):
            return
        part = Path(self._dir.name) / f"part-{len(self._parts):06d}.parquet"
        frame.to_parquet(part, index=False)
        self._parts.append(part)
        self._labelled |= "correct" in frame.columns
        self._dims |= {c for c in frame.columns if c != "id" and c not in RESERVED_COLUMNS}
        self._tail = [
            c for c in frame.columns if c in RESERVED_COLUMNS and c not in ("id", "correct")
        ]
        self.n_rows += len(frame)

    def close(self) -> None:
        """Write the table from the parts and remove them."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            columns = ["id", *sorted(self._dims)]
            columns += ["correct"] if self._labelled else []
            columns += self._tail
            self.n_columns = len(columns)
            csv = self.path.suffix.lower() == ".csv"
            writer: Any = None
            if csv:
                self.path.write_text("")
            for i, part in enumerate(self._parts):
                frame = pd.read_parquet(part)
                for dim in self._dims - set(frame.columns):
                    frame[dim] = pd.array([pd.NA] * len(frame), dtype="string")
                if self._labelled and "correct" not in frame.columns:
                    frame["correct"] = pd.array([pd.NA] * len(frame), dtype="boolean")
                frame = frame[columns]
                if csv:  # cells that could start a spreadsheet formula neutralised
                    safe_frame(frame).to_csv(self.path, mode="a", header=i == 0, index=False)
                    continue
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
                writer.write_table(table)
            if writer is not None:
                writer.close()
            elif not csv:
                write_table(pd.DataFrame(columns=columns), self.path)
        finally:
            self._dir.cleanup()

    def __enter__(self) -> FeatureTableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._dir.cleanup()
