"""Value types and errors of the store: what every backend returns and raises, whatever it runs on."""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Generic, Literal, TypeVar

from services.errors import UserError

Role = Literal["user", "assistant"]
Status = Literal["streaming", "complete", "interrupted", "error"]
ROLES: tuple[Role, ...] = ("user", "assistant")
STATUSES: tuple[Status, ...] = ("streaming", "complete", "interrupted", "error")
# Feedback on a reply (stored as 1 / -1), and what History can filter by: a thumb, none, or a comment.
Rating = Literal["up", "down"]
RATINGS: tuple[Rating, ...] = ("up", "down")
FeedbackFilter = Literal["up", "down", "none", "comment"]
FEEDBACK_FILTERS: tuple[FeedbackFilter, ...] = ("up", "down", "none", "comment")


class StoreError(UserError):
    """Base of storage errors; the message is safe to show to the user."""


class InvalidInput(StoreError, ValueError):
    """Bad input from the caller (empty text, NUL byte, too long, limit out of range)."""


class InvalidCursor(InvalidInput):
    """A page cursor that is malformed, tampered with, or made for another user or listing."""


class NotFound(StoreError, LookupError):
    """The conversation or message does not exist for this user (RLS makes others' rows invisible)."""


class StoreUnavailable(StoreError):
    """The database could not be reached or did not answer in time."""


@dataclass(frozen=True)
class Conversation:
    id: uuid.UUID
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    # Keyword-only with defaults, so callers that build a Conversation by hand keep working.
    current_leaf_id: uuid.UUID | None = field(default=None, kw_only=True)  # the chosen branch's last message
    instructions: str = field(default="", kw_only=True)  # standing instructions (system prompt); "" = none


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
    # The message this one follows or answers (None for a root). Keyword-only with a default: HistoryRow
    # adds a field after it, and rows from the search function (which has no such column) leave it None.
    parent_id: uuid.UUID | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Versions:
    """A message and its siblings (the versions of one turn), oldest first: `‹ index+1 / len(ids) ›`."""

    ids: tuple[uuid.UUID, ...]
    index: int

    @property
    def previous(self) -> uuid.UUID | None:
        return self.ids[self.index - 1] if self.index > 0 else None

    @property
    def next(self) -> uuid.UUID | None:
        return self.ids[self.index + 1] if self.index + 1 < len(self.ids) else None


class _Leaf(enum.Enum):
    AT_LEAF = "at the current leaf"


# `add_message(parent_id=AT_LEAF)`: append under the conversation's current leaf (a root if it has none).
AT_LEAF: Literal[_Leaf.AT_LEAF] = _Leaf.AT_LEAF
ParentRef = uuid.UUID | str | None | Literal[_Leaf.AT_LEAF]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


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
    # "up"/"down": replies with that thumb; "comment": with a comment; "none": replies nobody rated.
    feedback: str | None = None

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
        if self.feedback:
            parts.append(f"feedback={self.feedback}")  # only when set: links made before it keep working
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
        return f"history:{digest}"


@dataclass(frozen=True)
class HistoryRow(Message):
    """A message with its conversation's title, as the history table and the exports show it."""

    conversation_title: str
    # The reply's feedback ("up"/"down", None for none) and its comment, as its owner gave them.
    feedback: str | None = field(default=None, kw_only=True)
    feedback_comment: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Feedback:
    """A thumb on an assistant reply, with an optional comment, as its owner gave it."""

    message_id: uuid.UUID
    user_id: str
    rating: Rating
    comment: str | None
    created_at: datetime
    updated_at: datetime


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
    thumbs_up: int = 0  # feedback on that day's replies of that model
    thumbs_down: int = 0


@dataclass(frozen=True)
class UserUsage:
    """One user's messages and tokens over a range (the reviewer's usage split)."""

    user_id: str
    messages: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class RequestCount:
    """A rate-limit window after counting one more request: hits so far and seconds until it resets."""

    hits: int
    resets_in_s: float


ApiKeyState = Literal["live", "revoked", "expired"]


@dataclass(frozen=True)
class ApiKey:
    """A personal API key as its owner sees it: never the secret, never its hash."""

    id: uuid.UUID
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> ApiKeyState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "live"


@dataclass(frozen=True)
class ApiKeyMatch:
    """What the key lookup tells about a presented secret's hash: a live key's owner and id, or only that
    the key is revoked or expired (`user_id` and `key_id` are then None)."""

    state: ApiKeyState
    user_id: str | None
    key_id: uuid.UUID | None


@dataclass(frozen=True)
class NewAttachment:
    """A checked file to store with a message (services/attachments.py checks and prepares it): the original,
    the thumbnail of an image and the text of a document."""

    name: str
    media_type: str
    data: bytes
    thumbnail: bytes | None = None
    text: str | None = None


@dataclass(frozen=True)
class Attachment:
    """A stored file as a page shows it: never the original (read it with `attachment_file`)."""

    id: uuid.UUID
    message_id: uuid.UUID
    user_id: str
    name: str
    media_type: str
    size: int
    created_at: datetime
    thumbnail: bytes | None = None

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


@dataclass(frozen=True)
class AttachmentFile:
    """One original, read when it is opened or downloaded."""

    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class AttachmentContent:
    """What a model is sent for a stored file: a document's text, or an image's bytes (`data`)."""

    id: uuid.UUID
    message_id: uuid.UUID
    name: str
    media_type: str
    text: str | None
    data: bytes | None


@dataclass(frozen=True)
class ExportedAttachment:
    """A stored file with its original, as the JSON export writes it."""

    id: uuid.UUID
    message_id: uuid.UUID
    name: str
    media_type: str
    size: int
    created_at: datetime
    data: bytes
