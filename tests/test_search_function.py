"""public.search_messages (migration 20261126000300) on the real embedded Postgres.

Users with more messages than the function's walk budget (3,000 rows for a page of 20), so both of its
strategies run: the bounded newest-first walk (common terms) and the GIN index path (rare terms).
Through the store: every match exactly once, both directions, with filters. With direct SQL: the
function shows a caller nothing the select policies would not, and cannot write."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.store import HistoryRow, MessageFilter
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
BIG = 8_000  # rows of user_big; user_other has OTHER rows with the same words
OTHER = 4_000
# term -> which message numbers contain it (same rule for both users)
TERMS: dict[str, Callable[[int], bool]] = {
    "zircon": lambda i: i % 2_500 == 7,  # 4 of 8,000 (rare: index path)
    "quartz": lambda i: i % 200 == 3,  # 40 of 8,000 (15 in the newest 3,000: index path)
    "basalt": lambda i: i % 3 == 0,  # a third (walk)
}
CALL = (
    "select id, user_id, content from public.search_messages("
    "%(q)s, %(n)s, %(ts)s, %(id)s, %(newer)s, %(cid)s, %(role)s, %(model)s, %(status)s, %(since)s, %(until)s, %(all)s)"
)
ARGS: dict[str, object] = {
    "q": "zircon",
    "n": 21,
    "ts": None,
    "id": None,
    "newer": False,
    "cid": None,
    "role": None,
    "model": None,
    "status": None,
    "since": None,
    "until": None,
    "all": False,
}
SIGNATURE = (
    "public.search_messages(text, integer, timestamptz, uuid, boolean, uuid, text, text, text, timestamptz,"
    " timestamptz, boolean, text)"
)


def seed(admin_url: str, user_id: str, count: int) -> list[uuid.UUID]:
    """Message i: 'item <i> <words>' in conversation i % 4, role alternating, 4 messages per minute (ties)."""
    cids = [uuid.uuid4() for _ in range(4)]
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "insert into public.conversations (id, user_id, title) select c, %s, 'Talk ' || n"
            " from unnest(%s::uuid[]) with ordinality as t(c, n)",
            [user_id, cids],
        )
        conn.execute(
            """
            insert into public.messages (conversation_id, user_id, role, content, model, status, created_at)
            select (%(cids)s::uuid[])[1 + i %% 4], %(uid)s, case when i %% 2 = 0 then 'user' else 'assistant' end,
                   concat_ws(' ', 'item', i::text, case when i %% 2500 = 7 then 'zircon' end,
                             case when i %% 200 = 3 then 'quartz' end, case when i %% 3 = 0 then 'basalt' end),
                   'demo', 'complete', %(t0)s + (i / 4) * interval '1 minute'
            from generate_series(0, %(n)s - 1) as i
            """,
            {"cids": cids, "uid": user_id, "t0": T0, "n": count},
        )
        conn.execute("analyze public.messages")
    return cids


@pytest.fixture(scope="module")
def world(database: EmbeddedDatabase) -> dict[str, list[uuid.UUID]]:
    return {
        "user_big": seed(database.admin_url, "user_big", BIG),
        "user_other": seed(database.admin_url, "user_other", OTHER),
    }


@pytest.fixture
def big(world: dict[str, list[uuid.UUID]]) -> Principal:
    return Principal(user_id="user_big")


def number(row: HistoryRow) -> int:
    return int(row.content.split()[1])


def want(term: str, count: int = BIG, keep: Callable[[int], bool] | None = None) -> list[int]:
    rule = TERMS[term]
    return [i for i in range(count - 1, -1, -1) if rule(i) and (keep is None or keep(i))]


def walk(store: PostgresStore, who: Principal, where: MessageFilter, limit: int) -> list[list[HistoryRow]]:
    pages, before = [], None
    while True:
        page = store.search_messages(who, where, limit=limit, before=before)
        pages.append(list(page.items))
        if page.next_cursor is None:
            return pages
        before = page.next_cursor


def newest(database: EmbeddedDatabase, user_id: str, term: str, n: int) -> list[uuid.UUID]:
    """The oracle: the same page computed by the superuser with a plain query."""
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute(
            "select id from public.messages where user_id = %s and search @@ websearch_to_tsquery('simple', %s)"
            " order by created_at desc, id desc limit %s",
            [user_id, term, n],
        ).fetchall()
    return [r[0] for r in rows]


def gin_scans(conn: psycopg.Connection) -> int:
    """GIN index scans on the search vector so far in this transaction (statistics of the current
    transaction, not yet flushed). On a small table the planner may pick the search-only index."""
    row = conn.execute(
        "select pg_stat_get_xact_numscans('public.messages_user_search_idx'::regclass)"
        " + pg_stat_get_xact_numscans('public.messages_search_idx'::regclass)"
    ).fetchone()
    assert row is not None
    return int(row[0])


def as_caller(conn: psycopg.Connection, claims: Mapping[str, object] | None, role: str = "authenticated") -> None:
    conn.execute("select set_config('role', %s, true)", [role])
    if claims is not None:
        # This app's user token (services/app_tokens.py) with the claims under test.
        app = {"iss": APP_ISSUER, "chat_scope": "user", **claims}
        conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(app)])


def call(conn: psycopg.Connection, **overrides: object) -> list[tuple[uuid.UUID, str, str]]:
    return conn.execute(CALL, {**ARGS, **overrides}).fetchall()


# --- through the store: both strategies return every match exactly once --------------------------------


@pytest.mark.parametrize("term", list(TERMS))
@pytest.mark.parametrize("limit", [7, 20, 50])
def test_every_match_exactly_once_newest_first(store: PostgresStore, big: Principal, term: str, limit: int) -> None:
    pages = walk(store, big, MessageFilter(query=term), limit)
    rows = [r for page in pages for r in page]
    numbers = [number(r) for r in rows]
    assert len(numbers) == len(set(numbers)) and sorted(numbers, reverse=True) == want(term)
    assert all(len(page) == limit for page in pages[:-1])
    assert {r.user_id for r in rows} == {"user_big"}
    assert all(r.conversation_title.startswith("Talk ") for r in rows)
    keys = [(r.created_at, r.id) for r in rows]
    assert all(a > b for a, b in zip(keys, keys[1:], strict=False))


def test_rare_terms_use_the_gin_index_and_common_terms_the_walk(database: EmbeddedDatabase, big: Principal) -> None:
    with psycopg.connect(database.app_url) as conn:
        scans = []
        for term in ("basalt", "zircon"):
            with conn.transaction():
                as_caller(conn, {"sub": "user_big", "role": "authenticated"})
                before = gin_scans(conn)
                found = call(conn, q=term)
                scans.append(gin_scans(conn) - before)
            assert len(found) == min(21, len(want(term)))
    assert scans[0] == 0, "a common term fills the page from the walk"
    assert scans[1] >= 1, "a rare term is found through a GIN index"
    # (For "quartz", 40 matches, the function also leaves the walk, but on a 12,000-row table the planner
    # may rightly prefer a sequential scan to the index: only the results are checked for it.)


def test_previous_walks_back_over_index_path_pages(store: PostgresStore, big: Principal) -> None:
    where = MessageFilter(query="quartz")
    pages = []
    before = None
    while True:
        page = store.search_messages(big, where, limit=6, before=before)
        pages.append(page)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    forward = [[r.id for r in p.items] for p in pages]
    assert len(forward) == 7 and sum(map(len, forward)) == 40
    backward = [forward[-1]]
    after = pages[-1].prev_cursor
    while after is not None:
        page = store.search_messages(big, where, limit=6, after=after)
        backward.append([r.id for r in page.items])
        after = page.prev_cursor
    assert backward[::-1] == forward


def test_filters_combine_with_the_index_path(
    store: PostgresStore, big: Principal, world: dict[str, list[uuid.UUID]]
) -> None:
    cid = world["user_big"][3]
    since, until = T0 + timedelta(minutes=100), T0 + timedelta(minutes=1500)
    cases = [
        (MessageFilter(query="quartz", role="assistant"), lambda i: i % 2 == 1),
        (MessageFilter(query="quartz", conversation_id=cid), lambda i: i % 4 == 3),
        (MessageFilter(query="quartz", since=since, until=until), lambda i: 100 <= i // 4 < 1500),
        (MessageFilter(query="quartz", role="user"), lambda i: i % 2 == 0),  # i % 200 == 3 is odd: none
        (MessageFilter(query="quartz", status="error"), lambda i: False),
        (MessageFilter(query="quartz -zircon"), lambda i: not TERMS["zircon"](i)),
        (MessageFilter(query='"item 7 zircon"'), lambda i: i == 7),
    ]
    for where, keep in cases:
        rows = [r for page in walk(store, big, where, 20) for r in page]
        numbers = [number(r) for r in rows]
        term = "quartz" if "quartz" in where.query else "zircon"
        assert len(numbers) == len(set(numbers)) and sorted(numbers, reverse=True) == want(term, keep=keep), where


# --- security, with direct SQL ---------------------------------------------------------------------------

NOT_REVIEWER: list[dict[str, object]] = [
    {},
    {"roles": ["member"]},
    {"roles": {"reviewer": True}},
    {"role": "reviewer"},
    {"metadata": {"role": "reviewer"}},
]
REVIEWER: list[dict[str, object]] = [
    {"roles": ["reviewer"]},
    {"roles": "reviewer"},
    {"metadata": {"roles": ["reviewer"]}},
]


@pytest.mark.parametrize("extra", NOT_REVIEWER)
@pytest.mark.parametrize("term", ["zircon", "basalt"])
def test_a_user_gets_only_own_rows_whatever_they_pass(
    database: EmbeddedDatabase, world: dict[str, list[uuid.UUID]], extra: dict[str, object], term: str
) -> None:
    others = world["user_big"]
    with psycopg.connect(database.app_url) as conn, conn.transaction():
        as_caller(conn, {"role": "authenticated", **extra, "sub": "user_other"})
        mine = call(conn, q=term, all=True)  # a forged "all users"
        assert mine and {r[1] for r in mine} == {"user_other"}
        assert [r[0] for r in mine] == newest(database, "user_other", term, 21)
        # someone else's conversation, their time range, every filter: still nothing of theirs
        for cid in others:
            assert call(conn, q=term, cid=cid, all=True) == []
        filtered = call(conn, q=term, role="assistant", model="demo", status="complete", all=True)
        assert filtered and {r[1] for r in filtered} == {"user_other"}


def test_without_a_subject_the_function_returns_nothing(database: EmbeddedDatabase, world: object) -> None:
    with psycopg.connect(database.app_url) as conn:
        for claims in (None, {}, {"role": "authenticated"}, {"sub": "", "roles": ["reviewer"]}, {"sub": None}):
            with conn.transaction():
                as_caller(conn, claims)
                assert call(conn, q="zircon", all=True) == []
                assert call(conn, q="basalt", all=True) == []


def test_anon_and_the_bare_login_role_cannot_execute_it(database: EmbeddedDatabase, world: object) -> None:
    with psycopg.connect(database.app_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            as_caller(conn, {"sub": "user_big", "role": "anon"}, role="anon")
            call(conn)
        # the app's login role holds `authenticated` only through `set role` (noinherit)
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps({"sub": "user_big"})])
            call(conn)
    with psycopg.connect(database.admin_url) as admin:
        granted = admin.execute(
            "select r.rolname from pg_roles r where has_function_privilege(r.oid, %s, 'execute')"
            " and r.rolname in ('anon', 'authenticated', 'chat_app')",
            [SIGNATURE],
        ).fetchall()
    assert granted == [("authenticated",)]


@pytest.mark.parametrize("claims", REVIEWER)
def test_a_reviewer_searches_all_users_read_only(
    database: EmbeddedDatabase, store: PostgresStore, world: object, claims: dict[str, object]
) -> None:
    rita = Principal(user_id="user_rita", claims=claims)
    rows = [r for page in walk(store, rita, MessageFilter(query="zircon", all_users=True), 20) for r in page]
    by_user: dict[str, list[int]] = {}
    for r in rows:
        by_user.setdefault(r.user_id, []).append(number(r))
    assert {u: sorted(v, reverse=True) for u, v in by_user.items()} == {
        "user_big": want("zircon"),
        "user_other": want("zircon", OTHER),
    }
    common = store.search_messages(rita, MessageFilter(query="basalt", all_users=True), limit=50).items
    assert len(common) == 50
    # the reviewer's own listing stays their own (they have no messages)
    assert store.search_messages(rita, MessageFilter(query="zircon")).items == []
    # and the rows they read stay untouched by anything they can do
    with psycopg.connect(database.app_url) as conn, conn.transaction():
        as_caller(conn, {"sub": "user_rita", "role": "authenticated", **claims})
        changed = conn.execute(
            "update public.messages set content = 'x' where id in"
            " (select id from public.search_messages('zircon', 50, all_users => true))"
        ).rowcount
        assert changed == 0


def test_the_function_only_reads(database: EmbeddedDatabase, world: object) -> None:
    with psycopg.connect(database.admin_url) as admin:
        row = admin.execute(
            "select provolatile, prosecdef, proconfig from pg_proc where oid = %s::regprocedure", [SIGNATURE]
        ).fetchone()
        before = admin.execute(
            "select count(*), md5(string_agg(content, '' order by id)) from public.messages"
        ).fetchone()
    assert row == ("s", True, ["search_path=pg_catalog, pg_temp"])  # STABLE: Postgres refuses writes inside it
    hostile = "'); delete from public.messages; --"
    with psycopg.connect(database.app_url) as conn:
        for overrides in (
            {"q": hostile},
            {"role": hostile},
            {"model": hostile},
            {"status": hostile},
            {"q": "zircon", "model": "x' or '1'='1"},
        ):
            with conn.transaction():
                as_caller(conn, {"sub": "user_big", "role": "authenticated"})
                assert all(r[1] == "user_big" for r in call(conn, **overrides))
    with psycopg.connect(database.admin_url) as admin:
        after = admin.execute(
            "select count(*), md5(string_agg(content, '' order by id)) from public.messages"
        ).fetchone()
    assert after == before


def test_out_of_range_arguments_are_refused(database: EmbeddedDatabase, world: object) -> None:
    with psycopg.connect(database.app_url) as conn:
        for overrides in ({"n": 0}, {"n": 1001}, {"n": None}, {"q": "x" * 1001}):
            with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
                as_caller(conn, {"sub": "user_big", "role": "authenticated"})
                call(conn, **overrides)
