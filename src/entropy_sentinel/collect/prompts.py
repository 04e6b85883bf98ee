"""Prompt templates, one per answer type, named and versioned.

Each trace records the name of the template that produced its prompt
(``meta.prompt_template``), so a change of wording is a new name, never a silent
edit. The default templates ask for the final answer in a form the graders of
`entropy_sentinel.collect.graders` look for first ("The answer is ...",
``\\boxed{...}``, an option letter).

>>> from entropy_sentinel.collect.benchmarks import Item
>>> item = Item(id="t-0", benchmark="t", question="What is 2 + 3?", answer="5",
...             answer_type="number")
>>> messages = template_for(item).render(item)
>>> messages[0]["role"], messages[0]["content"].splitlines()[0]
('user', 'What is 2 + 3?')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.errors import ConfigError

__all__ = ["DEFAULT_TEMPLATES", "TEMPLATES", "PromptTemplate", "template_for"]


@dataclass(frozen=True)
class PromptTemplate:
    """A chat prompt for one answer type.

    Attributes:
        name: unique, versioned name recorded with each trace (``number-v1``).
        answer_type: the answer type it is written for.
        user: format string with ``{question}`` and, for choice items, ``{options}``
            (one ``A) text`` line per option).
        system: optional system message.
    """

    name: str
    answer_type: str
    user: str
    system: str | None = None

    def render(self, item: Item) -> list[dict[str, str]]:
        """Chat messages for ``item`` (OpenAI ``messages`` format)."""
        if item.answer_type != self.answer_type:
            raise ConfigError(
                f"template {self.name!r} is for {self.answer_type} items, "
                f"not item {item.id!r} ({item.answer_type})"
            )
        options = "\n".join(
            f"{letter}) {text}" for letter, text in zip(item.letters, item.choices, strict=True)
        )
        messages = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        messages.append(
            {"role": "user", "content": self.user.format(question=item.question, options=options)}
        )
        return messages


TEMPLATES: dict[str, PromptTemplate] = {
    t.name: t
    for t in (
        PromptTemplate(
            "number-v1",
            "number",
            "{question}\nGive a short solution, then write the final answer as: "
            "The answer is <number>.",
        ),
        PromptTemplate(
            "expression-v1",
            "expression",
            "{question}\nGive a short solution, then write the final answer as: "
            "The answer is \\boxed{{<answer>}}.",
        ),
        PromptTemplate(
            "choice-v1",
            "choice",
            "{question}\n{options}\nGive a short solution, then write the final answer as: "
            "The answer is <letter>.",
        ),
    )
}
"""Every known template by name."""

DEFAULT_TEMPLATES: Mapping[str, str] = {
    "number": "number-v1",
    "expression": "expression-v1",
    "choice": "choice-v1",
}
"""The template used for each answer type unless another is asked for."""


def template_for(item: Item, overrides: Mapping[str, str] | None = None) -> PromptTemplate:
    """The template for ``item``'s answer type (``overrides`` maps answer type -> name)."""
    name = (overrides or {}).get(item.answer_type, DEFAULT_TEMPLATES[item.answer_type])
    template = TEMPLATES.get(name)
    if template is None:
        raise ConfigError(f"unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}")
    return template
