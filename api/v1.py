"""The OpenAI-compatible door: `POST /v1/chat/completions` (streamed and not) and `GET /v1/models`, so any
OpenAI SDK client pointed at `<app>/v1` chats as the caller, and every turn lands in their history.

The bearer is the caller's API key (`sk-chat-...`) or sign-in token (api/credentials.py). Which stored
conversation a call continues is `services.openai_door`'s rule; the answer names it in `X-Conversation-Id`,
which the client may send back to pin it. Errors use OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`, with the API's usual statuses (api/errors.py), so the SDKs raise their usual exceptions.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from api.chat import sse
from api.credentials import authenticate
from api.errors import Endpoint, read_json, response_for
from api.openapi import PATHS, SCHEMAS, SERVER_ERRORS, SSE_EVENT
from api.streaming import LiveReply, stream_pool
from services.auth import Principal
from services.chat import Outcome
from services.openai_door import CONVERSATION_HEADER, CompletionRequest, InvalidRequest, OpenAIDoor
from services.runtime import Services, shared_services

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# OpenAI's error `type` for each status the API answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
# A reply that failed at the provider, by `ProviderError.kind`: the status a non-streamed call answers with.
PROVIDER_STATUS = {"rate_limited": 429, "timeout": 504}


def openai_error(exc: BaseException) -> Response:
    """api/errors.py's answer for `exc`, its body in OpenAI's shape (same status, code, message, headers)."""
    mapped = response_for(exc)
    error = json.loads(bytes(mapped.body))["error"]
    error["type"] = ERROR_TYPES.get(mapped.status_code, "server_error")
    error["param"] = exc.param if isinstance(exc, InvalidRequest) else None
    if isinstance(exc, InvalidRequest) and exc.code:
        error["code"] = exc.code
    headers = {k: v for k, v in mapped.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse({"error": error}, status_code=mapped.status_code, headers=headers)


def v1_route(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:  # noqa: BLE001 - every failure gets the one mapping, in OpenAI's shape
            return openai_error(exc)

    return wrapped


async def _caller(request: Request) -> tuple[Services, Principal]:
    # Both block (the first call starts the database; an API key is looked up in it): off the event loop.
    services = await run_in_threadpool(shared_services)
    principal = await run_in_threadpool(authenticate, services, request)
    return services, principal


@v1_route
async def list_models(request: Request) -> Response:
    services, _ = await _caller(request)
    data = [
        {"id": option.id, "object": "model", "created": 0, "owned_by": option.provider}
        for option in OpenAIDoor(services.chat).models()
    ]
    return JSONResponse({"object": "list", "data": data})


@v1_route
async def chat_completions(request: Request) -> Response:
    services, principal = await _caller(request)
    door = OpenAIDoor(services.chat)
    completion = door.parse(await read_json(request, services.settings.api_max_body_bytes))
    pinned = request.headers.get(CONVERSATION_HEADER)
    live = await stream_pool(services.settings.api_max_streams).open(
        lambda: door.complete(principal, completion, pinned).reply
    )
    headers = {CONVERSATION_HEADER: str(live.reply.conversation_id)}
    if completion.stream:
        return StreamingResponse(
            _chunks(live, completion), media_type="text/event-stream", headers={**STREAM_HEADERS, **headers}
        )
    text = "".join([chunk async for chunk in live.chunks()])
    outcome = live.reply.outcome
    if outcome is None or outcome.status != "complete":
        return _failed(outcome, headers)
    body = {
        **_head(live, "chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(outcome),
    }
    return JSONResponse(body, headers=headers)


def _head(live: LiveReply, kind: str) -> dict[str, Any]:
    user_message = live.reply.user_message
    # The stored user message names the turn: a client can find it in its history by this id.
    ident = user_message.id.hex if user_message is not None else live.reply.conversation_id.hex
    return {"id": f"chatcmpl-{ident}", "object": kind, "created": int(time.time()), "model": live.reply.option.id}


def _usage(outcome: Outcome) -> dict[str, int]:
    usage = outcome.usage
    prompt = (usage.input_tokens or 0) if usage else 0
    completion = (usage.output_tokens or 0) if usage else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _provider_error(outcome: Outcome | None) -> tuple[int, dict[str, Any]]:
    kind = (outcome.error_kind if outcome else None) or "server"
    message = (outcome.error if outcome else None) or "The reply ended before it was complete."
    status = PROVIDER_STATUS.get(kind, 502)
    return status, {"message": message, "type": ERROR_TYPES.get(status, "server_error"), "param": None, "code": kind}


def _failed(outcome: Outcome | None, headers: dict[str, str]) -> Response:
    status, error = _provider_error(outcome)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def _chunks(live: LiveReply, completion: CompletionRequest) -> AsyncIterator[bytes]:
    head = _head(live, "chat.completion.chunk")
    # With include_usage every chunk carries `usage: null` and one last chunk, without choices, the usage.
    extra: dict[str, Any] = {"usage": None} if completion.include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**head, "choices": [choice], **extra})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    async for text in live.chunks():
        yield chunk({"content": text})
    outcome = live.reply.outcome
    if outcome is None or outcome.status != "complete":
        # OpenAI's own mid-stream failure: an `error` object, which the SDKs raise as APIError.
        _, error = _provider_error(outcome)
        yield sse({"error": error})
        return
    yield chunk({}, "stop")
    if completion.include_usage:
        yield sse({**head, "choices": [], "usage": _usage(outcome)})
    yield sse("[DONE]")



# --- the OpenAPI description (api/openapi.py serves PATHS and SCHEMAS) -----------------------------------


def _openai_error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}},
    }
    return {**answer, "headers": headers} if headers else answer


SCHEMAS.update(
    {
        "OpenAIError": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "description": "OpenAI's Chat Completions body; fields not listed (temperature, max_tokens, ...) are "
            "accepted and ignored. Text only: image parts and tools are refused.",
            "properties": {
                "model": {"type": "string", "description": "A model id from GET /v1/models."},
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"enum": ["system", "developer", "user", "assistant"]},
                            "content": {
                                "oneOf": [
                                    {"type": "string"},
                                    {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["type", "text"],
                                            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                                        },
                                    },
                                ]
                            },
                        },
                    },
                },
                "stream": {"type": "boolean", "default": False},
                "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                "n": {"const": 1},
            },
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "chat.completion"},
                "created": {"type": "integer"},
                "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": {"type": "object"},
            },
        },
    }
)

_CONVERSATION = {
    CONVERSATION_HEADER: {
        "schema": {"type": "string", "format": "uuid"},
        "description": "The conversation this turn was stored in.",
    }
}
PATHS.update(
    {
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI-compatible chat: the turn is stored in your history (see the README for which "
                "conversation a call continues).",
                "parameters": [
                    {
                        "name": CONVERSATION_HEADER,
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Continue this conversation of yours, whatever the messages say.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
                },
                "responses": {
                    "200": {
                        "description": "A chat.completion object, or with `stream: true` Server-Sent Events of "
                        "chat.completion.chunk objects ending with `data: [DONE]`.",
                        "headers": _CONVERSATION,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                            "text/event-stream": {"schema": SSE_EVENT},
                        },
                    },
                    "400": _openai_error("Invalid body, message or model."),
                    "401": _openai_error("Missing, malformed, invalid, expired or revoked credential."),
                    "404": _openai_error("No such conversation of yours (X-Conversation-Id)."),
                    "413": _openai_error("Body too large."),
                    "415": _openai_error("Body is not JSON."),
                    "429": _openai_error(
                        "Rate limited (this app's limit or the provider's).",
                        {"Retry-After": {"schema": {"type": "integer"}}},
                    ),
                    "502": _openai_error("The provider failed; the reply is stored with status error."),
                    "504": _openai_error("The provider did not answer in time."),
                    **SERVER_ERRORS,
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The models you can chat with, in OpenAI's list format.",
                "responses": {
                    "200": {
                        "description": "A list of model objects.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["object", "data"],
                                    "properties": {
                                        "object": {"const": "list"},
                                        "data": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id", "object", "owned_by"],
                                                "properties": {
                                                    "id": {"type": "string"},
                                                    "object": {"const": "model"},
                                                    "created": {"type": "integer"},
                                                    "owned_by": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "401": _openai_error("Missing, malformed, invalid, expired or revoked credential."),
                    **SERVER_ERRORS,
                },
            }
        },
    }
)
