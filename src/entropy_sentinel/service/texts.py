"""Prompt and answer text for the labelling queue: redaction before anything is stored.

The service keeps a trace's ``prompt`` and ``answer`` only when ``store_text`` is on
(off by default), and only after every match of the redaction patterns has been
replaced by ``[redacted]`` (`Redactor`). A prompt may be text or a list of OpenAI chat
messages; every string inside it is redacted (message contents and content parts
alike), and it is stored as JSON. `DEFAULT_REDACTIONS` is the list used unless the
settings give their own (``text_redact``; an empty list redacts nothing):

* e-mail addresses;
* API keys and bearer tokens (``sk-…``/``pk-…``/``rk-…`` keys, ``Bearer …``, AWS access
  key ids);
* phone numbers written in international form (``+`` and at least 8 more digits);
* IPv4 addresses.

Long digit runs (payment cards) are not in the default list: arithmetic answers are full
of them. Add ``"\\b(?:\\d[ -]?){13,19}\\b"`` to ``text_redact`` if your traffic may carry
card numbers.

>>> r = Redactor(DEFAULT_REDACTIONS)
>>> r.text("write to ada@example.org or +44 20 7946 0958, key sk-abcdefghijklmnop1234")
'write to [redacted] or [redacted], key [redacted]'
>>> r.prompt_json([{"role": "user", "content": "I am bob@example.com"}])
'[{"role":"user","content":"I am [redacted]"}]'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from entropy_sentinel.errors import ConfigError

__all__ = ["DEFAULT_REDACTIONS", "REDACTED", "Redactor"]

REDACTED = "[redacted]"

DEFAULT_REDACTIONS: tuple[str, ...] = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}",
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\+\d[\d\s().-]{7,}\d",
    r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
)
"""Regular expressions whose matches are replaced before text is stored (module doc)."""


class Redactor:
    """Replaces every match of ``patterns`` (Python regular expressions) by ``[redacted]``.

    Raises:
        ConfigError: a pattern does not compile (naming it).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise ConfigError(
                    f"text_redact pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        self.patterns = tuple(compiled)

    def text(self, value: str) -> str:
        """``value`` with every match replaced."""
        for pattern in self.patterns:
            value = pattern.sub(REDACTED, value)
        return value

    def any(self, value: Any) -> Any:
        """Every string inside ``value`` (nested lists and dicts) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return [self.any(v) for v in value]
        if isinstance(value, dict):
            return {k: self.any(v) for k, v in value.items()}
        return value

    def prompt_json(self, prompt: Any) -> str | None:
        """The redacted prompt (text or chat messages) as compact JSON, None without one."""
        if prompt is None:
            return None
        return json.dumps(self.any(prompt), separators=(",", ":"), ensure_ascii=False)

    def pair(self, prompt: Any, answer: str | None) -> tuple[str | None, str | None] | None:
        """``(prompt JSON, answer)`` redacted, or None when the trace carries neither."""
        if prompt is None and answer is None:
            return None
        return self.prompt_json(prompt), None if answer is None else self.text(answer)
