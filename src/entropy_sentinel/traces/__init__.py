"""Reading traces: every accepted input shape into one ragged-array batch."""

from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.read import TraceSource, decode_record, iter_parsed, read_traces

__all__ = ["Rejection", "TraceBatch", "TraceSource", "decode_record", "iter_parsed", "read_traces"]
