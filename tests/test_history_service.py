"""HistoryService over the real test database (conftest's embedded PostgreSQL and PostgresStore).

Each test uses users of its own, so the module's shared database needs no cleaning between tests."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from services.auth import Principal
from services.history import PICKER_CONVERSATIONS, HistoryService
from services.history_query import HistoryQuery
from services.store import HistoryRow, NotFound, Role
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def history(store: PostgresStore) -> HistoryService:
    return HistoryService(store)


@pytest.fixture
def me() -> Principal:
    return Principal(user_id=f"user_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def other() -> Principal:
    return Principal(user_id=f"user_{uuid.uuid4().hex[:12]}")


def seed(
    store: PostgresStore, admin_url: str, who: Principal, count: int, title: str = "Chat", start: datetime = T0
) -> uuid.UUID:
    """A conversation of `count` messages one minute apart from `start`; 'note <i>', even ones user
    messages, every third by 'demo' (else 'gpt-4o'), tokens i in and 2i out."""
    conversation = store.create_conversation(who, title)
    ids = []
    for i in range(count):
        role: Role = "user" if i % 2 == 0 else "assistant"
        model = "demo" if i % 3 == 0 else "gpt-4o"
        message = store.add_message(
            who, conversation.id, role, f"note {i}", model, input_tokens=i, output_tokens=2 * i
        )
        ids.append(message.id)
    with psycopg.connect(admin_url) as conn:
        for i, mid in enumerate(ids):
            moment = start + timedelta(minutes=i)
            conn.execute("update public.messages set created_at = %s where id = %s", [moment, mid])
    return conversation.id


def numbers(rows: Sequence[HistoryRow]) -> list[int]:
    return [int(row.content.split()[1]) for row in rows]


def test_filter_options_are_my_conversations_and_models(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, other: Principal
) -> None:
    mine = seed(store, database.admin_url, me, 4, title="Mine")
    seed(store, database.admin_url, other, 2, title="Theirs")
    store.add_message(other, store.create_conversation(other).id, "user", "x", "only-theirs")
    options = history.filter_options(me, all_users=False)
    assert [c.id for c in options.conversations] == [mine]
    assert list(options.models) == ["demo", "gpt-4o"]
    # Without the reviewer role, asking for every user's models still shows only what RLS lets through.
    assert list(history.filter_options(me, all_users=True).models) == ["demo", "gpt-4o"]
    assert PICKER_CONVERSATIONS <= 200  # within the store's page limit


def test_pages_newest_first_and_back(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal
) -> None:
    seed(store, database.admin_url, me, 25)
    first = history.page(me, HistoryQuery(limit=10), UTC_ZONE)
    assert numbers(first.page.items) == list(range(24, 14, -1))
    assert first.notice is None and first.query == HistoryQuery(limit=10) and first.page.prev_cursor is None
    second_query = HistoryQuery(limit=10, before=first.page.next_cursor)
    second = history.page(me, second_query, UTC_ZONE)
    assert numbers(second.page.items) == list(range(14, 4, -1)) and second.query == second_query
    third = history.page(me, HistoryQuery(limit=10, before=second.page.next_cursor), UTC_ZONE)
    assert numbers(third.page.items) == [4, 3, 2, 1, 0] and third.page.next_cursor is None

    back = history.page(me, HistoryQuery(limit=10, after=third.page.prev_cursor), UTC_ZONE)
    assert numbers(back.page.items) == list(range(14, 4, -1))
    assert back.query.after == third.page.prev_cursor  # not at the top yet: the URL keeps its position
    top = history.page(me, HistoryQuery(limit=10, after=back.page.prev_cursor), UTC_ZONE)
    assert numbers(top.page.items) == list(range(24, 14, -1))
    assert top.query == HistoryQuery(limit=10) and top.notice is None  # back at the canonical first page


@pytest.mark.parametrize("position", ["before", "after"])
def test_a_damaged_cursor_gives_the_first_page_and_a_notice(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, position: str
) -> None:
    seed(store, database.admin_url, me, 12)
    asked = HistoryQuery(limit=10, q="note", **{position: "AAAA"})  # type: ignore[arg-type]
    view = history.page(me, asked, UTC_ZONE)
    assert view.query == HistoryQuery(limit=10, q="note")
    assert view.notice is not None and "not valid" in view.notice and "first page" in view.notice
    assert numbers(view.page.items) == list(range(11, 1, -1))


def test_a_cursor_from_another_listing_or_user_gives_the_first_page(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, other: Principal
) -> None:
    seed(store, database.admin_url, me, 12)
    cursor = history.page(me, HistoryQuery(limit=10), UTC_ZONE).page.next_cursor
    assert cursor is not None
    filtered = history.page(me, HistoryQuery(limit=10, role="user", before=cursor), UTC_ZONE)
    assert filtered.notice is not None and filtered.query == HistoryQuery(limit=10, role="user")
    assert numbers(filtered.page.items) == [10, 8, 6, 4, 2, 0]
    foreign = history.page(other, HistoryQuery(limit=10, before=cursor), UTC_ZONE)
    assert foreign.notice is not None and list(foreign.page.items) == []


def test_filters_and_whole_days_in_the_users_zone(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal
) -> None:
    # 23:30 UTC on 1 May is already 2 May in Berlin.
    seed(store, database.admin_url, me, 6, start=datetime(2026, 5, 1, 23, 30, tzinfo=UTC))
    day = HistoryQuery(date_from=date(2026, 5, 2), date_to=date(2026, 5, 2))
    assert numbers(history.page(me, day, BERLIN).page.items) == [5, 4, 3, 2, 1, 0]
    assert numbers(history.page(me, day, UTC_ZONE).page.items) == []
    picked = HistoryQuery(role="assistant", model="gpt-4o")
    assert numbers(history.page(me, picked, UTC_ZONE).page.items) == [5, 1]


def test_usage_per_day_over_the_default_range_and_the_querys_days(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal
) -> None:
    seed(store, database.admin_url, me, 4, start=datetime(2026, 5, 10, 12, tzinfo=UTC))
    seed(store, database.admin_url, me, 2, start=datetime(2026, 4, 1, 12, tzinfo=UTC))  # outside 30 days
    usage = history.usage(me, HistoryQuery(), UTC_ZONE, today=date(2026, 5, 20))
    assert (usage.first_day, usage.last_day, usage.timezone) == (date(2026, 4, 21), date(2026, 5, 20), "UTC")
    assert {(r.day, r.model, r.messages, r.input_tokens + r.output_tokens) for r in usage.rows} == {
        (date(2026, 5, 10), "demo", 2, 0 + 3 * 3),
        (date(2026, 5, 10), "gpt-4o", 2, 3 * 1 + 3 * 2),
    }
    april = history.usage(me, HistoryQuery(date_from=date(2026, 4, 1), date_to=date(2026, 4, 1)), UTC_ZONE)
    assert (april.first_day, april.last_day) == (date(2026, 4, 1), date(2026, 4, 1))
    assert sum(r.messages for r in april.rows) == 2


def test_usage_defaults_to_today_in_the_users_zone(history: HistoryService, me: Principal) -> None:
    usage = history.usage(me, HistoryQuery(), BERLIN)
    today = datetime.now(BERLIN).date()
    assert (usage.first_day, usage.last_day) == (today - timedelta(days=29), today)
    assert list(usage.rows) == []


def test_delete_one_conversation_and_only_mine(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, other: Principal
) -> None:
    keep = seed(store, database.admin_url, me, 2, title="Keep")
    gone = seed(store, database.admin_url, me, 2, title="Gone")
    theirs = seed(store, database.admin_url, other, 2)
    with pytest.raises(NotFound):
        history.delete_conversation(me, theirs)
    history.delete_conversation(me, gone)
    assert [c.id for c in history.filter_options(me, all_users=False).conversations] == [keep]
    with pytest.raises(NotFound):
        history.delete_conversation(me, gone)
    assert len(history.page(other, HistoryQuery(), UTC_ZONE).page.items) == 2


def test_delete_all_my_data_counts_and_spares_others(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, other: Principal
) -> None:
    seed(store, database.admin_url, me, 3)
    seed(store, database.admin_url, me, 2)
    seed(store, database.admin_url, other, 4)
    assert history.delete_all_my_data(me) == 5
    assert list(history.page(me, HistoryQuery(), UTC_ZONE).page.items) == []
    assert list(history.filter_options(me, all_users=False).conversations) == []
    assert len(history.page(other, HistoryQuery(), UTC_ZONE).page.items) == 4
    assert history.delete_all_my_data(me) == 0


def test_exports_are_spooled_files_of_my_data(
    history: HistoryService, store: PostgresStore, database: EmbeddedDatabase, me: Principal, other: Principal
) -> None:
    cid = seed(store, database.admin_url, me, 3, title="Recipes")
    theirs = seed(store, database.admin_url, other, 2)

    with history.export_csv(me) as spooled:
        assert isinstance(spooled, io.RawIOBase)  # what st.download_button accepts as data
        rows = list(csv.reader(io.StringIO(spooled.read().decode())))
    assert rows[0][:4] == ["created_at", "id", "conversation_id", "conversation_title"]
    assert len(rows) == 4 and {r[3] for r in rows[1:]} == {"Recipes"}

    with history.export_json(me) as spooled:
        document = json.loads(spooled.read())
    assert document["user_id"] == me.user_id
    assert [c["id"] for c in document["conversations"]] == [str(cid)]
    assert [m["content"] for m in document["messages"]] == ["note 0", "note 1", "note 2"]

    with history.export_markdown(me, cid) as spooled:
        text = spooled.read().decode()
    assert text.startswith("# Recipes\n") and text.count("\n## ") == 3
    with pytest.raises(NotFound):
        history.export_markdown(me, theirs)
