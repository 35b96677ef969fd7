"""HistoryService: what the History page (and later the HTTP API) asks of stored history.

Filter options, one page of messages for a HistoryQuery (with the fallback for a damaged cursor), usage
per day, exports and deletes. Row-level security in the database decides what each call may see; this
layer only says what to ask for and turns a stale position into the first page.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services import export
from services.auth import Principal
from services.history_query import HistoryQuery, usage_range
from services.store import Conversation, HistoryPage, InvalidCursor, ReviewStore, UsageRow

# Conversations offered by the filter's picker: the most recently active ones. A link may still name an
# older one (the picker adds it), so this only bounds the list, never what can be filtered.
PICKER_CONVERSATIONS = 200


@dataclass(frozen=True)
class FilterOptions:
    conversations: Sequence[Conversation]
    models: Sequence[str]


@dataclass(frozen=True)
class HistoryView:
    """One page and the query it answers: `query` is the first page's when the asked-for position was not
    valid (then `notice` says so) or when paging back reached the newest messages."""

    page: HistoryPage
    query: HistoryQuery
    notice: str | None = None


@dataclass(frozen=True)
class Usage:
    """Messages and tokens per day and model, from `first_day` to `last_day` inclusive, days in `timezone`."""

    first_day: date
    last_day: date
    timezone: str
    rows: Sequence[UsageRow]


class HistoryService:
    def __init__(self, store: ReviewStore) -> None:
        self.store = store

    def filter_options(self, principal: Principal, *, all_users: bool) -> FilterOptions:
        conversations = self.store.list_conversations(principal, limit=PICKER_CONVERSATIONS).items
        return FilterOptions(conversations, self.store.message_models(principal, all_users=all_users))

    def page(self, principal: Principal, query: HistoryQuery, tz: ZoneInfo) -> HistoryView:
        """The page the query names; a cursor that is damaged or from another listing gives the first page."""
        where = query.message_filter(tz)
        try:
            page = self.store.search_messages(principal, where, query.limit, before=query.before, after=query.after)
        except InvalidCursor as exc:
            first = query.first_page()
            page = self.store.search_messages(principal, where, first.limit)
            return HistoryView(page, first, f"{exc.message} Showing the first page.")
        if query.after and page.prev_cursor is None:
            return HistoryView(page, query.first_page())  # walked back to the top: the canonical first page
        return HistoryView(page, query)

    def usage(self, principal: Principal, query: HistoryQuery, tz: ZoneInfo, today: date | None = None) -> Usage:
        since, until = usage_range(query, tz, today or datetime.now(tz).date())
        rows = self.store.usage_by_day(principal, since, until, tz.key, all_users=query.all_users)
        return Usage(since.date(), (until - timedelta(days=1)).date(), tz.key, rows)

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        self.store.delete_conversation(principal, conversation_id)

    def delete_all_my_data(self, principal: Principal) -> int:
        """Delete every conversation and message of the principal; returns how many messages went."""
        return self.store.delete_all_user_data(principal)

    # Exports are spooled to a temporary file: st.download_button (and an HTTP response) reads it from
    # disk, so a 100,000-message history never sits in memory.

    def export_csv(self, principal: Principal) -> io.FileIO:
        return export.spool(export.export_csv(self.store, principal))

    def export_json(self, principal: Principal) -> io.FileIO:
        return export.spool(export.export_json(self.store, principal))

    def export_markdown(self, principal: Principal, conversation_id: uuid.UUID) -> io.FileIO:
        return export.spool(export.export_markdown(self.store, principal, conversation_id))
