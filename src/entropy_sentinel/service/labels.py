"""Labels coming back from annotators, and the recalibration they make possible.

`read_labels` reads a CSV or JSON Lines file (the `sentinel prioritize` export, with
the ``correct`` column filled in, or any file with ``id`` and ``correct``; CSV ids are
read back as they were before the export neutralised spreadsheet formulas): ``correct``
may be true/false, 1/0, yes/no, correct/wrong (any case); an empty value means "not
labelled yet" and is passed over (counted as blank). ``skipped`` true (a column, or a
JSON field) records that the annotator skipped the item (with a ``correct`` too it is a
rejection). Anything else is a rejection naming the line and the value. An optional
``source`` column names who labelled (default: the ``--source`` given to the import).

`import_labels` stores what was read (the one path of ``POST /v1/labels`` and
``sentinel labels import``): a label for a response a labelling design drew carries its
inclusion probability (*designed*), any other is *plain*
(`entropy_sentinel.service.storage.store.Storage.apply_labels`), and skips are recorded
(`Storage.record_skips`).

`recalibrate` fits a map from one model's active estimator's P(correct) to the labels
of that model's traces (`entropy_sentinel.service.recalibration`), and, when it lowers
the cross-validated Brier score (or when forced), registers it as a new scorer of the
model, activates it and rescores the model's stored traces with it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from entropy_sentinel.csv_safety import restore
from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.service.recalibration import (
    Recalibration,
    apply_calibration,
    fit_recalibration,
)
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.service.storage.tables import MAX_ID, traces

__all__ = [
    "ImportOutcome",
    "LabelFile",
    "RecalibrationOutcome",
    "import_labels",
    "parse_label",
    "parse_rows",
    "read_labels",
    "recalibrate",
]

_TRUE = {"true", "1", "yes", "y", "correct", "t"}
_FALSE = {"false", "0", "no", "n", "wrong", "incorrect", "f"}


@dataclass(frozen=True)
class LabelFile:
    """Labels read from a file: ``(id, y, source)`` triples, blanks, rejections, and the
    ids of skipped items."""

    labels: tuple[tuple[str, float, str | None], ...]
    blank: int
    rejections: tuple[str, ...]
    skips: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportOutcome:
    """What `import_labels` stored: labels (``designed``: drawn by a labelling design,
    with its inclusion probability; ``plain``: any other), unchanged, skipped, blank,
    unknown ids, rejections."""

    labelled: int
    designed: int
    plain: int
    unchanged: int
    skipped: int
    blank: int
    unknown: tuple[str, ...]
    rejections: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unknown": list(self.unknown), "rejections": list(self.rejections)}


def import_labels(storage: Storage, parsed: LabelFile, *, source: str) -> ImportOutcome:
    """Store the labels and skips of ``parsed`` (``source``: who labelled, for rows that
    do not say); see the module docstring."""
    by_source: dict[str, list[tuple[str, float]]] = {}
    for rid, y, src in parsed.labels:
        by_source.setdefault(src or source, []).append((rid, y))
    labelled = designed = unchanged = 0
    unknown: list[str] = []
    for src, items in by_source.items():
        out = storage.apply_labels(items, source=src)
        labelled += len(out.labelled)
        designed += len(out.designed)
        unchanged += len(out.unchanged)
        unknown.extend(out.unknown)
    skipped = 0
    if parsed.skips:
        skip = storage.record_skips(parsed.skips)
        skipped = len(skip.skipped)
        unchanged += len(skip.labelled)
        unknown.extend(skip.unknown)
    return ImportOutcome(
        labelled=labelled,
        designed=designed,
        plain=labelled - designed,
        unchanged=unchanged,
        skipped=skipped,
        blank=parsed.blank,
        unknown=tuple(unknown),
        rejections=parsed.rejections,
    )


def parse_label(value: Any) -> float | None:
    """1.0 / 0.0 for a label, None for blank; `ConfigError` for anything else.

    >>> parse_label("Yes"), parse_label(0), parse_label(""), parse_label(None)
    (1.0, 0.0, None, None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and value in (0, 1):
        return float(value)
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise ConfigError(
        f"label {value!r} is not a correctness label; use true/false, 1/0, yes/no or "
        "correct/wrong (or leave it empty)"
    )


def read_labels(path: Path) -> LabelFile:
    """Read labels from ``.csv`` or ``.jsonl``/``.json`` (see the module docstring)."""
    if not path.exists():
        raise ConfigError(f"label file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows: Iterable[tuple[int, Any]] = enumerate(_csv_rows(text), start=2)
    elif path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = _json_rows(text)
    else:
        raise ConfigError(f"label file {str(path)!r}: use a .csv or .jsonl file")
    return parse_rows(rows)


def parse_rows(rows: Iterable[tuple[int, Any]], *, unit: str = "line") -> LabelFile:
    """Labels from ``(number, mapping)`` pairs (the parsing behind `read_labels` and the API).

    Rejections name each row as ``f"{unit} {number}"``: file lines, or the labels of an
    API request counted from 1 (``label 1``).
    """
    labels: list[tuple[str, float, str | None]] = []
    rejections: list[str] = []
    skips: list[str] = []
    blank = 0
    for line, row in rows:
        if not isinstance(row, dict):
            rejections.append(f"{unit} {line}: expected an object with `id` and `correct`")
            continue
        rid = row.get("id", row.get("trace_id"))
        if rid is None or str(rid).strip() == "":
            rejections.append(f"{unit} {line}: no `id`")
            continue
        rid = str(rid)
        if len(rid) > MAX_ID:
            rejections.append(f"{unit} {line}: id is longer than {MAX_ID} characters")
            continue
        try:
            y = parse_label(row.get("correct"))
            skipped = _flag(row.get("skipped"))
        except ConfigError as exc:
            rejections.append(f"{unit} {line} (id {rid!r}): {exc}")
            continue
        if skipped and y is not None:
            rejections.append(
                f"{unit} {line} (id {rid!r}): `skipped` and `correct` together; send one of them"
            )
            continue
        if skipped:
            skips.append(rid)
            continue
        if y is None:
            blank += 1
            continue
        source = row.get("source") or row.get("grader")
        labels.append((rid, y, None if source in (None, "") else str(source)[:128]))
    return LabelFile(tuple(labels), blank, tuple(rejections), tuple(skips))


def _flag(value: Any) -> bool:
    """A ``skipped`` value: true/false, 1/0, yes/no, or empty (false)."""
    try:
        return parse_label(value) == 1.0
    except ConfigError:
        raise ConfigError(f"skipped {value!r} must be true or false (or empty)") from None


def _csv_rows(text: str) -> Iterable[dict[str, Any]]:
    """Rows of a CSV file, ids as they were before the export neutralised them."""
    for row in csv.DictReader(io.StringIO(text)):
        for key in ("id", "trace_id"):
            if isinstance(row.get(key), str):
                row[key] = restore(row[key])
        yield row


def _json_rows(text: str) -> Iterable[tuple[int, Any]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if raw.strip():
            try:
                yield line, json.loads(raw)
            except (json.JSONDecodeError, RecursionError) as exc:
                yield line, f"not JSON: {exc}"


# ------------------------------------------------------------ recalibration
@dataclass(frozen=True)
class RecalibrationOutcome:
    """What `recalibrate` did: the fit, and the scorer activated (None if it was not)."""

    fit: Recalibration
    activated: ScorerInfo | None
    rescored: int

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.fit.summary(),
            "improves": self.fit.improves,
            "activated_scorer_id": None if self.activated is None else self.activated.id,
            "rescored": self.rescored,
        }


def recalibrate(
    storage: Storage,
    *,
    model: str = "",
    method: str = "isotonic",
    min_labels: int = 50,
    force: bool = False,
    chunk: int = 5000,
) -> RecalibrationOutcome:
    """Fit a recalibration of ``model``'s active estimator on its stored labels (module
    docstring)."""
    active = storage.active_scorer(model)
    if active is None:
        raise StorageError(
            f"model {model!r} has no estimator registered: serve it once with "
            "`sentinel serve --model NAME=PATH`"
        )
    family = [
        s
        for s in storage.scorers()
        if s.estimator_sha256 == active.estimator_sha256 and s.model == active.model
    ]
    with storage.db.read.connect() as conn:
        rows = conn.execute(
            sa.select(traces.c.p_raw, traces.c.label).where(
                traces.c.label.is_not(None), traces.c.scorer_id.in_([s.id for s in family])
            )
        ).all()
    p_raw = np.array([r.p_raw for r in rows], dtype=np.float64)
    y = np.array([r.label for r in rows], dtype=np.float64)
    fit = fit_recalibration(p_raw, y, method, min_labels=min_labels)
    if not (fit.improves or force):
        return RecalibrationOutcome(fit, None, 0)
    base = (
        next(s for s in family if s.calibration is None)
        if any(s.calibration is None for s in family)
        else active
    )
    new = storage.register_scorer(
        estimator_sha256=base.estimator_sha256,
        entropy_mode=base.entropy_mode,
        features=base.features,
        model_sd=base.model_sd,
        card=base.card,
        calibration=fit.spec,
        base_id=base.id,
        note=json.dumps(fit.summary()),
        model=base.model,
        finisher=base.finisher,
    )
    storage.activate(new.id)
    sources = [s.id for s in family if s.id != new.id]
    moved = 0
    calibrate = partial(apply_calibration, fit.spec)
    while True:
        n = storage.rescore(new.id, sources, None, calibrate=calibrate, limit=chunk)
        moved += n
        if n < chunk:
            break
    return RecalibrationOutcome(fit, new, moved)
