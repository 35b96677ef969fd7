"""The storage protocol: value types, errors, opaque keyset cursors and the MessageStore interface.

Backends live one per file (`postgres.py`; `supabase.py` later). Every method takes the verified
`Principal`; backends scope all work to it with row-level security in the database, not with filters
in Python.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, Literal, Protocol, TypeVar

from services.auth import Principal

Role = Literal["user", "assistant"]
Status = Literal["streaming", "complete", "interrupted", "error"]
ROLES: tuple[str, ...] = ("user", "assistant")
STATUSES: tuple[str, ...] = ("streaming", "complete", "interrupted", "error")
MAX_PAGE = 200
MAX_TITLE_CHARS = 200
# Hard ceiling for stored text (assistant replies included); user input has the configured, lower limit.
MAX_STORED_CHARS = 1_000_000


class StoreError(Exception):
    """Base of storage errors; the message is safe to show to the user."""


class InvalidInput(StoreError, ValueError):
    """Bad input from the caller (empty text, NUL byte, too long, limit out of range)."""


class InvalidCursor(InvalidInput):
    """A page cursor that is malformed, tampered with, or made for another user or listing."""


class NotFound(StoreError, LookupError):
    """The conversation or message does not exist for this user (RLS makes others' rows invisible)."""


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Message:
    id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: str
    role: str
    content: str
    model: str
    status: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: int | None
    created_at: datetime


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


# --- cursors -------------------------------------------------------------------------------------
# A cursor is the (created_at, id) of the last row of a page, plus a short hash of the user and the
# listing it belongs to. It carries no secret: RLS already keeps others' rows out. The owner hash only
# lets us tell a user "this link is from another account/listing" instead of silently showing page 1.


def _owner_tag(principal: Principal, scope: str) -> str:
    return hashlib.sha256(f"{scope}\x00{principal.user_id}".encode()).hexdigest()[:12]


def encode_cursor(principal: Principal, scope: str, created_at: datetime, row_id: uuid.UUID) -> str:
    payload = {"v": 1, "t": created_at.isoformat(), "i": str(row_id), "o": _owner_tag(principal, scope)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(principal: Principal, scope: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    bad = InvalidCursor("That page link is not valid (it may be damaged or from another account).")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= 256:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise ValueError
        created_at = datetime.fromisoformat(payload["t"])
        row_id = uuid.UUID(payload["i"])
        owner = payload["o"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise bad from None
    if created_at.tzinfo is None or owner != _owner_tag(principal, scope):
        raise bad
    return created_at, row_id


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"Page size must be between 1 and {MAX_PAGE}.")
    return limit


def check_text(text: str, *, max_chars: int, what: str = "Message") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text.")
    if "\x00" in text:
        raise InvalidInput(f"{what} contains a NUL character, which cannot be stored. Remove it and try again.")
    if len(text) > max_chars:
        raise InvalidInput(f"{what} is too long: {len(text):,} characters, the limit is {max_chars:,}.")
    return text


def parse_uuid(value: uuid.UUID | str, what: str = "conversation") -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"That {what} does not exist.") from None


class MessageStore(Protocol):
    """Per-user storage of conversations and messages. Each method is one transaction."""

    max_message_chars: int

    def create_conversation(self, principal: Principal, title: str = "New chat") -> Conversation: ...

    def get_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation: ...

    def list_conversations(
        self, principal: Principal, limit: int = 20, before: str | None = None
    ) -> Page[Conversation]: ...

    def rename_conversation(
        self, principal: Principal, conversation_id: uuid.UUID | str, title: str
    ) -> Conversation: ...

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> None: ...

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

    def delete_all_user_data(self, principal: Principal) -> int: ...

    # history page (search, filters, export, usage); see MessageFilter below

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


# --- history page: search, filters, export, usage ------------------------------------------------------

MAX_QUERY_CHARS = 1_000


@dataclass(frozen=True)
class MessageFilter:
    """What the history page asks for. Empty fields mean "any". `since`/`until` are timezone-aware
    instants (until is exclusive). `all_users` only drops the `user_id = me` condition: row-level
    security still decides what is visible, so it shows more only to a principal the reviewer policy
    admits."""

    query: str = ""
    conversation_id: uuid.UUID | None = None
    role: str | None = None
    model: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    all_users: bool = False

    def scope(self) -> str:
        """The cursor scope of this listing: a cursor made for other filters is rejected."""
        parts = [
            " ".join(self.query.split()),
            str(self.conversation_id or ""),
            self.role or "",
            self.model or "",
            self.status or "",
            self.since.isoformat() if self.since else "",
            self.until.isoformat() if self.until else "",
            "all" if self.all_users else "own",
        ]
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
        return f"history:{digest}"


@dataclass(frozen=True)
class HistoryRow(Message):
    """A message with its conversation's title, as the history table and the exports show it."""

    conversation_title: str


@dataclass(frozen=True)
class HistoryPage:
    """One page, newest first. `next_cursor` continues to older rows (`before=`), `prev_cursor` back to
    newer ones (`after=`); None where there is nothing more that way."""

    items: Sequence[HistoryRow]
    next_cursor: str | None
    prev_cursor: str | None


@dataclass(frozen=True)
class UsageRow:
    day: date
    model: str
    messages: int
    input_tokens: int
    output_tokens: int
