"""POST JSON to an OpenAI-compatible server, retrying transient failures with backoff.

Transient: connection errors, timeouts, HTTP 408, 409, 425, 429 and 5xx. The wait
before retry ``r`` (1-based) is ``min(max_backoff, backoff * 2**(r-1))`` scaled by a
random factor in ``[0.5, 1.5)`` (jitter), or the server's ``Retry-After`` when it
sends one. Any other HTTP status fails at once with the server's message.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from entropy_sentinel.errors import ConfigError, UpstreamError
from entropy_sentinel.redact import redact_text, redact_url

__all__ = ["RETRY_STATUSES", "RetryPolicy", "post_json"]

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry (seconds)."""

    max_retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries}: must be >= 0")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError("backoff and max_backoff must be >= 0 seconds")

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        if retry_after is not None:
            try:
                return min(self.max_backoff, max(0.0, float(retry_after)))
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        base = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        return base * (0.5 + random.random())


async def post_json(
    client: Any,
    url: str,
    payload: Mapping[str, Any],
    policy: RetryPolicy,
    *,
    headers: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], int]:
    """POST ``payload`` to ``url`` with ``client`` (an ``httpx.AsyncClient``).

    Returns the decoded JSON body and the number of attempts it took. Raises
    `UpstreamError` when the retries are used up or the server refuses the request.
    """
    import httpx

    last = ""
    for attempt in range(1, policy.max_retries + 2):
        retry_after = None
        try:
            response = await client.post(url, json=payload, headers=headers)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            last = redact_text(f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code == 200:
                try:
                    body = response.json()
                except ValueError:
                    last = f"invalid JSON in the answer: {response.text[:200]!r}"
                else:
                    if isinstance(body, dict):
                        return body, attempt
                    last = f"expected a JSON object, got {type(body).__name__}"
            elif response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                retry_after = response.headers.get("retry-after")
            else:
                raise UpstreamError(
                    f"{redact_url(url)} answered HTTP {response.status_code}: {response.text[:500]}"
                )
        if attempt <= policy.max_retries:
            await asyncio.sleep(policy.delay(attempt, retry_after))
    raise UpstreamError(
        f"{redact_url(url)} failed after {policy.max_retries + 1} attempts; last: {last}"
    )
