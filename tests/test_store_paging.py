"""Keyset paging: every row exactly once, newest first, even when thousands share a timestamp."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from services.auth import Principal
from services.store import InvalidCursor, Message
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

HEAVY = Principal("user_heavy")
OTHER = Principal("user_other")
N = 5_000


@pytest.fixture(scope="module")
def seeded(database: EmbeddedDatabase) -> dict[str, list[uuid.UUID]]:
    """5,000 messages for HEAVY in two conversations with only 7 distinct timestamps (so most rows tie),
    interleaved with another user's rows at the very same instants."""
    with psycopg.connect(database.admin_url) as conn:
        conv_ids = [
            conn.execute(
                "insert into conversations (user_id, title) values (%s, %s) returning id", [user, title]
            ).fetchone()[0]  # type: ignore[index]
            for user, title in [("user_heavy", "one"), ("user_heavy", "two"), ("user_other", "theirs")]
        ]
        conn.execute(
            "insert into messages (conversation_id, user_id, role, content, model, created_at)"
            " select case when g %% 3 = 0 then %(c2)s::uuid else %(c1)s::uuid end, 'user_heavy',"
            "  case when g %% 2 = 0 then 'user' else 'assistant' end, 'm' || g, 'demo',"
            "  timestamptz '2026-01-01 00:00:00+00' + (g %% 7) * interval '1 second'"
            " from generate_series(1, %(n)s) g",
            {"c1": conv_ids[0], "c2": conv_ids[1], "n": N},
        )
        conn.execute(
            "insert into messages (conversation_id, user_id, role, content, model, created_at)"
            " select %s, 'user_other', 'user', 'o' || g, 'demo',"
            "  timestamptz '2026-01-01 00:00:00+00' + (g %% 7) * interval '1 second'"
            " from generate_series(1, 500) g",
            [conv_ids[2]],
        )
        expected = [
            r[0]
            for r in conn.execute(
                "select id from messages where user_id = 'user_heavy' order by created_at desc, id desc"
            )
        ]
        in_conv2 = [
            r[0]
            for r in conn.execute(
                "select id from messages where conversation_id = %s order by created_at desc, id desc", [conv_ids[1]]
            )
        ]
    return {"all": expected, "conv2": in_conv2, "conv_ids": conv_ids}


def walk(
    store: PostgresStore, principal: Principal, limit: int, conversation_id: uuid.UUID | None = None
) -> list[Message]:
    seen: list[Message] = []
    cursor: str | None = None
    for _ in range(N):  # bounded: a cursor bug must fail the test, not hang it
        page = store.page_messages(principal, limit=limit, before=cursor, conversation_id=conversation_id)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit  # only the last page may be short
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


@pytest.mark.parametrize("limit", [1, 37, 200])
def test_walking_all_pages_yields_each_row_once_newest_first(
    store: PostgresStore, seeded: dict[str, list[uuid.UUID]], limit: int
) -> None:
    if limit == 1:
        # 5,000 round trips is slow for nothing; the tie-breaking is the same on a 300-row stretch.
        seen: list[Message] = []
        cursor = None
        for _ in range(300):
            page = store.page_messages(HEAVY, limit=1, before=cursor)
            seen.extend(page.items)
            cursor = page.next_cursor
        assert [m.id for m in seen] == seeded["all"][:300]
        return
    seen = walk(store, HEAVY, limit)
    ids = [m.id for m in seen]
    assert len(ids) == N and len(set(ids)) == N
    assert ids == seeded["all"]
    assert all(m.user_id == "user_heavy" for m in seen)
    stamps = [(m.created_at, m.id) for m in seen]
    assert stamps == sorted(stamps, reverse=True)


def test_paging_within_one_conversation(store: PostgresStore, seeded: dict[str, list[uuid.UUID]]) -> None:
    conv2 = seeded["conv_ids"][1]
    ids = [m.id for m in walk(store, HEAVY, 50, conversation_id=conv2)]
    assert ids == seeded["conv2"] and len(ids) == N // 3


def test_a_cursor_only_works_for_its_own_listing_and_user(
    store: PostgresStore, seeded: dict[str, list[uuid.UUID]]
) -> None:
    cursor = store.page_messages(HEAVY, limit=10).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        store.page_messages(OTHER, limit=10, before=cursor)
    with pytest.raises(InvalidCursor):
        store.page_messages(HEAVY, limit=10, before=cursor, conversation_id=seeded["conv_ids"][0])
    with pytest.raises(InvalidCursor):
        store.list_conversations(HEAVY, limit=10, before=cursor)


def test_the_other_user_pages_only_their_own(store: PostgresStore, seeded: dict[str, list[uuid.UUID]]) -> None:
    seen = walk(store, OTHER, 200)
    assert len(seen) == 500 and {m.user_id for m in seen} == {"user_other"}


def test_conversation_list_pages_by_activity(store: PostgresStore) -> None:
    p = Principal("user_lister")
    made = [store.create_conversation(p, f"chat {i}") for i in range(25)]
    # Activity in the oldest conversation moves it to the top.
    store.add_message(p, made[0].id, "user", "bump", "demo")
    first = store.list_conversations(p, limit=10)
    assert first.items[0].id == made[0].id
    ids = [c.id for c in first.items]
    cursor = first.next_cursor
    while cursor:
        page = store.list_conversations(p, limit=10, before=cursor)
        ids.extend(c.id for c in page.items)
        cursor = page.next_cursor
    assert sorted(ids) == sorted(c.id for c in made) and len(ids) == 25
