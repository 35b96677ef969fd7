"""POST /api/chat: one chat turn, its reply streamed in the Vercel AI SDK's UI message stream protocol.

Two request bodies:
- the seed's `{"content": str, "model"?: str, "conversation_id"?: uuid}` (no conversation: a new one);
- the AI SDK chat transport's `{"id": str, "messages": [UIMessage...], "trigger"?: ...}` (plus whatever the
  client adds through the transport's `body` option, e.g. `model` or `conversation_id`). The last message
  is the new turn (its text parts joined); earlier messages are not read: the stored conversation is the
  context, so a client cannot rewrite what the model is told was said. The chat `id` (not a UUID) names a
  conversation through services/client_chats.py (UUIDv5 of user and id, created if missing); an explicit
  `conversation_id` wins. `trigger: "regenerate-message"` answers the conversation's last message again.

The turn goes through `ChatService.send` (validation, rate limit, storage, statuses) like a chat-page turn.
Events, each an SSE `data:` line (https://ai-sdk.dev/docs/ai-sdk-ui/stream-protocol):
  start (messageId, messageMetadata: conversationId, userMessageId, model)
  text-start, text-delta..., text-end      (only when the reply has text)
  error (errorText)                        (only when the reply failed)
  finish (finishReason stop|error|other, messageMetadata: conversationId, messageId (the stored reply),
          status, model, usage {inputTokens, outputTokens} or null, latencyMs, firstTokenMs, error)
  [DONE]
and an SSE comment (`: keep-alive`) after 15 s without text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.credentials import authenticate
from api.errors import ApiError, json_route, read_json
from api.streaming import LiveReply, stream_pool
from services.auth import Principal
from services.chat import Reply
from services.client_chats import check_client_chat_id, conversation_id_for
from services.runtime import Services, shared_services

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx and similar proxies: pass each event on at once
    "x-vercel-ai-ui-message-stream": "v1",
}
KEEP_ALIVE_S = 15.0
TEXT_PART_ID = "text-0"
FINISH_REASONS = {"complete": "stop", "error": "error", "interrupted": "other"}


@dataclass(frozen=True)
class ChatRequest:
    text: str
    model: str | None
    conversation_id: str | None
    client_chat_id: str | None
    regenerate: bool


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_input", f"'{key}' must be a string.")
    return value


def _message_text(message: object) -> str:
    if not isinstance(message, dict):
        raise ApiError(400, "invalid_input", "Each message must be an object.")
    parts = message.get("parts")
    if isinstance(parts, list):
        texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        if not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "invalid_input", "A text part's 'text' must be a string.")
        return "".join(t for t in texts if isinstance(t, str))
    content = message.get("content")  # the AI SDK's older message shape
    if isinstance(content, str):
        return content
    raise ApiError(400, "invalid_input", "The last message has no text parts.")


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    model = _optional_str(body, "model")
    conversation_id = _optional_str(body, "conversation_id")
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "invalid_input", "'messages' must be a non-empty list.")
        trigger = _optional_str(body, "trigger") or "submit-message"
        if trigger not in ("submit-message", "regenerate-message"):
            raise ApiError(400, "invalid_input", "'trigger' must be submit-message or regenerate-message.")
        client_chat_id = _optional_str(body, "id")
        if client_chat_id is None and conversation_id is None:
            raise ApiError(400, "invalid_input", "Name the chat: 'id' or 'conversation_id'.")
        if trigger == "regenerate-message":
            return ChatRequest("", model, conversation_id, client_chat_id, regenerate=True)
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "user":
            raise ApiError(400, "invalid_input", "The last message must be the user's new message.")
        return ChatRequest(_message_text(last), model, conversation_id, client_chat_id, regenerate=False)
    if "content" not in body:
        raise ApiError(400, "invalid_input", "Send 'content' (the message) or the AI SDK's 'messages'.")
    content = body["content"]
    if not isinstance(content, str):
        raise ApiError(400, "invalid_input", "'content' must be a string.")
    return ChatRequest(content, model, conversation_id, None, regenerate=False)


def _start_turn(services: Services, principal: Principal, request: ChatRequest) -> Reply:
    """Blocking, on the stream's own thread: resolve the conversation, then send (or regenerate)."""
    model = request.model or services.catalogue.default
    cid: uuid.UUID | str | None = request.conversation_id
    if cid is None and request.client_chat_id is not None:
        if services.client_chats is None:
            raise ApiError(400, "invalid_input", "Chat ids are not supported here: send 'conversation_id'.")
        if request.regenerate:
            cid = conversation_id_for(principal, check_client_chat_id(request.client_chat_id))
        else:
            # Validate first, so a bad message does not leave an empty conversation behind.
            text = services.chat.validate(request.text)
            services.chat.model_option(model)
            cid = services.client_chats.conversation(principal, request.client_chat_id, text)
    if request.regenerate:
        if cid is None:
            raise ApiError(400, "invalid_input", "Name the conversation to answer again.")
        return services.chat.regenerate(principal, cid, model)
    return services.chat.send(principal, cid, request.text, model)


def sse(event: dict[str, Any] | str) -> bytes:
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    try:
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        # A lone surrogate from a provider cannot be UTF-8; as a JSON escape it is valid and arrives intact.
        data = json.dumps(event, separators=(",", ":")).encode()
    return b"data: " + data + b"\n\n"


def _usage(live: LiveReply) -> dict[str, int | None] | None:
    outcome = live.reply.outcome
    if outcome is None or outcome.usage is None:
        return None
    return {"inputTokens": outcome.usage.input_tokens, "outputTokens": outcome.usage.output_tokens}


async def ui_message_stream(live: LiveReply) -> AsyncIterator[bytes]:
    reply = live.reply
    conversation_id = str(reply.conversation_id)
    yield sse(
        {
            "type": "start",
            "messageId": f"msg-{uuid.uuid4()}",
            "messageMetadata": {
                "conversationId": conversation_id,
                "userMessageId": str(reply.user_message.id) if reply.user_message else None,
                "model": reply.option.id,
            },
        }
    )
    text_open = False
    failure: str | None = None
    try:
        async for text in live.chunks(idle_s=KEEP_ALIVE_S):
            if not text:
                yield b": keep-alive\n\n"
                continue
            if not text_open:
                yield sse({"type": "text-start", "id": TEXT_PART_ID})
                text_open = True
            yield sse({"type": "text-delta", "id": TEXT_PART_ID, "delta": text})
    except Exception:  # noqa: BLE001 - logged by the pool; the client still gets a well-formed end
        failure = "Something went wrong while streaming the reply."
    outcome = reply.outcome
    if text_open:
        yield sse({"type": "text-end", "id": TEXT_PART_ID})
    status = outcome.status if outcome is not None else "error"
    error = failure or (outcome.error if outcome is not None else None)
    if status == "error":
        yield sse({"type": "error", "errorText": error or "The reply failed."})
    stored = outcome.message if outcome is not None else None
    yield sse(
        {
            "type": "finish",
            "finishReason": FINISH_REASONS.get(status, "other"),
            "messageMetadata": {
                "conversationId": conversation_id,
                "messageId": str(stored.id) if stored else None,
                "status": status,
                "model": reply.option.id,
                "usage": _usage(live),
                "latencyMs": outcome.latency_ms if outcome else None,
                "firstTokenMs": outcome.first_token_ms if outcome else None,
                "error": {"kind": outcome.error_kind, "message": error} if status == "error" and outcome else None,
            },
        }
    )
    yield sse("[DONE]")


class ReplyResponse(StreamingResponse):
    """A streamed reply that is always stopped when the response ends, however it ends: a client that
    disconnects while the response is between two events never resumes the body generator, so its own
    `finally` cannot be relied on."""

    def __init__(self, live: LiveReply) -> None:
        super().__init__(ui_message_stream(live), media_type="text/event-stream", headers=STREAM_HEADERS)
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.live.cancel()


@json_route
async def chat(request: Request) -> Response:
    services = await run_in_threadpool(shared_services)
    principal = await run_in_threadpool(authenticate, services, request)
    parsed = parse_chat_request(await read_json(request, services.settings.api_max_body_bytes))
    pool = stream_pool(services.settings.api_max_streams)
    live = await pool.open(lambda: _start_turn(services, principal, parsed))
    return ReplyResponse(live)
