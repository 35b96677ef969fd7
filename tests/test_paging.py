"""The one keyset-page walk (services/paging.py), on a real PostgreSQL listing and through its callers."""

from __future__ import annotations

import uuid

from services import export
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.paging import collect_pages, walk_pages
from services.providers.catalogue import build_catalogue
from services.store import Conversation, Page
from services.store.postgres import PostgresStore


def someone() -> Principal:
    return Principal(user_id=f"user_pager_{uuid.uuid4().hex[:8]}")


def five_conversations(store: PostgresStore, who: Principal) -> list[str]:
    """Titles newest first: the listing's order (most recently active first)."""
    titles = [f"c{i}" for i in range(5)]
    for title in titles:
        store.create_conversation(who, title)
    return titles[::-1]


def test_collect_pages_stops_after_n_pages_and_hands_back_the_cursor(store: PostgresStore) -> None:
    who = someone()
    newest_first = five_conversations(store, who)
    seen: list[str | None] = []

    def fetch(before: str | None) -> Page[Conversation]:
        seen.append(before)
        return store.list_conversations(who, limit=2, before=before)

    items, cursor = collect_pages(fetch, 2)
    assert [c.title for c in items] == newest_first[:4]
    assert cursor is not None and len(seen) == 2 and seen[0] is None
    assert [c.title for c in store.list_conversations(who, limit=2, before=cursor).items] == newest_first[4:]
    everything, end = collect_pages(fetch, None)
    assert [c.title for c in everything] == newest_first and end is None
    # Zero or fewer pages still reads one: callers pass page counts straight from session state.
    assert [c.title for c in collect_pages(fetch, 0)[0]] == newest_first[:2]


def test_walk_pages_fetches_a_page_only_when_it_is_wanted(store: PostgresStore) -> None:
    who = someone()
    five_conversations(store, who)
    calls: list[str | None] = []

    def fetch(before: str | None) -> Page[Conversation]:
        calls.append(before)
        return store.list_conversations(who, limit=2, before=before)

    pages = walk_pages(fetch)
    assert calls == []
    first = next(pages)
    assert len(calls) == 1 and len(first.items) == 2
    assert sum(len(p.items) for p in pages) == 3 and len(calls) == 3


def test_recent_conversations_and_the_export_walk_the_same_listing(store: PostgresStore) -> None:
    who = someone()
    newest_first = five_conversations(store, who)
    settings = settings_from({})
    chat = ChatService(store, build_catalogue(settings), None, settings=settings)
    items, more = chat.recent_conversations(who, pages=2, per_page=2)
    assert [c.title for c in items] == newest_first[:4] and more
    items, more = chat.recent_conversations(who, pages=3, per_page=2)
    assert [c.title for c in items] == newest_first and not more
    assert [c.title for c in export.all_conversations(store, who)] == newest_first


def test_the_sidebar_listing_is_one_page_of_twenty_unless_asked_for_more(store: PostgresStore) -> None:
    # The chat page passes only the page count: the page size is this default.
    who = someone()
    titles = [f"c{i:02}" for i in range(21)]
    for title in titles:
        store.create_conversation(who, title)
    settings = settings_from({})
    chat = ChatService(store, build_catalogue(settings), None, settings=settings)
    items, more = chat.recent_conversations(who)
    assert [c.title for c in items] == titles[::-1][:20] and more


def test_recent_conversations_keeps_only_titles_containing_the_filter(store: PostgresStore) -> None:
    who = someone()
    for title in ("Zebra facts", "lunch", "more ZEBRAS"):
        store.create_conversation(who, title)
    settings = settings_from({})
    chat = ChatService(store, build_catalogue(settings), None, settings=settings)
    items, more = chat.recent_conversations(who, title_filter="zebra")
    assert [c.title for c in items] == ["more ZEBRAS", "Zebra facts"] and not more
