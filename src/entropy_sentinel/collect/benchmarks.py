"""Benchmark items: the normalised JSONL files, Hugging Face ``datasets``, synthetic domains.

An `Item` is one question with its gold answer. Every source yields the same
normalised form (the format of ``../shared/data/benchmarks``, see its SOURCES.md)::

    {"id": "<benchmark>-<index>", "question": str, "answer": str,
     "answer_type": "number" | "expression" | "choice", "choices": [str, ...], "meta": {...}}

``choices`` only for ``choice`` items, in option order A, B, C, ...; the answer is then
the letter. ``number`` answers parse with ``float()``.

Sources:

* `load_jsonl`: one normalised JSONL file.
* `load_benchmarks`: names (``gsm8k``, ``synth_add_1d``, ...) resolved against a folder of
  normalised files and the synthetic domains of `entropy_sentinel.collect.synthetic`,
  or a folder / file path.
* `load_hf`: the same benchmarks from the Hugging Face hub (extra ``hf``), converted to the
  normalised form with ids ``<benchmark>-<index>`` in the hub's split order.

>>> item = Item(id="toy-0", benchmark="toy", question="1 + 1?", answer="2",
...             answer_type="number")
>>> item.answer_type, item.letters
('number', ())
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec
import numpy as np

from entropy_sentinel.errors import ConfigError

__all__ = [
    "ANSWER_TYPES",
    "BENCHMARKS_ENV",
    "HF_SOURCES",
    "AnswerType",
    "HFSource",
    "Item",
    "default_benchmarks_dir",
    "list_benchmarks",
    "load_benchmark",
    "load_benchmarks",
    "load_hf",
    "load_jsonl",
    "sample_items",
]

AnswerType = Literal["number", "expression", "choice"]
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)
BENCHMARKS_ENV = "SENTINEL_BENCHMARKS_DIR"
"""Environment variable naming the folder of normalised benchmark JSONL files."""

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Item:
    """One benchmark question and its gold answer (normalised form, see the module doc).

    Attributes:
        id: unique across benchmarks, ``<benchmark>-<index>``.
        benchmark: the benchmark (and default domain) name.
        question: the question text.
        answer: the gold answer: a number string, a LaTeX expression, or an option letter.
        answer_type: ``number``, ``expression`` or ``choice``.
        choices: option texts in order A, B, C, ... (``choice`` items only).
        meta: free-form source metadata (reference solution, subject, ...).
    """

    id: str
    benchmark: str
    question: str
    answer: str
    answer_type: AnswerType
    choices: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError(f"benchmark {self.benchmark!r}: an item has an empty id")
        where = f"benchmark item {self.id!r}"
        if self.answer_type not in ANSWER_TYPES:
            raise ConfigError(
                f"{where}: answer_type {self.answer_type!r} is not one of {ANSWER_TYPES}"
            )
        if not self.question.strip() or not self.answer.strip():
            raise ConfigError(f"{where}: question and answer must be non-empty strings")
        if self.answer_type == "choice":
            if len(self.choices) < 2:
                raise ConfigError(f"{where}: a choice item needs at least two choices")
            if self.answer not in self.letters:
                raise ConfigError(
                    f"{where}: answer {self.answer!r} is not an option letter "
                    f"({', '.join(self.letters)})"
                )
        elif self.answer_type == "number":
            try:
                value = float(self.answer)
            except ValueError:
                raise ConfigError(
                    f"{where}: number answer {self.answer!r} does not parse as a float; "
                    "use answer_type 'expression' for non-numeric answers"
                ) from None
            if not math.isfinite(value):
                raise ConfigError(f"{where}: number answer {self.answer!r} is not finite")

    @property
    def letters(self) -> tuple[str, ...]:
        """The option letters of a choice item (``()`` otherwise)."""
        return tuple(_LETTERS[: len(self.choices)])


class _Row(msgspec.Struct, forbid_unknown_fields=False):
    id: str
    question: str
    answer: str
    answer_type: str
    choices: list[str] | None = None
    meta: dict[str, Any] | None = None


_ROW_DECODER = msgspec.json.Decoder(_Row)


def _item_from_row(row: _Row, benchmark: str) -> Item:
    return Item(
        id=row.id,
        benchmark=benchmark,
        question=row.question,
        answer=row.answer,
        answer_type=row.answer_type,  # type: ignore[arg-type]  # checked in __post_init__
        choices=tuple(row.choices or ()),
        meta=row.meta or {},
    )


def load_jsonl(path: str | os.PathLike[str], *, benchmark: str | None = None) -> list[Item]:
    """Read one normalised JSONL file (the benchmark name defaults to the file stem).

    Raises `ConfigError` naming the file, the line and the fix for a malformed line
    or a duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark file {str(path)!r} does not exist")
    name = benchmark if benchmark is not None else path.name.removesuffix(".jsonl")
    items: list[Item] = []
    seen: set[str] = set()
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                item = _item_from_row(_ROW_DECODER.decode(line), name)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ConfigError(
                    f"{path}:{lineno}: not a normalised benchmark line ({exc}); expected "
                    '{"id", "question", "answer", "answer_type", ["choices"], ["meta"]}'
                ) from None
            except ConfigError as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from None
            if item.id in seen:
                raise ConfigError(f"{path}:{lineno}: duplicate id {item.id!r}")
            seen.add(item.id)
            items.append(item)
    if not items:
        raise ConfigError(f"benchmark file {str(path)!r} has no items")
    return items


def default_benchmarks_dir() -> Path | None:
    """The folder of normalised benchmark files: ``$SENTINEL_BENCHMARKS_DIR``, else
    ``../shared/data/benchmarks`` next to the repository checkout when present, else None."""
    env = os.environ.get(BENCHMARKS_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "benchmarks"
        if (parent / "pyproject.toml").is_file() and candidate.is_dir():
            return candidate
    return None


def list_benchmarks(directory: str | os.PathLike[str] | None = None) -> list[str]:
    """Names available locally: the JSONL files of ``directory`` plus the synthetic domains."""
    from entropy_sentinel.collect.synthetic import SYNTHETIC_DOMAINS

    names: list[str] = []
    folder = Path(directory) if directory is not None else default_benchmarks_dir()
    if folder is not None and folder.is_dir():
        names += sorted(p.name.removesuffix(".jsonl") for p in folder.glob("*.jsonl"))
    return names + list(SYNTHETIC_DOMAINS)


def load_benchmark(
    name: str,
    *,
    directory: str | os.PathLike[str] | None = None,
    synthetic_n: int = 1000,
    synthetic_seed: int = 0,
) -> list[Item]:
    """All items of one benchmark by name: a synthetic domain, or ``<directory>/<name>.jsonl``.

    ``name`` may also be a path to a JSONL file. Synthetic domains yield ``synthetic_n``
    items generated with ``synthetic_seed``.
    """
    from entropy_sentinel.collect.synthetic import SYNTHETIC_DOMAINS, generate

    if name in SYNTHETIC_DOMAINS:
        return generate(name, synthetic_n, seed=synthetic_seed)
    as_path = Path(name)
    if as_path.suffix == ".jsonl":
        return load_jsonl(as_path)
    folder = Path(directory) if directory is not None else default_benchmarks_dir()
    if folder is None:
        raise ConfigError(
            f"benchmark {name!r}: no benchmark folder; pass one (--benchmarks-dir) or set "
            f"{BENCHMARKS_ENV}, or load it from the Hugging Face hub (load_hf)"
        )
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        known = ", ".join(list_benchmarks(folder))
        raise ConfigError(f"unknown benchmark {name!r}: no {path}; known: {known}")
    return load_jsonl(path)


def sample_items(
    items: Sequence[Item], n: int | None, *, seed: int = 0, offset: int = 0
) -> list[Item]:
    """A seeded random sample of ``n`` items (all of them when ``n`` is None or larger).

    The order is a seeded permutation, so the first ``m`` items of a sample of ``n >= m``
    are the sample of ``m``: raising ``--limit`` in a resumed run only adds items.
    ``offset`` skips the first items of the permutation: ``offset=n`` gives the next
    ``n`` items, disjoint from the first sample (fresh "traffic" for a demo).
    """
    if n is not None and n < 0:
        raise ConfigError(f"limit {n} must be >= 0")
    if offset < 0:
        raise ConfigError(f"offset {offset} must be >= 0")
    order = np.random.default_rng(seed).permutation(len(items))[offset:]
    return [items[i] for i in order[: len(order) if n is None else n]]


def load_benchmarks(
    names: str | Iterable[str],
    *,
    directory: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    offset: int = 0,
    interleave: bool = True,
) -> list[Item]:
    """Items of several benchmarks, ``limit`` per benchmark (a seeded sample of each).

    ``names`` is a comma-separated string or an iterable of names (see `load_benchmark`),
    or a path to a folder, whose every ``*.jsonl`` file is loaded. With ``interleave``
    the benchmarks take turns (first item of each, then the second of each, ...), so a
    run cut short still has about as many responses in every domain; otherwise the
    items come benchmark after benchmark. ``offset`` skips that many items of each
    benchmark's sample (see `sample_items`).

    >>> items = load_benchmarks("synth_add_1d,synth_mul_2d", limit=2)
    >>> [item.id.split("-")[0] for item in items]
    ['synth_add_1d', 'synth_mul_2d', 'synth_add_1d', 'synth_mul_2d']
    >>> fresh = load_benchmarks("synth_add_1d,synth_mul_2d", limit=2, offset=2)
    >>> {i.id for i in items} & {i.id for i in fresh}
    set()
    """
    if isinstance(names, str):
        if Path(names).is_dir():
            directory = names
            names = [p.name.removesuffix(".jsonl") for p in sorted(Path(names).glob("*.jsonl"))]
        else:
            names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if not names:
        raise ConfigError("no benchmark names given")
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmark names repeat: {names}")
    per_benchmark = [
        sample_items(
            load_benchmark(
                name,
                directory=directory,
                synthetic_n=max(1000, (limit or 0) + offset),
                synthetic_seed=seed,
            ),
            limit,
            seed=seed,
            offset=offset,
        )
        for name in names
    ]
    if not interleave:
        return [item for items in per_benchmark for item in items]
    return [
        item for row in itertools.zip_longest(*per_benchmark) for item in row if item is not None
    ]


# ----------------------------------------------------------- Hugging Face hub
@dataclass(frozen=True)
class HFSource:
    """Where a benchmark lives on the Hugging Face hub and how to normalise its rows.

    ``convert(row)`` returns the normalised fields without the id
    (question, answer, answer_type, [choices], [meta]).
    """

    path: str
    config: str | None
    split: str
    convert: Callable[[Mapping[str, Any]], dict[str, Any]]


def _format_number(value: float) -> str:
    """``51.0 -> '51'``, ``3.5 -> '3.5'``: the normalised form of numeric answers."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _gsm8k(row: Mapping[str, Any]) -> dict[str, Any]:
    solution = str(row["answer"])
    final = solution.rsplit("####", 1)[-1].strip().replace(",", "")
    return {
        "question": row["question"],
        "answer": final,
        "answer_type": "number",
        "meta": {"solution": solution},
    }


def _svamp(row: Mapping[str, Any]) -> dict[str, Any]:
    body = str(row["Body"]).strip()
    if body and body[-1] not in ".?!":
        body += "."
    return {
        "question": f"{body} {str(row['Question']).strip()}",
        "answer": _format_number(float(row["Answer"])),
        "answer_type": "number",
        "meta": {"type": row.get("Type"), "equation": row.get("Equation")},
    }


def _math500(row: Mapping[str, Any]) -> dict[str, Any]:
    answer = str(row["answer"]).strip()
    is_number = re.fullmatch(r"-?(\d+(\.\d*)?|\.\d+)", answer) is not None
    return {
        "question": row["problem"],
        "answer": answer,
        "answer_type": "number" if is_number else "expression",
        "meta": {k: row.get(k) for k in ("subject", "level", "unique_id", "solution")},
    }


def _aqua(row: Mapping[str, Any]) -> dict[str, Any]:
    options = [re.sub(r"^\s*[A-E]\s*\)\s*", "", str(o)) for o in row["options"]]
    return {
        "question": row["question"],
        "answer": str(row["correct"]).strip(),
        "answer_type": "choice",
        "choices": options,
        "meta": {"rationale": row.get("rationale")},
    }


def _mmlu(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "question": row["question"],
        "answer": _LETTERS[int(row["answer"])],
        "answer_type": "choice",
        "choices": list(row["choices"]),
        "meta": {"subject": row.get("subject")},
    }


HF_SOURCES: dict[str, HFSource] = {
    "gsm8k": HFSource("openai/gsm8k", "main", "test", _gsm8k),
    "svamp": HFSource("ChilleD/SVAMP", None, "test", _svamp),
    "math500": HFSource("HuggingFaceH4/MATH-500", None, "test", _math500),
    "aqua": HFSource("deepmind/aqua_rat", "raw", "test", _aqua),
    "mmlu_stem": HFSource("TIGER-Lab/MMLU-STEM", None, "test", _mmlu),
}
"""Benchmarks `load_hf` knows, by name (the same names as the local files)."""


def load_hf(
    name: str,
    *,
    rows: Iterable[Mapping[str, Any]] | None = None,
    cache_dir: str | None = None,
) -> list[Item]:
    """A benchmark from the Hugging Face hub, normalised (needs network and the ``hf`` extra).

    ``rows`` replaces the download with rows already at hand (same fields as the hub's
    split), e.g. a ``datasets.Dataset`` loaded from a local file. Ids are
    ``<name>-<index>`` in the split's order; they match the local files only where the
    local file follows the same order (see SOURCES.md of the benchmark folder).
    """
    source = HF_SOURCES.get(name)
    if source is None:
        raise ConfigError(f"no Hugging Face source for {name!r}; known: {', '.join(HF_SOURCES)}")
    if rows is None:
        try:
            import datasets
        except ImportError:
            raise ConfigError(
                "loading from the Hugging Face hub needs the datasets package: "
                "pip install 'entropy-sentinel[hf]'"
            ) from None
        rows = datasets.load_dataset(
            source.path, source.config, split=source.split, cache_dir=cache_dir
        )
    items = []
    for index, row in enumerate(rows):
        fields = source.convert(row)
        items.append(
            Item(
                id=f"{name}-{index}",
                benchmark=name,
                question=str(fields["question"]),
                answer=str(fields["answer"]),
                answer_type=fields["answer_type"],
                choices=tuple(fields.get("choices", ())),
                meta={k: v for k, v in fields.get("meta", {}).items() if v is not None},
            )
        )
    if not items:
        raise ConfigError(f"Hugging Face dataset {source.path!r} ({source.split}) has no rows")
    return items
