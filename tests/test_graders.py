"""Graders: real SmolLM2 answers, tricky formats, and properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.collect.graders import (
    CHOICE_GRADER,
    EXPRESSION_GRADER,
    NUMBER_GRADER,
    TEXT_GRADER,
    extract_final_number,
    grade_choice,
    grade_expression,
    grade_item,
    grade_number,
    grade_text,
    last_boxed,
    parse_number,
)
from entropy_sentinel.errors import ConfigError
from tests.conftest import REPO, SMOLLM2_FIXTURES

# ---------------------------------------------------------------- real answers
# (response recorded from SmolLM2-135M-Instruct, gold, expected answer, expected label)
REAL_NUMBER_ANSWERS = [
    ("17 + 25 = 34.", "42", "34", False),
    ("To compute 8 + 9, we simply add them together: 8 + 9 = 17.", "17", "17", True),
    ('12 x 11 = 136\nThe answer is "136".', "132", "136", False),
    ("1. 5 + 1 = 6\nThe answer is the sum of the two numbers, which results in a total of 2.",
     "6", "2", False),
    ("6 + 2 = 8\nThe answer is 8.", "8", "8", True),
    ("1 + 5 = 6\nThe answer is indeed 6.", "6", "6", True),
    ("4 x 8 = 32\nThe final answer is 32.", "32", "32", True),
    ("2 * 6 = 12\nThe answer is: 6", "12", "6", False),
    ("Solve the problem: 4 kilometers / 3 kilometers per hour = 1.25 hours\n"
     "The answer is 1.25 hours", "1.25", "1.25", True),
    ("The answer is 12. So, Rachel had to complete 12 pages of math and reading homework.\n"
     "#### 13", "20", "12", False),
    ("714 + 431 = 206\nThe final answer is 206", "1145", "206", False),
    ("Three hundred and twenty-three.", "675", None, False),
    ("The answer is 7.\n\nLet's break it down: he spent $4 on the chocolate. So, the total "
     "amount of money he spent was 2 + $7 = $11 - $6 = $9.\n\nSo, the final answer is 4.",
     "4", "4", True),
    ("To solve this problem, you can start by performing the subtraction operation: "
     "96 - 63 = 28.\nThe final answer is 28.", "-33", "28", False),
]  # fmt: skip


@pytest.mark.parametrize(("response", "gold", "answer", "correct"), REAL_NUMBER_ANSWERS)
def test_real_number_answers(response: str, gold: str, answer: str | None, correct: bool) -> None:
    grade = grade_number(response, gold)
    assert (grade.extracted, grade.correct, grade.grader) == (answer, correct, NUMBER_GRADER)


def test_recorded_fixture_answers() -> None:
    """The recorded chat responses, graded against the gold answers stored with them."""
    responses = json.loads((SMOLLM2_FIXTURES / "chat.json").read_text())
    traces = [
        json.loads(line)
        for line in (SMOLLM2_FIXTURES / "traces.jsonl").read_text().splitlines()
        if '"shape": "chat"' in line
    ]
    graded = [
        grade_number(r["choices"][0]["message"]["content"], t["meta"]["gold"])
        for r, t in zip(responses, traces, strict=True)
    ]
    assert [g.extracted for g in graded] == ["34", "17", "136", "54", "1", "1"]
    assert [g.correct for g in graded] == [False, True, False, False, False, False]
    # the recording's own "last number" labels agree on every response
    assert [g.correct for g in graded] == [t["correct"] for t in traces]


REAL_CHOICE_ANSWERS = [
    ("The answer is A) 12.75 miles", "B", "A", False),
    ("The correct answer is A) C.", "A", "A", True),
    ("A: 2.5 A\n<letter>", "B", "A", False),
    ("A) 18 + 1,000 + 90 + 6\nThe answer is B.", "C", "B", False),
    ("The answer is: D) 1,876", "E", "D", False),
    ("A) 8870\nThe answer is A.", "A", "A", True),
    ("E) $78.20", "E", "E", True),
]


@pytest.mark.parametrize(("response", "gold", "answer", "correct"), REAL_CHOICE_ANSWERS)
def test_real_choice_answers(response: str, gold: str, answer: str, correct: bool) -> None:
    grade = grade_choice(response, gold, ["w", "x", "y", "z", "v"])
    assert (grade.extracted, grade.correct, grade.grader) == (answer, correct, CHOICE_GRADER)


# ---------------------------------------------------------------- tricky numbers
@pytest.mark.parametrize(
    ("response", "value"),
    [
        ("It costs $1,234.50 in total.", 1234.5),  # currency, thousands separator
        ("The answer is 1,000,000.", 1_000_000),
        ("12 apples and 3 oranges, so the answer is 15 fruits.", 15),  # several numbers
        ("He had 5, then 3 more, so 8.", 8),  # no statement: the last number
        ("The list is 1, 2, 3", 3),  # ", " is no thousands separator
        (r"so the result is \boxed{\frac{3}{4}}", 0.75),  # LaTeX fraction in a box
        (r"\boxed{-5} is what we get, not 5", -5),  # the box wins over later numbers
        ("The temperature is \u22124 degrees.", -4),  # U+2212 minus
        ("5 - 3 = 2", 2),  # a minus between operands is no sign
        ("x = -3", -3),
        ("The answer is 25%.", 25),  # percent: the number as written
        ("It costs $18.00.", 18),
        ("3/4 of the cake", 0.75),
        ("The answer is 42 (6 * 7).", 42),  # a statement's first number ...
        ("The answer is 6 * 7 = 42.", 42),  # ... or the result of its calculation
        ("**Answer:** 7", 7),
        ("The speed is 10 m/s.", 10),  # a unit with a slash is no fraction
        ("The answer is 2.5e3 grams", 2500),
        ("The answer is .5", 0.5),
        ("The answer is 9.", 9),
        (r"\boxed{12", 12),  # a box cut by max_tokens: fall back to the numbers
        ("Final answer: x = 4, so y = 2", 4),  # the statement ends at ", so"
        ("The answer to 57 + 10 is 67.", 67),  # after " is "
        ("The final answer is 39 (which is the result of adding 12 and 7).", 39),  # leading
        ("The answer is 3*4 which equals 12.", 12),  # "equals" is "="
        ("The answer: 5 is the result.", 5),  # nothing after " is ": the first number
        ("She answered 3 calls and made 7 more, 10 in all.", 10),  # "answered" is no marker
        (r"\boxed{x = 12}", 12),
    ],
)
def test_tricky_numbers(response: str, value: float) -> None:
    found = extract_final_number(response)
    assert found is not None
    assert found[0] == pytest.approx(value)


def test_tolerance_is_relative() -> None:
    assert grade_number("The answer is 3.3333.", "3.33333").correct
    assert not grade_number("The answer is 3.33.", "3.33333").correct
    assert grade_number("The answer is 3.33.", "3.33333", rel_tol=1e-2).correct
    assert grade_number("The answer is 0.", "0").correct  # absolute tolerance at zero
    assert not grade_number("The answer is 0.001.", "0").correct


def test_no_number_is_wrong_and_says_why() -> None:
    grade = grade_number("I do not know.", "3")
    assert grade.correct is False and grade.extracted is None
    assert "no number" in grade.detail


def test_division_by_zero_is_not_an_answer() -> None:
    assert not grade_number("The answer is 3/0.", "3").correct


def test_gold_must_be_a_number() -> None:
    with pytest.raises(ConfigError, match="not a finite number"):
        grade_number("5", "nan")


def test_parse_number_needs_exactly_one_number() -> None:
    assert parse_number("about 12 km") == 12
    assert parse_number("12 or 13") is None
    assert parse_number("none") is None


def test_last_boxed_balances_braces() -> None:
    assert last_boxed(r"\boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert last_boxed(r"\fbox{7}") == "7"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{\frac{1}{2}") is None


@given(st.integers(min_value=-(10**9), max_value=10**9))
def test_integers_in_any_usual_format(n: int) -> None:
    formats = [f"The answer is {n:,}.", f"So we get {n}", rf"\boxed{{{n}}}", f"Answer: {n} units"]
    for text in formats:
        grade = grade_number(text, str(n))
        assert grade.correct, (text, grade)
    assert not grade_number(f"The answer is {n + 1}.", str(n)).correct


@given(st.decimals(min_value=-1000, max_value=1000, places=3, allow_nan=False))
def test_decimals(d: object) -> None:
    text = f"The answer is {d}."
    assert grade_number(text, str(d)).correct


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        (r"so $x = \boxed{\frac{\pi}{2}}$", r"\frac{\pi}{2}", True),
        (r"The point is \boxed{(3, \pi/2)}.", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"\boxed{(x+1)^2}", r"x^2+2x+1", True),
        (r"\boxed{2\sqrt{113}}", r"2\sqrt{113}", True),
        (r"\boxed{\sqrt{452}}", r"2\sqrt{113}", True),  # equivalent, written otherwise
        (r"\boxed{3}", r"\frac{\pi}{2}", False),
        (r"The answer is 5/2.", r"\frac{5}{2}", True),
        ("I cannot solve this.", r"\frac{5}{2}", False),
    ],
)
def test_expressions(response: str, gold: str, correct: bool) -> None:
    grade = grade_expression(response, gold)
    assert grade.correct is correct and grade.grader == EXPRESSION_GRADER


def test_text_answers() -> None:
    assert grade_text("The answer is Tom.", "tom").correct
    assert grade_text(r"\boxed{\text{Yes}}", "yes").correct
    assert not grade_text("The answer is Mary.", "Tom").correct
    assert grade_text("no statement", "Tom").extracted is None
    assert grade_text("The answer is Tom.", "tom").grader == TEXT_GRADER


# ---------------------------------------------------------------- choices
CHOICES = ["red", "green", "blue", "42"]


@pytest.mark.parametrize(
    ("response", "chosen"),
    [
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        (r"\boxed{D}", "D"),
        ("B", "B"),
        ("(C) blue", "C"),
        ("I pick the green one.", "B"),  # option text
        ("The answer is C) red", "C"),  # the letter wins over a mismatching text
        ("the answer is a red apple", "A"),  # "a" is an article; "red" is option A's text
        ("Either red or blue.", None),  # several option texts: no choice
        ("A) red\nB) green\nC) blue", None),  # the options listed back: no choice
        ("The answer is 42.", "D"),  # a number option quoted
        ("Hmm.", None),
    ],
)
def test_choices(response: str, chosen: str | None) -> None:
    grade = grade_choice(response, "B", CHOICES)
    assert grade.extracted == chosen
    assert grade.correct is (chosen == "B")


def test_choice_gold_must_be_a_letter() -> None:
    with pytest.raises(ConfigError, match="option letters ABCD"):
        grade_choice("A", "E", CHOICES)


# ---------------------------------------------------------------- dispatch
def test_grade_item_dispatches_on_answer_type() -> None:
    number = Item(id="n-0", benchmark="n", question="q", answer="3", answer_type="number")
    expr = Item(id="e-0", benchmark="e", question="q", answer=r"\frac{1}{2}",
                answer_type="expression")  # fmt: skip
    text = Item(id="t-0", benchmark="t", question="q", answer="Tom", answer_type="expression",
                meta={"answer_kind": "text"})  # fmt: skip
    choice = Item(id="c-0", benchmark="c", question="q", answer="A", answer_type="choice",
                  choices=("x", "y"))  # fmt: skip
    assert grade_item("The answer is 3.", number).grader == NUMBER_GRADER
    assert grade_item(r"\boxed{0.5}", expr).grader == EXPRESSION_GRADER
    assert grade_item("The answer is Tom.", text).grader == TEXT_GRADER
    assert grade_item("A", choice).grader == CHOICE_GRADER


# ---------------------------------------------------------------- the corpus
CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"


@pytest.mark.skipif(not CORPUS.exists(), reason="the committed corpus is not there yet")
def test_corpus_labels_are_what_the_graders_say_today(benchmarks_dir: Path) -> None:
    """Every stored label of the real corpus is reproduced by the graders of this checkout.

    A grader change that would alter labels fails here: regrade the corpus
    (scripts/make_corpus.sh) and bump the grader's version.
    """
    from entropy_sentinel.collect import load_benchmark
    from entropy_sentinel.collect.synthetic import SYNTHETIC_DOMAINS
    from entropy_sentinel.traces.corpus import corpus_frame

    frame = corpus_frame(CORPUS)
    items: dict[str, Item] = {}
    available = {p.stem for p in benchmarks_dir.glob("*.jsonl")}  # all in ../shared
    assert {"gsm8k", "svamp", "aqua"} <= available  # committed: tests/fixtures/benchmarks
    for benchmark in set(frame["benchmark"]) - set(SYNTHETIC_DOMAINS):
        if benchmark in available:
            items.update((i.id, i) for i in load_benchmark(benchmark, directory=benchmarks_dir))
    mismatches = []
    checked = 0
    for row in frame.itertuples():
        if row.benchmark not in SYNTHETIC_DOMAINS and row.benchmark not in available:
            continue  # asdiv, mmlu_stem: only with ../shared
        checked += 1
        if row.benchmark in SYNTHETIC_DOMAINS:
            a, op, b = str(row.question).removeprefix("What is ").rstrip("?").split(" ")
            gold = str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])
            item = Item(id=str(row.item_id), benchmark=str(row.benchmark),
                        question=str(row.question), answer=gold, answer_type="number")  # fmt: skip
        else:
            item = items[str(row.item_id)]
        grade = grade_item(str(row.response_text), item)
        extracted = row.extracted if isinstance(row.extracted, str) else None  # NaN: none
        if (grade.correct, grade.grader, grade.extracted) != (row.correct, row.grader, extracted):
            mismatches.append((row.id, grade, row.correct, row.grader, row.extracted))
    assert not mismatches, mismatches[:5]
    assert checked >= 1650  # of 1,950: all with ../shared
