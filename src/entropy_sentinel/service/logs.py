"""Structured logs: one JSON object per line on stderr (or plain text for humans).

Every record has ``ts`` (RFC 3339, UTC), ``level``, ``logger`` and ``msg``; fields
passed with ``extra={...}`` are added as keys (request id, route, status, counts).
Secrets never reach a log call: API keys are checked by hash and only their
configured names are logged. As a second line of defence both formats pass every
message, field and traceback through `entropy_sentinel.redact.redact_text`, so a URL
quoted by a library's exception loses its user info and secret query values too.

>>> import io
>>> stream = io.StringIO()
>>> logger = configure_logging("json", "info", stream=stream, name="demo")
>>> logger.info("stored", extra={"traces": 3})
>>> json.loads(stream.getvalue())["traces"]
3
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from entropy_sentinel.redact import redact_json, redact_text

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of msg
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = redact_json(value)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message`` for humans, URLs redacted like `JsonFormatter`'s."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure_logging(
    fmt: str, level: str, *, stream: IO[str] | None = None, name: str = ""
) -> logging.Logger:
    """Send ``name``'s logs (default: the root logger's) to ``stream`` (stderr) in ``fmt``.

    Also routes uvicorn's own loggers through the same handler; its access log is off
    (the service logs each request itself, with more fields).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    if not name:
        for noisy in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            lg = logging.getLogger(noisy)
            lg.handlers.clear()
            lg.propagate = True
        logging.getLogger("uvicorn.access").disabled = True
        logging.getLogger("alembic").setLevel(logging.WARNING)  # per-plugin chatter at start
    return logger
