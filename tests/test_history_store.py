"""History page storage on the real embedded Postgres: search + filters + keyset paging, exports,
delete-all, usage, and the reviewer read-only policy (through the store and with direct SQL)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from streamlit.runtime.download_data_util import convert_data_to_bytes_and_infer_mime

from services import export
from services.auth import Principal
from services.store import (
    HistoryRow,
    InvalidCursor,
    InvalidInput,
    MessageFilter,
    NotFound,
)
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORDS = ("apple", "banana", "cherry", "delta")
MODELS = ("gpt-4o", "claude-sonnet-4-5", "demo")
STATUSES = ("complete", "complete", "complete", "error", "interrupted")


def seed(admin_url: str, user_id: str, count: int, conversations: int = 3) -> list[uuid.UUID]:
    """Insert `count` messages for `user_id` as the superuser (fast, and lets us force equal timestamps).

    Message i: role alternates, model/status cycle, content holds WORDS chosen by i's bits, and every
    block of 4 messages shares one created_at (ties that keyset paging must break by id)."""
    cids = [uuid.uuid4() for _ in range(conversations)]
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "insert into public.conversations (id, user_id, title) select c, %s, 'Chat ' || n"
            " from unnest(%s::uuid[]) with ordinality as t(c, n)",
            [user_id, cids],
        )
        conn.execute(
            """
            insert into public.messages (conversation_id, user_id, role, content, model, status,
                                         input_tokens, output_tokens, created_at)
            select (%(cids)s::uuid[])[1 + i %% %(nc)s], %(uid)s,
                   case when i %% 2 = 0 then 'user' else 'assistant' end,
                   concat_ws(' ', 'message', i::text,
                             case when i %% 2 = 0 then 'apple' end, case when i %% 3 = 0 then 'banana' end,
                             case when i %% 5 = 0 then 'cherry' end, case when i %% 7 = 0 then 'delta' end),
                   (%(models)s::text[])[1 + i %% 3], (%(statuses)s::text[])[1 + i %% 5],
                   i %% 11, i %% 13, %(t0)s + (i / 4) * interval '1 minute'
            from generate_series(0, %(n)s - 1) as i
            """,
            {
                "cids": cids,
                "nc": conversations,
                "uid": user_id,
                "models": list(MODELS),
                "statuses": list(STATUSES),
                "t0": T0,
                "n": count,
            },
        )
    return cids


def expected(i: int) -> dict[str, object]:
    words = {w for w, k in zip(WORDS, (2, 3, 5, 7), strict=True) if i % k == 0}
    return {
        "content": " ".join(["message", str(i), *[w for w in WORDS if w in words]]),
        "words": words,
        "role": "user" if i % 2 == 0 else "assistant",
        "model": MODELS[i % 3],
        "status": STATUSES[i % 5],
        "created_at": T0 + timedelta(minutes=i // 4),
    }


def walk(store: PostgresStore, who: Principal, where: MessageFilter, limit: int) -> list[list[HistoryRow]]:
    pages, before = [], None
    while True:
        page = store.search_messages(who, where, limit=limit, before=before)
        pages.append(list(page.items))
        if page.next_cursor is None:
            return pages
        assert page.items, "a page with a next cursor must not be empty"
        before = page.next_cursor


def number(row: HistoryRow) -> int:
    return int(row.content.split()[1])


@pytest.fixture(scope="module")
def carol(database: EmbeddedDatabase) -> Iterator[Principal]:
    """A user with 157 seeded messages (many ties on created_at)."""
    seed(database.admin_url, "user_carol", 157)
    yield Principal(user_id="user_carol")


@pytest.fixture(scope="module")
def dave(database: EmbeddedDatabase) -> Iterator[Principal]:
    seed(database.admin_url, "user_dave", 40, conversations=2)
    yield Principal(user_id="user_dave")


FILTERS = [
    MessageFilter(),
    MessageFilter(query="apple"),
    MessageFilter(query="apple banana"),  # websearch: AND
    MessageFilter(query="apple or cherry"),
    MessageFilter(query="banana -apple"),
    MessageFilter(query='"message 42"'),  # phrase
    MessageFilter(role="assistant", model="demo"),
    MessageFilter(status="error"),
    MessageFilter(query="cherry", role="user", status="complete"),
    MessageFilter(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=20)),
]


def matches(i: int, where: MessageFilter) -> bool:
    e = expected(i)
    words: set[str] = e["words"]  # type: ignore[assignment]
    q = where.query
    if q == "apple":
        ok = "apple" in words
    elif q == "apple banana":
        ok = {"apple", "banana"} <= words
    elif q == "apple or cherry":
        ok = bool({"apple", "cherry"} & words)
    elif q == "banana -apple":
        ok = "banana" in words and "apple" not in words
    elif q == '"message 42"':
        ok = i == 42
    elif q == "cherry":
        ok = "cherry" in words
    else:
        ok = True
    ok = ok and (where.role is None or e["role"] == where.role)
    ok = ok and (where.model is None or e["model"] == where.model)
    ok = ok and (where.status is None or e["status"] == where.status)
    created: datetime = e["created_at"]  # type: ignore[assignment]
    ok = ok and (where.since is None or created >= where.since)
    return ok and (where.until is None or created < where.until)


@pytest.mark.parametrize("where", FILTERS, ids=lambda f: f.scope())
@pytest.mark.parametrize("limit", [1, 7, 20])
def test_search_and_filters_walk_every_match_exactly_once(
    store: PostgresStore, carol: Principal, dave: Principal, where: MessageFilter, limit: int
) -> None:
    pages = walk(store, carol, where, limit)
    rows = [row for page in pages for row in page]
    want = sorted((i for i in range(157) if matches(i, where)), reverse=True)
    assert want, "every filter in the table matches something"
    numbers = [number(r) for r in rows]
    assert len(numbers) == len(set(numbers)) and sorted(numbers, reverse=True) == want  # none missing or repeated
    assert all(len(page) == limit for page in pages[:-1])
    assert {r.user_id for r in rows} == {"user_carol"}
    keys = [(r.created_at, r.id) for r in rows]
    assert all(a > b for a, b in zip(keys, keys[1:], strict=False)), "strictly newest first; ties broken by id"
    assert all(r.created_at == expected(number(r))["created_at"] for r in rows)
    assert all(r.conversation_title.startswith("Chat ") for r in rows)


def test_previous_walks_back_over_the_same_pages(store: PostgresStore, carol: Principal) -> None:
    where = MessageFilter(query="apple or banana")
    forward, before = [], None
    pages = []
    while True:
        page = store.search_messages(carol, where, limit=6, before=before)
        pages.append(page)
        forward.append([r.id for r in page.items])
        if page.next_cursor is None:
            break
        before = page.next_cursor
    assert len(forward) > 3
    assert pages[0].prev_cursor is None and pages[1].prev_cursor is not None
    backward = [forward[-1]]
    after = pages[-1].prev_cursor
    while after is not None:
        page = store.search_messages(carol, where, limit=6, after=after)
        backward.append([r.id for r in page.items])
        after = page.prev_cursor
    assert backward[::-1] == forward


def test_previous_near_the_top_returns_the_full_first_page(store: PostgresStore, carol: Principal) -> None:
    first = store.search_messages(carol, MessageFilter(), limit=10)
    second = store.search_messages(carol, MessageFilter(), limit=10, before=first.next_cursor)
    # A cursor on the 3rd row: only 2 rows are newer, so "previous" is the first page, not a 2-row page.
    third_row = store.search_messages(carol, MessageFilter(), limit=3).next_cursor
    back = store.search_messages(carol, MessageFilter(), limit=10, after=third_row)
    assert [r.id for r in back.items] == [r.id for r in first.items]
    assert back.prev_cursor is None and back.next_cursor == first.next_cursor
    assert second.prev_cursor is not None


def test_cursors_from_other_listings_and_users_are_rejected(
    store: PostgresStore, carol: Principal, dave: Principal
) -> None:
    apple = store.search_messages(carol, MessageFilter(query="apple"), limit=5).next_cursor
    assert apple is not None
    with pytest.raises(InvalidCursor):
        store.search_messages(carol, MessageFilter(query="banana"), limit=5, before=apple)
    with pytest.raises(InvalidCursor):
        store.search_messages(carol, MessageFilter(query="apple", all_users=True), limit=5, before=apple)
    with pytest.raises(InvalidCursor):
        store.search_messages(dave, MessageFilter(query="apple"), limit=5, before=apple)
    plain = store.page_messages(carol, limit=5).next_cursor
    assert plain is not None
    with pytest.raises(InvalidCursor):
        store.search_messages(carol, MessageFilter(), limit=5, before=plain)
    for junk in ("x", "%%%", apple[:-3], "A" * 300):
        with pytest.raises(InvalidCursor):
            store.search_messages(carol, MessageFilter(query="apple"), limit=5, before=junk)
    with pytest.raises(InvalidCursor):
        store.search_messages(carol, MessageFilter(query="apple"), limit=5, before=apple, after=apple)
    # the same cursor in its own listing works
    assert store.search_messages(carol, MessageFilter(query="apple"), limit=5, before=apple).items


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (MessageFilter(role="system"), "Unknown message role 'system'."),
        (MessageFilter(status="done"), "Unknown message status 'done'."),
        (MessageFilter(query="a\x00b"), "Search contains a NUL character"),
        (MessageFilter(query="x" * 1001), "Search is too long: 1,001 characters, the limit is 1,000."),
        (MessageFilter(model=" "), "A model name is required."),
        (MessageFilter(since=datetime(2026, 1, 1)), "The start date needs a time zone."),  # naive: ambiguous
    ],
)
def test_bad_filters_are_refused_with_a_message(
    store: PostgresStore, carol: Principal, where: MessageFilter, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        store.search_messages(carol, where)


def test_search_text_is_data_not_sql_and_odd_queries_are_harmless(store: PostgresStore, carol: Principal) -> None:
    for q in ("'; drop table public.messages; --", "!!!", "or", '"unclosed', "-", "apple & | ! <->"):
        page = store.search_messages(carol, MessageFilter(query=q), limit=5)
        assert all(r.user_id == "user_carol" for r in page.items)
    assert store.search_messages(carol, MessageFilter(), limit=1).items


def test_page_limits(store: PostgresStore, carol: Principal) -> None:
    for bad in (0, -1, 201, True):
        with pytest.raises(InvalidInput):
            store.search_messages(carol, MessageFilter(), limit=bad)


def test_usage_by_day_in_the_users_time_zone(store: PostgresStore, carol: Principal) -> None:
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    rows = store.usage_by_day(carol, since, until, "Pacific/Kiritimati")  # UTC+14: 12:00 UTC is the next day
    assert {r.day.isoformat() for r in rows} == {"2026-03-02"}
    by_model = {r.model: r for r in rows}
    for model in MODELS:
        idx = [i for i in range(157) if MODELS[i % 3] == model]
        assert by_model[model].messages == len(idx)
        assert by_model[model].input_tokens == sum(i % 11 for i in idx)
        assert by_model[model].output_tokens == sum(i % 13 for i in idx)
    with pytest.raises(InvalidInput):
        store.usage_by_day(carol, since, until, "Mars/Olympus")
    assert store.message_models(carol) == sorted(MODELS)


def test_export_of_20000_rows_is_complete_and_byte_stable(database: EmbeddedDatabase, store: PostgresStore) -> None:
    who = Principal(user_id="user_exporter")
    seed(database.admin_url, "user_exporter", 20_000, conversations=7)
    # Rows that need quoting and formula guarding must survive the round trip.
    cid = store.create_conversation(who, "=cmd|' /C calc'!A0, \"quoted\"")
    tricky = store.add_message(who, cid.id, "user", 'line1\nline2, "comma" ü 日本 =1+1', "demo")

    first = b"".join(export.export_csv(store, who))
    second = b"".join(export.export_csv(store, who))
    assert first == second
    rows = list(csv.DictReader(io.StringIO(first.decode())))
    assert len(rows) == 20_001
    with psycopg.connect(database.admin_url) as conn:
        ids = {str(r[0]) for r in conn.execute("select id from public.messages where user_id = 'user_exporter'")}
    assert {r["id"] for r in rows} == ids
    last = rows[-1]
    assert last["id"] == str(tricky.id)
    assert last["content"] == tricky.content  # starts with "line1": not guarded, kept exactly
    assert last["conversation_title"] == "'" + cid.title  # guarded against formula injection
    times = [r["created_at"] for r in rows]
    assert times == sorted(times)

    doc1 = b"".join(export.export_json(store, who))
    assert doc1 == b"".join(export.export_json(store, who))
    data = json.loads(doc1)
    assert data["format"] == "chat-history/1" and data["user_id"] == "user_exporter"
    assert len(data["messages"]) == 20_001 and {m["id"] for m in data["messages"]} == ids
    assert data["messages"][-1]["content"] == tricky.content  # JSON is lossless
    assert len(data["conversations"]) == 8

    # what st.download_button does with the deferred callable's result (a buffered file is refused)
    data, _ = convert_data_to_bytes_and_infer_mime(export.spool(export.export_csv(store, who)), TypeError())
    assert data == first


def test_markdown_export_of_one_conversation(store: PostgresStore, dave: Principal, carol: Principal) -> None:
    conv = store.create_conversation(dave, "Trip plan")
    store.add_message(dave, conv.id, "user", "Where to?", "demo")
    store.add_message(dave, conv.id, "assistant", "**Lisbon**", "demo", "interrupted")
    text = b"".join(export.export_markdown(store, dave, conv.id)).decode()
    assert text.startswith("# Trip plan\n")
    assert "## User · " in text and "Where to?" in text
    assert "## Assistant (demo) · " in text and "· interrupted" in text and "**Lisbon**" in text
    assert text.index("Where to?") < text.index("**Lisbon**")
    with pytest.raises(NotFound):
        list(export.export_markdown(store, carol, conv.id))
    reviewer = Principal(user_id="user_rita", claims={"roles": ["reviewer"]})
    with pytest.raises(NotFound):  # a reviewer may read it, but not export it as their own data
        list(export.export_markdown(store, reviewer, conv.id))


def test_delete_all_leaves_nothing_of_the_user_and_everything_of_others(
    database: EmbeddedDatabase, store: PostgresStore
) -> None:
    seed(database.admin_url, "user_gone", 50)
    seed(database.admin_url, "user_stays", 30)

    def counts() -> dict[str, tuple[int, int]]:
        with psycopg.connect(database.admin_url) as conn:
            out = {}
            for uid in ("user_gone", "user_stays"):
                m = conn.execute("select count(*) from public.messages where user_id = %s", [uid]).fetchone()
                c = conn.execute("select count(*) from public.conversations where user_id = %s", [uid]).fetchone()
                assert m is not None and c is not None
                out[uid] = (m[0], c[0])
            return out

    before = counts()
    assert before == {"user_gone": (50, 3), "user_stays": (30, 3)}
    assert store.delete_all_user_data(Principal(user_id="user_gone")) == 50
    assert counts() == {"user_gone": (0, 0), "user_stays": (30, 3)}
    gone = Principal(user_id="user_gone")
    assert store.search_messages(gone, MessageFilter()).items == []
    assert b"".join(export.export_csv(store, gone)).count(b"\n") == 1  # header only


# --- reviewer policy -------------------------------------------------------------------------------

REVIEWER_CLAIMS: list[dict[str, object]] = [
    {"roles": ["reviewer"]},
    {"roles": "reviewer"},
    {"metadata": {"roles": ["member", "reviewer"]}},  # Clerk public metadata in the session token
]
NOT_REVIEWER_CLAIMS: list[dict[str, object]] = [
    {},
    {"roles": ["member"]},
    {"roles": {"reviewer": True}},  # an object is not a role list
    {"role": "reviewer"},  # the database role claim, not an app role
    {"metadata": {"role": "reviewer"}},
]


@pytest.mark.parametrize("claims", REVIEWER_CLAIMS)
def test_reviewer_reads_every_user_but_only_own_by_default(
    store: PostgresStore, carol: Principal, dave: Principal, claims: dict[str, object]
) -> None:
    rita = Principal(user_id="user_rita", claims=claims)
    assert rita.is_reviewer
    everyone = [r for page in walk(store, rita, MessageFilter(all_users=True, query="delta"), 50) for r in page]
    users = {r.user_id for r in everyone}
    assert {"user_carol", "user_dave"} <= users
    assert len([r for r in everyone if r.user_id == "user_carol"]) == len([i for i in range(157) if i % 7 == 0])
    # without all_users the store keeps `user_id = me`: a reviewer's own view stays their own
    assert store.search_messages(rita, MessageFilter(query="delta")).items == []
    assert store.usage_by_day(rita, T0 - timedelta(days=1), T0 + timedelta(days=1), "UTC") == []
    assert store.usage_by_day(rita, T0 - timedelta(days=1), T0 + timedelta(days=1), "UTC", all_users=True)


@pytest.mark.parametrize("claims", NOT_REVIEWER_CLAIMS)
def test_non_reviewer_forging_all_users_sees_only_own(
    store: PostgresStore, carol: Principal, dave: Principal, claims: dict[str, object]
) -> None:
    mallory = Principal(user_id="user_dave", claims=claims)
    rows = [r for page in walk(store, mallory, MessageFilter(all_users=True), 100) for r in page]
    assert len(rows) >= 40 and {r.user_id for r in rows} == {"user_dave"}
    # dave's own models, all of them, and only those: a forged all_users adds nobody else's
    assert store.message_models(mallory, all_users=True) == store.message_models(mallory) == sorted(MODELS)
    usage = store.usage_by_day(mallory, T0 - timedelta(days=1), T0 + timedelta(days=1), "UTC", all_users=True)
    assert sum(r.messages for r in usage) == len([r for r in rows if r.created_at < T0 + timedelta(days=1)])


def test_reviewer_cannot_write_others_rows_through_the_store(
    store: PostgresStore, carol: Principal, database: EmbeddedDatabase
) -> None:
    rita = Principal(user_id="user_rita", claims={"roles": ["reviewer"]})
    target = store.search_messages(rita, MessageFilter(all_users=True, query="apple"), limit=1).items[0]
    assert target.user_id != "user_rita"
    with pytest.raises(NotFound):
        store.update_message(rita, target.id, content="rewritten", status="complete")
    with pytest.raises(NotFound):
        store.add_message(rita, target.conversation_id, "user", "injected", "demo")
    with pytest.raises(NotFound):
        store.delete_conversation(rita, target.conversation_id)
    with pytest.raises(NotFound):
        store.rename_conversation(rita, target.conversation_id, "mine now")
    assert store.delete_all_user_data(rita) == 0
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute(
            "select m.content, c.title from public.messages m join public.conversations c on c.id = m.conversation_id"
            " where m.id = %s",
            [target.id],
        ).fetchone()
    assert row == (target.content, target.conversation_title)


def _as_authenticated(conn: psycopg.Connection, claims: Mapping[str, object]) -> None:
    conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        [json.dumps(claims)],
    )


def test_reviewer_policy_with_direct_sql_grants_read_and_nothing_else(
    database: EmbeddedDatabase, carol: Principal, dave: Principal
) -> None:
    reviewer = {"sub": "user_rita", "role": "authenticated", "roles": ["reviewer"]}
    with psycopg.connect(database.app_url) as conn:
        with conn.transaction():
            _as_authenticated(conn, reviewer)
            visible = conn.execute("select count(*) from public.messages where user_id = 'user_carol'").fetchone()
            assert visible == (157,)
            theirs = conn.execute("select count(*) from public.conversations where user_id = 'user_dave'").fetchone()
            assert theirs is not None and theirs[0] > 0
            updated = conn.execute("update public.messages set content = 'x' where user_id = 'user_carol'").rowcount
            deleted = conn.execute("delete from public.messages where user_id = 'user_carol'").rowcount
            renamed = conn.execute("update public.conversations set title = 'x' where user_id = 'user_dave'").rowcount
            dropped = conn.execute("delete from public.conversations where user_id = 'user_dave'").rowcount
            assert (updated, deleted, renamed, dropped) == (0, 0, 0, 0)
        with psycopg.connect(database.admin_url) as admin:
            found = admin.execute("select id from public.conversations where user_id = 'user_carol' limit 1").fetchone()
        assert found is not None
        cid = found[0]
        for statement, params in [
            ("insert into public.conversations (user_id, title) values ('user_carol', 'x')", []),
            (
                "insert into public.messages (conversation_id, user_id, role, content, model)"
                " values (%s, 'user_carol', 'user', 'x', 'demo')",
                [cid],
            ),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                _as_authenticated(conn, reviewer)
                conn.execute(statement, params)  # type: ignore[arg-type]
        # a non-reviewer sees only their own rows however the query is written
        for claims in NOT_REVIEWER_CLAIMS:
            with conn.transaction():
                _as_authenticated(conn, {"sub": "user_dave", "role": "authenticated", **claims})
                others = conn.execute("select count(*) from public.messages where user_id <> 'user_dave'").fetchone()
                convs = conn.execute(
                    "select count(*) from public.conversations where user_id <> 'user_dave'"
                ).fetchone()
                assert (others, convs) == ((0,), (0,))
    with psycopg.connect(database.admin_url) as conn:
        changed = conn.execute("select count(*) from public.messages where user_id = 'user_carol' and content = 'x'")
        assert changed.fetchone() == (0,)


def test_csv_guards_formula_cells_and_leaves_plain_text_alone(store: PostgresStore) -> None:
    who = Principal(user_id="user_sheets")
    conv = store.create_conversation(who, "Budget")
    texts = ["- a list item", "-1+2", "=SUM(A1:A9)", "+33 1 23", "@import", "\tindented", "plain = text", "-"]
    for text in texts:
        store.add_message(who, conv.id, "user", text, "demo")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.export_csv(store, who)).decode())))
    guarded = ["'-1+2", "'=SUM(A1:A9)", "'+33 1 23", "'@import", "'\tindented"]
    assert [r["content"] for r in rows] == ["- a list item", *guarded, "plain = text", "-"]
    data = json.loads(b"".join(export.export_json(store, who)))
    assert [m["content"] for m in data["messages"]] == texts  # JSON keeps every byte
    assert rows[0]["input_tokens"] == "" and rows[0]["created_at"].endswith("+00:00")
    assert rows[0]["created_at"] == data["messages"][0]["created_at"]  # same instant, same text in both


def test_longest_allowed_reply_is_stored_and_its_start_is_searchable(store: PostgresStore) -> None:
    """A tsvector is capped at 1 MB: indexing all of a 1,000,000-char reply of distinct words would fail
    the insert. Only the first 100,000 characters are indexed; the reply itself is kept whole."""
    who = Principal(user_id="user_verbose")
    conv = store.create_conversation(who, "Long")
    text = " ".join(f"w{i}" for i in range(160_000))[:1_000_000]
    first = store.add_message(who, conv.id, "assistant", text[:10], "demo", "streaming")
    done = store.update_message(who, first.id, content=text, status="complete")
    assert len(done.content) == 1_000_000
    again = store.add_message(who, conv.id, "assistant", text, "demo")
    assert store.search_messages(who, MessageFilter(query="w100")).items[0].id in (first.id, again.id)
    assert store.search_messages(who, MessageFilter(query="w150000")).items == []  # beyond 100,000 chars
