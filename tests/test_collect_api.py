"""The public API of entropy_sentinel.collect is what we mean it to be."""

from __future__ import annotations

import importlib

import entropy_sentinel.collect as collect

MODULES = [
    "benchmarks", "collector", "graders", "judge", "llama_launch", "model_server", "progress",
    "prompts", "regrade", "retry", "synthetic",
]  # fmt: skip

PUBLIC = {
    "ANSWER_TYPES", "HF_SOURCES", "SYNTHETIC_DOMAINS", "TEMPLATES", "CollectSummary",
    "Collector", "GenerationParams", "Grade", "Item", "LLMJudge", "PromptTemplate",
    "RecordInfo", "RetryPolicy", "collect", "corpus_frame", "corpus_metadata",
    "default_benchmarks_dir", "domain_summary", "generate", "grade_choice",
    "grade_expression", "grade_item", "grade_number", "grade_text", "list_benchmarks",
    "load_benchmark", "load_benchmarks", "load_hf", "load_jsonl", "read_corpus",
    "read_done_ids", "sample_items", "template_for", "write_corpus",
}  # fmt: skip


def test_package_exports_exactly_the_public_names() -> None:
    assert set(collect.__all__) == PUBLIC
    assert len(collect.__all__) == len(PUBLIC)


def test_every_module_declares_what_it_exports() -> None:
    for name in MODULES:
        module = importlib.import_module(f"entropy_sentinel.collect.{name}")
        exported = module.__all__
        missing = [n for n in exported if not hasattr(module, n)]
        assert not missing, (name, missing)
        public = {
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        }
        assert public <= set(exported), (name, public - set(exported))
