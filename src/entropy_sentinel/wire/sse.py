"""Server-Sent Events framing that keeps every byte: cut a stream into whole events.

An event ends at an empty line; lines end in CRLF, LF or CR (the SSE specification),
so ``data: {...}\\n\\n`` (OpenAI, vLLM) and ``data: {...}\\r\\n\\r\\n`` (sse-starlette,
as llama-cpp-python's server sends it) are both one event. `SSEFramer` returns each
event's exact bytes, terminator included, so a relay can pass the ones it does not
change through untouched; `event_data` reads an event's ``data`` field.

>>> framer = SSEFramer()
>>> framer.feed(b'data: {"a": 1}\\n\\ndata: [DO')
[b'data: {"a": 1}\\n\\n']
>>> framer.feed(b"NE]\\r\\n\\r\\n: comment\\n")
[b'data: [DONE]\\r\\n\\r\\n']
>>> framer.tail()
b': comment\\n'
>>> event_data(b'event: x\\ndata: one\\ndata:two\\n\\n')
b'one\\ntwo'
>>> event_data(b": keep-alive\\n\\n") is None
True
"""

from __future__ import annotations

import re

__all__ = ["SSEFramer", "event_data"]

# One line with its ending. A CR at the end of the buffer may be the first half of a
# CRLF, so a line ending in a lone CR needs a following byte (that is not LF) to count.
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r(?=[^\n]))")


class SSEFramer:
    """Incremental splitter of an SSE byte stream into whole events (see the module doc)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # where the next unread line starts, within the current event

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the events it completed, in order, as their exact bytes."""
        buf = self._buf
        buf += data
        events: list[bytes] = []
        start = 0
        pos = self._pos
        while (m := _LINE.match(buf, pos)) is not None:
            end = m.end()
            if buf[m.start()] in b"\r\n":  # an empty line: the event is complete
                events.append(bytes(buf[start:end]))
                start = end
            pos = end
        if start:
            del buf[:start]
        self._pos = pos - start
        return events

    def tail(self) -> bytes:
        """Bytes of an unfinished event (the stream ended without its empty line)."""
        out = bytes(self._buf)
        self._buf.clear()
        self._pos = 0
        return out


def event_data(event: bytes) -> bytes | None:
    """The ``data`` field of one event (lines joined with LF), or None when it has none."""
    parts: list[bytes] = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value[:1] == b" " else value)
    return b"\n".join(parts) if parts else None
