"""Request metrics, request ids and error reports for every HTTP request, and GET /api/metrics.

`Observe` is pure ASGI (like SecurityHeaders: BaseHTTPMiddleware would buffer the SSE routes). It labels
each request by its route *template* (`/api/chat/{id}`, found by asking the app's own routes), never the
raw path, so no id or token in a URL becomes a label; Streamlit's own paths collapse to a few labels.
Websockets (the browser's `/_stcore/stream`) pass untouched: a page run sets its own request id.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from services import error_tracking
from services.config import ConfigError, load_settings
from services.logs import event, new_request_id
from services.metrics import process_metrics

log = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Streamlit's fixed endpoints keep their name; everything else it serves falls in one bucket per prefix,
# and any other path is a page (Streamlit answers unknown paths with its index.html).
STREAMLIT_PATHS = frozenset({"/_stcore/health", "/_stcore/host-config", "/_stcore/script-health-check"})
STREAMLIT_PREFIXES = ("/_stcore/", "/static/", "/media/", "/component/", "/app/static/", "/api/", "/v1/")
QUIET_ROUTES = frozenset({"/api/health", "/api/metrics"})  # probes and scrapes: counted, not logged


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:  # PARTIAL: the path matched, the method did not (a 405)
            return str(getattr(route, "path", "/api/*"))
    path: str = scope.get("path", "")
    if path in STREAMLIT_PATHS:
        return path
    for prefix in STREAMLIT_PREFIXES:
        if path.startswith(prefix):
            return prefix + "*"
    return "page"


class Observe:
    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_label(scope, self.routes)
        method = scope.get("method", "GET")
        method = method if method in METHODS else "other"
        headers = dict(scope.get("headers") or [])
        client_id = headers.get(b"x-request-id")
        rid = new_request_id(client_id.decode("latin-1") if client_id is not None else None)
        status = 500  # until a response starts: an exception before that is a 500 to the client
        started = time.perf_counter()

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            error_tracking.report_exception(exc, route)
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - started
            process_metrics().http_request(route, method, status, seconds)
            if route.startswith(("/api/", "/v1/")) and route not in QUIET_ROUTES:
                event(log, "http request", method=method, route=route, status=status, ms=int(seconds * 1000))


def metrics(request: Request) -> Response:
    """GET /api/metrics: the process's metrics in Prometheus' text format. 404 unless CHAT_METRICS=on;
    with CHAT_METRICS_TOKEN set, only for `Authorization: Bearer <token>`. Never starts the services (a
    scrape before the first page shows the HTTP counters and no pool yet)."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        return error_response(503, "unavailable", str(exc))
    if settings.metrics != "on":
        return error_response(404, "not_found", "Metrics are off on this server (CHAT_METRICS=off).")
    if settings.metrics_token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = settings.metrics_token.reveal().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            return error_response(
                401, "unauthorized", "Send the metrics token as 'Authorization: Bearer <token>'.",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )  # fmt: skip
    body, content_type = process_metrics().exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
