"""HTTP routes served beside the UI by `st.App` in app.py: the one place routes and middleware are registered.

Routes are thin (parse -> one service call -> JSON or a redirect), use the same per-process services as the
pages (`services.runtime.shared_services`), and never touch the store directly. Later issues add /api/chat,
/api/chat/history here.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from api.auth import sign_in, sign_out, sign_up
from api.health import health
from api.security import SecurityHeaders
from api.v1 import chat_completions, list_models

ROUTES: list[BaseRoute] = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/auth/sign-in", sign_in, methods=["POST"]),
    Route("/api/auth/sign-up", sign_up, methods=["POST"]),
    Route("/api/auth/sign-out", sign_out, methods=["POST"]),
    # The OpenAI-compatible door (api/v1.py): OpenAI SDK clients use <app>/v1 as their base URL.
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
MIDDLEWARE: list[Middleware] = [Middleware(SecurityHeaders)]
