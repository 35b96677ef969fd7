"""The OpenAI-compatible door: a Chat Completions request becomes a turn in the caller's history, like a
turn on the chat page, through the same `ChatService.send` (validation, rate limit, persistence, statuses).

OpenAI clients are stateless: every call resends the whole conversation. Which stored conversation a call
continues:

1. the `X-Conversation-Id` the client sends (one of the caller's own conversations; anything else is
   NotFound), whatever the messages say; else
2. the most recently active of the caller's `MATCH_CONVERSATIONS` most recently active conversations whose
   *transcript* equals the request's messages before its last user message (or equals them plus that last
   message: the retry of a turn whose reply failed); else
3. a new conversation.

A transcript is the conversation's user messages and complete replies, in order, without empty ones, a user
message repeated right after itself (a retry) counted once; system messages are the client's and are never
stored. A changed earlier message therefore starts a new conversation: the stored one stays as it was.

What is stored is only what is new: in a continued conversation, the last user message and the reply; in a
new one, also the earlier messages the client sent (so that its next call matches). The provider gets what
the client sent (its system prompt and messages), not the stored context.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.auth import AuthError, Principal
from services.chat import ChatService, Reply, title_from
from services.providers import Turn
from services.providers.catalogue import ModelOption
from services.store import MAX_PAGE, MAX_STORED_CHARS, InvalidInput, Message, NotFound, Role, StoreError

log = logging.getLogger(__name__)

# A session idle while its user had this many other conversations since starts a new one (or pins its
# conversation with the header); each candidate costs one short read, the usual one (the newest) only one.
MATCH_CONVERSATIONS = 20
# Failed replies a continued conversation may hold beyond its transcript before it stops being found.
FAILED_REPLIES_TOLERATED = 8
CONVERSATION_HEADER = "X-Conversation-Id"

Entry = tuple[str, str]  # (role, content) of a transcript


class InvalidRequest(InvalidInput):
    """A Chat Completions body this door cannot take; `param` names the offending field, as OpenAI does."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    turns: tuple[Turn, ...]  # everything the client sent, in order, system messages included
    stream: bool
    include_usage: bool

    @property
    def text(self) -> str:
        """The new user message: the last one."""
        return self.turns[-1].content

    @property
    def earlier(self) -> tuple[Turn, ...]:
        """The user and assistant messages before the new one."""
        return tuple(t for t in self.turns[:-1] if t.role != "system")


@dataclass(frozen=True)
class DoorTurn:
    request: CompletionRequest
    reply: Reply
    created: bool  # a new conversation was started for this call


def _content(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts: list[str] = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest(
                    "Only text content parts are supported here.", param=f"{where}.content[{i}]", code="invalid_value"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest("A message's content must be text or a list of text parts.", param=f"{where}.content")


def _turn(raw: object, i: int) -> Turn:
    where = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise InvalidRequest("Each message must be an object with a role and content.", param=where)
    role = raw.get("role")
    if role in ("tool", "function") or raw.get("tool_calls") or raw.get("function_call"):
        raise InvalidRequest("Tool calls are not supported here: this endpoint offers no tools.", param=where)
    if role in ("system", "developer"):
        return Turn("system", _content(raw.get("content"), where))
    if role in ("user", "assistant"):
        return Turn(role, _content(raw.get("content"), where))
    raise InvalidRequest(
        f"Unknown message role {role!r}: use system, developer, user or assistant.", param=f"{where}.role"
    )


def parse_request(body: object, *, max_message_chars: int, context_chars: int) -> CompletionRequest:
    """A Chat Completions body as this door takes it. Raises InvalidRequest. Fields it does not use
    (temperature, max_tokens, user, ...) are accepted and ignored, as a compatible server's are."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required: one of the ids GET /v1/models lists.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    if body.get("tools") or body.get("functions"):
        raise InvalidRequest("Tools are not supported here.", param="tools")
    n = body.get("n", 1)
    if n not in (1, None):
        raise InvalidRequest("Only one choice (n=1) is supported here.", param="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object.", param="stream_options")
    turns = tuple(_turn(m, i) for i, m in enumerate(messages))
    if turns[-1].role != "user":
        raise InvalidRequest("The last message must be the user's.", param=f"messages[{len(turns) - 1}].role")
    for i, t in enumerate(turns[:-1]):
        # Earlier messages are stored when they start a conversation: the store's limits apply to them.
        limit = max_message_chars if t.role == "user" else MAX_STORED_CHARS
        if len(t.content) > limit or "\x00" in t.content:
            raise InvalidRequest(f"Message {i} is too long or holds a NUL character.", param=f"messages[{i}].content")
    total = sum(len(t.content) for t in turns)
    budget = max(context_chars, max_message_chars)
    if total > budget:
        raise InvalidRequest(
            f"The messages hold {total:,} characters; this server sends at most {budget:,} to a model.",
            param="messages",
            code="context_length_exceeded",
        )
    return CompletionRequest(model, turns, stream, bool(options.get("include_usage")))


def transcript(entries: Sequence[Entry]) -> list[Entry]:
    """What a conversation looks like to a client that resends it (see the module docstring)."""
    out: list[Entry] = []
    for role, content in entries:
        if not content.strip():
            continue
        if role == "user" and out and out[-1] == (role, content):
            continue
        out.append((role, content))
    return out


def stored_transcript(messages: Sequence[Message]) -> list[Entry]:
    kept = [m for m in messages if m.role == "user" or (m.role == "assistant" and m.status == "complete")]
    return transcript([(m.role, m.content) for m in kept])


class OpenAIDoor:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def models(self) -> tuple[ModelOption, ...]:
        return self.chat.catalogue.options

    def parse(self, body: object) -> CompletionRequest:
        settings = self.chat.settings
        return parse_request(body, max_message_chars=settings.max_message_chars, context_chars=settings.context_chars)

    def complete(
        self,
        principal: Principal,
        request: CompletionRequest,
        conversation_id: str | None = None,
        *,
        revoked: Callable[[], bool] | None = None,
    ) -> DoorTurn:
        """Store the new turn and return the reply to stream (always close it). Raises what
        `ChatService.send` raises, and NotFound for a pinned conversation that is not the caller's; then
        nothing is stored."""
        # Validation first, as ChatService.send does, so a bad model costs no lookup.
        self.chat.validate(request.text)
        option = self.chat.model_option(request.model)
        if conversation_id is not None:
            cid: uuid.UUID | None = self._own(principal, conversation_id)
        else:
            cid = self.find_conversation(principal, request)
        created = cid is None and bool(request.earlier)
        if created:
            cid = self._start(principal, request, option)
        try:
            reply = self.chat.send(principal, cid, request.text, option.id, revoked=revoked, context=request.turns)
        except BaseException:
            if created and cid is not None:
                # Rate limited, signed out, ...: leave nothing behind, as send does for its own new conversation.
                self._forget(principal, cid)
            raise
        return DoorTurn(request, reply, created or reply.created_conversation)

    def find_conversation(self, principal: Principal, request: CompletionRequest) -> uuid.UUID | None:
        """The caller's conversation this call continues, or None (rule 2 of the module docstring)."""
        earlier = transcript([(t.role, t.content) for t in request.earlier])
        if not earlier:
            return None
        wanted = (earlier, transcript([*earlier, ("user", request.text)]))
        limit = min(len(wanted[1]) + FAILED_REPLIES_TOLERATED, MAX_PAGE)
        for conversation in self.chat.store.list_conversations(principal, limit=MATCH_CONVERSATIONS).items:
            # The current branch only: what the chat page shows and the model was last given.
            rows = self.chat.store.path_messages(principal, conversation.id, limit=limit)
            seen = stored_transcript(rows)
            if len(rows) < limit:
                if seen in wanted:
                    return conversation.id
            elif limit == MAX_PAGE and seen and any(w[-len(seen) :] == seen for w in wanted):
                # A conversation longer than one read: its newest MAX_PAGE messages must match the tail.
                return conversation.id
        return None

    def _own(self, principal: Principal, conversation_id: str) -> uuid.UUID:
        conversation = self.chat.open_conversation(principal, conversation_id)
        if conversation.user_id != principal.user_id:
            # A reviewer may read it, but a turn can only be added to one's own conversation.
            raise NotFound("That conversation does not exist.")
        return conversation.id

    def _start(self, principal: Principal, request: CompletionRequest, option: ModelOption) -> uuid.UUID:
        first = next(t.content for t in request.turns if t.role == "user")
        cid = self.chat.store.create_conversation(principal, title_from(first)).id
        try:
            for t in request.earlier:
                if t.content.strip():
                    role: Role = "user" if t.role == "user" else "assistant"
                    self.chat.store.add_message(principal, cid, role, t.content, option.id, "complete")
        except BaseException:
            self._forget(principal, cid)
            raise
        return cid

    def _forget(self, principal: Principal, cid: uuid.UUID) -> None:
        try:
            self.chat.store.delete_conversation(principal, cid)
        except (StoreError, AuthError):
            log.warning("could not remove a conversation started for a refused call", exc_info=True)
