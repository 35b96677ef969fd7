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
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services import attachments
from services.attachments import AttachmentRefused, FileContent, ForModel, Upload
from services.auth import AuthError, Principal
from services.config import Settings
from services.logs import event
from services.paging import collect_pages
from services.providers import ProviderError, ReplyStream, Turn, Usage
from services.providers.catalogue import Catalogue, ModelOption
from services.ratelimit import RateLimiter
from services.store import (
    MAX_PATH,
    MAX_STORED_CHARS,
    Attachment,
    AttachmentFile,
    ChatStore,
    Conversation,
    InvalidInput,
    Message,
    StoreError,
    Versions,
    check_text,
    clean_instructions,
    parse_uuid,
)
from services.streaming import Pump

log = logging.getLogger(__name__)

DEFAULT_TITLE = "New chat"
TITLE_CHARS = 60
WINDOW = 50  # messages the chat page renders at once; "Show earlier" adds another window
CONTEXT_MESSAGES = 100  # last messages of the current path considered for the context (then the size budget)
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


class ReplyObserver(Protocol):
    """Told when a reply starts streaming and when it has ended (services/metrics.py counts these)."""

    def reply_started(self, provider: str) -> None: ...

    def reply_finished(self, provider: str, outcome: Outcome | None) -> None: ...


@dataclass(frozen=True)
class Window:
    """The end of a conversation's current path (root -> current leaf), oldest first, and the versions of
    each shown message that has siblings (`‹ 2 / 3 ›`)."""

    messages: list[Message]
    has_more: bool
    versions: Mapping[uuid.UUID, Versions] = field(default_factory=dict)
    # The shown messages' files (names, sizes, thumbnails; never the originals), by message.
    attachments: Mapping[uuid.UUID, Sequence[Attachment]] = field(default_factory=dict)


class Reply:
    """One streamed reply. Iterate it once (st.write_stream does); `outcome` is set when it has ended.
    Always `close()` it (the page does so in a `finally`): closing a half-read reply finalises it as
    `interrupted`; closing one that never started stores nothing.

    `run` makes the generator that streams and stores the reply; it is handed this Reply so that the
    generator's `finally` can set `outcome`. Nothing in it runs before the first `next()`.

    `start()` opens the provider request at once, before the reply is iterated, so the model's own latency
    overlaps whatever the page draws in between (the sidebar, the actions). Chunks wait in the pump until
    the reply is read. A started reply that is never read (the page was stopped in between) stores nothing,
    and its request is closed by `close()` or, failing that, when the Reply is garbage collected."""

    def __init__(
        self,
        conversation_id: uuid.UUID,
        user_message: Message | None,
        option: ModelOption,
        created: bool,
        run: Callable[[Reply], Generator[str, None, None]],
        open_stream: Callable[[], ReplyStream] | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        self.user_message = user_message
        self.option = option
        self.created_conversation = created
        self.outcome: Outcome | None = None
        # Seconds until the next hand-over after one was shown; the page sets it from what it re-sends.
        self.pace: Callable[[], float] = lambda: RENDER_INTERVAL_S
        self._open_stream = open_stream
        self._pump: Pump | None = None
        self.started_at: float | None = None  # time.monotonic() when the provider request was opened
        self.attachments: Sequence[Attachment] = ()  # the files stored with the user message just sent
        self.notices: tuple[str, ...] = ()  # what the user should know about this turn's context (cut files)
        self._gen = run(self)
        self._iterated = False

    def start(self) -> None:
        """Open the provider request now (idempotent); see the class doc."""
        if self._pump is None and self._open_stream is not None:
            self.started_at = time.monotonic()
            self._pump = Pump(self._open_stream)
            # A page stopped between start() and reading never closes the reply: hang up when it is dropped.
            weakref.finalize(self, self._pump.close)

    def pump(self) -> Pump:
        """The reading side of the provider request, opened now if `start()` was not called."""
        self.start()
        if self._pump is None:
            raise RuntimeError("this Reply has no provider request to open")
        return self._pump

    def __iter__(self) -> Iterator[str]:
        if self._iterated:
            raise RuntimeError("a Reply can be iterated only once")
        self._iterated = True
        return self._gen

    def close(self) -> None:
        # GeneratorExit at the generator's `yield`; its `finally` stores the reply as interrupted. A reply
        # started but never read has no generator frame to run that `finally`: close its request here.
        self._gen.close()
        if self._pump is not None:
            self._pump.close()


@dataclass
class _TurnState:
    """What one streaming turn has got so far: `_stream` fills it, `_finish` stores it."""

    principal: Principal
    conversation_id: uuid.UUID
    option: ModelOption
    started: float  # time.monotonic() when the turn began; latency and time to first token count from here
    parent_id: uuid.UUID | None = None  # the user message this reply answers
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


def build_context(
    messages: Sequence[Message], budget_chars: int, files: Mapping[uuid.UUID, ForModel] | None = None
) -> list[Turn]:
    """Turns for the model from one path of stored messages (root first), newest kept first within the
    budget. Callers pass a path (`ChatStore.path_messages`), so other branches never reach the model.
    `files` are user messages' attachments: documents' text follows the message's own (and counts
    against the budget), images go with its turn.

    Consecutive user messages (a reply that failed, then a new question) are merged; of consecutive
    assistant messages only the latest is kept; empty ones are skipped. The context starts with a user
    turn, as Anthropic requires.
    """
    turns: list[Turn] = []
    for m in messages:
        extra = (files or {}).get(m.id)
        content = m.content + extra.text if extra is not None else m.content
        images = extra.images if extra is not None else ()
        if not content.strip() or m.role not in ("user", "assistant"):
            continue
        if turns and turns[-1].role == m.role:
            if m.role == "user":
                turns[-1] = Turn("user", f"{turns[-1].content}\n\n{content}", turns[-1].images + images)
            else:
                turns[-1] = Turn("assistant", content)
            continue
        turns.append(Turn("user", content, images) if m.role == "user" else Turn("assistant", content))
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
        observer: ReplyObserver | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.limiter = limiter
        self.settings = settings
        self.checkpoint_s = checkpoint_s
        self.render_interval_s = render_interval_s
        self.tick_s = tick_s
        self.observer = observer
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else min(HEARTBEAT_S, settings.stale_reply_s / 3)
        self.file_limits = attachments.Limits(
            settings.file_max_mb * attachments.MB, settings.message_files_max_mb * attachments.MB
        )

    # --- reading ---------------------------------------------------------------------------------

    def recent_conversations(
        self, principal: Principal, pages: int = 1, per_page: int = 20, *, title_filter: str = ""
    ) -> tuple[list[Conversation], bool]:
        """The user's conversations, most recently active first, `pages` keyset pages deep; and whether
        there are more. `title_filter` keeps titles containing it (case-insensitive, in the database).

        Every call walks from the top: a chat that became active while the user read page 1 moves to the
        top of this walk instead of being skipped by (or repeated after) a cursor taken before it moved."""
        items, cursor = collect_pages(
            lambda before: self.store.list_conversations(
                principal, limit=per_page, before=before, title_filter=title_filter
            ),
            pages,
        )
        return items, cursor is not None

    def open_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation:
        return self.store.get_conversation(principal, conversation_id)

    def window(self, principal: Principal, conversation: Conversation, pages: int = 1) -> Window:
        """The last `pages` * WINDOW messages of the conversation's current path, oldest first, whether
        older ones exist, and the versions of those shown. Reviewers read others' paths the same way (RLS
        decides what is visible)."""
        n = min(WINDOW * max(1, pages), MAX_PATH - 1)
        rows = self.store.path_messages(principal, conversation.id, limit=n + 1)
        shown = rows[-n:]
        versions = self.store.versions(principal, conversation.id, [m.id for m in shown]) if shown else {}
        asked = [m.id for m in shown if m.role == "user"]
        files = self.store.message_attachments(principal, asked) if asked else {}
        return Window(shown, len(rows) > n, versions, files)

    def attachment_file(self, principal: Principal, attachment_id: uuid.UUID | str) -> AttachmentFile:
        """One stored original (a download): read only now, never on an ordinary page run."""
        return self.store.attachment_file(principal, attachment_id)

    # --- managing conversations --------------------------------------------------------------------

    def rename(self, principal: Principal, conversation_id: uuid.UUID | str, title: str) -> Conversation:
        self._own_conversation(principal, conversation_id)
        return self.store.rename_conversation(principal, conversation_id, title)

    def delete(self, principal: Principal, conversation_id: uuid.UUID | str) -> None:
        self._own_conversation(principal, conversation_id)
        self.store.delete_conversation(principal, conversation_id)

    def set_instructions(self, principal: Principal, conversation_id: uuid.UUID | str, text: str) -> Conversation:
        """Replace a conversation's standing instructions; they apply from the next reply on."""
        self._own_conversation(principal, conversation_id)
        return self.store.set_instructions(principal, conversation_id, text)

    def switch(self, principal: Principal, message_id: uuid.UUID | str) -> Conversation:
        """Show another version: the newest leaf under `message_id` becomes the current leaf (stored, so a
        reload or another tab shows the same branch). Raises NotFound for a message that is not the
        caller's own (a reviewer may read another user's versions but not choose between them)."""
        principal.ensure_fresh()
        return self.store.choose_branch(principal, message_id)

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
        instructions: str | None = None,
        context: Sequence[Turn] | None = None,
        files: Sequence[Upload] = (),
    ) -> Reply:
        """Store the user's message under the conversation's current leaf and return the reply to stream.
        Raises InvalidInput (bad text or model), RateLimited, NotFound (no such conversation of this
        user), StoreError or AuthError, and then nothing is stored.

        Only what the provider request needs runs before it (rate limit, insert, context read). A new
        conversation is created titled from its first message, with `instructions` (when None: the
        user's own default, else the CHAT_DEFAULT_INSTRUCTIONS setting; see `default_instructions`); for an
        existing one `instructions` is ignored.

        `context`, when given, is sent to the provider instead of the stored path and instructions (the
        OpenAI-compatible door sends what its client sent, system prompt included; it must end with `text`),
        and a conversation it creates gets no standing instructions. `revoked` is
        asked while the reply streams: once it says yes (signed out, account disabled) the reply ends at
        once, stored as `interrupted`.

        `files` are attached to the message: checked by content and size, and, when an image goes to a model
        that takes none, refused (AttachmentRefused, naming the files that passed) before anything is stored.
        """
        if files and isinstance(text, str) and not text.strip():
            text = "Attached: " + ", ".join(f.name for f in files)  # a message of files alone
        text = self.validate(text)
        option = self.model_option(model)
        checked = self.check_files(files, option)
        principal.ensure_fresh()
        cid = parse_uuid(conversation_id) if conversation_id is not None else None
        standing = ""  # a door turn (`context`) brings its own system prompt and stores none
        if cid is None and context is None:
            # What the user typed for this chat wins, even typed empty; else their default, else the setting.
            standing = clean_instructions(
                self.default_instructions(principal) if instructions is None else instructions
            )
        if self.limiter is not None:
            self.limiter.check(principal)
        created = cid is None
        if cid is None:
            cid = self.store.create_conversation(principal, title_from(text), instructions=standing).id
        try:
            # RLS refuses the insert into a conversation that is not the caller's (NotFound).
            user_message = self.store.add_message(principal, cid, "user", text, option.id, "complete")
            stored = self.store.add_attachments(principal, user_message.id, checked) if checked else []
        except BaseException:
            if created:
                self._forget_conversation(principal, cid)
            raise
        if created or context is not None:
            history: Sequence[Message] = [user_message]
        else:
            history = self.store.path_messages(principal, cid, to=user_message.id, limit=CONTEXT_MESSAGES)
            standing = self.store.get_conversation(principal, cid).instructions
        fresh = {user_message.id: checked} if checked else {}
        reply = self._reply(principal, cid, user_message, option, history, created, revoked, standing, context, fresh)
        reply.attachments = stored
        return reply

    def check_files(self, files: Sequence[Upload], option: ModelOption) -> list[attachments.NewAttachment]:
        """Files checked for sending to `option`'s model (AttachmentRefused, keeping those that passed)."""
        if not files:
            return []
        checked = attachments.check_all(files, self.file_limits)
        if any(f.media_type.startswith("image/") for f in checked) and not option.images:
            raise AttachmentRefused(_no_images(option), files)
        return checked

    def edit(
        self,
        principal: Principal,
        message_id: uuid.UUID | str,
        new_text: str,
        model: str,
        *,
        revoked: Callable[[], bool] | None = None,
    ) -> Reply:
        """Store `new_text` as a new version of one of the user's own messages (a sibling: the original and
        everything after it stay) and return the reply to stream on that new branch."""
        text = self.validate(new_text)
        option = self.model_option(model)
        principal.ensure_fresh()
        original = self.store.get_message(principal, message_id)
        if original.role != "user":
            raise InvalidInput("Only your own messages can be edited; regenerate a reply instead.")
        conversation = self._own_conversation(principal, original.conversation_id)
        if self.limiter is not None:
            self.limiter.check(principal)
        kept = self.store.message_attachments(principal, [original.id]).get(original.id, ())
        if any(a.is_image for a in kept) and not option.images:
            raise AttachmentRefused(_no_images(option))
        edited = self.store.add_message(
            principal, conversation.id, "user", text, option.id, "complete", parent_id=original.parent_id
        )
        if kept:
            self.store.copy_attachments(principal, original.id, edited.id)  # the new version keeps its files
        history = self.store.path_messages(principal, conversation.id, to=edited.id, limit=CONTEXT_MESSAGES)
        standing = conversation.instructions
        return self._reply(principal, conversation.id, edited, option, history, False, revoked, standing)

    def regenerate(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        model: str,
        *,
        revoked: Callable[[], bool] | None = None,
    ) -> Reply:
        """Answer the last user message of the current path again (Retry after an error, or Regenerate).
        The new reply is a sibling of the earlier ones, which stay stored as other versions."""
        option = self.model_option(model)
        conversation = self._own_conversation(principal, conversation_id)
        history = self.store.path_messages(principal, conversation.id, limit=CONTEXT_MESSAGES)
        last_user = max((i for i, m in enumerate(history) if m.role == "user"), default=None)
        if last_user is None:
            raise InvalidInput("There is no message to answer in this conversation yet.")
        if self.limiter is not None:
            self.limiter.check(principal)
        context = history[: last_user + 1]
        return self._reply(principal, conversation.id, None, option, context, False, revoked, conversation.instructions)

    # --- the picker's remembered model ----------------------------------------------------------

    def preferred_model(self, principal: Principal) -> str:
        """The model this user last picked when it is still offered, else the catalogue's default."""
        try:
            stored = self.store.model_choice(principal)
        except (StoreError, AuthError):
            log.warning("could not read the remembered model; offering the default", exc_info=True)
            stored = None
        return stored if stored is not None and self.catalogue.option(stored) is not None else self.catalogue.default

    def remember_model(self, principal: Principal, model: str) -> None:
        """Keep the user's pick for their next session (any device). Raises InvalidInput, StoreError."""
        self.store.save_model_choice(principal, self.model_option(model).id)

    # --- the instructions a new conversation starts with ----------------------------------------

    def default_instructions(self, principal: Principal) -> str:
        """What a new conversation starts with when nothing is typed for it: the user's own default (set on
        the Account page) when they have one, else the CHAT_DEFAULT_INSTRUCTIONS setting."""
        own = self.store.default_instructions(principal)
        return self.settings.default_instructions if own is None else own

    def own_default_instructions(self, principal: Principal) -> str | None:
        """The user's own default instructions, None when they set none (the setting applies then)."""
        return self.store.default_instructions(principal)

    def set_default_instructions(self, principal: Principal, text: str) -> str | None:
        """Keep `text` as the user's default instructions for new conversations ("" clears it, and the
        setting applies again). Raises InvalidInput (too long, NUL), StoreError."""
        return self.store.save_default_instructions(principal, text)

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
        instructions: str = "",
        context: Sequence[Turn] | None = None,
        fresh: Mapping[uuid.UUID, Sequence[FileContent]] | None = None,
    ) -> Reply:
        provider, option = self.catalogue.resolve(option.id)
        notes: tuple[str, ...] = ()
        if context is not None:
            turns = list(context)
        else:
            budget = max(self.settings.context_chars, self.settings.max_message_chars)
            files, notes = self._files_for_model(principal, history, option, budget, fresh or {})
            turns = build_context(history, budget, files)
        # The reply answers the last message of its context path, whatever the current leaf becomes.
        parent_id = history[-1].id if history else None
        # Only when set: a provider without instructions gets exactly the call it always got.
        system: dict[str, Any] = {"system": instructions} if instructions else {}
        # The turn's own writes (checkpoints, the final state) run under this principal: checked fresh now,
        # then accepted for as long as the turn may last, so an expiry mid-reply cannot cut it off.
        turn_principal = principal.for_turn(self.settings.provider_timeout_s + LONGEST_REPLY_S + FINAL_WRITE_S)
        max_tokens = self.settings.max_reply_tokens
        reply = Reply(
            cid,
            user_message,
            option,
            created,
            run=lambda reply: self._observed(reply, self._stream(reply, turn_principal, revoked, parent_id)),
            open_stream=lambda: provider.stream(option.model, turns, max_tokens=max_tokens, **system),
        )
        reply.pace = lambda: self.render_interval_s  # until the page paces it by what it redraws
        reply.notices = notes
        return reply

    def _files_for_model(
        self,
        principal: Principal,
        history: Sequence[Message],
        option: ModelOption,
        budget: int,
        fresh: Mapping[uuid.UUID, Sequence[FileContent]],
    ) -> tuple[dict[uuid.UUID, ForModel], tuple[str, ...]]:
        """The files of the path's user messages as the model gets them, and notes for the user about the
        message being answered (the last user message): files cut to fit, images a model cannot take.
        Files just checked (`fresh`) are used as they are; the others' text and images are read now, the
        one time originals are read besides a download."""
        asked = [m for m in history if m.role == "user"]
        stored_for = [m.id for m in asked if m.id not in fresh]
        by_message: dict[uuid.UUID, list[FileContent]] = {mid: list(items) for mid, items in fresh.items()}
        for item in self.store.attachment_contents(principal, stored_for) if stored_for else []:
            by_message.setdefault(item.message_id, []).append(item)
        if not by_message:
            return {}, ()
        last = asked[-1].id if asked else uuid.UUID(int=0)
        if not option.images and any(f.media_type.startswith("image/") for f in by_message.get(last, ())):
            raise AttachmentRefused(_no_images(option))
        found: dict[uuid.UUID, ForModel] = {}
        notes: list[str] = []
        dropped = False
        for m in asked:
            if m.id not in by_message:
                continue
            files = by_message[m.id]
            if not option.images:
                dropped = dropped or any(f.media_type.startswith("image/") for f in files)
                files = [f for f in files if not f.media_type.startswith("image/")]
            found[m.id] = attachments.for_model(files, max(0, budget - len(m.content)))
            if m.id == last:
                notes += found[m.id].notes
        if dropped:
            notes.append(f"Images of earlier messages were not sent: {option.label} does not take images.")
        return found, tuple(notes)

    def _stream(
        self,
        reply: Reply,
        principal: Principal,
        revoked: Callable[[], bool] | None,
        parent_id: uuid.UUID | None,
    ) -> Generator[str, None, None]:
        pump = reply.pump()
        assert reply.started_at is not None  # set by pump()
        # Latency and time to first token count from the provider request, which start() may have opened
        # while the page was still drawing.
        turn = _TurnState(principal, reply.conversation_id, reply.option, started=reply.started_at, parent_id=parent_id)
        # The turn may not outlive the provider's own limits: a silent provider fails at its timeout, and a
        # reply that keeps talking is cut off here. The identity that started the turn is accepted as long.
        deadline = turn.started + self.settings.provider_timeout_s + LONGEST_REPLY_S
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
                            turn.principal,
                            turn.conversation_id,
                            "assistant",
                            content,
                            turn.option.id,
                            "streaming",
                            parent_id=turn.parent_id,
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

    def _observed(self, reply: Reply, stream: Generator[str, None, None]) -> Generator[str, None, None]:
        """`stream` (which sets reply.outcome as it ends) between the observer's start and end, then the
        turn's one log line. A reply closed before it started runs none of this, like `_stream` itself."""
        provider = reply.option.provider
        if self.observer is not None:
            self.observer.reply_started(provider)
        try:
            yield from stream
        finally:
            if self.observer is not None:
                self.observer.reply_finished(provider, reply.outcome)
            self._log_turn(reply)

    def _log_turn(self, reply: Reply) -> None:
        o = reply.outcome
        if o is None:
            log.error("a reply ended without an outcome")
            return
        fields: dict[str, object] = {
            "status": o.status, "provider": reply.option.provider, "model": reply.option.id,
            "error_kind": o.error_kind, "first_token_ms": o.first_token_ms, "latency_ms": o.latency_ms,
            "reply_chars": len(o.text), "stored": o.message is not None,
        }  # fmt: skip
        if self.settings.log_content:  # CHAT_LOG_CONTENT: debugging only
            fields["user_text"] = reply.user_message.content if reply.user_message is not None else None
            fields["reply_text"] = o.text
        event(log, "reply finished", **fields)

    def _finish(self, turn: _TurnState) -> Outcome:
        """Store the reply's final state (every path of `_stream` ends here) and describe it."""
        text = _joined(turn.parts)
        usage = turn.stream.usage if turn.stream is not None and turn.status == "complete" else None
        latency_ms = int((time.monotonic() - turn.started) * 1000)
        input_tokens = usage.input_tokens if usage else None
        output_tokens = usage.output_tokens if usage else None
        status, error = turn.status, turn.error
        stored: Message | None = None
        try:
            if turn.message is None:
                stored = self.store.add_message(
                    turn.principal,
                    turn.conversation_id,
                    "assistant",
                    text,
                    turn.option.id,
                    status,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    latency_ms=latency_ms,
                    parent_id=turn.parent_id,
                )
            else:
                stored = self.store.update_message(
                    turn.principal,
                    turn.message.id,
                    content=text,
                    status=status,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    latency_ms=latency_ms,
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


def _no_images(option: ModelOption) -> str:
    return (
        f"{option.label} does not take images, so nothing was sent. Pick a model that does, "
        "or remove the images and send again."
    )


def _joined(parts: list[str]) -> str:
    text = "".join(parts)
    return text if len(text) <= MAX_STORED_CHARS else text[:MAX_STORED_CHARS]
