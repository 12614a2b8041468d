"""Structured logs: one JSON object a line, on the standard ``logging`` machinery.

Anything passed in ``extra={...}`` becomes a field of the line, so a caller writes
``log.info("request", extra={"status": 200, "duration_ms": 3.1})`` and a log shipper
reads ``{"ts": ..., "level": "INFO", "logger": ..., "message": "request", "status": 200,
...}``. ``configure_logging`` installs the formatter on the ``kopilka`` logger once; it
is safe to call again (the API factory does, for every app it builds).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; whatever else a record carries came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)
_HANDLER_NAME = "kopilka-json"


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; never raises on odd extra values."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str = "INFO", *, as_json: bool = True) -> logging.Logger:
    """Give the ``kopilka`` logger one stderr handler (JSON or plain) at ``level``."""
    logger = logging.getLogger("kopilka")
    logger.setLevel(level.upper())
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)
        # Our lines are complete on their own; the root logger would print them twice.
        logger.propagate = False
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    return logger
