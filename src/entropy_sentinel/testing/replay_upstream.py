"""`ReplayUpstream`: an OpenAI-compatible server that answers with recorded responses.

For measuring the proxy's own cost (an upstream that answers at once) and for testing
what the real model server cannot do on demand (errors, slow answers, a stream that
breaks off). It serves ``POST /v1/chat/completions`` (plain and ``stream``) and
``POST /v1/completions`` from real recorded answers (by default the SmolLM2 fixtures
of this repository's ``tests/fixtures/smollm2``), in turn, each with a fresh ``id``.
Like OpenAI-compatible servers, it sends ``"logprobs": null`` when the request did not
ask for logprobs. Streams are sent as sse-starlette sends them (llama-cpp-python's
server): ``data: {...}\\r\\n\\r\\n`` per chunk, then ``data: [DONE]``.

Request headers steer it (the proxy forwards them like any other header):

* ``X-Replay-Status: 429``: answer with that status and an OpenAI-style error body;
* ``X-Replay-Delay: 0.5``: wait that many seconds before answering;
* ``X-Replay-Break-After: 3``: send that many stream events, then abort the connection;
* ``X-Replay-Event-Delay: 0.1``: wait that many seconds between stream events;
* ``X-Replay-Id: ID``: answer with that id instead of a fresh one (a cache, a replay);
* ``X-Replay-NaN: 1``: write the answer's first logprob as ``NaN`` (not JSON; vLLM has
  sent it);
* ``X-Replay-Drip: 0.1``: send a non-streamed answer in 1 KB pieces, that many seconds
  apart;
* ``X-Replay-Refuse-Logprobs: 1``: answer a request that asks for logprobs with a 400, as
  OpenAI does for models that cannot give them.

``requests`` keeps the last 100 requests (headers and body) it received.

Run it with `entropy_sentinel.testing.service.ThreadedServer`, or as a process:
``python -m entropy_sentinel.testing.replay_upstream --port 8123 FIXTURES_DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["ReplayUpstream", "StreamRecord", "load_recorded"]

_ID = b"__REPLAY_ID__"


def load_recorded(directory: str | Path) -> dict[str, list[Any]]:
    """``chat.json``, ``chat_stream.json`` and ``completions.json`` of a fixtures folder."""
    folder = Path(directory)
    return {
        name: json.loads((folder / f"{name}.json").read_text())
        for name in ("chat", "chat_stream", "completions")
    }


def _template(obj: dict[str, Any], logprobs: bool) -> bytes:
    """Compact JSON of a recorded answer with a placeholder id (logprobs null if not asked)."""
    out = dict(obj, id=_ID.decode())
    if not logprobs:
        out["choices"] = [dict(c, logprobs=None) for c in obj.get("choices", [])]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


class ReplayUpstream:
    """The ASGI app (see the module docstring).

    Args:
        chat: recorded chat completion responses.
        chat_stream: recorded streams, each a list of ``chat.completion.chunk`` objects.
        completions: recorded legacy completion responses.
    """

    def __init__(
        self,
        chat: Sequence[dict[str, Any]],
        chat_stream: Sequence[Sequence[dict[str, Any]]],
        completions: Sequence[dict[str, Any]],
    ) -> None:
        self._answers = {
            (route, lp): [_template(r, lp) for r in recorded]
            for route, recorded in (("chat", chat), ("completions", completions))
            for lp in (False, True)
        }
        self._streams = {
            lp: [[_template(c, lp) for c in chunks] for chunks in chat_stream]
            for lp in (False, True)
        }
        self._turn = 0
        self.requests: collections.deque[tuple[dict[str, str], bytes]] = collections.deque(
            maxlen=100
        )
        self.streams: collections.deque[StreamRecord] = collections.deque(maxlen=100)
        """What became of each stream served, newest last."""

    @classmethod
    def from_directory(cls, directory: str | Path) -> ReplayUpstream:
        return cls(**load_recorded(directory))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> Response:
        path = request.url.path
        if request.method != "POST" or path not in ("/v1/chat/completions", "/v1/completions"):
            return _error(404, f"no route {request.method} {path}")
        body = await request.body()
        self.requests.append((dict(request.headers), body))
        h = request.headers
        if "x-replay-delay" in h:
            await asyncio.sleep(float(h["x-replay-delay"]))
        if "x-replay-status" in h:
            status = int(h["x-replay-status"])
            return _error(status, f"replayed error {status}")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        route = "chat" if path.endswith("/chat/completions") else "completions"
        lp = payload.get("logprobs")
        asked = lp is True if route == "chat" else lp is not None
        if asked and "x-replay-refuse-logprobs" in h:
            return _error(400, "logprobs is not supported with this model")
        turn = self._turn
        self._turn += 1
        rid = h.get("x-replay-id", f"{'chatcmpl' if route == 'chat' else 'cmpl'}-{uuid.uuid4()}")
        nan = "x-replay-nan" in h
        if payload.get("stream") is True and route == "chat":
            streams = self._streams[asked]
            chunks = [_replaced(c, rid, nan) for c in streams[turn % len(streams)]]
            cut = int(h["x-replay-break-after"]) if "x-replay-break-after" in h else None
            pause = float(h.get("x-replay-event-delay", 0.0))
            record = StreamRecord(total=len(chunks))
            self.streams.append(record)
            events = _events(chunks, cut, pause, record)
            return StreamingResponse(events, media_type="text/event-stream")
        answers = self._answers[(route, asked)]
        body = _replaced(answers[turn % len(answers)], rid, nan)
        if "x-replay-drip" in h:
            drip = _drip(body, float(h["x-replay-drip"]))
            return StreamingResponse(drip, media_type="application/json")
        return Response(body, media_type="application/json")


@dataclass
class StreamRecord:
    """One stream the replay upstream served.

    Attributes:
        total: chunks it had to send (before ``[DONE]``).
        sent: chunks sent so far.
        outcome: ``open`` while it runs, ``done`` when every chunk and ``[DONE]`` went
            out, ``broken`` when cut on request (``X-Replay-Break-After``), ``closed``
            when the reader hung up first.
    """

    total: int
    sent: int = 0
    outcome: str = "open"


def _replaced(answer: bytes, rid: str, nan: bool) -> bytes:
    out = answer.replace(_ID, rid.encode())
    if nan:
        out = re.sub(rb'("logprob"\s*:\s*)-?[0-9.eE+-]+', rb"\1NaN", out, count=1)
    return out


async def _drip(body: bytes, pause: float) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1024):
        yield body[start : start + 1024]
        await asyncio.sleep(pause)


async def _events(
    chunks: list[bytes], cut: int | None, pause: float, record: StreamRecord
) -> AsyncIterator[bytes]:
    try:
        for i, chunk in enumerate(chunks):
            if cut is not None and i >= cut:
                record.outcome = "broken"
                raise ConnectionAbortedError("replay: stream broken off on request")
            yield b"data: " + chunk + b"\r\n\r\n"
            record.sent += 1
            await asyncio.sleep(pause)
        yield b"data: [DONE]\r\n\r\n"
        record.outcome = "done"
    finally:
        if record.outcome == "open":  # the reader went away: the server closed the stream
            record.outcome = "closed"


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "replay_error", "param": None, "code": None}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m entropy_sentinel.testing.replay_upstream [--port P] FIXTURES_DIR``."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args(argv)
    app = ReplayUpstream.from_directory(args.fixtures)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
