"""GET /api/openapi.json: the OpenAPI 3.1 document of the JSON API, built here and nowhere else.

`PATHS` holds one entry per route (path -> method -> operation); another module adds its own routes by
adding entries (`PATHS.update(...)`) before the document is first served. tests/test_api_http.py checks
that every /api, /v1 and /.well-known route in api.ROUTES is described and nothing else is. The browser's
sign-in form posts (/api/auth/*) are not part of the JSON API and are left out on purpose.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from api.history import MAX_LIMIT

UNDOCUMENTED_PREFIXES = ("/api/auth/",)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AUTH_ERRORS = {"401": _error("Missing, malformed, invalid, expired or revoked credential.")}
SERVER_ERRORS = {"500": _error("Server failure; no internals are shown."), "503": _error("Not available right now.")}
LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 20},
}
CURSOR = {"schema": {"type": "string", "maxLength": 512, "pattern": "^[A-Za-z0-9_.-]+$"}, "in": "query"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "reason": {"type": "string", "description": "401 only: why the credential was refused."},
                },
            }
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "conversation_id", "role", "content", "model", "status", "created_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "conversation_id": {"type": "string", "format": "uuid"},
            "conversation_title": {"type": "string"},
            "user_id": {"type": "string"},
            "role": {"enum": ["user", "assistant"]},
            "content": {"type": "string"},
            "model": {"type": "string"},
            "status": {"enum": ["streaming", "complete", "interrupted", "error"]},
            "input_tokens": {"type": ["integer", "null"]},
            "output_tokens": {"type": ["integer", "null"]},
            "latency_ms": {"type": ["integer", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "feedback": {
                "enum": ["up", "down", None],
                "description": "The thumb its author gave this reply (null: none).",
            },
            "feedback_comment": {"type": ["string", "null"], "description": "The author's comment with it."},
        },
    },
    "Conversation": {
        "type": "object",
        "required": ["id", "title", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "title": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "SeedChatRequest": {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": {"type": "string", "minLength": 1},
            "model": {"type": "string", "description": "A model id from the app's picker; default: its first."},
            "conversation_id": {"type": "string", "format": "uuid", "description": "Absent: a new conversation."},
        },
    },
    "AiSdkChatRequest": {
        "type": "object",
        "required": ["messages"],
        "description": "The Vercel AI SDK chat transport's body. The last message is the new turn; `id` names "
        "the conversation (UUIDv5 of the user and the id, created if missing) unless `conversation_id` is given. "
        "Only text parts are read: file and image parts are ignored (attachments are sent from the chat page).",
        "properties": {
            "id": {"type": "string", "maxLength": 200},
            "trigger": {"enum": ["submit-message", "regenerate-message"]},
            "messageId": {"type": "string"},
            "model": {"type": "string"},
            "conversation_id": {"type": "string", "format": "uuid"},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "role": {"enum": ["user", "assistant", "system"]},
                        "parts": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
    },
}

# One Server-Sent Event as a client reads it (OpenAPI before 3.2: a text/event-stream `schema` describes each
# event): `data` is one JSON object, or the final `[DONE]`.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}},
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/health": {
        "get": {
            "summary": "Liveness: the services are up.",
            "security": [],
            "responses": {"200": _json("Up.", {"type": "object"}), "503": _error("Down.")},
        }
    },
    "/api/ready": {
        "get": {
            "summary": "Readiness: the database answers and the migrations were applied.",
            "security": [],
            "responses": {"200": _json("Ready.", {"type": "object"}), "503": _json("Not ready.", {"type": "object"})},
        }
    },
    "/api/metrics": {
        "get": {
            "summary": "Prometheus metrics (CHAT_METRICS=on; with CHAT_METRICS_TOKEN, that token as the bearer).",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text format (or OpenMetrics, as the Accept header asks).",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _error("The metrics token is missing or wrong."),
                "404": _error("Metrics are off on this server."),
                "503": _error("The settings are invalid."),
            },
        }
    },
    "/.well-known/jwks.json": {
        "get": {
            "summary": "Public keys of this app's token issuer (empty unless CHAT_AUTH=local).",
            "security": [],
            "responses": {
                "200": _json("A JWK set.", {"type": "object", "required": ["keys"]}),
                **SERVER_ERRORS,
            },
        }
    },
    "/api/openapi.json": {
        "get": {"summary": "This document.", "security": [], "responses": {"200": _json("OpenAPI 3.1.", {})}}
    },
    "/api/chat": {
        "post": {
            "summary": "Send a message; the reply streams as the AI SDK UI message stream (SSE).",
            "description": "Text only: files and images cannot be attached through the API (file parts are "
            "ignored); attach them on the chat page. Files attached there are sent to the model in later turns.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"anyOf": [_ref("SeedChatRequest"), _ref("AiSdkChatRequest")]}}
                },
            },
            "responses": {
                "200": {
                    "description": "Server-Sent Events: start, text-start, text-delta..., text-end, [error], "
                    "finish (with conversationId, messageId, status, usage), [DONE].",
                    "headers": {"x-vercel-ai-ui-message-stream": {"schema": {"const": "v1"}}},
                    "content": {"text/event-stream": {"schema": SSE_EVENT}},
                },
                "400": _error("Invalid message, model, conversation id or JSON."),
                **AUTH_ERRORS,
                "404": _error("No such conversation of yours."),
                "413": _error("Body too large."),
                "415": _error("Body is not JSON."),
                "429": {
                    **_error("Rate limited."),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                },
                **SERVER_ERRORS,
            },
        }
    },
    "/api/chat/history": {
        "get": {
            "summary": "Your stored messages, newest first, one keyset page; the History page's filters.",
            "parameters": [
                LIMIT,
                {"name": "before", **CURSOR, "description": "next_cursor of the previous page: older messages."},
                {"name": "after", **CURSOR, "description": "prev_cursor: newer messages."},
                _query("conversation_id", {"type": "string", "format": "uuid"}, "One conversation only."),
                _query("q", {"type": "string", "maxLength": 1000}, "Full-text search."),
                _query("role", {"enum": ["user", "assistant"]}, "Messages of one role."),
                _query("status", {"enum": ["streaming", "complete", "interrupted", "error"]}, "One status."),
                _query("model", {"type": "string", "maxLength": 200}, "One model id."),
                _query(
                    "feedback",
                    {"enum": ["up", "down", "none", "comment"]},
                    "Replies with a thumb up, a thumb down, a comment, or (`none`) replies without feedback.",
                ),
                _query("from", {"type": "string", "format": "date"}, "First day (UTC), inclusive."),
                _query("to", {"type": "string", "format": "date"}, "Last day (UTC), inclusive."),
                _query("scope", {"enum": ["own", "all"]}, "`all`: every user's messages (reviewers only)."),
            ],
            "responses": {
                "200": _json(
                    "One page.",
                    {
                        "type": "object",
                        "required": ["items", "next_cursor"],
                        "properties": {
                            "items": {"type": "array", "items": _ref("Message")},
                            "next_cursor": {"type": ["string", "null"]},
                            "prev_cursor": {"type": ["string", "null"]},
                        },
                    },
                ),
                "400": _error("An invalid parameter or cursor."),
                **AUTH_ERRORS,
                **SERVER_ERRORS,
            },
        }
    },
    "/api/conversations": {
        "get": {
            "summary": "Your conversations, most recently active first, one keyset page.",
            "parameters": [LIMIT, {"name": "before", **CURSOR, "description": "next_cursor of the previous page."}],
            "responses": {
                "200": _json(
                    "One page.",
                    {
                        "type": "object",
                        "required": ["items", "next_cursor"],
                        "properties": {
                            "items": {"type": "array", "items": _ref("Conversation")},
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    },
                ),
                "400": _error("An invalid limit or cursor."),
                **AUTH_ERRORS,
                **SERVER_ERRORS,
            },
        }
    },
    "/api/conversations/{conversation_id}": {
        "delete": {
            "summary": "Delete one of your conversations and its messages.",
            "parameters": [{"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "204": {"description": "Deleted."},
                **AUTH_ERRORS,
                "404": _error("No such conversation of yours."),
                **SERVER_ERRORS,
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chat API",
            "version": "1",
            "description": "The chat app's HTTP API: the same services, rules and history as its pages.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A sign-in token (this app's with CHAT_AUTH=local, Clerk's with clerk) or a "
                    "personal API key (sk-chat-...).",
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())
