"""Input checks shared by every store backend and by the parsers in front of them (History's URL model).

Each rule is written here once; a backend calls these before any SQL, and a parser calls the same
functions to decide what a URL may ask for. Every failure is `InvalidInput` (or `NotFound` for ids), with
a message safe to show.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime

from services.store.types import (
    FEEDBACK_FILTERS,
    RATINGS,
    ROLES,
    STATUSES,
    FeedbackFilter,
    InvalidInput,
    NewAttachment,
    NotFound,
    Rating,
    Role,
    Status,
)

MAX_PAGE = 200
MAX_PATH = 10_000  # most messages of one conversation path read at once (the chat page's window)
MAX_TITLE_CHARS = 200
MAX_MODEL_CHARS = 200
MAX_QUERY_CHARS = 1_000
MAX_NAME_CHARS = 200
MAX_KEY_NAME_CHARS = 100
MAX_INSTRUCTIONS_CHARS = 20_000  # the database's check on conversations.instructions says the same
MAX_NAME_LOOKUP = 1_000  # user ids per display-name lookup: a page of history names far fewer
MAX_FEEDBACK_COMMENT_CHARS = 4_000  # the database's check on feedback.comment; CHAT_FEEDBACK_COMMENT_CHARS is lower
# Hard ceiling for stored text (assistant replies included); user input has the configured, lower limit.
MAX_STORED_CHARS = 1_000_000


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


def clean_title(title: str) -> str:
    check_text(title, max_chars=10_000, what="Title")
    title = " ".join(title.split())
    if not title:
        raise InvalidInput("A conversation title cannot be empty.")
    return title[:MAX_TITLE_CHARS]


def clean_instructions(text: str) -> str:
    """Standing instructions as stored: surrounding blank space dropped (inner lines kept), "" = none."""
    check_text(text, max_chars=MAX_INSTRUCTIONS_CHARS, what="Instructions")
    return text.strip()


def clean_display_name(name: str) -> str:
    check_text(name, max_chars=10_000, what="Display name")
    name = " ".join("".join(c for c in name if c.isprintable() or c.isspace()).split())
    if not name:
        raise InvalidInput("A display name cannot be empty.")
    return name[:MAX_NAME_CHARS]


def clean_key_name(name: str) -> str:
    """An API key's name as stored: printable, spaces collapsed, 1 to MAX_KEY_NAME_CHARS characters."""
    check_text(name, max_chars=10_000, what="Key name")
    name = " ".join("".join(c for c in name if c.isprintable() or c.isspace()).split())
    if not name:
        raise InvalidInput("Give the key a name, so you can tell it apart later.")
    if len(name) > MAX_KEY_NAME_CHARS:
        raise InvalidInput(f"A key name can be at most {MAX_KEY_NAME_CHARS} characters.")
    return name


def clean_model(model: str) -> str:
    check_text(model, max_chars=MAX_MODEL_CHARS, what="Model name")
    if not model.strip():
        raise InvalidInput("A model name is required.")
    return model.strip()


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise InvalidInput(f"Unknown message role {role!r}.")


def check_status(status: str) -> Status:
    for known in STATUSES:
        if status == known:
            return known
    raise InvalidInput(f"Unknown message status {status!r}.")


def check_query(query: str) -> str:
    """Search text as the store accepts it: at most MAX_QUERY_CHARS, no NUL."""
    return check_text(query, max_chars=MAX_QUERY_CHARS, what="Search")


def check_instant(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"The {what} date needs a time zone.")
    return value


def check_rating(rating: str) -> Rating:
    for known in RATINGS:
        if rating == known:
            return known
    raise InvalidInput(f"Unknown feedback {rating!r}: it is 'up' or 'down'.")


def check_feedback_filter(value: str) -> FeedbackFilter:
    for known in FEEDBACK_FILTERS:
        if value == known:
            return known
    raise InvalidInput(f"Unknown feedback filter {value!r}.")


def clean_feedback_comment(text: str | None, max_chars: int = MAX_FEEDBACK_COMMENT_CHARS) -> str | None:
    """A feedback comment as stored: surrounding blank space dropped, None when nothing is left."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput("Comment must be text.")
    text = check_text(text.strip(), max_chars=min(max_chars, MAX_FEEDBACK_COMMENT_CHARS), what="Comment")
    return text or None


# The store's own bounds on an attachment (the settings set lower limits, enforced by services/attachments.py).
MAX_ATTACHMENT_BYTES = 256 * 1024 * 1024
MAX_ATTACHMENT_NAME_CHARS = 255
MAX_ATTACHMENTS_READ = MAX_PATH  # messages whose attachments one call may list: a whole chat-page window


def clean_attachment_name(name: str) -> str:
    """A file name as stored: one line, no path, at most MAX_ATTACHMENT_NAME_CHARS characters."""
    check_text(name, max_chars=10_000, what="File name")
    name = " ".join(name.replace("\\", "/").rsplit("/", 1)[-1].split())
    if not name:
        raise InvalidInput("A file needs a name.")
    return name[:MAX_ATTACHMENT_NAME_CHARS]


def check_message_ids(message_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    wanted = sorted({parse_uuid(m, "message") for m in message_ids})
    if len(wanted) > MAX_ATTACHMENTS_READ:
        raise InvalidInput(f"Files of at most {MAX_ATTACHMENTS_READ:,} messages can be read at once.")
    return wanted


def check_attachment(item: NewAttachment) -> NewAttachment:
    """The store's own checks (the settings' tighter limits are the service's): bounded, storable values."""
    if not isinstance(item.data, bytes) or len(item.data) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput(f"A file can be at most {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB.")
    media_type = item.media_type
    if not isinstance(media_type, str) or not re.fullmatch(r"[a-z0-9.+-]+/[a-z0-9.+-]+", media_type):
        raise InvalidInput("A file's type is not a media type.")
    if item.text is not None:
        check_text(item.text, max_chars=10_000_000, what="A file's text")
    return NewAttachment(clean_attachment_name(item.name), media_type, item.data, item.thumbnail, item.text)
