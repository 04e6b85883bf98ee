"""Run configurations over training groups: in parallel, cached, resumable.

Each (configuration, group) pair is one task: build a fresh slice estimator
(`Configuration.build`), fit it on the training part of the group's domains
(``fit_traces``), estimate every domain's evaluation part (``estimate``, as ``sentinel
estimate`` would), and record one `domain_metrics` row per domain with the interval's
parts. A preset's per-trace scores are kept next to its entry (``.npz``), so that
intervals under another transfer relation and the label loop can be assessed later
without refitting (`entropy_sentinel.evaluation.assess`). Groups run in parallel with
joblib (``jobs`` processes, each single-threaded) behind a progress bar.

**Cache.** Every finished task is written at once to
``OUTPUT/cache/<configuration>/<group>.json`` (written to a temporary file, then
renamed, so a crash never leaves half a file). A later run skips tasks whose
file holds the same *task key* (a hash of the corpus fingerprint, the split
and the configuration's recipe), so an interrupted run resumes where it stopped,
and a run with more groups or configurations only computes what is new.
``OUTPUT/run.json`` (the manifest) records the corpus, the protocol, each
configuration's recipe and every run's command; one results folder holds one
corpus and protocol, and another is refused.

**Failures.** A task that raises becomes a ``failed`` entry with the error's type
and message (cached too: the same inputs would fail again; ``retry_failed``
recomputes them). It is never dropped: reports list failures and count them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.baselines import ScoreBaseline
from entropy_sentinel.estimator.sentinel import SentinelEstimator, TraceScores
from entropy_sentinel.evaluation.configurations import Configuration
from entropy_sentinel.evaluation.data import EvalData
from entropy_sentinel.evaluation.metrics import domain_metrics
from entropy_sentinel.evaluation.protocol import Group, Split, domain_split
from entropy_sentinel.traces.batch import TraceBatch

__all__ = [
    "RunSummary",
    "cache_path",
    "evaluate_group",
    "run_evaluation",
    "task_key",
]

MANIFEST = "run.json"
CACHE = "cache"


@dataclass(frozen=True)
class RunSummary:
    """What a run did: tasks computed now, taken from the cache, and failed (of both)."""

    n_tasks: int
    n_computed: int
    n_cached: int
    n_failed: int
    seconds: float


def task_key(data_fingerprint: str, split: Split, config: Configuration) -> str:
    """The hash a cached result must carry to be reused."""
    import hashlib

    text = json.dumps(
        {"data": data_fingerprint, "split": split.to_dict(), "spec": config.spec()},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def evaluate_group(
    tasks: Sequence[tuple[Configuration, str]],
    group: Group,
    batch: TraceBatch,
    by: str,
    domains: npt.NDArray[np.object_],
    train_mask: npt.NDArray[np.bool_],
    seed: int,
    output: Path | None = None,
    data_fingerprint: str = "",
) -> list[dict[str, Any]]:
    """Fit each configuration on ``group``'s training traces and estimate every domain.

    Args:
        tasks: (configuration, task key) pairs, all for this group.
        batch: the labelled traces of the corpus; ``by`` their domain dimension.
        domains: the domain of every trace.
        train_mask: each trace's membership of its domain's training part.
        seed: seeds the estimators.
        output: the results folder: each entry is cached there as soon as it is done,
            and a preset's per-trace scores next to it (``.npz``, for `assess`).
        data_fingerprint: recorded in each entry.

    Returns:
        one entry per task: status ``ok`` with one record per domain, or ``failed``
        with the error.
    """
    in_group = np.isin(domains, group.domains)
    train = in_group & train_mask
    names = sorted({str(v) for v in domains})
    held = ~train
    evaluated = batch.subset(held)
    eval_domains = domains[held]
    y = evaluated.labels
    entries = []
    for config, key in tasks:
        started = time.perf_counter()
        entry: dict[str, Any] = {
            "configuration": config.name,
            "group": list(group.domains),
            "k": group.k,
            "key": key,
            "data": data_fingerprint,
        }
        try:
            with threadpool_limits(limits=1):
                estimator: Any = config.build(seed)
                if "slice_dim" in estimator.get_params(deep=False):
                    # the domains are the values of `by`: they, not another dimension
                    # the traces carry, are what a held-out domain is unseen in
                    estimator.set_params(slice_dim=by)
                estimator.fit_traces(batch.subset(train))
                result = estimator.estimate(evaluated, by=by)
                confidence, proba, scores = _per_trace(estimator, evaluated)
            records = {r.key[0]: r for r in result}
            rows = []
            for d in names:
                rows_d = eval_domains == d
                r = records[d]
                role = "in" if d in group.domains else "heldout"
                row = domain_metrics(
                    d,
                    role,
                    r.estimate,
                    float(y[rows_d].mean()),
                    confidence[rows_d],
                    y[rows_d],
                    None if proba is None else proba[rows_d],
                )
                row.update(
                    lower=r.lower,
                    upper=r.upper,
                    shift=r.shift,
                    sampling_sd=r.sampling_sd,
                    calibration_sd=r.calibration_sd,
                    transfer_half_width=r.transfer_half_width,
                    unseen_fraction=r.unseen_fraction,
                )
                rows.append(row)
            if output is not None and scores is not None:
                path = cache_path(output, config, group).with_suffix(".npz")
                _write_scores(path, scores, estimator, np.flatnonzero(held))
            entry.update(status="ok", error=None, domains=rows)
        except Exception as exc:  # a failed row, never dropped (module docstring)
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", domains=[])
        entry["seconds"] = round(time.perf_counter() - started, 3)
        if output is not None:
            _write_json(cache_path(output, config, group), entry)
        entries.append(entry)
    return entries


def _per_trace(
    estimator: Any, traces: TraceBatch
) -> tuple[FloatArray, FloatArray | None, TraceScores | None]:
    """Per response: a confidence (for AUROC), a P(correct) if the method has one (for
    the Brier score), and a `SentinelEstimator`'s scores."""
    if isinstance(estimator, SentinelEstimator):
        scores = estimator.score(traces)
        return scores.p_classifier, scores.p, scores
    if isinstance(estimator, ScoreBaseline):
        values = estimator.values(traces)
        return values, values if estimator.method == "ac" else None, None
    p = np.asarray(estimator.predict_traces(traces), dtype=np.float64)
    return p, p, None


def _write_scores(
    path: Path, scores: TraceScores, estimator: SentinelEstimator, rows: npt.NDArray[np.intp]
) -> None:
    """A preset's per-trace outputs on the evaluated rows (corpus row numbers ``rows``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    shift = estimator.shift_
    np.savez_compressed(
        tmp,
        rows=rows,
        p=scores.p,
        p_classifier=scores.p_classifier,
        seen=scores.seen,
        cal=scores.cal,
        w=scores.w,
        n_reference=np.array(0 if shift is None else shift.n_reference_),
    )
    tmp.replace(path)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-+@" else "_" for c in name)


def cache_path(output: Path, config: Configuration | str, group: Group) -> Path:
    name = config if isinstance(config, str) else config.name
    return output / CACHE / _safe(name) / f"{_safe(group.key)}.json"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=True))
    tmp.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: recomputed
    return value if isinstance(value, dict) else None


def _check_manifest(output: Path, data: EvalData, split: Split) -> dict[str, Any]:
    path = output / MANIFEST
    manifest = _read_json(path) if path.exists() else None
    fp = data.fingerprint()
    if manifest is None:
        return {
            "data": {**data.describe(), "fingerprint": fp},
            "split": split.to_dict(),
            "configurations": {},
            "runs": [],
        }
    old_fp = manifest.get("data", {}).get("fingerprint")
    if old_fp != fp or manifest.get("split") != split.to_dict():
        raise ConfigError(
            f"{output} holds results of another corpus or split (corpus fingerprint "
            f"{old_fp}, split {manifest.get('split')}; now {fp}, {split.to_dict()}). "
            "Write to another folder (-o), or delete that one to start afresh."
        )
    return manifest


def run_evaluation(
    data: EvalData,
    configurations: Sequence[Configuration],
    groups: Sequence[Group],
    output: str | os.PathLike[str],
    *,
    split: Split = Split(),
    jobs: int = 1,
    retry_failed: bool = False,
    progress: bool = True,
    command: Sequence[str] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run every configuration on every group, reusing cached results.

    Args:
        data: the labelled corpus.
        configurations: what to run (distinct names).
        groups: training groups.
        output: the results folder (created).
        split: the split fraction and seed.
        jobs: parallel processes (1: in this process; -1: all cores).
        retry_failed: recompute cached failures.
        progress: show a progress bar (on stderr).
        command: the command line to record in the manifest (default ``sys.argv``).
        on_result: called with each newly computed entry (e.g. for logging).
    """
    started = time.perf_counter()
    out = Path(output)
    names = [c.name for c in configurations]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"configuration names repeat: {dup}")
    manifest = _check_manifest(out, data, split)
    fp = manifest["data"]["fingerprint"]
    train_mask = domain_split(data.domains, train_fraction=split.train_fraction, seed=split.seed)
    unknown = sorted({d for g in groups for d in g.domains} - set(data.domain_names))
    if unknown:
        raise ConfigError(f"groups name domains {unknown} that the corpus does not have")
    todo: dict[Group, list[tuple[Configuration, str]]] = {}
    n_cached = n_failed = 0
    for config in configurations:
        key = task_key(fp, split, config)
        manifest["configurations"][config.name] = {
            "key": key,
            "spec": config.spec(),
            "description": config.description,
        }
        for group in groups:
            cached = _read_json(cache_path(out, config, group))
            reusable = cached is not None and cached.get("key") == key
            if reusable and (cached.get("status") == "ok" or not retry_failed):  # type: ignore[union-attr]
                n_cached += 1
                n_failed += cached.get("status") != "ok"  # type: ignore[union-attr]
                continue
            todo.setdefault(group, []).append((config, key))
    n_todo = sum(len(t) for t in todo.values())
    out.mkdir(parents=True, exist_ok=True)
    run_record: dict[str, Any] = {
        "command": list(command if command is not None else sys.argv),
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "n_tasks": n_todo + n_cached,
        "n_cached": n_cached,
    }
    manifest["runs"].append(run_record)
    _write_json(out / MANIFEST, manifest)
    n_computed = 0
    calls = list(todo.items())
    for entry in _execute(calls, n_todo, data, train_mask, split, out, fp, jobs, progress):
        n_computed += 1
        n_failed += entry["status"] != "ok"
        if on_result is not None:
            on_result(entry)
    seconds = time.perf_counter() - started
    run_record.update(
        finished=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        n_computed=n_computed,
        n_failed=n_failed,
        seconds=round(seconds, 1),
    )
    _write_json(out / MANIFEST, manifest)
    return RunSummary(n_todo + n_cached, n_computed, n_cached, n_failed, seconds)


def _execute(
    calls: Sequence[tuple[Group, list[tuple[Configuration, str]]]],
    n_tasks: int,
    data: EvalData,
    train_mask: npt.NDArray[np.bool_],
    split: Split,
    output: Path,
    fingerprint: str,
    jobs: int,
    progress: bool,
) -> Iterator[dict[str, Any]]:
    """Run one `evaluate_group` per group (in parallel), yielding entries as groups finish."""
    from joblib import Parallel, delayed
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not calls:
        return
    # Groups with the most work first, so that the last ones to finish are short.
    ordered = sorted(calls, key=lambda c: -len(c[1]))
    delayed_calls = (
        delayed(evaluate_group)(
            tasks,
            group,
            data.batch,
            data.by,
            data.domains,
            train_mask,
            split.seed,
            output,
            fingerprint,
        )
        for group, tasks in ordered
    )
    columns = (
        TextColumn("[bold]evaluating[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed: {task.fields[failed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("tasks", total=n_tasks, failed=0)
        failed = 0
        for entries in Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed_calls):
            failed += sum(e["status"] != "ok" for e in entries)
            bar.update(task, advance=len(entries), failed=failed)
            yield from entries
