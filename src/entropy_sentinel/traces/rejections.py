"""Rejected records of a long read, in bounded memory: every one counted, the first kept.

A stream of millions of traces may carry millions of bad records; holding them all in a
list would make memory grow with the input. A `RejectionLog` instead keeps

* the total (``n``) and a count per kind of reason (``kinds``: the reason up to its
  first colon, digits masked; at most `MAX_KINDS` kinds, the rest counted together);
* the first ``keep`` rejections themselves (``sample``), to show;
* and hands every rejection to an optional ``sink`` as it arrives (`RejectionFile`
  writes them as JSON lines), so a complete list exists without being held.

>>> log = RejectionLog(keep=1)
>>> log.add([Rejection(3, "a", None, "bad logprob: -0.5"), Rejection(9, "b", None, "no id")])
>>> log.n, [str(r) for r in log.sample], log.kinds.most_common()
(2, ["#3 record 'a': bad logprob: -0.5"], [('bad logprob', 1), ('no id', 1)])
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import msgspec

from entropy_sentinel.traces.batch import Rejection

__all__ = ["KEEP", "MAX_KINDS", "OTHER_KINDS", "RejectionFile", "RejectionLog", "reason_kind"]

KEEP = 1000
"""Rejections a log keeps by default (all are counted)."""
MAX_KINDS = 100
"""Distinct kinds of reason counted one by one; further kinds go to `OTHER_KINDS`."""
OTHER_KINDS = "(other reasons)"


def reason_kind(rejection: Rejection) -> str:
    """A short grouping key: the reason up to its first colon, digits masked as ``#``."""
    head = rejection.reason.split(":")[0]
    return "".join("#" if c.isdigit() else c for c in head)[:80]


class RejectionLog:
    """Counts of rejected records, the first ``keep`` of them, and a sink for all.

    Args:
        keep: how many rejections to hold (None: all; only for a bounded source, such
            as one batch).
        sink: called with every rejection added, in order (e.g. a `RejectionFile`).
    """

    def __init__(
        self, *, keep: int | None = KEEP, sink: Callable[[Rejection], None] | None = None
    ) -> None:
        self.keep = keep
        self.sink = sink
        self.n = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.sample: list[Rejection] = []

    def add(self, rejections: Iterable[Rejection]) -> None:
        """Count, keep (within ``keep``) and pass on each of ``rejections``."""
        for rejection in rejections:
            self.n += 1
            self._count(reason_kind(rejection), 1)
            if self.keep is None or len(self.sample) < self.keep:
                self.sample.append(rejection)
            if self.sink is not None:
                self.sink(rejection)

    def merge(self, other: RejectionLog) -> None:
        """Add ``other``'s counts (all of them, kept or not); its kept rejections are
        kept here (within ``keep``) and passed to the sink. Rejections ``other``
        counted without keeping them cannot reach the sink."""
        self.n += other.n
        for kind, count in other.kinds.items():
            self._count(kind, count)
        for rejection in other.sample:
            if self.keep is None or len(self.sample) < self.keep:
                self.sample.append(rejection)
            if self.sink is not None:
                self.sink(rejection)

    def _count(self, kind: str, count: int) -> None:
        if kind in self.kinds or len(self.kinds) < MAX_KINDS:
            self.kinds[kind] += count
        else:
            self.kinds[OTHER_KINDS] += count

    @property
    def complete(self) -> bool:
        """Whether ``sample`` holds every rejection counted."""
        return len(self.sample) == self.n

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"RejectionLog(n={self.n}, kept={len(self.sample)}, kinds={len(self.kinds)})"


class RejectionFile:
    """A sink writing each rejection as one JSON line to ``path``; the file is created
    at the first rejection (none: no file). Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._fh: IO[bytes] | None = None

    def __call__(self, rejection: Rejection) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("wb")
        self._fh.write(msgspec.json.encode(rejection) + b"\n")
        self.written += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RejectionFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
