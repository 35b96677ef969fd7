"""This app's logs: one line per event, plain text or JSON (CHAT_LOG_FORMAT), each carrying the id of the
page run or HTTP request it belongs to.

The request id lives in a context variable: set at the start of a page run (app.py) or an HTTP request
(api/observability.py), and copied into the threads a turn starts (services/streaming.py), so every line a
chat turn logs names the same id. Message text is never logged unless CHAT_LOG_CONTENT=true (then only in
the turn's own "reply finished" line); secrets never are (Settings masks them, `redact` removes them from
error texts).

The JSON formatter is the ~20 lines below rather than python-json-logger: no JSON logging library is a
dependency yet, and this one needs nothing beyond the standard `json` module.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
from datetime import UTC, datetime

# The app's top-level loggers; Streamlit's own ("streamlit") keeps its own handler and format.
APP_LOGGERS = ("services", "api", "components", "pages", "app", "__main__")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# An id a client sends (X-Request-ID) is kept only if it is short and plain, so it cannot forge log lines.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_request_id(client_id: str | None = None) -> str:
    """Start a request: its id (the client's if acceptable, else a fresh one) for every log line after."""
    rid = client_id if client_id is not None and _CLIENT_ID.fullmatch(client_id) else secrets.token_hex(8)
    _request_id.set(rid)
    return rid


def request_id() -> str:
    return _request_id.get()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message, and the traceback if any (newlines
    inside strings are escaped by json, so an event never spans lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", _request_id.get()),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def event(logger: logging.Logger, name: str, /, **fields: object) -> None:
    """Log one event at INFO: in text, `name key=value ...` (strings quoted, so a newline in one cannot start a
    new line); in JSON, the same fields as keys of the object."""
    pairs = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items())
    logger.info("%s %s", name, pairs, extra={"fields": {"event": name, **fields}})


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str = "text", names: tuple[str, ...] = APP_LOGGERS) -> None:
    """Send the app's INFO logs to stderr beside Streamlit's, once per process and logger; calling it again
    only switches the format. Idempotent: app.py runs it on import."""
    for name in names:
        logger = logging.getLogger(name)
        handler = next((h for h in logger.handlers if getattr(h, "_chat_app", False)), None)
        if handler is None:
            handler = logging.StreamHandler()
            handler._chat_app = True  # type: ignore[attr-defined]
            handler.addFilter(RequestIdFilter())
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
        handler.setFormatter(formatter(log_format))
