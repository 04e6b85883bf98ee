"""The Python SDK: record responses from application code, without the proxy.

``pip install 'entropy-sentinel[client]'`` (httpx; the openai SDK stays the
application's own dependency). See docs/integrations.md.

* `Sentinel` / `AsyncSentinel`: ``record(response, slice=...)`` queues a response (an
  openai SDK object, a dict, a list of stream chunks) and returns its trace id; a
  background sender batches records to the service's ``POST /v1/traces``, retries,
  and never blocks or raises into the application (what it loses is counted in
  ``stats`` and logged).
* `wrap_openai`: an ``openai.OpenAI`` / ``AsyncOpenAI`` client whose every chat or
  legacy completion is recorded (logprobs asked for and stripped again, so the
  application sees the answers it would have seen).
"""

from entropy_sentinel.client.aio import AsyncSentinel
from entropy_sentinel.client.delivery import SenderStats
from entropy_sentinel.client.sentinel import Sentinel
from entropy_sentinel.client.wrap import wrap_openai

__all__ = ["AsyncSentinel", "SenderStats", "Sentinel", "wrap_openai"]
