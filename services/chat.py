"""ChatService: validate -> rate limit -> store the user message -> stream the reply -> store the reply.

`send` and `regenerate` return a `Reply`: an iterator of text for `st.write_stream` that saves the
assistant message as it streams (status `streaming`, a checkpoint about once a second) and finalises it
`complete`, `interrupted` (closed early: stop button, rerun, closed tab) or `error` (provider failure,
timeout, 429) with usage and latency, in a `finally`, so no path loses what was already received.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.auth import AuthError, Principal
from services.config import Settings
from services.paging import collect_pages
from services.providers import Provider, ProviderError, ReplyStream, Turn, Usage
from services.providers.catalogue import Catalogue, ModelOption
from services.ratelimit import RateLimiter
from services.store import (
    MAX_PAGE,
    MAX_STORED_CHARS,
    ChatStore,
    Conversation,
    InvalidInput,
    Message,
    StoreError,
    check_text,
    parse_uuid,
)
from services.streaming import Pump

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"
TITLE_CHARS = 60
WINDOW = 50  # messages the chat page renders at once; "Show earlier" adds another window
CONTEXT_MESSAGES = 100  # most recent messages considered for the model's context (then the size budget)
# Not settings: how often a streaming reply is saved, and the longest a received chunk waits to be shown.
CHECKPOINT_S = 1.0
RENDER_INTERVAL_S = 0.05
# How often the stream wakes while the provider is silent (to checkpoint, notice a stop, hang up).
TICK_S = 0.2
# How often a streaming reply's heartbeat is refreshed while nothing new is saved (at most; a third of
# CHAT_STALE_REPLY_S when that is shorter), so the sweep never takes a live reply for a dead one.
HEARTBEAT_S = 5.0
# The longest a reply may keep streaming; with the provider timeout it bounds how long a started turn
# writes under the identity that started it, and a little more for the final write.
LONGEST_REPLY_S = 600
FINAL_WRITE_S = 30

# How a reply ends; `services.store.Status` adds "streaming" for the row while the reply is in flight.
FinalStatus = Literal["complete", "interrupted", "error"]


@dataclass(frozen=True)
class Outcome:
    status: FinalStatus
    text: str
    message: Message | None  # the stored assistant message; None only if storing it failed
    error: str | None = None
    error_kind: str | None = None
    usage: Usage | None = None
    latency_ms: int = 0
    first_token_ms: int | None = None
    renders: int = 0


@dataclass(frozen=True)
class Window:
    messages: list[Message]  # oldest first
    has_more: bool


class Reply:
    """One streamed reply. Iterate it once (st.write_stream does); `outcome` is set when it has ended.
    Always `close()` it (the page does so in a `finally`): closing a half-read reply finalises it as
    `interrupted`; closing one that never started stores nothing.

    `run` makes the generator that streams and stores the reply; it is handed this Reply so that the
    generator's `finally` can set `outcome`. Nothing in it runs before the first `next()`."""

    def __init__(
        self,
        conversation_id: uuid.UUID,
        user_message: Message | None,
        option: ModelOption,
        created: bool,
        run: Callable[[Reply], Generator[str, None, None]],
    ) -> None:
        self.conversation_id = conversation_id
        self.user_message = user_message
        self.option = option
        self.created_conversation = created
        self.outcome: Outcome | None = None
        # Seconds until the next hand-over after one was shown; the page sets it from what it re-sends.
        self.pace: Callable[[], float] = lambda: RENDER_INTERVAL_S
        self._gen = run(self)
        self._iterated = False

    def __iter__(self) -> Iterator[str]:
        if self._iterated:
            raise RuntimeError("a Reply can be iterated only once")
        self._iterated = True
        return self._gen

    def close(self) -> None:
        # GeneratorExit at the generator's `yield`; its `finally` stores the reply as interrupted.
        self._gen.close()


@dataclass
class _TurnState:
    """What one streaming turn has got so far: `_stream` fills it, `_finish` stores it."""

    principal: Principal
    conversation_id: uuid.UUID
    option: ModelOption
    started: float  # time.monotonic() when the turn began; latency and time to first token count from here
    parts: list[str] = field(default_factory=list)
    status: FinalStatus = "interrupted"  # until the stream ends or fails
    error: ProviderError | None = None
    stream: ReplyStream | None = None
    message: Message | None = None  # the stored assistant row, once the first chunk has been saved
    first_token_ms: int | None = None
    renders: int = 0


def title_from(text: str) -> str:
    words = " ".join(text.split())
    if len(words) <= TITLE_CHARS:
        return words or DEFAULT_TITLE
    return words[: TITLE_CHARS - 1].rstrip() + "…"


def build_context(messages: Sequence[Message], budget_chars: int) -> list[Turn]:
    """Turns for the model from stored messages (oldest first), newest kept first within the budget.

    Consecutive user messages (a reply that failed, then a new question) are merged; of consecutive
    assistant messages (a regenerated reply) only the latest is kept; empty ones are skipped. The context
    starts with a user turn, as Anthropic requires.
    """
    turns: list[Turn] = []
    for m in messages:
        if not m.content.strip() or m.role not in ("user", "assistant"):
            continue
        if turns and turns[-1].role == m.role:
            if m.role == "user":
                turns[-1] = Turn("user", f"{turns[-1].content}\n\n{m.content}")
            else:
                turns[-1] = Turn("assistant", m.content)
            continue
        turns.append(Turn("user" if m.role == "user" else "assistant", m.content))
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        if kept and used + len(turn.content) > budget_chars:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


class ChatService:
    def __init__(
        self,
        store: ChatStore,
        catalogue: Catalogue,
        limiter: RateLimiter | None = None,
        *,
        settings: Settings,
        checkpoint_s: float = CHECKPOINT_S,
        render_interval_s: float = RENDER_INTERVAL_S,
        tick_s: float = TICK_S,
        heartbeat_s: float | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.limiter = limiter
        self.settings = settings
        self.checkpoint_s = checkpoint_s
        self.render_interval_s = render_interval_s
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(HEARTBEAT_S, settings.stale_reply_s / 3)

    # --- reading ---------------------------------------------------------------------------------

    def recent_conversations(
        self, principal: Principal, pages: int = 1, per_page: int = 20
    ) -> tuple[list[Conversation], bool]:
        """The user's conversations, most recently active first, `pages` keyset pages deep; and whether
        there are more."""
        items, cursor = collect_pages(
            lambda before: self.store.list_conversations(principal, limit=per_page, before=before), pages
        )
        return items, cursor is not None

    def open_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation:
        return self.store.get_conversation(principal, conversation_id)

    def window(self, principal: Principal, conversation: Conversation, pages: int = 1) -> Window:
        """The last `pages` * WINDOW messages of a conversation, oldest first, and whether older ones exist."""
        pages = max(1, pages)
        if conversation.user_id != principal.user_id:
            # Read-only view of another user's conversation (reviewers): page_messages lists only the
            # caller's own rows, recent_messages lets RLS decide.
            n = min(WINDOW * pages, MAX_PAGE - 1)
            rows = self.store.recent_messages(principal, conversation.id, limit=n + 1)
            return Window(rows[-n:], len(rows) > n)
        newest_first, cursor = collect_pages(
            lambda before: self.store.page_messages(
                principal, limit=WINDOW, before=before, conversation_id=conversation.id
            ),
            pages,
        )
        newest_first.reverse()
        return Window(newest_first, cursor is not None)

    # --- writing ---------------------------------------------------------------------------------

    def validate(self, text: object) -> str:
        if not isinstance(text, str):
            raise InvalidInput("Message must be text.")
        if not text.strip():
            raise InvalidInput("Message is empty: type something before sending.")
        return check_text(text, max_chars=self.settings.max_message_chars)

    def model_option(self, model: str) -> ModelOption:
        option = self.catalogue.option(model)
        if option is None:
            raise InvalidInput(f"The model {model!r} is not available here. Pick one from the list.")
        return option

    def send(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str | None,
        text: str,
        model: str,
        *,
        revoked: Callable[[], bool] | None = None,
    ) -> Reply:
        """Store the user's message and return the reply to stream. Raises InvalidInput (bad text or
        model), RateLimited, NotFound (no such conversation of this user), StoreError or AuthError, and
        then nothing is stored.

        Only what the provider request needs runs before it (rate limit, insert, context read: three
        short transactions). A new conversation is created titled from its first message. `revoked` is
        asked while the reply streams: once it says yes (signed out, account disabled) the reply ends at
        once, stored as `interrupted`.
        """
        text = self.validate(text)
        option = self.model_option(model)
        principal.ensure_fresh()
        cid = parse_uuid(conversation_id) if conversation_id is not None else None
        if self.limiter is not None:
            self.limiter.check(principal)
        created = cid is None
        if cid is None:
            cid = self.store.create_conversation(principal, title_from(text)).id
        try:
            # RLS refuses the insert into a conversation that is not the caller's (NotFound).
            user_message = self.store.add_message(principal, cid, "user", text, option.id, "complete")
        except BaseException:
            if created:
                self._forget_conversation(principal, cid)
            raise
        if created:
            history: Sequence[Message] = [user_message]
        else:
            history = self.store.recent_messages(principal, cid, limit=CONTEXT_MESSAGES)
        return self._reply(principal, cid, user_message, option, history, created, revoked)

    def regenerate(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        model: str,
        *,
        revoked: Callable[[], bool] | None = None,
    ) -> Reply:
        """Answer the conversation's last user message again (Retry after an error, or Regenerate). The
        earlier reply stays stored; the context uses the newest one."""
        option = self.model_option(model)
        conversation = self._own_conversation(principal, conversation_id)
        history = self.store.recent_messages(principal, conversation.id, limit=CONTEXT_MESSAGES)
        last_user = max((i for i, m in enumerate(history) if m.role == "user"), default=None)
        if last_user is None:
            raise InvalidInput("There is no message to answer in this conversation yet.")
        if self.limiter is not None:
            self.limiter.check(principal)
        return self._reply(principal, conversation.id, None, option, history[: last_user + 1], False, revoked)

    # --- internals -------------------------------------------------------------------------------

    def _own_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation:
        conversation = self.store.get_conversation(principal, conversation_id)
        if conversation.user_id != principal.user_id:
            raise InvalidInput("This conversation belongs to another user and is read-only.")
        return conversation

    def _forget_conversation(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        try:
            self.store.delete_conversation(principal, conversation_id)
        except (StoreError, AuthError):
            log.warning("could not remove an empty conversation after a failed insert", exc_info=True)

    def _reply(
        self,
        principal: Principal,
        cid: uuid.UUID,
        user_message: Message | None,
        option: ModelOption,
        history: Sequence[Message],
        created: bool,
        revoked: Callable[[], bool] | None,
    ) -> Reply:
        provider, option = self.catalogue.resolve(option.id)
        turns = build_context(history, max(self.settings.context_chars, self.settings.max_message_chars))
        # The turn's own writes (checkpoints, the final state) run under this principal: checked fresh now,
        # then accepted for as long as the turn may last, so an expiry mid-reply cannot cut it off.
        turn_principal = principal.for_turn(self.settings.provider_timeout_s + LONGEST_REPLY_S + FINAL_WRITE_S)
        reply = Reply(
            cid,
            user_message,
            option,
            created,
            run=lambda reply: self._stream(reply, turn_principal, provider, turns, revoked),
        )
        reply.pace = lambda: self.render_interval_s  # until the page paces it by what it redraws
        return reply

    def _stream(
        self,
        reply: Reply,
        principal: Principal,
        provider: Provider,
        turns: list[Turn],
        revoked: Callable[[], bool] | None,
    ) -> Generator[str, None, None]:
        turn = _TurnState(principal, reply.conversation_id, reply.option, started=time.monotonic())
        # The turn may not outlive the provider's own limits: a silent provider fails at its timeout, and a
        # reply that keeps talking is cut off here. The identity that started the turn is accepted as long.
        deadline = turn.started + self.settings.provider_timeout_s + LONGEST_REPLY_S
        pump = Pump(lambda: provider.stream(turn.option.model, turns, max_tokens=self.settings.max_reply_tokens))
        saved = 0  # characters of the reply stored so far
        last_checkpoint = turn.started
        try:
            # Timed hand-overs: "" means nothing new arrived for a tick. It is still yielded so the page
            # calls into Streamlit (which is how a stop is noticed) while the provider is silent.
            for text in pump.batches(lambda: reply.pace(), self.tick_s):
                if text:
                    if turn.first_token_ms is None:
                        turn.first_token_ms = int((time.monotonic() - turn.started) * 1000)
                    turn.parts.append(text)
                    turn.renders += 1
                yield text
                if revoked is not None and revoked():
                    turn.status = "interrupted"
                    break
                now = time.monotonic()
                if now > deadline:
                    raise ProviderError("timeout", f"The reply took longer than {LONGEST_REPLY_S // 60} minutes.")
                # Persist after handing the text on, so a database round trip never delays what is shown;
                # by the clock, not by chunks, so a pausing provider never leaves shown text unsaved.
                length = sum(map(len, turn.parts))
                if length > saved and (turn.message is None or now - last_checkpoint >= self.checkpoint_s):
                    content = _joined(turn.parts)
                    if turn.message is None:
                        turn.message = self.store.add_message(
                            turn.principal, turn.conversation_id, "assistant", content, turn.option.id, "streaming"
                        )
                    else:
                        turn.message = self.store.update_message(
                            turn.principal, turn.message.id, content=content, status="streaming"
                        )
                    saved, last_checkpoint = length, now
                elif turn.message is not None and now - last_checkpoint >= self.heartbeat_s:
                    # Nothing new to save (the provider is silent): still say this reply is alive.
                    self.store.touch_message(turn.principal, turn.message.id)
                    last_checkpoint = now
            else:
                turn.status = "complete"
        except ProviderError as exc:
            turn.status, turn.error = "error", exc
        except (StoreError, AuthError) as exc:
            log.warning("saving a streaming reply failed: %s", exc)
            turn.status, turn.error = "error", ProviderError("server", f"The reply could not be saved: {exc}")
        except Exception:
            log.exception("unexpected failure while streaming a reply")
            turn.status = "error"
            turn.error = ProviderError("server", "Something went wrong while streaming the reply.")
        finally:
            pump.close()
            turn.stream = pump.stream
            reply.outcome = self._finish(turn)

    def _finish(self, turn: _TurnState) -> Outcome:
        """Store the reply's final state (every path of `_stream` ends here) and describe it."""
        text = _joined(turn.parts)
        usage = turn.stream.usage if turn.stream is not None and turn.status == "complete" else None
        latency_ms = int((time.monotonic() - turn.started) * 1000)
        columns: dict[str, int | None] = {
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "latency_ms": latency_ms,
        }
        status, error = turn.status, turn.error
        stored: Message | None = None
        try:
            if turn.message is None:
                stored = self.store.add_message(
                    turn.principal, turn.conversation_id, "assistant", text, turn.option.id, status, **columns
                )
            else:
                stored = self.store.update_message(
                    turn.principal, turn.message.id, content=text, status=status, **columns
                )
        except (StoreError, AuthError) as exc:
            log.error("could not store the final state of a reply (%s): %s", status, exc)
            if error is None:
                error = ProviderError("server", f"The reply could not be saved: {exc}")
                status = "error"
        return Outcome(
            status=status,
            text=text,
            message=stored,
            error=error.message if error else None,
            error_kind=error.kind if error else None,
            usage=usage,
            latency_ms=latency_ms,
            first_token_ms=turn.first_token_ms,
            renders=turn.renders,
        )


def _joined(parts: list[str]) -> str:
    text = "".join(parts)
    return text if len(text) <= MAX_STORED_CHARS else text[:MAX_STORED_CHARS]
