"""What the services need from storage, sized for each caller (STYLE.md 3 and 13).

`ChatStore` is what a chat turn needs (conversations, messages, checkpoints); `ReviewStore` is what the
History page needs (search, filters, usage, exports, deletes); `RateLimitCounter` counts requests per user.
A backend (`postgres.py`; `supabase.py` later) implements all three as one `Store` with one connection
pool, and passes tests/test_store_contract.py. Every method takes the verified `Principal` and is one unit
of work; backends scope it with row-level security in the database, never with filters in Python.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from services.auth import Principal
from services.store.types import (
    AT_LEAF,
    ApiKey,
    ApiKeyMatch,
    Attachment,
    AttachmentContent,
    AttachmentFile,
    Conversation,
    ExportedAttachment,
    Feedback,
    HistoryPage,
    HistoryRow,
    Message,
    MessageFilter,
    NewAttachment,
    Page,
    ParentRef,
    Rating,
    RequestCount,
    Role,
    Status,
    UsageRow,
    UserUsage,
    Versions,
)


class ConversationReader(Protocol):
    """What both the chat page and the History page read or remove by conversation."""

    def get_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation: ...

    def list_conversations(
        self, principal: Principal, limit: int = 20, before: str | None = None, *, title_filter: str = ""
    ) -> Page[Conversation]:
        """The caller's conversations, most recently active first; `title_filter` keeps those whose title
        contains it (case-insensitive). A cursor is valid only for the filter it was made with."""
        ...

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> None: ...


class AttachmentReader(Protocol):
    """What both the chat page and the History page read of attached files. Listing never reads an
    original: a page rerun costs the names and thumbnails, whatever the files weigh."""

    def message_attachments(
        self, principal: Principal, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Sequence[Attachment]]:
        """The attachments (with thumbnails, without originals) of those of `message_ids` the principal may
        read, by message, oldest first; messages without any are left out."""
        ...

    def attachment_file(self, principal: Principal, attachment_id: uuid.UUID | str) -> AttachmentFile:
        """One original (a download, an opened file); NotFound when the principal may not read it."""
        ...


class AttachmentStore(AttachmentReader, Protocol):
    """Attached files: stored with a user message, sent to the model with it."""

    def add_attachments(
        self, principal: Principal, message_id: uuid.UUID | str, items: Sequence[NewAttachment]
    ) -> list[Attachment]:
        """Store files with one of the principal's own messages, all in one transaction (NotFound for a
        message that is not theirs); returns them as `message_attachments` lists them."""
        ...

    def copy_attachments(
        self, principal: Principal, from_message: uuid.UUID | str, to_message: uuid.UUID | str
    ) -> int:
        """Give `to_message` copies of the files of `from_message` (both the principal's own; an edited
        message keeps its files); returns how many were copied."""
        ...

    def attachment_contents(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> list[AttachmentContent]:
        """What the model is sent for these messages' files: documents' text, images' bytes."""
        ...


class ChatStore(ConversationReader, AttachmentStore, Protocol):
    """Conversations, messages and the checkpoints of a streaming reply."""

    def create_conversation(
        self,
        principal: Principal,
        title: str = "New chat",
        conversation_id: uuid.UUID | None = None,
        *,
        instructions: str = "",
    ) -> Conversation:
        """A new conversation; with `conversation_id`, that one, created if missing (the caller's own,
        else NotFound), so a client-chosen id maps to one conversation even when two requests race."""
        ...

    def set_instructions(self, principal: Principal, conversation_id: uuid.UUID | str, text: str) -> Conversation:
        """Replace the conversation's standing instructions ("" removes them)."""
        ...

    def rename_conversation(
        self, principal: Principal, conversation_id: uuid.UUID | str, title: str
    ) -> Conversation: ...

    def add_message(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        role: Role,
        content: str,
        model: str,
        status: Status = "complete",
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: int | None = None,
        parent_id: ParentRef = AT_LEAF,
    ) -> Message:
        """Store a message under `parent_id` (a message of the same conversation, None for a new root, or
        AT_LEAF: under the current leaf) and make it the conversation's current leaf, in one transaction."""
        ...

    def update_message(
        self,
        principal: Principal,
        message_id: uuid.UUID | str,
        *,
        content: str,
        status: Status,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: int | None = None,
    ) -> Message: ...

    def touch_message(self, principal: Principal, message_id: uuid.UUID | str) -> None:
        """Refresh a streaming reply's heartbeat (and mark it `streaming` again if a sweep had finalised it
        while its turn was cut off from the database), without rewriting its text."""
        ...

    def recent_messages(
        self, principal: Principal, conversation_id: uuid.UUID | str, limit: int = 50
    ) -> list[Message]: ...

    def page_messages(
        self,
        principal: Principal,
        limit: int = 20,
        before: str | None = None,
        conversation_id: uuid.UUID | str | None = None,
    ) -> Page[Message]: ...

    def get_message(self, principal: Principal, message_id: uuid.UUID | str) -> Message: ...

    def path_messages(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        *,
        to: uuid.UUID | str | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """The last `limit` messages of the path from the root to `to` (default: the current leaf), oldest
        first. Messages of other branches never appear."""
        ...

    def versions(
        self, principal: Principal, conversation_id: uuid.UUID | str, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Versions]:
        """For each of `message_ids` that has siblings: it and its siblings, oldest first."""
        ...

    def choose_branch(self, principal: Principal, message_id: uuid.UUID | str) -> Conversation:
        """Make the newest leaf under `message_id` (itself if it has no replies) the current leaf of its
        conversation, and return the conversation."""
        ...

    def save_model_choice(self, principal: Principal, model_id: str) -> None:
        """Remember the model the principal last picked (on their own profile row)."""
        ...

    def model_choice(self, principal: Principal) -> str | None:
        """The model the principal last picked, if any (it may no longer be offered)."""
        ...

    def default_instructions(self, principal: Principal) -> str | None:
        """The principal's own default instructions for new conversations; None when they set none."""
        ...

    def save_default_instructions(self, principal: Principal, text: str) -> str | None:
        """Store the principal's own default instructions, cleaned ("" clears them); returns what is
        stored (None: none). Their display name and model choice stay as they were."""
        ...


class ReviewStore(ConversationReader, AttachmentReader, Protocol):
    """Search, filters, usage, exports and erasure: what reviewing stored history needs."""

    def search_messages(
        self,
        principal: Principal,
        where: MessageFilter,
        limit: int = 20,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage: ...

    def iter_history(
        self, principal: Principal, conversation_id: uuid.UUID | str | None = None, batch_size: int = 1000
    ) -> Iterator[HistoryRow]: ...

    def usage_by_day(
        self, principal: Principal, since: datetime, until: datetime, timezone: str, all_users: bool = False
    ) -> list[UsageRow]: ...

    def message_models(self, principal: Principal, all_users: bool = False) -> list[str]: ...

    def export_csv(self, principal: Principal) -> Iterator[bytes]: ...

    def iter_attachments(self, principal: Principal, batch_size: int = 4) -> Iterator[ExportedAttachment]:
        """Every file this user attached (their own, also for reviewers), originals included, oldest first,
        `batch_size` at a time (files can be large)."""
        ...

    def current_path_ids(self, principal: Principal, conversation_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Ids of the messages on the current path (root to current leaf) of each of these conversations
        that the caller may read."""
        ...

    def delete_all_user_data(self, principal: Principal) -> int: ...

    def usage_by_user(
        self, principal: Principal, since: datetime, until: datetime, all_users: bool = False
    ) -> list[UserUsage]:
        """Messages and tokens per user for since <= created_at < until, most messages first."""
        ...


class ProfileStore(Protocol):
    """Display names: each user writes only their own; the owner and reviewers may read them."""

    def save_display_name(self, principal: Principal, name: str) -> str:
        """Store (or replace) the principal's own display name, cleaned; returns what was stored."""
        ...

    def display_names(self, principal: Principal, user_ids: Sequence[str]) -> Mapping[str, str]:
        """The names of those of `user_ids` the principal may see (their own; everyone's for a reviewer);
        ids without a visible name are left out."""
        ...


class FeedbackStore(Protocol):
    """Thumbs and comments on assistant replies: each user writes only their own, on their own finished
    replies; the owner and reviewers read them."""

    def set_feedback(
        self, principal: Principal, message_id: uuid.UUID | str, rating: Rating, comment: str | None = None
    ) -> Feedback:
        """Give or change the principal's feedback on one of their finished assistant replies. `comment`:
        None keeps the stored one, "" removes it, other text replaces it. NotFound for any other message."""
        ...

    def clear_feedback(self, principal: Principal, message_id: uuid.UUID | str) -> bool:
        """Remove the principal's feedback on a reply (un-thumbing); whether there was any."""
        ...

    def feedback_for(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Feedback]:
        """The feedback on these messages that the principal may read."""
        ...


class RateLimitCounter(Protocol):
    """Counts requests per user in a fixed window shared by every app replica."""

    def count_request(self, principal: Principal, window_s: int) -> RequestCount:
        """Count one request; raise StoreUnavailable when the count cannot be kept."""
        ...


class ApiKeyStore(Protocol):
    """Personal API keys: their owner creates, lists and revokes them; a presented secret's hash is turned
    into its owner by a lookup that needs no principal (the client has none yet) and tells nothing else."""

    def create_api_key(
        self,
        principal: Principal,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        expires_at: datetime | None,
        max_live: int,
    ) -> ApiKey:
        """Store a new key for the principal; InvalidInput when they already have `max_live` live keys."""
        ...

    def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        """The principal's own keys, live and dead, newest first."""
        ...

    def revoke_api_key(self, principal: Principal, key_id: uuid.UUID | str) -> ApiKey:
        """Revoke one of the principal's keys (revoking twice keeps the first time); NotFound otherwise."""
        ...

    def find_api_key(self, secret_hash: str) -> ApiKeyMatch | None:
        """The owner of the live key with this hash (recording its use), the state of a dead one, or None."""
        ...


class Store(ChatStore, ReviewStore, ProfileStore, FeedbackStore, RateLimitCounter, ApiKeyStore, Protocol):
    """One backend: all these roles over one connection pool."""

    def close(self) -> None: ...

    def ping(self, timeout_s: float = 3.0) -> None:
        """One round trip to the database (readiness); StoreUnavailable when it does not answer in time."""
        ...
