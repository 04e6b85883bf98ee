"""Collect and grade model outputs: benchmarks, prompts, graders, judge, collector, corpus.

>>> from entropy_sentinel.collect import load_benchmarks, grade_number
>>> grade_number("The answer is 42.", "42").correct
True
"""

from entropy_sentinel.collect.benchmarks import (
    ANSWER_TYPES,
    HF_SOURCES,
    Item,
    default_benchmarks_dir,
    list_benchmarks,
    load_benchmark,
    load_benchmarks,
    load_hf,
    load_jsonl,
    sample_items,
)
from entropy_sentinel.collect.collector import (
    Collector,
    CollectSummary,
    GenerationParams,
    RecordInfo,
    collect,
    read_done_ids,
)
from entropy_sentinel.collect.graders import (
    Grade,
    grade_choice,
    grade_expression,
    grade_item,
    grade_number,
    grade_text,
)
from entropy_sentinel.collect.judge import LLMJudge
from entropy_sentinel.collect.prompts import TEMPLATES, PromptTemplate, template_for
from entropy_sentinel.collect.retry import RetryPolicy
from entropy_sentinel.collect.synthetic import SYNTHETIC_DOMAINS, generate
from entropy_sentinel.traces.corpus import (
    corpus_frame,
    corpus_metadata,
    domain_summary,
    read_corpus,
    write_corpus,
)

__all__ = [
    "ANSWER_TYPES",
    "HF_SOURCES",
    "SYNTHETIC_DOMAINS",
    "TEMPLATES",
    "CollectSummary",
    "Collector",
    "GenerationParams",
    "Grade",
    "Item",
    "LLMJudge",
    "PromptTemplate",
    "RecordInfo",
    "RetryPolicy",
    "collect",
    "corpus_frame",
    "corpus_metadata",
    "default_benchmarks_dir",
    "domain_summary",
    "generate",
    "grade_choice",
    "grade_expression",
    "grade_item",
    "grade_number",
    "grade_text",
    "list_benchmarks",
    "load_benchmark",
    "load_benchmarks",
    "load_hf",
    "load_jsonl",
    "read_corpus",
    "read_done_ids",
    "sample_items",
    "template_for",
    "write_corpus",
]
