"""Input checks shared by every store backend and by the parsers in front of them (History's URL model).

Each rule is written here once; a backend calls these before any SQL, and a parser calls the same
functions to decide what a URL may ask for. Every failure is `InvalidInput` (or `NotFound` for ids), with
a message safe to show.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from services.store.types import (
    FEEDBACK_FILTERS,
    RATINGS,
    ROLES,
    STATUSES,
    FeedbackFilter,
    InvalidInput,
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
