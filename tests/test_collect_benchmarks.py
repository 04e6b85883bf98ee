"""Benchmarks: normalised JSONL files, Hugging Face converters, sampling, synthetic domains."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entropy_sentinel.collect import benchmarks as bm
from entropy_sentinel.collect.benchmarks import (
    HF_SOURCES,
    Item,
    load_benchmark,
    load_benchmarks,
    load_hf,
    load_jsonl,
    sample_items,
)
from entropy_sentinel.collect.prompts import TEMPLATES, template_for
from entropy_sentinel.collect.synthetic import SYNTHETIC_DOMAINS, generate
from entropy_sentinel.errors import ConfigError
from tests.conftest import need_benchmarks

# item counts of SOURCES.md in the shared benchmark folder (gsm8k, svamp and aqua are
# committed in tests/fixtures/benchmarks)
SOURCE_COUNTS = {
    "gsm8k": 1319, "svamp": 1000, "mawps_singleop": 562, "mawps_addsub": 395,
    "mawps_multiarith": 600, "mawps_singleeq": 508, "asdiv": 2215, "math500": 500,
    "olympiadbench": 675, "theoremqa": 747, "scibench": 580, "aqua": 254, "mmlu_stem": 3018,
    "minerva_math": 272,
}  # fmt: skip


def test_every_benchmark_file_loads(benchmarks_dir: Path) -> None:
    present = [n for n in SOURCE_COUNTS if (benchmarks_dir / f"{n}.jsonl").exists()]
    assert {"gsm8k", "svamp", "aqua"} <= set(present)  # committed; ../shared has them all
    for name in present:
        count = SOURCE_COUNTS[name]
        items = load_benchmark(name, directory=benchmarks_dir)
        assert len(items) == count, name
        assert all(item.benchmark == name and item.id.startswith(f"{name}-") for item in items)
        for item in items[:50]:
            template_for(item).render(item)  # every item has a prompt


def test_choice_items_render_their_options(benchmarks_dir: Path) -> None:
    item = load_benchmark("aqua", directory=benchmarks_dir)[0]
    text = template_for(item).render(item)[-1]["content"]
    assert all(
        f"{letter}) {choice}" in text
        for letter, choice in zip(item.letters, item.choices, strict=True)
    )
    assert text.startswith(item.question)


def _write(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "x-0", "question": "q", "answer": "1", "answer_type": "numeric"}, "answer_type"),
        ({"id": "x-0", "question": "q", "answer": "one", "answer_type": "number"}, "float"),
        (
            {
                "id": "x-0",
                "question": "q",
                "answer": "C",
                "answer_type": "choice",
                "choices": ["a", "b"],
            },
            "option letter",
        ),
        ({"id": "x-0", "question": "", "answer": "1", "answer_type": "number"}, "non-empty"),
        ({"id": "x-0", "question": "q", "answer_type": "number"}, "normalised benchmark line"),
    ],
)
def test_bad_lines_name_file_line_and_fix(
    tmp_path: Path, row: dict[str, object], message: str
) -> None:
    path = _write(tmp_path / "x.jsonl", [{"id": "x-1", "question": "q", "answer": "2",
                                          "answer_type": "number"}, row])  # fmt: skip
    with pytest.raises(ConfigError, match=rf"x\.jsonl:2: .*{message}"):
        load_jsonl(path)


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    row = {"id": "x-0", "question": "q", "answer": "1", "answer_type": "number"}
    with pytest.raises(ConfigError, match="duplicate id 'x-0'"):
        load_jsonl(_write(tmp_path / "x.jsonl", [row, row]))


def test_unknown_benchmark_lists_the_known_ones(benchmarks_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown benchmark 'gsm9k'.*gsm8k.*synth_add_1d"):
        load_benchmark("gsm9k", directory=benchmarks_dir)


def test_folder_and_env_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "toy.jsonl", [{"id": f"toy-{i}", "question": "q", "answer": str(i),
                                     "answer_type": "number"} for i in range(5)])  # fmt: skip
    assert len(load_benchmarks(str(tmp_path))) == 5  # a folder: all its files
    monkeypatch.setenv(bm.BENCHMARKS_ENV, str(tmp_path))
    assert [i.id for i in load_benchmarks("toy", limit=2)] == [
        i.id for i in sample_items(load_jsonl(tmp_path / "toy.jsonl"), 2)
    ]
    assert "toy" in bm.list_benchmarks()


@given(st.integers(0, 40), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_samples_are_prefixes_of_larger_samples(m: int, n: int, seed: int) -> None:
    items = generate("synth_add_1d", 40)
    small, large = sorted((m, n))
    assert sample_items(items, small, seed=seed) == sample_items(items, large, seed=seed)[:small]
    assert len({i.id for i in sample_items(items, large, seed=seed)}) == large
    rest = sample_items(items, None, seed=seed, offset=small)
    assert sample_items(items, small, seed=seed) + rest == sample_items(items, None, seed=seed)


def test_interleaving_balances_domains() -> None:
    items = load_benchmarks("synth_add_1d,synth_mul_1d,synth_add_2d", limit=4)
    assert [i.benchmark for i in items[:3]] == ["synth_add_1d", "synth_mul_1d", "synth_add_2d"]
    flat = load_benchmarks("synth_add_1d,synth_mul_1d", limit=2, interleave=False)
    assert [i.benchmark for i in flat] == ["synth_add_1d"] * 2 + ["synth_mul_1d"] * 2
    with pytest.raises(ConfigError, match="repeat"):
        load_benchmarks("synth_add_1d,synth_add_1d")


# ------------------------------------------------------------- synthetic domains
@given(st.sampled_from(sorted(SYNTHETIC_DOMAINS)), st.integers(0, 2**31 - 1))
def test_synthetic_items_are_right_and_deterministic(name: str, seed: int) -> None:
    domain = SYNTHETIC_DOMAINS[name]
    items = generate(name, 20, seed=seed)
    assert items == generate(name, 20, seed=seed)
    assert items[:5] == generate(name, 5, seed=seed)  # more items keep the first ones
    for item in items:
        a, op, b = re.fullmatch(r"What is (\d+) (.) (\d+)\?", item.question).groups()  # type: ignore[union-attr]
        assert op == domain.op
        assert [len(a), len(b)] == list(domain.digits)
        assert domain.fixed_b is None or int(b) == domain.fixed_b
        assert int(item.answer) == {"+": int(a) + int(b), "-": int(a) - int(b),
                                    "*": int(a) * int(b)}[op]  # fmt: skip


def test_unknown_synthetic_domain() -> None:
    with pytest.raises(ConfigError, match="known: synth_add_1d"):
        generate("synth_div", 3)


# ------------------------------------------------------ Hugging Face converters
# The converters turn hub rows into the normalised form; the hub rows are rebuilt
# here from the local files (which were converted from the same sources).
def test_hf_gsm8k_converter_matches_local_file(benchmarks_dir: Path) -> None:
    local = load_benchmark("gsm8k", directory=benchmarks_dir)
    rows = [{"question": i.question, "answer": i.meta["solution"]} for i in local]
    assert [(i.id, i.answer) for i in load_hf("gsm8k", rows=rows)] == [
        (i.id, i.answer) for i in local
    ]


def test_hf_aqua_converter_matches_local_file(benchmarks_dir: Path) -> None:
    local = load_benchmark("aqua", directory=benchmarks_dir)
    rows = [
        {"question": i.question, "correct": i.answer, "rationale": "",
         "options": [f"{letter}){c}" for letter, c in zip(i.letters, i.choices, strict=True)]}
        for i in local
    ]  # fmt: skip
    converted = load_hf("aqua", rows=rows)
    assert [(i.answer, i.choices) for i in converted] == [(i.answer, i.choices) for i in local]


def test_hf_math500_and_mmlu_converters(benchmarks_dir: Path) -> None:
    need_benchmarks(benchmarks_dir, "math500", "mmlu_stem")
    local = load_benchmark("math500", directory=benchmarks_dir)
    rows = [{"problem": i.question, "answer": i.answer, **i.meta} for i in local]
    assert [i.answer_type for i in load_hf("math500", rows=rows)] == [i.answer_type for i in local]
    mmlu = load_benchmark("mmlu_stem", directory=benchmarks_dir)[:200]
    rows = [{"question": i.question, "choices": list(i.choices), "answer": "ABCD".index(i.answer),
             "subject": i.meta.get("type")} for i in mmlu]  # fmt: skip
    assert [i.answer for i in load_hf("mmlu_stem", rows=rows)] == [i.answer for i in mmlu]


def test_hf_svamp_converter() -> None:
    rows = [{"Body": "Each pack of dvds costs 76 dollars", "Question": "How much?",
             "Answer": 51.0, "Equation": "( 76.0 - 25.0 )", "Type": "Subtraction"}]  # fmt: skip
    (item,) = load_hf("svamp", rows=rows)
    assert item.question == "Each pack of dvds costs 76 dollars. How much?"
    assert item.answer == "51" and item.id == "svamp-0"


def test_hf_unknown_name() -> None:
    with pytest.raises(ConfigError, match="known: gsm8k"):
        load_hf("nope")
    assert set(HF_SOURCES) <= set(SOURCE_COUNTS)


def test_item_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="at least two choices"):
        Item(
            id="c-0", benchmark="c", question="q", answer="A", answer_type="choice", choices=("x",)
        )
    with pytest.raises(ConfigError, match="not finite"):
        Item(id="n-0", benchmark="n", question="q", answer="inf", answer_type="number")


def test_templates_are_named_and_checked() -> None:
    item = generate("synth_add_1d", 1)[0]
    assert template_for(item).name == "number-v1"
    with pytest.raises(ConfigError, match="unknown prompt template"):
        template_for(item, {"number": "number-v0"})
    with pytest.raises(ConfigError, match="is for choice items"):
        TEMPLATES["choice-v1"].render(item)
