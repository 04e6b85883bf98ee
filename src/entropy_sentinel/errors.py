"""The exceptions entropy-sentinel raises.

Every error the library raises on purpose derives from one root, so callers can
catch them all with ``except SentinelError``::

    SentinelError
    ├── TraceError          (also a ValueError) a trace record is malformed:
    │                        names the record id, the field and the fix
    ├── ConfigError         (also a ValueError) a parameter has a bad value:
    │   │                    names the value and the valid ones
    │   └── SliceDimensionError  no trace has a slice dimension asked for
    ├── ArtifactError       a saved estimator cannot be loaded or used
    │   └── ArtifactMismatchError  the artifact was fitted on other features
    │                              or another entropy mode than the traces
    ├── EstimatorError      (also a ValueError) training data cannot support a
    │                        fit (one class only, too few examples per class)
    ├── UpstreamError       an OpenAI-compatible server failed or timed out
    ├── StorageError        the monitoring database refused an operation
    └── ProcessError        a server the project starts (the local model server, a
                             service for tests) did not start, or exited

The web service maps each class to one HTTP status in one place
(``entropy_sentinel.service``), so messages here are written for end users.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ArtifactMismatchError",
    "ConfigError",
    "EstimatorError",
    "ProcessError",
    "SentinelError",
    "SliceDimensionError",
    "StorageError",
    "TraceError",
    "UpstreamError",
]


class SentinelError(Exception):
    """Root of every exception raised on purpose by entropy-sentinel."""


class TraceError(SentinelError, ValueError):
    """A trace record is malformed.

    Attributes:
        record_id: the ``id`` of the offending record, or ``None`` when the
            record is too broken to have one.
        field: a JSON path to the offending field (``$.logprobs.content[3].logprob``),
            or ``None`` when the whole record is at fault.
        index: 0-based position of the record in its source, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        record_id: str | None = None,
        field: str | None = None,
        index: int | None = None,
    ) -> None:
        self.record_id = record_id
        self.field = field
        self.index = index
        self.reason = message
        where = []
        if record_id is not None:
            where.append(f"record {record_id!r}")
        if index is not None:
            where.append(f"#{index}")
        if field is not None:
            where.append(f"field {field}")
        prefix = (" ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class ConfigError(SentinelError, ValueError):
    """A parameter or option has an invalid value."""


class SliceDimensionError(ConfigError):
    """No trace has a slice dimension the caller asked to slice by.

    Attributes:
        absent: the dimensions asked for that no trace has.
        present: the dimensions the traces have, sorted.
    """

    def __init__(self, message: str, *, absent: list[str], present: list[str]) -> None:
        self.absent = absent
        self.present = present
        super().__init__(message)


class ArtifactError(SentinelError):
    """A saved estimator artifact cannot be read (corrupt, unknown version)."""


class ArtifactMismatchError(ArtifactError):
    """An artifact does not fit the traces it is asked to score."""


class EstimatorError(SentinelError, ValueError):
    """The training data cannot support the requested fit."""


class UpstreamError(SentinelError):
    """An OpenAI-compatible upstream server failed, refused or timed out."""


class StorageError(SentinelError):
    """The monitoring database refused an operation."""


class ProcessError(SentinelError):
    """A server process the project starts did not start in time or exited while starting."""
