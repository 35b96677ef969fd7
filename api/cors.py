"""CORS for /api/* only, off unless CHAT_API_CORS_ORIGINS lists origins (then exactly those, no wildcard).

A pure ASGI middleware around Starlette's CORSMiddleware that hands it only /api/ requests, so Streamlit's
own pages and websocket are never given CORS headers. Credentials are bearer tokens, never cookies, so
`Access-Control-Allow-Credentials` is not sent: another site's page cannot ride a signed-in browser's
session cookie. The setting is read on the first request (importing app.py must not need the settings).
"""

from __future__ import annotations

import logging

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.config import ConfigError, load_settings

log = logging.getLogger(__name__)

PREFIX = "/api/"
ALLOW_METHODS = ("GET", "POST", "DELETE")
ALLOW_HEADERS = ("authorization", "content-type")
EXPOSE_HEADERS = ("retry-after", "x-vercel-ai-ui-message-stream")
MAX_AGE_S = 600


class ApiCors:
    def __init__(self, app: ASGIApp, origins: tuple[str, ...] | None = None) -> None:
        self.app = app
        self._origins = origins
        self._cors: ASGIApp | None = None

    def _wrapped(self) -> ASGIApp | None:
        if self._origins is None:
            try:
                self._origins = load_settings().api_cors_origins
            except ConfigError:
                return None  # the app will say what is wrong; until then no CORS, and try again next time
        if not self._origins:
            return None
        if self._cors is None:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=list(self._origins),
                allow_methods=list(ALLOW_METHODS),
                allow_headers=list(ALLOW_HEADERS),
                expose_headers=list(EXPOSE_HEADERS),
                allow_credentials=False,
                max_age=MAX_AGE_S,
            )
        return self._cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX):
            cors = self._wrapped()
            if cors is not None:
                await cors(scope, receive, send)
                return
        await self.app(scope, receive, send)
