"""HTTP routes served beside the UI by `st.App` in app.py: the one place routes and middleware are registered.

Routes are thin (parse -> one service call -> JSON, SSE or a redirect), use the same per-process services as
the pages (`services.runtime.shared_services`), and never touch the store directly. Errors have one JSON
shape and one status mapping (api/errors.py); the OpenAPI document (api/openapi.py) describes every JSON
route listed here.
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from api.auth import sign_in, sign_out, sign_up
from api.chat import chat
from api.cors import ApiCors
from api.health import health
from api.history import chat_history, delete_conversation, list_conversations
from api.observability import Observe, metrics
from api.openapi import openapi_json
from api.security import SecurityHeaders
from api.v1 import chat_completions, list_models
from api.wellknown import jwks_json, ready

ROUTES: list[BaseRoute] = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/ready", ready, methods=["GET"]),
    Route("/api/openapi.json", openapi_json, methods=["GET"]),
    Route("/.well-known/jwks.json", jwks_json, methods=["GET"]),
    Route("/api/auth/sign-in", sign_in, methods=["POST"]),
    Route("/api/auth/sign-up", sign_up, methods=["POST"]),
    Route("/api/auth/sign-out", sign_out, methods=["POST"]),
    Route("/api/chat", chat, methods=["POST"]),
    Route("/api/chat/history", chat_history, methods=["GET"]),
    Route("/api/conversations", list_conversations, methods=["GET"]),
    Route("/api/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
    Route("/api/metrics", metrics, methods=["GET"]),
    # The OpenAI-compatible door (api/v1.py): OpenAI SDK clients use <app>/v1 as their base URL.
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
]
# Outermost first: Observe times and counts every response (CORS refusals included); CORS answers preflights
# before anything else; security headers go on every response.
MIDDLEWARE: list[Middleware] = [Middleware(Observe, routes=ROUTES), Middleware(SecurityHeaders), Middleware(ApiCors)]
