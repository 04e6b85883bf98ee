"""Typed views of every accepted input shape, decoded by msgspec.

The structs list only the fields we read; msgspec skips everything else (the
``bytes`` arrays of OpenAI responses, message texts, usage blocks) without
building Python objects for it, which is most of the speed-up over stdlib
``json`` plus dict walking.

One struct serves several shapes where their fields do not clash:

* `Step` is a generated token in OpenAI chat ``logprobs.content``, vLLM,
  llama-cpp-python chat, llama.cpp ``completion_probabilities`` (``logprob`` /
  ``top_logprobs``, or ``prob`` / ``top_probs`` with ``post_sampling_probs``, or
  the pre-2025 ``content`` / ``probs`` format), and also a streamed chat chunk
  (``choices``), so a JSON array of either decodes as ``list[Step]``.
* `Node` is a choice-level logprobs object (chat ``{"content": [...]}`` or legacy
  ``{"tokens", "token_logprobs", "top_logprobs"}``), a whole response
  (``{"choices": [...]}``), or a llama.cpp ``/completion`` response.
* `Record` is a canonical trace record (docs/formats.md), which may also be
  a bare response.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Alt", "Choice", "ChoiceLogprobs", "Node", "Record", "Step", "TopLevel"]


class Alt(msgspec.Struct, gc=False):
    """One returned alternative at a step."""

    token: str | None = None
    logprob: float | None = None
    id: int | None = None
    prob: float | None = None  # llama.cpp post_sampling_probs / pre-2025 format
    tok_str: str | None = None  # llama.cpp pre-2025 format


class ChoiceLogprobs(msgspec.Struct, gc=False):
    """``choices[i].logprobs``: chat (``content``) or legacy completions shape."""

    content: list[Step] | None = None
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class Choice(msgspec.Struct, gc=False):
    """One choice of a response or of a streamed chunk."""

    index: int = 0
    logprobs: ChoiceLogprobs | None = None


class Step(msgspec.Struct, gc=False):
    """A generated token with its alternatives, or a streamed chunk (see module doc)."""

    token: str | None = None
    logprob: float | None = None
    top_logprobs: list[Alt] | None = None
    id: int | str | None = None  # llama.cpp token id (int) or chunk id (str)
    prob: float | None = None
    top_probs: list[Alt] | None = None
    content: str | None = None  # llama.cpp pre-2025: the sampled token's text
    probs: list[Alt] | None = None
    object: str | None = None
    choices: list[Choice] | None = None


class Node(msgspec.Struct, gc=False):
    """A logprobs object or a whole response (see module doc)."""

    id: str | int | None = None
    object: str | None = None
    model: str | None = None
    choices: list[Choice] | None = None
    completion_probabilities: list[Step] | None = None
    content: list[Step] | str | None = None
    tokens: list[str | int] | None = None  # llama.cpp /completion may list token ids here
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class Record(Node, gc=False):
    """A canonical trace record, or a bare response object."""

    slice: dict[str, Any] | None = None
    correct: bool | int | None = None
    meta: dict[str, Any] | None = None
    logprobs: Node | list[Step] | None = None
    token_entropy: list[float] | None = None
    k: int | None = None
    prompt: str | list[dict[str, Any]] | None = None
    answer: str | None = None
    timestamp: str | float | None = None


TopLevel = Record | list[Step]
"""What one JSONL line (or one input object) may be: a record, or a list of stream chunks."""
