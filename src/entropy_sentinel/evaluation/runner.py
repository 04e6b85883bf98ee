"""Run configurations over training groups: in parallel, cached, resumable.

Each (configuration, group) pair is one task: build a fresh method, fit it on
the training part of the group's domains, assess every domain (`protocol`),
and record one `domain_metrics` row per domain. The tasks of one group run
together (`evaluate_group`), so that configurations wrapping the same classifier
share its fit; groups run in parallel with joblib (``jobs`` processes, each
single-threaded) behind a progress bar.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.evaluation.configurations import Configuration
from entropy_sentinel.evaluation.data import EvalData
from entropy_sentinel.evaluation.methods import FitMemo
from entropy_sentinel.evaluation.metrics import domain_metrics
from entropy_sentinel.evaluation.protocol import Group, Split, domain_split

__all__ = [
    "RunSummary",
    "cache_path",
    "evaluate_group",
    "input_key",
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
    matrices: Mapping[str, FloatArray],
    y: FloatArray,
    domains: npt.NDArray[np.object_],
    train_mask: npt.NDArray[np.bool_],
    seed: int,
    output: Path | None = None,
    data_fingerprint: str = "",
) -> list[dict[str, Any]]:
    """Fit each configuration on ``group``'s training rows and assess every domain.

    Args:
        tasks: (configuration, task key) pairs, all for this group.
        matrices: each configuration's input matrix, by ``input_key(config)``.
        y, domains: labels and domain of every row.
        train_mask: each row's membership of its domain's training part.
        seed: seeds the methods.
        output: the results folder: each entry is cached there as soon as it is done.
        data_fingerprint: recorded in each entry.

    Returns:
        one entry per task: status ``ok`` with one record per domain, or ``failed``
        with the error. Configurations wrapping the same classifier share its fit.
    """
    memo: FitMemo = {}
    in_group = np.isin(domains, group.domains)
    train = in_group & train_mask
    names = sorted({str(v) for v in domains})
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
        X = matrices[input_key(config)]
        try:
            with threadpool_limits(limits=1):
                method = config.build(seed, memo).fit(X[train], y[train], domains[train])
                rows = []
                for d in names:
                    rows_d = (domains == d) & ~train
                    a = method.assess(X[rows_d])
                    yd = y[rows_d]
                    role = "in" if d in group.domains else "heldout"
                    rows.append(
                        domain_metrics(
                            d, role, a.estimate, float(yd.mean()), a.confidence, yd, a.proba
                        )
                    )
            entry.update(status="ok", error=None, domains=rows)
        except Exception as exc:  # a failed row, never dropped (module docstring)
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", domains=[])
        entry["seconds"] = round(time.perf_counter() - started, 3)
        if output is not None:
            _write_json(cache_path(output, config, group), entry)
        entries.append(entry)
    return entries


def input_key(config: Configuration) -> str:
    """Configurations with equal input columns share one matrix."""
    return json.dumps(config.inputs.to_dict(), sort_keys=True)


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
    matrices = {input_key(c): data.matrix(c.inputs) for c in configurations}
    n_computed = 0
    calls = [
        (tasks, group, {input_key(c): matrices[input_key(c)] for c, _ in tasks})
        for group, tasks in todo.items()
    ]
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
    calls: Sequence[tuple[list[tuple[Configuration, str]], Group, dict[str, FloatArray]]],
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
    ordered = sorted(calls, key=lambda c: -len(c[0]))
    delayed_calls = (
        delayed(evaluate_group)(
            tasks,
            group,
            mats,
            data.labels,
            data.domains,
            train_mask,
            split.seed,
            output,
            fingerprint,
        )
        for tasks, group, mats in ordered
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
