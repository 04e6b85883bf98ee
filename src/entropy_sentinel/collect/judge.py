"""An LLM judge over any OpenAI-compatible endpoint: is this response correct?

The paper graded with an external judge model. `LLMJudge` sends the question, the
reference answer and the response to ``POST {base_url}/chat/completions`` and reads
a one-word verdict (``CORRECT`` / ``INCORRECT``). HTTP failures are retried with
backoff (`entropy_sentinel.collect.retry`); a reply without a verdict is asked
again, up to ``max_verdict_attempts`` times, then the response stays unlabelled
(``Grade.correct is None``), which the collector counts and reports.

>>> judge = LLMJudge("http://127.0.0.1:8000/v1", "judge-model")
>>> judge.grader
'judge:judge-model'
>>> parse_verdict("Verdict: INCORRECT."), parse_verdict("correct"), parse_verdict("maybe")
(False, True, None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from entropy_sentinel.collect.graders import Grade
from entropy_sentinel.collect.retry import RetryPolicy, post_json
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.redact import redact_url

__all__ = ["JUDGE_PROMPT", "LLMJudge", "parse_verdict"]

JUDGE_PROMPT = (
    "You are grading an answer to a question. Compare the final answer of the response "
    "with the reference answer. Ignore the reasoning; judge only whether the final answer "
    "is equivalent to the reference.\n\n"
    "Question:\n{question}\n\nReference answer:\n{reference}\n\nResponse:\n{response}\n\n"
    "Reply with exactly one word: CORRECT or INCORRECT."
)

_VERDICT_RE = re.compile(r"\b(INCORRECT|CORRECT|WRONG|RIGHT)\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """The first verdict word in ``text`` (CORRECT/RIGHT -> True, INCORRECT/WRONG -> False)."""
    m = _VERDICT_RE.search(text)
    if m is None:
        return None
    return m.group(1).upper() in ("CORRECT", "RIGHT")


@dataclass(frozen=True)
class LLMJudge:
    """A judge model behind an OpenAI-compatible ``base_url`` (``.../v1``).

    Attributes:
        base_url: e.g. ``https://api.openai.com/v1`` or a local server.
        model: the judge model's name.
        api_key: sent as ``Authorization: Bearer``; hidden from ``repr``.
        temperature: sampling temperature of the judge (0 = greedy).
        max_tokens: tokens the judge may write.
        retry: HTTP retry policy.
        max_verdict_attempts: how often to ask again when the reply has no verdict.
        prompt: format string with ``{question}``, ``{reference}``, ``{response}``.
    """

    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int = 8
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_verdict_attempts: int = 3
    prompt: str = JUDGE_PROMPT

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"judge base_url {redact_url(self.base_url)!r} must start with http(s)://"
            )
        if self.max_verdict_attempts < 1:
            raise ConfigError(f"max_verdict_attempts={self.max_verdict_attempts}: must be >= 1")

    @property
    def grader(self) -> str:
        """The grader name recorded with each label: ``judge:<model>``."""
        return f"judge:{self.model}"

    async def grade(self, client: Any, question: str, response: str, reference: str) -> Grade:
        """Ask the judge (``client`` is an ``httpx.AsyncClient``); raises `UpstreamError`."""
        payload = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": self.prompt.format(
                        question=question, reference=reference, response=response
                    ),
                }
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        url = self.base_url.rstrip("/") + "/chat/completions"
        replies = []
        for _ in range(self.max_verdict_attempts):
            body, _attempts = await post_json(client, url, payload, self.retry, headers=headers)
            try:
                reply = str(body["choices"][0]["message"]["content"] or "")
            except (KeyError, IndexError, TypeError):
                reply = ""
            verdict = parse_verdict(reply)
            if verdict is not None:
                return Grade(verdict, self.grader, None, f"judge said {reply.strip()[:80]!r}")
            replies.append(reply.strip()[:80])
        return Grade(None, self.grader, None, f"no verdict in the judge's replies: {replies}")
