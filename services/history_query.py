"""The History page's URL model: what `?limit=20&before=<cursor>&q=...` asks for, parsed strictly.

Pure (no Streamlit), so the page, the HTTP API and tests share it. Every value is judged by the store's own
public checkers (services/store/checks.py), so a rule such as "a search is at most 1,000 characters" is
written once. A damaged URL never raises: what is bad is dropped with a notice, and the first page is shown.

Notices are fixed sentences that never repeat what the link said: the page shows them with st.warning,
which renders markdown, and `?role=![x](http://...)` must not become an image request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from services.store import (
    FeedbackFilter,
    InvalidInput,
    MessageFilter,
    NotFound,
    Role,
    Status,
    check_feedback_filter,
    check_limit,
    check_query,
    check_role,
    check_status,
    clean_model,
    parse_uuid,
)
from services.store.cursors import MAX_CURSOR_CHARS

T = TypeVar("T")

PAGE_SIZES = (10, 20, 50, 100)
DEFAULT_LIMIT = 20
USAGE_DEFAULT_DAYS = 30
# Days a link may name. Bounded so that "the day after" (an exclusive end) and a time zone's offset stay
# inside what datetime can hold: `?to=9999-12-31` would otherwise overflow.
MIN_DAY = date(1900, 1, 1)
MAX_DAY = date(2999, 12, 31)

_NUMBER = re.compile(r"[0-9]{1,3}")  # ASCII only: "²".isdigit() is True, int("²") raises
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CURSOR = re.compile(rf"[A-Za-z0-9_.-]{{1,{MAX_CURSOR_CHARS}}}")  # base64url parts; the codec judges the rest

PAGE_SIZE_NOTICE = (
    f"Page size in the link is not one of {', '.join(map(str, PAGE_SIZES))}: "
    f"showing the first page, {DEFAULT_LIMIT} per page."
)
TWO_POSITIONS_NOTICE = "That page link is not valid (it names two positions): showing the first page."
CURSOR_NOTICE = "That page link is not valid (it is damaged): showing the first page."
SEARCH_NOTICE = "The search text in the link is too long or contains invalid characters; it is ignored."
CONVERSATION_NOTICE = "The conversation in the link is not valid; showing all conversations."
ROLE_NOTICE = "Unknown role in the link; showing every role."
STATUS_NOTICE = "Unknown status in the link; showing every status."
MODEL_NOTICE = "The model in the link is not valid; showing every model."
FEEDBACK_NOTICE = "Unknown feedback filter in the link (up, down, none or comment); showing every message."
DATE_NOTICES = {
    key: f"The '{key}' date in the link is not a date like 2026-11-26 between {MIN_DAY} and {MAX_DAY}; ignored."
    for key in ("from", "to")
}
RANGE_NOTICE = "The date range ends before it starts; the end date is ignored."
REVIEWER_NOTICE = "The all-users view is only for reviewers; showing your own messages."
NOTICES = frozenset(
    {
        PAGE_SIZE_NOTICE,
        TWO_POSITIONS_NOTICE,
        CURSOR_NOTICE,
        SEARCH_NOTICE,
        CONVERSATION_NOTICE,
        ROLE_NOTICE,
        STATUS_NOTICE,
        MODEL_NOTICE,
        FEEDBACK_NOTICE,
        *DATE_NOTICES.values(),
        RANGE_NOTICE,
        REVIEWER_NOTICE,
    }
)


@dataclass(frozen=True)
class HistoryQuery:
    """What the URL asks for, validated."""

    limit: int = DEFAULT_LIMIT
    before: str | None = None
    after: str | None = None
    q: str = ""
    conversation: uuid.UUID | None = None
    role: Role | None = None
    model: str | None = None
    status: Status | None = None
    date_from: date | None = None
    date_to: date | None = None
    all_users: bool = False
    feedback: FeedbackFilter | None = None

    def params(self) -> dict[str, str]:
        """The URL form (only non-default values, so links stay short)."""
        out: dict[str, str] = {"limit": str(self.limit)}
        for key, value in (
            ("before", self.before),
            ("after", self.after),
            ("q", self.q),
            ("conversation", self.conversation),
            ("role", self.role),
            ("model", self.model),
            ("status", self.status),
            ("from", self.date_from),
            ("to", self.date_to),
            ("feedback", self.feedback),
        ):
            if value:
                out[key] = value.isoformat() if isinstance(value, date) else str(value)
        if self.all_users:
            out["scope"] = "all"
        return out

    def first_page(self) -> HistoryQuery:
        return replace(self, before=None, after=None)

    def message_filter(self, tz: ZoneInfo) -> MessageFilter:
        return MessageFilter(
            query=self.q,
            conversation_id=self.conversation,
            role=self.role,
            model=self.model,
            status=self.status,
            since=start_of(self.date_from, tz) if self.date_from else None,
            until=start_of(self.date_to + timedelta(days=1), tz) if self.date_to else None,
            all_users=self.all_users,
            feedback=self.feedback,
        )


def start_of(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def usage_range(query: HistoryQuery, tz: ZoneInfo, today: date) -> tuple[datetime, datetime]:
    """The usage chart's instants [since, until): the query's days, else the USAGE_DEFAULT_DAYS up to its
    end day (today when it has none)."""
    end = query.date_to or today
    start = query.date_from or (end - timedelta(days=USAGE_DEFAULT_DAYS - 1))
    return start_of(start, tz), start_of(end + timedelta(days=1), tz)


def _accepts(check: Callable[[T], object], value: T) -> bool:
    try:
        check(value)
    except (InvalidInput, NotFound):
        return False
    return True


def _parse_limit(raw: str) -> int | None:
    if not _NUMBER.fullmatch(raw.strip()):
        return None
    limit = int(raw.strip())
    if limit not in PAGE_SIZES or not _accepts(check_limit, limit):
        return None
    return limit


def _parse_day(raw: str) -> date | None:
    if not _DAY.fullmatch(raw):
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:  # 2026-02-30
        return None
    return day if MIN_DAY <= day <= MAX_DAY else None


def parse_query(params: Mapping[str, str], *, may_review: bool) -> tuple[HistoryQuery, list[str]]:
    """Validate URL parameters. Anything bad is dropped with a notice; a bad page size or cursor falls
    back to the first page. Never raises; the notices are fixed sentences from NOTICES."""
    notices: list[str] = []
    query = HistoryQuery()

    def text(key: str) -> str:
        value = params.get(key)
        if not isinstance(value, str):
            return ""
        try:
            value.encode()
        except UnicodeEncodeError:
            # A lone surrogate: no browser sends one and no database stores one. Judge it as the NUL it
            # stands in for, so the same "cannot be stored" rule (and notice) applies.
            return "\x00"
        return value

    first_page = False
    raw_limit = params.get("limit")
    if raw_limit is not None:
        limit = _parse_limit(text("limit"))
        if limit is None:
            notices.append(PAGE_SIZE_NOTICE)
            first_page = True
        else:
            query = replace(query, limit=limit)
    before, after = text("before") or None, text("after") or None
    if before and after:
        notices.append(TWO_POSITIONS_NOTICE)
        first_page = True
    elif any(c is not None and not _CURSOR.fullmatch(c) for c in (before, after)):
        notices.append(CURSOR_NOTICE)
        first_page = True
    if not first_page:
        query = replace(query, before=before, after=after)

    q = text("q")
    if _accepts(check_query, q):
        query = replace(query, q=q.strip())
    else:
        notices.append(SEARCH_NOTICE)
    if conversation := text("conversation"):
        try:
            query = replace(query, conversation=parse_uuid(conversation))
        except NotFound:
            notices.append(CONVERSATION_NOTICE)
    if role := text("role"):
        try:
            query = replace(query, role=check_role(role))
        except InvalidInput:
            notices.append(ROLE_NOTICE)
    if status := text("status"):
        try:
            query = replace(query, status=check_status(status))
        except InvalidInput:
            notices.append(STATUS_NOTICE)
    if (model := text("model")).strip():
        try:
            query = replace(query, model=clean_model(model))
        except InvalidInput:
            notices.append(MODEL_NOTICE)
    if feedback := text("feedback"):
        try:
            query = replace(query, feedback=check_feedback_filter(feedback))
        except InvalidInput:
            notices.append(FEEDBACK_NOTICE)
    days: dict[str, date | None] = {}
    for key in ("from", "to"):
        days[key] = _parse_day(raw) if (raw := text(key)) else None
        if raw and days[key] is None:
            notices.append(DATE_NOTICES[key])
    query = replace(query, date_from=days["from"], date_to=days["to"])
    if query.date_from and query.date_to and query.date_from > query.date_to:
        notices.append(RANGE_NOTICE)
        query = replace(query, date_to=None)
    if text("scope") == "all":
        if may_review:
            query = replace(query, all_users=True)
        else:
            notices.append(REVIEWER_NOTICE)
    return query, notices
