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
    Conversation,
    HistoryPage,
    HistoryRow,
    Message,
    MessageFilter,
    Page,
    RequestCount,
    Role,
    Status,
    UsageRow,
    UserUsage,
)


class ConversationReader(Protocol):
    """What both the chat page and the History page read or remove by conversation."""

    def get_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation: ...

    def list_conversations(
        self, principal: Principal, limit: int = 20, before: str | None = None
    ) -> Page[Conversation]: ...

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> None: ...


class ChatStore(ConversationReader, Protocol):
    """Conversations, messages and the checkpoints of a streaming reply."""

    def create_conversation(self, principal: Principal, title: str = "New chat") -> Conversation: ...

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
    ) -> Message: ...

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


class ReviewStore(ConversationReader, Protocol):
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


class RateLimitCounter(Protocol):
    """Counts requests per user in a fixed window shared by every app replica."""

    def count_request(self, principal: Principal, window_s: int) -> RequestCount:
        """Count one request; raise StoreUnavailable when the count cannot be kept."""
        ...


class Store(ChatStore, ReviewStore, ProfileStore, RateLimitCounter, Protocol):
    """One backend: all three roles over one connection pool."""

    def close(self) -> None: ...
