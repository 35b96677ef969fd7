"""One JSON error shape for every API route, `{"error": {"code": ..., "message": ...}}`, and one mapping from
the services' exceptions to HTTP statuses, so no route decides a status of its own.

`json_route` wraps a route: whatever it raises becomes the mapped response. `read_json` reads a request
body the API's way: 415 unless it is JSON, 413 as soon as it is larger than the limit (by Content-Length
before reading, then by counting while reading, so a lying or missing length cannot make us buffer more),
400 unless it parses to an object.

Messages come from `UserError.message` (written for people, never internals); anything else is a 500 with a
fixed sentence, and the exception goes to the log.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from services.auth import AuthError
from services.config import ConfigError
from services.errors import UserError
from services.providers import ProviderError
from services.ratelimit import RateLimited
from services.runtime import StartupError
from services.store import InvalidCursor, InvalidInput, NotFound, StoreUnavailable

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "Something went wrong on the server. Please try again; if it keeps happening, tell the operator."
UNAVAILABLE_MESSAGE = "The service is not available right now. Please try again in a minute."
JSON_TYPES = ("application/json",)


class ApiError(Exception):
    """An HTTP answer decided by the API layer itself (not a service): bad body, busy, wrong route use."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def response_for(exc: BaseException) -> JSONResponse:
    """The one mapping from an exception to the API's answer."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, AuthError):
        # RFC 6750: a 401 names the scheme; `reason` lets a client tell "expired, renew" from "wrong".
        return error_response(
            401, "unauthorized", exc.message, {"WWW-Authenticate": 'Bearer realm="chat"'}, reason=exc.reason
        )
    if isinstance(exc, InvalidCursor):
        return error_response(400, "invalid_cursor", exc.message)
    if isinstance(exc, InvalidInput):
        return error_response(400, "invalid_input", exc.message)
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, RateLimited):
        return error_response(429, "rate_limited", exc.message, {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, StoreUnavailable | StartupError):
        return error_response(503, "unavailable", exc.message, {"Retry-After": "5"})
    if isinstance(exc, ConfigError):
        log.error("API called while the configuration is invalid: %s", exc)
        return error_response(503, "unavailable", UNAVAILABLE_MESSAGE, {"Retry-After": "30"})
    if isinstance(exc, ProviderError):
        return error_response(502, "provider_error", exc.message)
    if isinstance(exc, UserError):
        # A service error with a safe message but no status of its own: the server's fault, said plainly.
        log.warning("API request failed: %s: %s", type(exc).__name__, exc.message)
        return error_response(500, "internal", exc.message)
    log.error("API request failed", exc_info=exc)
    return error_response(500, "internal", INTERNAL_MESSAGE)


Endpoint = Callable[[Request], Awaitable[Response]]


def json_route(endpoint: Endpoint) -> Endpoint:
    """Wrap an async route so every exception it raises becomes the mapped JSON error."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:  # noqa: BLE001 - every failure gets the one mapping
            return response_for(exc)

    return wrapped


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "invalid_request", "The Content-Length header is not a number.")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(max_bytes)
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "The request body ended early.") from None
    return bytes(body)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"The request body is larger than {max_bytes} bytes.")


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object in the body: 415 for another content type, 413 when too large, 400 when it is not
    a JSON object."""
    if not is_json(request.headers.get("content-type")):
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")
    raw = await read_body(request, max_bytes)
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return value
