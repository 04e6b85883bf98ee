"""Deterministic graders: is a model's response correct against the gold answer?

One grader per answer type, each a function ``(response, gold, ...) -> Grade``, and
`grade_item` to pick the right one for a benchmark `Item`:

* ``number-v2`` (`grade_number`): the final numeric answer is extracted from the
  response, then compared with the gold number (integers exactly, decimals within a
  relative tolerance). Extraction, in order: the last ``\\boxed{...}``; else the last
  "answer is ... / answer: ..." statement (the number after its last ``=`` or "equals";
  else its leading number; else the number after its last " is "; else its first
  number); else the last number of the response. Thousands separators, ``$``, units,
  ``%``, LaTeX fractions, ``a/b`` fractions and negative numbers (also with U+2212) are
  understood.
* ``math-verify-v1`` (`grade_expression`): Hugging Face ``math-verify`` equivalence
  between the gold LaTeX answer and the response's final answer.
* ``text-v1`` (`grade_text`): normalised string equality of the final answer, for
  non-mathematical answers (names, yes/no).
* ``choice-v1`` (`grade_choice`): the chosen option letter ("The answer is (B)", a
  line starting with "B)", ``\\boxed{B}``), else the one option text quoted.

A response with no extractable answer is graded wrong (``correct=False``) and says so
in ``Grade.detail``. ``Grade.grader`` names the grader; it is stored with the label.

>>> grade_number("7 + 5 = 12, so the answer is 12 apples.", "12").correct
True
>>> grade_number("The answer is 1,234.", "1234").extracted
'1234'
>>> grade_choice("The answer is (C).", "C", ["red", "green", "blue"]).correct
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.errors import ConfigError

__all__ = [
    "CHOICE_GRADER",
    "EXPRESSION_GRADER",
    "NUMBER_GRADER",
    "TEXT_GRADER",
    "Grade",
    "extract_final_number",
    "grade_choice",
    "grade_expression",
    "grade_item",
    "grade_number",
    "grade_text",
    "last_boxed",
    "parse_number",
]

NUMBER_GRADER = "number-v2"
EXPRESSION_GRADER = "math-verify-v1"
TEXT_GRADER = "text-v1"
CHOICE_GRADER = "choice-v1"


@dataclass(frozen=True)
class Grade:
    """The verdict on one response.

    Attributes:
        correct: True or False; None only when no verdict could be reached (an LLM judge
            that never answered, a gold answer that cannot be parsed): such a response
            stays unlabelled.
        grader: name of the grader that made the label (``number-v2``, ``judge:<model>``).
        extracted: the final answer taken from the response, or None when none was found.
        detail: why, in a few words (``statement: 12 != 13``, ``no number in the response``).
    """

    correct: bool | None
    grader: str
    extracted: str | None = None
    detail: str = ""


# ------------------------------------------------------------------ extraction
_MARKER_RE = re.compile(r"\banswer\b\s*(?:is|:|=|would\s+be|will\s+be)?\s*:?\s*", re.IGNORECASE)
_IS_RE = re.compile(r"\s(?:is|was)\s", re.IGNORECASE)
_EQUALS_RE = re.compile(r"\b(?:is\s+)?equal(?:s|\s+to)\b", re.IGNORECASE)
_LETTER_RE = re.compile(r"[A-Za-z]")
_THOUSANDS_RE = re.compile(r"(?<![\d.])(\d{1,3})((?:,\d{3})+)(?![\d])")
_NUMBER_RE = re.compile(
    r"(?<![\w)\]}])(?P<sign>-)?"  # a minus is a sign only when no operand precedes it
    r"(?P<num>\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<den>\d+(?:\.\d+)?))?"
    r"(?:[eE](?P<exp>[-+]?\d+))?"
    r"(?![\d])"
)
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SENTENCE_END_RE = re.compile(r"\n|\.(?:\s|$)|;\s|,\s+(?:because|since|so|which|as)\b")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced, or None.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and then \\boxed{7}")
    '7'
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None  # unbalanced: the response was cut inside the box


def _normalise_numbers(text: str) -> str:
    """Thousands separators out, LaTeX fractions to ``a/b``, U+2212 to ``-``, ``\\$`` out."""
    text = text.replace("\u2212", "-").replace("\\$", "").replace("\\!", "").replace("\\,", "")
    text = _FRAC_RE.sub(lambda m: f"{m.group(1).strip()}/{m.group(2).strip()}", text)
    return _THOUSANDS_RE.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), text)


def _match_value(m: re.Match[str]) -> float:
    value = float(m.group("num"))
    if m.group("den") is not None:
        den = float(m.group("den"))
        value = value / den if den != 0 else math.nan
    if m.group("exp") is not None:
        value *= 10.0 ** int(m.group("exp"))
    return -value if m.group("sign") else value


def _match_text(m: re.Match[str]) -> str:
    return m.group(0).replace(" ", "")


def parse_number(text: str) -> float | None:
    """The single number written in ``text`` (``"$1,234.50"``, ``"-3/4"``, ``"25%"``), or None.

    >>> parse_number("$1,234.50"), parse_number("\\\\frac{3}{4}"), parse_number("-7 apples")
    (1234.5, 0.75, -7.0)
    """
    matches = list(_NUMBER_RE.finditer(_normalise_numbers(text)))
    return _match_value(matches[0]) if len(matches) == 1 else None


def _answer_in_statement(statement: str) -> re.Match[str] | None:
    """The answer of an "answer is ..." statement, up to its end (see `_SENTENCE_END_RE`).

    The first number after its last ``=`` or "equals" ("2 + 7 = 9", "3*4 which equals
    12"); else its first number when nothing but symbols precede it ("15 (7 + 8)",
    "39 (which is 12 + 7)"); else the first number after its last " is " ("to 57 + 10
    is 67"); else its first number ("indeed 6").
    """
    end = _SENTENCE_END_RE.search(statement)
    statement = _EQUALS_RE.sub("=", statement[: end.start()] if end else statement)
    if "=" in statement:
        m = next(_NUMBER_RE.finditer(statement.rsplit("=", 1)[1]), None)
        if m is not None:
            return m
    first = next(_NUMBER_RE.finditer(statement), None)
    if first is None or not _LETTER_RE.search(statement[: first.start()]):
        return first
    is_words = list(_IS_RE.finditer(statement))
    if is_words:
        m = next(_NUMBER_RE.finditer(statement[is_words[-1].end() :]), None)
        if m is not None:
            return m
    return first


def extract_final_number(response: str) -> tuple[float, str, str] | None:
    """The final numeric answer of a response: ``(value, as written, where found)`` or None.

    ``where`` is ``boxed``, ``statement`` or ``last number`` (see the module doc).

    >>> extract_final_number("2 + 7 = 9. The answer is 2 + 7 = 9 apples.")[:2]
    (9.0, '9')
    >>> extract_final_number("It is 15 (7 + 8).")[:2]
    (8.0, '8')
    >>> extract_final_number("The answer is 15 (7 + 8).")[:2]
    (15.0, '15')
    """
    boxed = last_boxed(response)
    if boxed is not None:
        text = _normalise_numbers(boxed)
        m = _answer_in_statement(text)
        if m is not None:
            return _match_value(m), _match_text(m), "boxed"
    text = _normalise_numbers(response)
    markers = list(_MARKER_RE.finditer(text))
    for marker in reversed(markers):
        m = _answer_in_statement(text[marker.end() :])
        if m is not None:
            return _match_value(m), _match_text(m), "statement"
    numbers = list(_NUMBER_RE.finditer(text))
    if numbers:
        return _match_value(numbers[-1]), _match_text(numbers[-1]), "last number"
    return None


# ----------------------------------------------------------------------- graders
def grade_number(
    response: str, gold: str | float, *, rel_tol: float = 1e-4, abs_tol: float = 1e-8
) -> Grade:
    """Correct when ``|answer - gold| <= max(rel_tol * |gold|, abs_tol)``; exact for integers.

    An integer gold answer (``"10000"``) needs the very integer (within ``abs_tol``):
    a relative tolerance would accept 10001. Decimal gold answers (``"3.33333"``, a
    rounded 10/3) get the relative tolerance.

    >>> grade_number("So she has -3 dollars left.", "-3").correct
    True
    >>> grade_number("The answer is 3/4.", "0.75").correct
    True
    """
    gold_value = float(gold)
    if not math.isfinite(gold_value):
        raise ConfigError(f"gold answer {gold!r} is not a finite number")
    found = extract_final_number(response)
    if found is None:
        return Grade(False, NUMBER_GRADER, None, "no number in the response")
    value, written, where = found
    tol = abs_tol if gold_value.is_integer() else max(rel_tol * abs(gold_value), abs_tol)
    ok = math.isfinite(value) and abs(value - gold_value) <= tol
    relation = "==" if ok else "!="
    return Grade(ok, NUMBER_GRADER, written, f"{where}: {written} {relation} {gold}")


def grade_expression(response: str, gold: str, *, timeout_seconds: int = 5) -> Grade:
    """``math-verify`` equivalence of the response's final answer and the gold LaTeX answer.

    Needs the ``collect`` extra (``math-verify``). Runs in the main thread (math-verify
    times out with ``signal.alarm``).

    >>> grade_expression(r"so $x = \\boxed{\\frac{1}{2}}$", "0.5").correct
    True
    """
    try:
        from math_verify import parse, verify
    except ImportError:
        raise ConfigError(
            "expression grading needs math-verify: pip install 'entropy-sentinel[collect]'"
        ) from None
    gold_parsed = parse(f"${gold}$", parsing_timeout=timeout_seconds)
    if not gold_parsed:
        gold_parsed = parse(gold, parsing_timeout=timeout_seconds)
    if not gold_parsed:
        raise ConfigError(
            f"math-verify cannot parse the gold answer {gold!r}; grade it with grade_text"
        )
    pred = parse(response, parsing_timeout=timeout_seconds)
    if not pred:
        return Grade(False, EXPRESSION_GRADER, None, "no mathematical answer in the response")
    extracted = str(pred[-1])
    ok = bool(verify(gold_parsed, pred, timeout_seconds=timeout_seconds))
    return Grade(ok, EXPRESSION_GRADER, extracted, "equivalent" if ok else "not equivalent")


def _norm_text(text: str) -> str:
    text = re.sub(r"\\text\{([^{}]*)\}", r"\1", text)
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _final_text(response: str) -> str | None:
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    markers = list(_MARKER_RE.finditer(response))
    if markers:
        rest = response[markers[-1].end() :]
        end = _SENTENCE_END_RE.search(rest)
        return rest[: end.start()] if end else rest
    return None


def grade_text(response: str, gold: str) -> Grade:
    """Normalised (case, punctuation) equality of the final answer with ``gold``.

    The final answer is the last ``\\boxed{}`` or the last "answer is ..." statement.

    >>> grade_text("The answer is Tom.", "tom").correct
    True
    """
    final = _final_text(response)
    if final is None or not _norm_text(final):
        return Grade(False, TEXT_GRADER, None, "no final answer statement in the response")
    ok = _norm_text(final) == _norm_text(gold) or _norm_text(final).startswith(
        _norm_text(gold) + " "
    )
    return Grade(ok, TEXT_GRADER, final.strip(), "equal" if ok else "different")


def _letter_patterns(letters: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    marked = re.compile(
        r"(?i:answer|correct\s+option|correct\s+choice)\s*(?i:is|:|=|would\s+be)?\s*:?\s*"
        rf"(?i:option\s+|choice\s+)?[(\[*]?\s*([{letters}])\s*[)\].:*]?(?![A-Za-z0-9])"
    )
    line = re.compile(rf"^\s*[(\[*]*([{letters}])(?:\s*[)\].:]|\s*$)", re.MULTILINE)
    return marked, line


def grade_choice(response: str, gold: str, choices: Sequence[str]) -> Grade:
    """Correct when the chosen option is ``gold`` (a letter, A = first choice).

    The choice is, in order: the letter of the last "answer is (X)" / "option X"
    statement or ``\\boxed{X}``; else the one letter that starts lines (``X)``,
    ``(X)``, ``X.``, a line of just ``X``); else the one option whose text is quoted.

    >>> grade_choice("E) $78.20", "E", ["a", "b", "c", "d", "$78.20"]).correct
    True
    >>> grade_choice("I pick the green one.", "B", ["red", "green", "blue"]).extracted
    'B'
    """
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
    if gold not in letters:
        raise ConfigError(f"gold answer {gold!r} is not one of the option letters {letters}")
    chosen, how = None, ""
    boxed = last_boxed(response)
    if boxed is not None and boxed.strip().strip("()").upper() in letters:
        chosen, how = boxed.strip().strip("()").upper(), "boxed letter"
    marked, line = _letter_patterns(letters)
    if chosen is None:
        # letters are matched case-sensitively: "the answer is a ..." is an article
        found = [m.group(1) for m in marked.finditer(response)]
        if found:
            chosen, how = found[-1], "answer statement"
    if chosen is None:
        starts = {m.group(1) for m in line.finditer(response)}
        if len(starts) == 1:
            chosen, how = starts.pop(), "option line"
    if chosen is None:
        text = _norm_text(response)
        quoted = [
            letter
            for letter, choice in zip(letters, choices, strict=True)
            if _norm_text(choice)
            and re.search(rf"(?<!\S){re.escape(_norm_text(choice))}(?!\S)", text)
        ]
        if len(quoted) == 1:
            chosen, how = quoted[0], "option text"
        elif quoted:
            return Grade(False, CHOICE_GRADER, None, f"several options quoted: {quoted}")
    if chosen is None:
        return Grade(False, CHOICE_GRADER, None, "no option chosen")
    ok = chosen == gold
    return Grade(ok, CHOICE_GRADER, chosen, f"{how}: {chosen} {'==' if ok else '!='} {gold}")


def grade_item(response: str, item: Item) -> Grade:
    """Grade ``response`` against ``item`` with the grader for its answer type.

    Expression items whose answer is plain text (ASDiv's names and yes/no,
    ``meta.answer_kind == "text"``) are graded by `grade_text`.
    """
    if item.answer_type == "number":
        return grade_number(response, item.answer)
    if item.answer_type == "choice":
        return grade_choice(response, item.answer, item.choices)
    if item.meta.get("answer_kind") == "text":
        return grade_text(response, item.answer)
    return grade_expression(response, item.answer)
