"""Reading traces: every accepted input shape into one ragged-array batch.

`read_traces` / `iter_trace_batches` take JSON Lines, Parquet (the columnar trace
format of `traces.parquet`), directories and globs of Parquet files, or records in
memory; `write_parquet` stores batches in the columnar format.
"""

from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.formats import (
    TraceInput,
    iter_trace_batches,
    open_traces,
    read_traces,
)
from entropy_sentinel.traces.parquet import ParquetTraceWriter, write_parquet
from entropy_sentinel.traces.read import TraceSource, decode_record, iter_parsed

__all__ = [
    "ParquetTraceWriter",
    "Rejection",
    "TraceBatch",
    "TraceInput",
    "TraceSource",
    "decode_record",
    "iter_parsed",
    "iter_trace_batches",
    "open_traces",
    "read_traces",
    "write_parquet",
]
