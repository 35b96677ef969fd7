"""Optional error tracking with Sentry (sentry-sdk), on when SENTRY_DSN is set.

What leaves the process is decided here, not by the SDK's defaults:
- exception *types* and stack frames (file, function, line, the source line) are sent; exception *values*
  are not, because they can quote what a user typed (a database error echoes the failing row) or a token;
- log events are sent as their template (`"saving a streaming reply failed: %s"`), without the arguments;
- no request bodies, cookies, query strings or headers other than a few harmless ones, no local variables,
  no user, no `extra`;
- whatever text is left passes a scrubber that removes the app's configured secrets, bearer tokens, JWTs and
  API-key-like strings.
The SDK's auto-enabling integrations stay off: its OpenAI and Anthropic integrations would record prompts
and replies, and its Starlette one would patch Streamlit's own server.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, cast

import sentry_sdk
from sentry_sdk.types import Event, Hint

from services.config import MASK, Settings, redact
from services.logs import request_id

log = logging.getLogger(__name__)

SCRUBBED = "[scrubbed]"
_SAFE_HEADERS = frozenset({"user-agent", "content-type", "content-length", "accept"})
_TOKENS = [
    re.compile(r"(?i)\bbearer\s+\S+"),
    re.compile(r"\beyJ[\w-]*\.[\w-]*\.?[\w-]*"),  # JWTs (header.payload.signature, base64url)
    re.compile(r"\b(?:sk|pk|rk|ck|chat)[-_][\w-]{8,}"),  # provider and app API keys
    re.compile(r"\b[\w-]{32,}\b"),  # any long opaque token-like run
    re.compile(r"postgres(?:ql)?://\S+"),
]

_lock = threading.Lock()
_settings: Settings | None = None  # whose secrets are removed from what is sent


def scrub_text(text: str) -> str:
    if _settings is not None:
        text = redact(text, _settings)
    for pattern in _TOKENS:
        text = pattern.sub(SCRUBBED, text)
    return text.replace(MASK, SCRUBBED)


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    if isinstance(request.get("method"), str):
        kept["method"] = request["method"]
    if isinstance(request.get("url"), str):
        kept["url"] = scrub_text(request["url"].split("?", 1)[0])
    headers = request.get("headers")
    if isinstance(headers, dict):
        kept["headers"] = {k: scrub_text(str(v)) for k, v in headers.items() if k.lower() in _SAFE_HEADERS}
    return kept


def _scrub_frames(container: dict[str, Any]) -> None:
    stacktrace = container.get("stacktrace")
    if isinstance(stacktrace, dict):
        for frame in stacktrace.get("frames") or []:
            if isinstance(frame, dict):
                frame.pop("vars", None)


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's `before_send`: the event with everything that may carry message text or a secret removed."""
    for exc in (event.get("exception") or {}).get("values") or []:
        if isinstance(exc, dict):
            if exc.get("value"):
                exc["value"] = SCRUBBED
            _scrub_frames(exc)
    for thread in (event.get("threads") or {}).get("values") or []:
        if isinstance(thread, dict):
            _scrub_frames(thread)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        event["logentry"] = {"message": scrub_text(str(logentry.get("message", "")))}
    if isinstance(event.get("message"), str):
        event["message"] = scrub_text(event["message"])
    if isinstance(event.get("request"), dict):
        event["request"] = _scrub_request(event["request"])
    for key in ("extra", "user"):
        event.pop(key, None)
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict):
        crumbs["values"] = [_scrub_breadcrumb(c) for c in crumbs.get("values") or [] if isinstance(c, dict)]
    return event


def _scrub_breadcrumb(crumb: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: crumb[k] for k in ("type", "category", "level", "timestamp") if k in crumb}
    if isinstance(crumb.get("message"), str):
        kept["message"] = scrub_text(crumb["message"])
    return kept


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None) -> dict[str, Any]:
    """Sentry's `before_breadcrumb`: a log breadcrumb keeps its template, never the formatted message
    (which has the arguments, and with CHAT_LOG_CONTENT=true the message text)."""
    record = (hint or {}).get("log_record")
    if isinstance(record, logging.LogRecord):
        crumb = {**crumb, "message": str(record.msg)}
    return _scrub_breadcrumb(crumb)


def _before_send(event: Event, hint: Hint) -> Event:
    scrubbed = scrub_event(cast(dict[str, Any], event), hint)
    scrubbed.setdefault("tags", {})["request_id"] = request_id()
    return cast(Event, scrubbed)


def init(settings: Settings) -> bool:
    """Start Sentry once per process when SENTRY_DSN is set; True if it is on."""
    global _settings
    if settings.sentry_dsn is None:
        return False
    with _lock:
        if sentry_sdk.get_client().is_active():
            return True
        _settings = settings
        sentry_sdk.init(
            dsn=settings.sentry_dsn.reveal(),
            send_default_pii=False,
            include_local_variables=False,
            max_request_body_size="never",
            auto_enabling_integrations=False,
            before_send=_before_send,
            before_breadcrumb=scrub_breadcrumb,
        )
    log.info("error tracking on (Sentry)")
    return True


def report_script_error(exc: Exception) -> bool | None:
    """`st.App(on_script_error=...)`: send an uncaught page exception to Sentry (when on). Returns None, so
    Streamlit still shows its own error box (with details hidden: client.showErrorDetails = "none")."""
    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(exc)
    return None


def report_exception(exc: BaseException, route: str) -> None:
    """An HTTP route failed with an unhandled exception: send it, tagged with the route template only."""
    if sentry_sdk.get_client().is_active():
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("route", route)
            sentry_sdk.capture_exception(exc)
