"""HistoryService: what the History page (and later the HTTP API) asks of stored history.

Filter options, one page of messages for a HistoryQuery (with the fallback for a damaged cursor), usage
per day, exports and deletes. Row-level security in the database decides what each call may see; this
layer only says what to ask for and turns a stale position into the first page.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from services import export
from services.auth import Principal
from services.history_query import HistoryQuery, usage_range
from services.store import (
    Attachment,
    AttachmentFile,
    Conversation,
    HistoryPage,
    InvalidCursor,
    Page,
    ProfileStore,
    ReviewStore,
    StoreError,
    UsageRow,
    UserUsage,
)

# Conversations offered by the filter's picker: the most recently active ones. A link may still name an
# older one (the picker adds it), so this only bounds the list, never what can be filtered.
PICKER_CONVERSATIONS = 200
# Token claims that name a person, in order of preference (local accounts and Clerk set `name`; a local
# account always has `username`). The e-mail is never used as a name others see.
NAME_CLAIMS = ("name", "username")


class HistoryStore(ReviewStore, ProfileStore, Protocol):
    """What HistoryService needs: reviewing history, and the display names that label it."""


def claimed_name(principal: Principal) -> str | None:
    for claim in NAME_CLAIMS:
        value = principal.claims.get(claim)
        if isinstance(value, str) and value.strip():
            return value
    return None


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
    names: Mapping[str, str] = field(default_factory=dict)  # user id -> display name (all-users view)
    # Messages of this page on their conversation's current path (what the chat shows); the others are
    # versions of another branch (edited away, regenerated, or switched from).
    on_path: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class Usage:
    """Messages and tokens per day and model, from `first_day` to `last_day` inclusive, days in `timezone`."""

    first_day: date
    last_day: date
    timezone: str
    rows: Sequence[UsageRow]
    by_user: Sequence[UserUsage] = ()  # the all-users view only
    names: Mapping[str, str] = field(default_factory=dict)


class HistoryService:
    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    def remember_name(self, principal: Principal) -> None:
        """Keep the principal's name from their token (if it has one) for the reviewer view."""
        if (name := claimed_name(principal)) is not None:
            self.store.save_display_name(principal, name)

    def _names(self, principal: Principal, user_ids: Sequence[str]) -> Mapping[str, str]:
        try:
            return self.store.display_names(principal, user_ids)
        except StoreError:
            return {}  # names are a label: without them the ids still say who wrote what

    def filter_options(self, principal: Principal, *, all_users: bool) -> FilterOptions:
        conversations = self.store.list_conversations(principal, limit=PICKER_CONVERSATIONS).items
        return FilterOptions(conversations, self.store.message_models(principal, all_users=all_users))

    def _on_path(self, principal: Principal, page: HistoryPage) -> frozenset[uuid.UUID]:
        try:
            found = self.store.current_path_ids(principal, sorted({r.conversation_id for r in page.items}))
        except StoreError:
            return frozenset()  # a label: without it every row is still listed
        return frozenset(r.id for r in page.items if r.id in found)

    def page(self, principal: Principal, query: HistoryQuery, tz: ZoneInfo) -> HistoryView:
        """The page the query names; a cursor that is damaged or from another listing gives the first page.
        Every stored message is listed, all branches; `on_path` marks those on the current path."""
        where = query.message_filter(tz)
        try:
            page = self.store.search_messages(principal, where, query.limit, before=query.before, after=query.after)
        except InvalidCursor as exc:
            first = query.first_page()
            page = self.store.search_messages(principal, where, first.limit)
            names = self._names(principal, [r.user_id for r in page.items]) if query.all_users else {}
            notice = f"{exc.message} Showing the first page."
            return HistoryView(page, first, notice, names, self._on_path(principal, page))
        names = self._names(principal, [r.user_id for r in page.items]) if query.all_users else {}
        on_path = self._on_path(principal, page)
        if query.after and page.prev_cursor is None:
            # back at the top: the canonical first page
            return HistoryView(page, query.first_page(), names=names, on_path=on_path)
        return HistoryView(page, query, names=names, on_path=on_path)

    def usage(self, principal: Principal, query: HistoryQuery, tz: ZoneInfo, today: date | None = None) -> Usage:
        since, until = usage_range(query, tz, today or datetime.now(tz).date())
        rows = self.store.usage_by_day(principal, since, until, tz.key, all_users=query.all_users)
        by_user = self.store.usage_by_user(principal, since, until, all_users=True) if query.all_users else []
        names = self._names(principal, [u.user_id for u in by_user]) if by_user else {}
        return Usage(since.date(), (until - timedelta(days=1)).date(), tz.key, rows, by_user, names)

    def conversations(self, principal: Principal, limit: int, before: str | None = None) -> Page[Conversation]:
        """The principal's conversations, most recently active first, one keyset page (the HTTP API)."""
        return self.store.list_conversations(principal, limit=limit, before=before)

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID) -> None:
        self.store.delete_conversation(principal, conversation_id)

    def attachments(self, principal: Principal, message_id: uuid.UUID) -> Sequence[Attachment]:
        """One message's files (names, thumbnails) for the detail view; RLS decides, reviewers included."""
        return self.store.message_attachments(principal, [message_id]).get(message_id, ())

    def attachment_file(self, principal: Principal, attachment_id: uuid.UUID) -> AttachmentFile:
        return self.store.attachment_file(principal, attachment_id)

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
