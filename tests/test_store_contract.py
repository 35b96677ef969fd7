"""What every store backend must do, stated once and run against each backend (STYLE.md 13).

The tests speak only the protocols of services/store/protocols.py (ChatStore, ReviewStore, RateLimitCounter,
Store) and the value types and errors of services/store/types.py. A backend joins by adding a factory to
BACKENDS that returns a `Backend`: a fresh store, a way to make principals, and one test-setup hook
(`set_times`) that places rows at chosen instants, because equal timestamps and date ranges cannot be made
through the protocol itself. Backend-specific checks (SQL-level policies, the search function's strategies,
pooling) live in their own modules.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from services.auth import AuthError, Principal
from services.store import MAX_INSTRUCTIONS_CHARS
from services.store.protocols import Store
from services.store.types import (
    ApiKey,
    ApiKeyMatch,
    Attachment,
    HistoryRow,
    InvalidCursor,
    InvalidInput,
    Message,
    MessageFilter,
    NewAttachment,
    NotFound,
    Status,
    StoreError,
    UserUsage,
)
from tests.supabase_support import LIVE_SKIP, live_settings

MAX_MESSAGE_CHARS = 32_000
SetTimes = Callable[[Mapping[uuid.UUID, datetime], Mapping[uuid.UUID, datetime]], None]


@dataclass
class Backend:
    name: str
    store: Store
    max_message_chars: int
    # Test setup only: (message id -> created_at, conversation id -> updated_at).
    set_times: SetTimes

    def user(
        self, label: str = "user", *, claims: Mapping[str, Any] | None = None, expires_at: datetime | None = None
    ) -> Principal:
        """A principal no other test uses: one database serves the whole module, so users keep tests apart."""
        user_id = f"user_{label}_{uuid.uuid4().hex[:10]}"
        return Principal(user_id=user_id, claims=dict(claims or {}), expires_at=expires_at)

    def reviewer(self, label: str = "rita") -> Principal:
        return self.user(label, claims={"roles": ["reviewer"]})


# --- backends ----------------------------------------------------------------------------------------


def postgres_backend(request: pytest.FixtureRequest) -> Backend:
    from services.store.postgres import PostgresStore

    database = request.getfixturevalue("database")
    store = PostgresStore(database.app_url, max_message_chars=MAX_MESSAGE_CHARS, pool_max=4)
    request.addfinalizer(store.close)

    def set_times(messages: Mapping[uuid.UUID, datetime], conversations: Mapping[uuid.UUID, datetime]) -> None:
        # As the superuser: moving rows in time is setup, not something any user may do.
        with psycopg.connect(database.admin_url) as conn:
            for table, column, times in (
                ("messages", "created_at", messages),
                ("conversations", "updated_at", conversations),
            ):
                if times:
                    conn.execute(
                        f"update public.{table} t set {column} = v.at"
                        " from unnest(%s::uuid[], %s::timestamptz[]) as v(id, at) where t.id = v.id",
                        [list(times), list(times.values())],
                    )

    return Backend("postgres", store, MAX_MESSAGE_CHARS, set_times)


def supabase_local_backend(request: pytest.FixtureRequest) -> Backend:
    """services/store/supabase.py through supabase-py, over the local PostgREST stand-in on the same database."""
    from tests.supabase_support import local_supabase, move_rows_in_time

    database = request.getfixturevalue("database")
    local = local_supabase(database, max_message_chars=MAX_MESSAGE_CHARS)
    request.addfinalizer(local.close)
    return Backend(
        "supabase-local", local.store, MAX_MESSAGE_CHARS, lambda m, c: move_rows_in_time(database.admin_url, m, c)
    )


def supabase_live_backend(request: pytest.FixtureRequest) -> Backend:
    """A real Supabase project (tests/supabase_support.py names the variables); skipped without them."""
    import os

    from tests.supabase_support import live_store, move_rows_in_time

    store = live_store(MAX_MESSAGE_CHARS)
    request.addfinalizer(store.close)
    admin_url = os.environ.get("SUPABASE_TEST_DATABASE_URL") or None
    return Backend("supabase-live", store, MAX_MESSAGE_CHARS, lambda m, c: move_rows_in_time(admin_url, m, c))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "postgres": postgres_backend,
    "supabase-local": supabase_local_backend,
}
if live_settings() is not None:
    BACKENDS["supabase-live"] = supabase_live_backend


def test_a_real_supabase_project_is_in_the_run_when_configured() -> None:
    """One line in the output (`-rs`) says whether the suite also ran against a real Supabase project."""
    if live_settings() is None:
        pytest.skip(LIVE_SKIP)
    assert "supabase-live" in BACKENDS


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


# --- helpers -----------------------------------------------------------------------------------------


def ids(items: Any) -> list[uuid.UUID]:
    return [item.id for item in items]


def walk_messages(
    store: Store, who: Principal, limit: int, conversation_id: uuid.UUID | None = None, max_pages: int = 1_000
) -> list[Message]:
    seen: list[Message] = []
    cursor: str | None = None
    for _ in range(max_pages):  # bounded: a cursor bug must fail the test, not hang it
        page = store.page_messages(who, limit=limit, before=cursor, conversation_id=conversation_id)
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit, "only the last page may be short"
        cursor = page.next_cursor
    raise AssertionError("paging did not terminate")


def walk_search(store: Store, who: Principal, where: MessageFilter, limit: int) -> list[list[HistoryRow]]:
    pages: list[list[HistoryRow]] = []
    before: str | None = None
    for _ in range(1_000):
        page = store.search_messages(who, where, limit=limit, before=before)
        pages.append(list(page.items))
        if page.next_cursor is None:
            return pages
        assert page.items, "a page with a next cursor must not be empty"
        before = page.next_cursor
    raise AssertionError("paging did not terminate")


def newest_first(keys: list[tuple[datetime, uuid.UUID]]) -> bool:
    """Strictly newest first, ties on the instant broken by id: no row can appear twice."""
    return all(a > b for a, b in zip(keys, keys[1:], strict=False))


# --- isolation between users ---------------------------------------------------------------------------


@dataclass
class Pair:
    alice: Principal
    bob: Principal
    a_conv: uuid.UUID
    a_msgs: list[uuid.UUID]
    b_conv: uuid.UUID
    b_msgs: list[uuid.UUID]
    b_word: str
    b_model: str


@pytest.fixture
def pair(backend: Backend) -> Pair:
    s = backend.store
    alice, bob = backend.user("alice"), backend.user("bob")
    b_word = "secret" + uuid.uuid4().hex[:8]
    b_model = "bobs-model-" + uuid.uuid4().hex[:6]
    a_conv = s.create_conversation(alice, "A's chat").id
    a_msgs = [
        s.add_message(alice, a_conv, "user", "hello from A", "demo").id,
        s.add_message(alice, a_conv, "assistant", "hi A", "demo", input_tokens=3, output_tokens=4).id,
    ]
    b_conv = s.create_conversation(bob, "B's secret chat").id
    b_msgs = [
        s.add_message(bob, b_conv, "user", f"B's private words {b_word}", b_model).id,
        s.add_message(bob, b_conv, "assistant", f"{b_word} reply", b_model, input_tokens=50, output_tokens=60).id,
    ]
    return Pair(alice, bob, a_conv, a_msgs, b_conv, b_msgs, b_word, b_model)


def bobs_view(backend: Backend, p: Pair) -> tuple[str, list[tuple[uuid.UUID, str, str, str]]]:
    """B's conversation as a reviewer reads it: every row in it, whoever wrote it (B sees only his own)."""
    s, rita = backend.store, backend.reviewer("auditor")
    rows = s.recent_messages(rita, p.b_conv)
    return s.get_conversation(p.bob, p.b_conv).title, [(m.id, m.user_id, m.content, m.status) for m in rows]


def test_another_users_rows_are_invisible_to_every_read(backend: Backend, pair: Pair) -> None:
    s, alice = backend.store, pair.alice
    now = datetime.now(UTC)
    with pytest.raises(NotFound):
        s.get_conversation(alice, pair.b_conv)
    with pytest.raises(NotFound):
        s.page_messages(alice, conversation_id=pair.b_conv)
    with pytest.raises(NotFound):
        list(s.iter_history(alice, pair.b_conv))
    assert s.recent_messages(alice, pair.b_conv) == []
    assert ids(s.list_conversations(alice).items) == [pair.a_conv]
    assert sorted(ids(s.page_messages(alice).items)) == sorted(pair.a_msgs)
    assert sorted(ids(s.iter_history(alice))) == sorted(pair.a_msgs)
    for where in (
        MessageFilter(query=pair.b_word),
        MessageFilter(query=pair.b_word, all_users=True),  # only a reviewer policy widens all_users
        MessageFilter(conversation_id=pair.b_conv),
        MessageFilter(model=pair.b_model, all_users=True),
    ):
        assert s.search_messages(alice, where).items == [], where
    assert sorted(ids(s.search_messages(alice, MessageFilter(all_users=True)).items)) == sorted(pair.a_msgs)
    for all_users in (False, True):
        usage = s.usage_by_day(alice, now - timedelta(days=1), now + timedelta(days=1), "UTC", all_users=all_users)
        assert [(u.model, u.messages, u.input_tokens, u.output_tokens) for u in usage] == [("demo", 2, 3, 4)]
        assert s.message_models(alice, all_users=all_users) == ["demo"]
    exported = b"".join(s.export_csv(alice)).decode()
    assert "hello from A" in exported and pair.b_word not in exported and str(pair.b_conv) not in exported


def test_another_users_rows_cannot_be_written(backend: Backend, pair: Pair) -> None:
    s, alice = backend.store, pair.alice
    before = bobs_view(backend, pair)
    with pytest.raises(NotFound):
        s.add_message(alice, pair.b_conv, "user", "sneaking in", "demo")
    with pytest.raises(NotFound):
        s.update_message(alice, pair.b_msgs[0], content="overwritten", status="complete")
    with pytest.raises(NotFound):
        s.rename_conversation(alice, pair.b_conv, "pwned")
    with pytest.raises(NotFound):
        s.delete_conversation(alice, pair.b_conv)
    assert s.delete_all_user_data(alice) == 2
    assert bobs_view(backend, pair) == before


def test_a_conversation_created_with_a_chosen_id_is_made_once_and_only_for_its_owner(backend: Backend) -> None:
    s = backend.store
    owner, other = backend.user("owner"), backend.user("other")
    chosen = uuid.uuid4()
    first = s.create_conversation(owner, "first title", conversation_id=chosen)
    again = s.create_conversation(owner, "second title", conversation_id=chosen)
    assert first.id == again.id == chosen and again.title == "first title" and again.user_id == owner.user_id
    with pytest.raises(NotFound):  # the id is taken by someone else: neither theirs to see nor to take
        s.create_conversation(other, "mine now", conversation_id=chosen)
    assert s.get_conversation(owner, chosen).title == "first title"


def test_a_reviewer_reads_others_only_where_asked_and_writes_nothing(backend: Backend, pair: Pair) -> None:
    s, rita = backend.store, backend.reviewer()
    now = datetime.now(UTC)
    since, until = now - timedelta(days=1), now + timedelta(days=1)
    before = bobs_view(backend, pair)
    # Asked for everyone: search, usage and model options cover other users.
    found = s.search_messages(rita, MessageFilter(query=pair.b_word, all_users=True)).items
    assert sorted(ids(found)) == sorted(pair.b_msgs) and {r.user_id for r in found} == {pair.bob.user_id}
    assert found[0].conversation_title == "B's secret chat"
    assert pair.b_model in s.message_models(rita, all_users=True)
    assert any(u.model == pair.b_model for u in s.usage_by_day(rita, since, until, "UTC", all_users=True))
    # By id, the read-only view of a conversation a reviewer opened from the all-users listing.
    assert s.get_conversation(rita, pair.b_conv).user_id == pair.bob.user_id
    assert ids(s.recent_messages(rita, pair.b_conv)) == pair.b_msgs
    # Not asked: every listing stays the reviewer's own (empty), exports included.
    assert s.search_messages(rita, MessageFilter(query=pair.b_word)).items == []
    assert s.message_models(rita) == [] and s.usage_by_day(rita, since, until, "UTC") == []
    assert s.list_conversations(rita).items == [] and s.page_messages(rita).items == []
    assert list(s.iter_history(rita)) == []
    assert pair.b_word not in b"".join(s.export_csv(rita)).decode()
    with pytest.raises(NotFound):
        list(s.iter_history(rita, pair.b_conv))
    # Reading is all: every write to the rows it can see is refused.
    with pytest.raises(NotFound):
        s.update_message(rita, pair.b_msgs[1], content="rewritten", status="complete")
    with pytest.raises(NotFound):
        s.add_message(rita, pair.b_conv, "user", "injected", "demo")
    with pytest.raises(NotFound):
        s.rename_conversation(rita, pair.b_conv, "mine now")
    with pytest.raises(NotFound):
        s.delete_conversation(rita, pair.b_conv)
    assert s.delete_all_user_data(rita) == 0
    assert bobs_view(backend, pair) == before


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": ["reviewer"]},
        {"roles": "reviewer"},
        {"metadata": {"roles": ["member", "reviewer"]}},  # Clerk public metadata in the session token
    ],
)
def test_every_form_of_the_reviewer_claim_is_honoured(backend: Backend, pair: Pair, claims: dict[str, Any]) -> None:
    rita = backend.user("rita", claims=claims)
    assert rita.is_reviewer
    found = backend.store.search_messages(rita, MessageFilter(query=pair.b_word, all_users=True)).items
    assert sorted(ids(found)) == sorted(pair.b_msgs)


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"roles": ["member"]},
        {"roles": {"reviewer": True}},  # an object is not a role list
        {"role": "reviewer"},  # the database role claim, not an app role
        {"metadata": {"role": "reviewer"}},
    ],
)
def test_a_forged_all_users_shows_a_non_reviewer_only_their_own(
    backend: Backend, pair: Pair, claims: dict[str, Any]
) -> None:
    s = backend.store
    mallory = Principal(user_id=pair.alice.user_id, claims=claims)
    assert not mallory.is_reviewer
    everyone = MessageFilter(all_users=True)
    assert sorted(ids(r for page in walk_search(s, mallory, everyone, 1) for r in page)) == sorted(pair.a_msgs)
    assert s.search_messages(mallory, MessageFilter(query=pair.b_word, all_users=True)).items == []
    assert s.message_models(mallory, all_users=True) == ["demo"]
    now = datetime.now(UTC)
    usage = s.usage_by_day(mallory, now - timedelta(days=1), now + timedelta(days=1), "UTC", all_users=True)
    assert sum(u.messages for u in usage) == 2


def test_an_expired_principal_is_refused_before_anything_runs(backend: Backend, pair: Pair) -> None:
    s = backend.store
    stale = Principal(pair.alice.user_id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    now = datetime.now(UTC)
    calls: list[Callable[[], object]] = [
        lambda: s.create_conversation(stale, "late"),
        lambda: s.get_conversation(stale, pair.a_conv),
        lambda: s.list_conversations(stale),
        lambda: s.rename_conversation(stale, pair.a_conv, "late"),
        lambda: s.delete_conversation(stale, pair.a_conv),
        lambda: s.add_message(stale, pair.a_conv, "user", "late", "demo"),
        lambda: s.update_message(stale, pair.a_msgs[0], content="late", status="complete"),
        lambda: s.recent_messages(stale, pair.a_conv),
        lambda: s.page_messages(stale),
        lambda: s.search_messages(stale, MessageFilter()),
        lambda: list(s.iter_history(stale)),
        lambda: s.usage_by_day(stale, now - timedelta(days=1), now, "UTC"),
        lambda: s.message_models(stale),
        lambda: list(s.export_csv(stale)),
        lambda: s.delete_all_user_data(stale),
        lambda: s.count_request(stale, 60),
        lambda: s.create_api_key(
            stale, name="late", prefix="sk-chat-", secret_hash=new_hash(), expires_at=None, max_live=10
        ),
        lambda: s.list_api_keys(stale),
        lambda: s.revoke_api_key(stale, uuid.uuid4()),
    ]
    for call in calls:
        with pytest.raises(AuthError) as caught:
            call()
        assert caught.value.reason == "expired"
    # Nothing was written, renamed or deleted.
    assert s.get_conversation(pair.alice, pair.a_conv).title == "A's chat"
    assert ids(s.recent_messages(pair.alice, pair.a_conv)) == pair.a_msgs
    assert [m.content for m in s.recent_messages(pair.alice, pair.a_conv)] == ["hello from A", "hi A"]
    assert ids(s.list_conversations(pair.alice).items) == [pair.a_conv]
    assert s.count_request(pair.alice, 60).hits == 1
    assert s.list_api_keys(pair.alice) == []


# --- keyset paging -----------------------------------------------------------------------------------

T_TIES = datetime(2026, 1, 1, tzinfo=UTC)
HEAVY_N = 240


@dataclass
class Heavy:
    heavy: Principal
    other: Principal
    convs: list[uuid.UUID]
    all: list[uuid.UUID]  # heavy's messages, newest first, ties broken by id
    conv2: list[uuid.UUID]
    other_all: list[uuid.UUID]


@pytest.fixture(scope="module")
def heavy(backend: Backend) -> Heavy:
    """HEAVY_N messages in two conversations at only 7 distinct instants (so most rows tie), and another
    user's rows at the very same instants."""
    s = backend.store
    heavy, other = backend.user("heavy"), backend.user("other")
    convs = [s.create_conversation(heavy, "one").id, s.create_conversation(heavy, "two").id]
    theirs = s.create_conversation(other, "theirs").id
    times: dict[uuid.UUID, datetime] = {}
    by_conv: dict[uuid.UUID, list[Message]] = {c: [] for c in convs}
    mine: list[Message] = []
    for g in range(1, HEAVY_N + 1):
        cid = convs[1] if g % 3 == 0 else convs[0]
        m = s.add_message(heavy, cid, "user" if g % 2 == 0 else "assistant", f"m{g}", "demo")
        times[m.id] = T_TIES + timedelta(seconds=g % 7)
        mine.append(m)
        by_conv[cid].append(m)
    others = []
    for g in range(1, 61):
        m = s.add_message(other, theirs, "user", f"o{g}", "demo")
        times[m.id] = T_TIES + timedelta(seconds=g % 7)
        others.append(m)
    backend.set_times(times, {})

    def order(rows: list[Message]) -> list[uuid.UUID]:
        return [m.id for m in sorted(rows, key=lambda m: (times[m.id], m.id), reverse=True)]

    return Heavy(heavy, other, convs, order(mine), order(by_conv[convs[1]]), order(others))


@pytest.mark.parametrize("limit", [1, 7, 37, 200])
def test_walking_all_pages_yields_each_row_once_newest_first(backend: Backend, heavy: Heavy, limit: int) -> None:
    seen = walk_messages(backend.store, heavy.heavy, limit)
    assert ids(seen) == heavy.all and len(set(ids(seen))) == HEAVY_N
    assert {m.user_id for m in seen} == {heavy.heavy.user_id}
    assert newest_first([(m.created_at, m.id) for m in seen])


def test_paging_within_one_conversation(backend: Backend, heavy: Heavy) -> None:
    seen = walk_messages(backend.store, heavy.heavy, 9, conversation_id=heavy.convs[1])
    assert ids(seen) == heavy.conv2 and len(seen) == HEAVY_N // 3


def test_the_other_user_pages_only_their_own(backend: Backend, heavy: Heavy) -> None:
    assert ids(walk_messages(backend.store, heavy.other, 13)) == heavy.other_all


def test_a_cursor_only_works_for_its_own_listing_and_user(backend: Backend, heavy: Heavy) -> None:
    s = backend.store
    cursor = s.page_messages(heavy.heavy, limit=10).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        s.page_messages(heavy.other, limit=10, before=cursor)
    with pytest.raises(InvalidCursor):
        s.page_messages(heavy.heavy, limit=10, before=cursor, conversation_id=heavy.convs[0])
    with pytest.raises(InvalidCursor):
        s.list_conversations(heavy.heavy, limit=10, before=cursor)
    with pytest.raises(InvalidCursor):
        s.search_messages(heavy.heavy, MessageFilter(), limit=10, before=cursor)
    listed = s.list_conversations(heavy.heavy, limit=1).next_cursor
    assert listed is not None
    with pytest.raises(InvalidCursor):
        s.page_messages(heavy.heavy, limit=10, before=listed)
    # the same cursor in its own listing works
    assert ids(s.page_messages(heavy.heavy, limit=10, before=cursor).items) == heavy.all[10:20]


def test_conversation_list_pages_by_activity_through_ties(backend: Backend) -> None:
    s, p = backend.store, backend.user("lister")
    made = [s.create_conversation(p, f"chat {i}") for i in range(25)]
    # Three instants for 25 conversations: ties that the cursor must break, all in the past.
    backend.set_times({}, {c.id: T_TIES + timedelta(minutes=i % 3) for i, c in enumerate(made)})
    s.add_message(p, made[0].id, "user", "bump", "demo")  # activity moves the oldest to the top
    seen: list[uuid.UUID] = []
    cursor: str | None = None
    for _ in range(25):
        page = s.list_conversations(p, limit=4, before=cursor)
        seen.extend(ids(page.items))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen[0] == made[0].id
    assert sorted(seen) == sorted(c.id for c in made) and len(seen) == 25
    rest = sorted(made[1:], key=lambda c: (T_TIES + timedelta(minutes=made.index(c) % 3), c.id), reverse=True)
    assert seen[1:] == ids(rest)


# --- search, filters and usage -------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORDS = ("apple", "banana", "cherry", "delta")
MODELS = ("gpt-4o", "claude-sonnet-4-5", "demo")
STATUSES = ("complete", "complete", "complete", "error", "interrupted")
CAROL_N = 157


def expected(i: int) -> dict[str, Any]:
    """Message i of a seeded user: role alternates, model and status cycle, content holds WORDS chosen by
    divisibility, and every block of 4 messages shares one created_at (ties that paging must break)."""
    words = {w for w, k in zip(WORDS, (2, 3, 5, 7), strict=True) if i % k == 0}
    return {
        "content": " ".join(["message", str(i), *[w for w in WORDS if w in words]]),
        "words": words,
        "role": "user" if i % 2 == 0 else "assistant",
        "model": MODELS[i % 3],
        "status": STATUSES[i % 5],
        "created_at": T0 + timedelta(minutes=i // 4),
    }


def seed(backend: Backend, who: Principal, count: int, conversations: int) -> list[uuid.UUID]:
    s = backend.store
    cids = [s.create_conversation(who, f"Chat {n + 1}").id for n in range(conversations)]
    times: dict[uuid.UUID, datetime] = {}
    for i in range(count):
        e = expected(i)
        m = s.add_message(
            who, cids[i % conversations], e["role"], e["content"], e["model"], e["status"],
            input_tokens=i % 11, output_tokens=i % 13,
        )  # fmt: skip
        times[m.id] = e["created_at"]
    backend.set_times(times, {})
    return cids


@dataclass
class Seeded:
    carol: Principal
    carol_convs: list[uuid.UUID]
    dave: Principal


@pytest.fixture(scope="module")
def seeded(backend: Backend) -> Seeded:
    carol, dave = backend.user("carol"), backend.user("dave")
    carol_convs = seed(backend, carol, CAROL_N, 3)
    seed(backend, dave, 40, 2)
    return Seeded(carol, carol_convs, dave)


def number(row: HistoryRow) -> int:
    return int(row.content.split()[1])


FILTERS = [
    MessageFilter(),
    MessageFilter(query="apple"),
    MessageFilter(query="apple banana"),  # websearch: AND
    MessageFilter(query="apple or cherry"),
    MessageFilter(query="banana -apple"),  # exclusion
    MessageFilter(query='"message 42"'),  # phrase
    MessageFilter(query='"42 message"'),  # a phrase is ordered: matches nothing
    MessageFilter(role="assistant", model="demo"),
    MessageFilter(status="error"),
    MessageFilter(query="cherry", role="user", status="complete"),
    MessageFilter(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=20)),
    MessageFilter(query="delta", conversation_id=uuid.UUID(int=1)),  # replaced by carol's 2nd conversation
]


def matches(i: int, where: MessageFilter, convs: list[uuid.UUID]) -> bool:
    e = expected(i)
    words: set[str] = e["words"]
    ok = {
        "": True,
        "apple": "apple" in words,
        "apple banana": {"apple", "banana"} <= words,
        "apple or cherry": bool({"apple", "cherry"} & words),
        "banana -apple": "banana" in words and "apple" not in words,
        '"message 42"': i == 42,
        '"42 message"': False,
        "cherry": "cherry" in words,
        "delta": "delta" in words,
    }[where.query]
    ok = ok and (where.conversation_id is None or convs[i % 3] == where.conversation_id)
    ok = ok and (where.role is None or e["role"] == where.role)
    ok = ok and (where.model is None or e["model"] == where.model)
    ok = ok and (where.status is None or e["status"] == where.status)
    ok = ok and (where.since is None or e["created_at"] >= where.since)
    return ok and (where.until is None or e["created_at"] < where.until)


@pytest.mark.parametrize("where", FILTERS, ids=lambda f: f.scope())
@pytest.mark.parametrize("limit", [1, 7, 20])
def test_search_and_filters_walk_every_match_exactly_once(
    backend: Backend, seeded: Seeded, where: MessageFilter, limit: int
) -> None:
    if where.conversation_id is not None:
        where = MessageFilter(query=where.query, conversation_id=seeded.carol_convs[1])
    pages = walk_search(backend.store, seeded.carol, where, limit)
    rows = [row for page in pages for row in page]
    want = sorted((i for i in range(CAROL_N) if matches(i, where, seeded.carol_convs)), reverse=True)
    numbers = [number(r) for r in rows]
    assert len(numbers) == len(set(numbers)) and sorted(numbers, reverse=True) == want  # none missing or repeated
    assert all(len(page) == limit for page in pages[:-1])
    assert {r.user_id for r in rows} <= {seeded.carol.user_id}
    assert newest_first([(r.created_at, r.id) for r in rows])
    for r in rows:
        e = expected(number(r))
        assert (r.content, r.role, r.model, r.status, r.created_at) == (
            e["content"], e["role"], e["model"], e["status"], e["created_at"]
        )  # fmt: skip
        assert r.conversation_title == f"Chat {number(r) % 3 + 1}"


def test_previous_walks_back_over_the_same_pages(backend: Backend, seeded: Seeded) -> None:
    s, carol = backend.store, seeded.carol
    where = MessageFilter(query="apple or banana")
    pages = []
    before: str | None = None
    while True:
        page = s.search_messages(carol, where, limit=6, before=before)
        pages.append(page)
        if page.next_cursor is None:
            break
        before = page.next_cursor
    forward = [ids(p.items) for p in pages]
    assert len(forward) > 3
    assert pages[0].prev_cursor is None and all(p.prev_cursor is not None for p in pages[1:])
    backward = [forward[-1]]
    after = pages[-1].prev_cursor
    while after is not None:
        page = s.search_messages(carol, where, limit=6, after=after)
        backward.append(ids(page.items))
        after = page.prev_cursor
    assert backward[::-1] == forward


def test_previous_near_the_top_returns_the_canonical_first_page(backend: Backend, seeded: Seeded) -> None:
    s, carol = backend.store, seeded.carol
    first = s.search_messages(carol, MessageFilter(), limit=10)
    second = s.search_messages(carol, MessageFilter(), limit=10, before=first.next_cursor)
    assert second.prev_cursor is not None
    assert s.search_messages(carol, MessageFilter(), limit=10, after=second.prev_cursor) == first
    # A cursor on the 3rd row: only 2 rows are newer, so "previous" is the full first page, not 2 rows.
    third_row = s.search_messages(carol, MessageFilter(), limit=3).next_cursor
    back = s.search_messages(carol, MessageFilter(), limit=10, after=third_row)
    assert ids(back.items) == ids(first.items)
    assert back.prev_cursor is None and back.next_cursor == first.next_cursor


def test_search_cursors_from_other_listings_and_users_are_rejected(backend: Backend, seeded: Seeded) -> None:
    s, carol = backend.store, seeded.carol
    apple = s.search_messages(carol, MessageFilter(query="apple"), limit=5).next_cursor
    assert apple is not None
    for where, who in [
        (MessageFilter(query="banana"), carol),
        (MessageFilter(query="apple", all_users=True), carol),
        (MessageFilter(query="apple", role="user"), carol),
        (MessageFilter(query="apple"), seeded.dave),
    ]:
        for way in ("before", "after"):
            with pytest.raises(InvalidCursor):
                s.search_messages(who, where, limit=5, **{way: apple})
    for junk in (apple[:-3], apple + "A", apple[1:]):  # a damaged real cursor
        with pytest.raises(InvalidCursor):
            s.search_messages(carol, MessageFilter(query="apple"), limit=5, before=junk)
    plain = s.page_messages(carol, limit=5).next_cursor
    assert plain is not None
    with pytest.raises(InvalidCursor):
        s.search_messages(carol, MessageFilter(), limit=5, before=plain)
    with pytest.raises(InvalidCursor):
        s.search_messages(carol, MessageFilter(query="apple"), limit=5, before=apple, after=apple)
    assert s.search_messages(carol, MessageFilter(query="apple"), limit=5, before=apple).items


def test_search_text_is_data_and_odd_queries_are_harmless(backend: Backend, seeded: Seeded) -> None:
    s, carol = backend.store, seeded.carol
    for q in ("'; drop table public.messages; --", "!!!", "or", '"unclosed', "-", "apple & | ! <->", "   "):
        page = s.search_messages(carol, MessageFilter(query=q), limit=5)
        assert all(r.user_id == carol.user_id for r in page.items)
    assert len(s.search_messages(carol, MessageFilter(), limit=200).items) == CAROL_N


def test_usage_by_day_in_the_users_time_zone_and_model_options(backend: Backend, seeded: Seeded) -> None:
    s, carol = backend.store, seeded.carol
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    rows = s.usage_by_day(carol, since, until, "Pacific/Kiritimati")  # UTC+14: 12:00 UTC is the next day
    assert {r.day.isoformat() for r in rows} == {"2026-03-02"}
    by_model = {r.model: r for r in rows}
    for model in MODELS:
        idx = [i for i in range(CAROL_N) if MODELS[i % 3] == model]
        assert (by_model[model].messages, by_model[model].input_tokens, by_model[model].output_tokens) == (
            len(idx), sum(i % 11 for i in idx), sum(i % 13 for i in idx)
        )  # fmt: skip
    # UTC-10: 12:00-12:39 UTC is early morning of 1 March there.
    assert {r.day.isoformat() for r in s.usage_by_day(carol, since, until, "Pacific/Honolulu")} == {"2026-03-01"}
    # until is exclusive, since inclusive: exactly the messages of minutes 1 and 2.
    narrow = s.usage_by_day(carol, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3), "UTC")
    assert sum(r.messages for r in narrow) == 8
    assert s.usage_by_day(carol, T0 - timedelta(days=3), T0 - timedelta(days=2), "UTC") == []
    assert s.message_models(carol) == sorted(MODELS)


# --- checkpoints and final statuses -----------------------------------------------------------------------


FINALS: tuple[Status, ...] = ("complete", "interrupted", "error")


@pytest.mark.parametrize("final", FINALS)
def test_a_streaming_reply_is_checkpointed_then_finalised(backend: Backend, final: Status) -> None:
    s, p = backend.store, backend.user("streamer")
    conv = s.create_conversation(p, "stream")
    asked = s.add_message(p, conv.id, "user", "tell me", "demo")
    draft = s.add_message(p, conv.id, "assistant", "", "demo", "streaming")
    assert (draft.status, draft.content, draft.input_tokens, draft.latency_ms) == ("streaming", "", None, None)
    text = ""
    for chunk in ("Once", " upon", " a time"):
        text += chunk
        saved = s.update_message(p, draft.id, content=text, status="streaming")
        assert (saved.id, saved.content, saved.status) == (draft.id, text, "streaming")
        assert [(m.id, m.content) for m in s.recent_messages(p, conv.id)] == [(asked.id, "tell me"), (draft.id, text)]
    done = s.update_message(
        p, draft.id, content=text + ".", status=final, input_tokens=12, output_tokens=5, latency_ms=840
    )
    assert (done.id, done.conversation_id, done.role, done.model, done.created_at) == (
        draft.id, conv.id, "assistant", "demo", draft.created_at
    )  # fmt: skip
    assert (done.content, done.status, done.input_tokens, done.output_tokens, done.latency_ms) == (
        "Once upon a time.", final, 12, 5, 840
    )  # fmt: skip
    # One row, not one per checkpoint, wherever it is read.
    assert s.recent_messages(p, conv.id) == [asked, done]
    assert ids(s.page_messages(p).items) == [draft.id, asked.id]
    found = s.search_messages(p, MessageFilter(query="upon", status=final)).items
    assert ids(found) == [draft.id] and found[0].latency_ms == 840
    assert s.search_messages(p, MessageFilter(status="streaming")).items == []
    now = datetime.now(UTC)
    usage = s.usage_by_day(p, now - timedelta(days=1), now + timedelta(days=1), "UTC")
    assert [(u.messages, u.input_tokens, u.output_tokens) for u in usage] == [(2, 12, 5)]


def test_a_finished_message_can_be_added_whole_with_its_usage(backend: Backend) -> None:
    s, p = backend.store, backend.user("whole")
    conv = s.create_conversation(p, "whole")
    m = s.add_message(p, conv.id, "assistant", "done", "gpt-4o", "error", input_tokens=1, output_tokens=0, latency_ms=9)
    assert (m.role, m.status, m.model, m.input_tokens, m.output_tokens, m.latency_ms) == (
        "assistant", "error", "gpt-4o", 1, 0, 9
    )  # fmt: skip
    assert m.user_id == p.user_id and m.created_at.tzinfo is not None
    assert s.recent_messages(p, conv.id) == [m]


def test_unknown_status_or_role_is_refused_and_changes_nothing(backend: Backend) -> None:
    s, p = backend.store, backend.user("statuses")
    conv = s.create_conversation(p, "statuses")
    draft = s.add_message(p, conv.id, "assistant", "partial", "demo", "streaming")
    with pytest.raises(InvalidInput, match="status"):
        s.update_message(p, draft.id, content="x", status="finished")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="status"):
        s.add_message(p, conv.id, "user", "hi", "demo", "done")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="role"):
        s.add_message(p, conv.id, "system", "hi", "demo")  # type: ignore[arg-type]
    assert s.recent_messages(p, conv.id) == [draft]


# --- deletes -------------------------------------------------------------------------------------------


def test_delete_conversation_removes_its_messages_and_nothing_else(backend: Backend, pair: Pair) -> None:
    s, alice = backend.store, pair.alice
    keep = s.create_conversation(alice, "keep")
    kept = s.add_message(alice, keep.id, "user", "kept words", "demo")
    s.delete_conversation(alice, pair.a_conv)
    with pytest.raises(NotFound):
        s.get_conversation(alice, pair.a_conv)
    with pytest.raises(NotFound):
        s.page_messages(alice, conversation_id=pair.a_conv)
    with pytest.raises(NotFound):
        s.delete_conversation(alice, pair.a_conv)
    with pytest.raises(NotFound):
        s.add_message(alice, pair.a_conv, "user", "into the void", "demo")
    with pytest.raises(NotFound):
        s.update_message(alice, pair.a_msgs[0], content="x", status="complete")
    assert s.recent_messages(alice, pair.a_conv) == []
    assert ids(s.page_messages(alice).items) == [kept.id]
    assert ids(s.list_conversations(alice).items) == [keep.id]
    assert ids(s.search_messages(alice, MessageFilter()).items) == [kept.id]
    assert ids(s.iter_history(alice)) == [kept.id]
    assert len(s.recent_messages(pair.bob, pair.b_conv)) == 2


def test_delete_all_user_data_counts_and_leaves_others_alone(backend: Backend, pair: Pair) -> None:
    s, carol = backend.store, backend.user("gone")
    for n in range(3):
        conv = s.create_conversation(carol, f"to be erased {n}")
        for k in range(n + 1):
            s.add_message(carol, conv.id, "user", f"erase me {k}", "demo")
    s.create_conversation(carol, "empty")
    bob_before = bobs_view(backend, pair)
    assert s.delete_all_user_data(carol) == 6
    assert s.list_conversations(carol).items == [] and s.page_messages(carol).items == []
    assert s.search_messages(carol, MessageFilter()).items == [] and list(s.iter_history(carol)) == []
    assert s.message_models(carol) == []
    assert b"".join(s.export_csv(carol)).decode().count("\n") == 1  # the header only
    assert s.delete_all_user_data(carol) == 0
    assert bobs_view(backend, pair) == bob_before
    assert sorted(ids(s.page_messages(pair.alice).items)) == sorted(pair.a_msgs)


# --- rate-limit counting -------------------------------------------------------------------------------


def test_requests_are_counted_per_user_in_a_window(backend: Backend) -> None:
    s = backend.store
    erin, frank = backend.user("erin"), backend.user("frank")
    counts = [s.count_request(erin, 60) for _ in range(3)]
    assert [c.hits for c in counts] == [1, 2, 3]
    assert all(0 < c.resets_in_s <= 60 for c in counts)
    # One window: its end does not move with each request.
    assert counts[2].resets_in_s <= counts[0].resets_in_s
    assert s.count_request(frank, 60).hits == 1
    assert s.count_request(erin, 60).hits == 4
    assert s.count_request(frank, 60).hits == 2
    short = s.count_request(backend.user("gina"), 5)
    assert short.hits == 1 and 0 < short.resets_in_s <= 5


# --- input checks and errors ---------------------------------------------------------------------------


@pytest.fixture
def mine(backend: Backend) -> tuple[Principal, uuid.UUID]:
    p = backend.user("input")
    return p, backend.store.create_conversation(p, "inputs").id


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("hello\x00world", "NUL"),
        ("x" * 1_048_576, "too long: 1,048,576 characters, the limit is 32,000"),
        ("x" * 32_001, "limit is 32,000"),
        ("", "empty"),
        ("   \n\t ", "empty"),
    ],
)
def test_rejected_content_is_explained_and_not_stored(
    backend: Backend, mine: tuple[Principal, uuid.UUID], content: str, fragment: str
) -> None:
    p, conv = mine
    assert backend.max_message_chars == 32_000
    with pytest.raises(InvalidInput, match=fragment):
        backend.store.add_message(p, conv, "user", content, "demo")
    assert backend.store.recent_messages(p, conv) == []


def test_content_at_the_limit_is_accepted(backend: Backend, mine: tuple[Principal, uuid.UUID]) -> None:
    p, conv = mine
    assert len(backend.store.add_message(p, conv, "user", "y" * 32_000, "demo").content) == 32_000
    # The limit is for what people type; a model's reply may be longer.
    assert len(backend.store.add_message(p, conv, "assistant", "z" * 40_000, "demo").content) == 40_000


@pytest.mark.parametrize(
    "content",
    [
        "'; drop table messages; --",
        "Robert'); DELETE FROM conversations WHERE ('1'='1",
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
        "%s %(x)s {0} $1 \\x00 \\' \"",
        "emoji 🦜 and RTL \u202e and combining é",
        "line1\r\nline2\n\n",
    ],
)
def test_metacharacters_and_html_are_stored_verbatim(
    backend: Backend, mine: tuple[Principal, uuid.UUID], content: str
) -> None:
    p, conv = mine
    saved = backend.store.add_message(p, conv, "user", content, "demo")
    assert saved.content == content
    assert backend.store.recent_messages(p, conv, limit=1)[0].content == content


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


GARBAGE_CURSORS = [
    "garbage",
    "!!!!",
    "x" * 300,
    _b64([1, 2, 3]),
    _b64({"v": 2, "t": "2026-01-01T00:00:00+00:00", "i": str(uuid.uuid4()), "o": "abc"}),
    _b64({"v": 1, "t": "not a time", "i": str(uuid.uuid4()), "o": "abc"}),
    _b64({"v": 1, "t": "2026-01-01T00:00:00", "i": str(uuid.uuid4()), "o": "abc"}),
    _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": "not-a-uuid", "o": "abc"}),
    _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": str(uuid.uuid4()), "o": "abc"}),  # well formed, not ours
    "' or 1=1 --",
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
]


@pytest.mark.parametrize("cursor", GARBAGE_CURSORS)
def test_garbage_cursors_are_a_clear_error_in_every_listing(
    backend: Backend, mine: tuple[Principal, uuid.UUID], cursor: str
) -> None:
    s, (p, conv) = backend.store, mine
    calls: list[Callable[[], object]] = [
        lambda: s.page_messages(p, before=cursor),
        lambda: s.page_messages(p, before=cursor, conversation_id=conv),
        lambda: s.list_conversations(p, before=cursor),
        lambda: s.search_messages(p, MessageFilter(), before=cursor),
        lambda: s.search_messages(p, MessageFilter(query="x"), after=cursor),
    ]
    for call in calls:
        with pytest.raises(InvalidCursor, match="page link is not valid"):
            call()


@pytest.mark.parametrize("limit", [0, -1, 201, 10_000, True, "20", 2.5])
def test_limit_out_of_range_is_a_clear_error_in_every_listing(
    backend: Backend, mine: tuple[Principal, uuid.UUID], limit: Any
) -> None:
    s, (p, conv) = backend.store, mine
    calls: list[Callable[[], object]] = [
        lambda: s.page_messages(p, limit=limit),
        lambda: s.list_conversations(p, limit=limit),
        lambda: s.recent_messages(p, conv, limit=limit),
        lambda: s.search_messages(p, MessageFilter(), limit=limit),
    ]
    for call in calls:
        with pytest.raises(InvalidInput, match="between 1 and 200"):
            call()


@pytest.mark.parametrize("bad_id", [str(uuid.uuid4()), uuid.uuid4(), "not-a-uuid", "'; drop table x; --", ""])
def test_unknown_or_malformed_ids_are_not_found(
    backend: Backend, mine: tuple[Principal, uuid.UUID], bad_id: uuid.UUID | str
) -> None:
    s, (p, _) = backend.store, mine
    calls: list[Callable[[], object]] = [
        lambda: s.get_conversation(p, bad_id),
        lambda: s.rename_conversation(p, bad_id, "x"),
        lambda: s.delete_conversation(p, bad_id),
        lambda: s.add_message(p, bad_id, "user", "hi", "demo"),
        lambda: s.update_message(p, bad_id, content="x", status="complete"),
        lambda: s.page_messages(p, conversation_id=bad_id),
        lambda: list(s.iter_history(p, bad_id)),
    ]
    for call in calls:
        with pytest.raises(NotFound, match="does not exist"):
            call()
    assert s.list_conversations(p).items[0].title == "inputs"


def test_checkpoint_values_out_of_range_are_refused_and_change_nothing(
    backend: Backend, mine: tuple[Principal, uuid.UUID]
) -> None:
    s, (p, conv) = backend.store, mine
    draft = s.add_message(p, conv, "assistant", "partial", "demo", "streaming")
    for usage in ({"input_tokens": -1}, {"output_tokens": -2}, {"latency_ms": -3}, {"input_tokens": 2**40}):
        with pytest.raises(InvalidInput):
            s.update_message(p, draft.id, content="final", status="complete", **usage)
    with pytest.raises(InvalidInput, match="NUL"):
        s.update_message(p, draft.id, content="fin\x00al", status="complete")
    assert s.recent_messages(p, conv) == [draft]


def test_a_conversation_id_is_the_same_id_however_it_is_spelled(backend: Backend) -> None:
    s, p = backend.store, backend.user("spelling")
    conv = s.create_conversation(p, "spelling").id
    made = [s.add_message(p, conv, "user", f"m{i}", "demo").id for i in range(3)]
    first = s.page_messages(p, limit=2, conversation_id=str(conv).upper())
    assert ids(first.items) == made[:0:-1] and first.next_cursor is not None
    assert ids(s.page_messages(p, limit=2, conversation_id=conv, before=first.next_cursor).items) == made[:1]


def test_titles_are_cleaned_and_an_empty_one_refused(backend: Backend, mine: tuple[Principal, uuid.UUID]) -> None:
    s, (p, conv) = backend.store, mine
    with pytest.raises(InvalidInput, match="title cannot be empty"):
        s.rename_conversation(p, conv, "   ")
    with pytest.raises(InvalidInput, match="title cannot be empty"):
        s.create_conversation(p, "\n\t")
    renamed = s.rename_conversation(p, conv, "  a   spaced\n title " + "z" * 500)
    assert renamed.title.startswith("a spaced title") and len(renamed.title) == 200
    assert s.get_conversation(p, conv) == renamed


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (MessageFilter(role="system"), "Unknown message role 'system'."),
        (MessageFilter(status="done"), "Unknown message status 'done'."),
        (MessageFilter(query="a\x00b"), "Search contains a NUL character"),
        (MessageFilter(query="x" * 1001), "Search is too long: 1,001 characters, the limit is 1,000."),
        (MessageFilter(model=" "), "A model name is required."),
        (MessageFilter(since=datetime(2026, 1, 1)), "The start date needs a time zone."),  # naive: ambiguous
        (MessageFilter(until=datetime(2026, 1, 1)), "The end date needs a time zone."),
    ],
)
def test_bad_filters_are_refused(
    backend: Backend, mine: tuple[Principal, uuid.UUID], where: MessageFilter, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        backend.store.search_messages(mine[0], where)


def error_cases(s: Store, p: Principal, conv: uuid.UUID) -> list[tuple[str, type[StoreError], Callable[[], object]]]:
    now = datetime.now(UTC)
    huge = "x" * 1_000_001  # over the ceiling for any stored text, replies included
    return [
        ("NUL", InvalidInput, lambda: s.add_message(p, conv, "user", "a\x00", "demo")),
        ("empty", InvalidInput, lambda: s.add_message(p, conv, "user", " ", "demo")),
        ("too long", InvalidInput, lambda: s.add_message(p, conv, "user", "x" * 40_000, "demo")),
        ("no model", InvalidInput, lambda: s.add_message(p, conv, "user", "hi", " ")),
        ("role", InvalidInput, lambda: s.add_message(p, conv, "tool", "hi", "demo")),  # type: ignore[arg-type]
        ("negative usage", InvalidInput, lambda: s.add_message(p, conv, "assistant", "x", "demo", input_tokens=-1)),
        ("reply NUL", InvalidInput, lambda: s.update_message(p, uuid.uuid4(), content="a\x00", status="complete")),
        ("reply too long", InvalidInput, lambda: s.update_message(p, uuid.uuid4(), content=huge, status="error")),
        ("title NUL", InvalidInput, lambda: s.create_conversation(p, "a\x00b")),
        ("limit", InvalidInput, lambda: s.page_messages(p, limit=0)),
        ("batch", InvalidInput, lambda: list(s.iter_history(p, batch_size=0))),
        ("zone", InvalidInput, lambda: s.usage_by_day(p, now, now, "Mars/Olympus")),
        ("naive", InvalidInput, lambda: s.usage_by_day(p, datetime(2026, 1, 1), now, "UTC")),
        ("search", InvalidInput, lambda: s.search_messages(p, MessageFilter(query="x" * 1001))),
        ("cursor", InvalidCursor, lambda: s.page_messages(p, before="garbage")),
        ("both ways", InvalidCursor, lambda: s.search_messages(p, MessageFilter(), before="a", after="b")),
        ("unknown", NotFound, lambda: s.get_conversation(p, uuid.uuid4())),
        ("malformed", NotFound, lambda: s.update_message(p, "nope", content="x", status="complete")),
    ]


def test_every_error_is_a_store_error_with_a_sentence(backend: Backend, mine: tuple[Principal, uuid.UUID]) -> None:
    p, conv = mine
    for name, kind, call in error_cases(backend.store, p, conv):
        with pytest.raises(StoreError) as caught:
            call()
        error = caught.value
        assert type(error) is kind, name
        message = error.message
        assert isinstance(message, str) and str(error) == message, name
        assert message[:1].isupper() and message.rstrip().endswith((".", "?")) and len(message.split()) >= 3, name
        assert "Traceback" not in message and "psycopg" not in message.lower(), name
    assert backend.store.recent_messages(p, conv) == []


# --- display names (issue 12, item 8) -----------------------------------------------------------------


def test_display_names_are_written_by_their_owner_and_read_by_reviewers(backend: Backend) -> None:
    s = backend.store
    alice, bob, rita = backend.user("alice"), backend.user("bob"), backend.reviewer()
    assert s.save_display_name(alice, "  Alice \t Liddell\x07 ") == "Alice Liddell"  # cleaned as stored
    assert s.save_display_name(bob, "Bob") == "Bob"
    assert s.save_display_name(bob, "Robert") == "Robert"  # replaced, not a second row
    everyone = [alice.user_id, bob.user_id, rita.user_id, "user_nobody"]
    # Owners see only their own; a reviewer sees every name; unknown ids are left out.
    assert s.display_names(alice, everyone) == {alice.user_id: "Alice Liddell"}
    assert s.display_names(bob, everyone) == {bob.user_id: "Robert"}
    assert s.display_names(rita, everyone) == {alice.user_id: "Alice Liddell", bob.user_id: "Robert"}
    assert s.display_names(rita, []) == {}
    for bad in ("", "   ", "nul\x00name"):
        with pytest.raises(InvalidInput):
            s.save_display_name(alice, bad)
    assert s.display_names(rita, [alice.user_id]) == {alice.user_id: "Alice Liddell"}  # unchanged
    assert len(s.save_display_name(alice, "x" * 500)) == 200
    # Erasure takes the name too.
    s.delete_all_user_data(bob)
    assert s.display_names(rita, everyone).keys() == {alice.user_id}


def test_a_reviewer_cannot_write_someone_elses_name(backend: Backend) -> None:
    s = backend.store
    alice, rita = backend.user("alice"), backend.reviewer()
    s.save_display_name(alice, "Alice")
    s.save_display_name(rita, "Rita")  # writes Rita's own row, whoever she reviews
    assert s.display_names(rita, [alice.user_id, rita.user_id]) == {alice.user_id: "Alice", rita.user_id: "Rita"}


# --- default instructions for new chats (issue 14) ----------------------------------------------------


def test_default_instructions_are_each_users_own(backend: Backend) -> None:
    s = backend.store
    alice, bob, rita = backend.user("alice"), backend.user("bob"), backend.reviewer()
    assert s.default_instructions(alice) is None  # no profile row yet
    s.save_display_name(alice, "Alice")
    s.save_model_choice(alice, "demo/echo-1")
    assert s.default_instructions(alice) is None  # a profile row without a default
    text = "  Answer in French.\n\n- briefly\n  "
    assert s.save_default_instructions(alice, text) == "Answer in French.\n\n- briefly"  # cleaned as stored
    assert s.default_instructions(alice) == "Answer in French.\n\n- briefly"
    # the rest of her profile row is left as it was
    assert s.display_names(alice, [alice.user_id]) == {alice.user_id: "Alice"}
    assert s.model_choice(alice) == "demo/echo-1"
    # others (a reviewer too, who may read every profile) get only their own
    assert s.default_instructions(bob) is None
    assert s.default_instructions(rita) is None
    assert s.save_default_instructions(bob, "Be terse.") == "Be terse."
    assert s.default_instructions(alice) == "Answer in French.\n\n- briefly"
    # the limit and the text checks of a conversation's instructions; a refusal changes nothing
    for bad in ("x" * (MAX_INSTRUCTIONS_CHARS + 1), "nul\x00byte"):
        with pytest.raises(InvalidInput):
            s.save_default_instructions(alice, bad)
    assert s.default_instructions(alice) == "Answer in French.\n\n- briefly"
    assert s.save_default_instructions(alice, "y" * MAX_INSTRUCTIONS_CHARS) == "y" * MAX_INSTRUCTIONS_CHARS
    # "" or blank clears it
    assert s.save_default_instructions(alice, " \n ") is None
    assert s.default_instructions(alice) is None
    assert s.display_names(alice, [alice.user_id]) == {alice.user_id: "Alice"}
    assert s.default_instructions(bob) == "Be terse."
    s.delete_all_user_data(bob)  # erasure takes it too
    assert s.default_instructions(bob) is None


def test_usage_by_user_counts_each_users_messages(backend: Backend, pair: Pair) -> None:
    s = backend.store
    rita = backend.reviewer()
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    own = s.usage_by_user(pair.alice, since, until)
    assert own == [UserUsage(pair.alice.user_id, messages=2, input_tokens=3, output_tokens=4)]
    # Asking for all users without being a reviewer still shows only one's own rows (row-level security).
    assert s.usage_by_user(pair.alice, since, until, all_users=True) == own
    everyone = {u.user_id: u for u in s.usage_by_user(rita, since, until, all_users=True)}
    assert everyone[pair.alice.user_id] == own[0]
    assert everyone[pair.bob.user_id] == UserUsage(pair.bob.user_id, messages=2, input_tokens=50, output_tokens=60)
    assert s.usage_by_user(rita, until, until + timedelta(days=1), all_users=True) == []


# --- personal API keys -------------------------------------------------------------------------------


def new_hash() -> str:
    """A stand-in for the SHA-256 of a fresh secret: the store only ever sees hashes."""
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def add_key(
    s: Store, who: Principal, name: str = "laptop", *, expires_at: datetime | None = None, max_live: int = 10
) -> tuple[ApiKey, str]:
    digest = new_hash()
    key = s.create_api_key(
        who, name=name, prefix="sk-chat-abc123", secret_hash=digest, expires_at=expires_at, max_live=max_live
    )
    return key, digest


def test_api_keys_are_created_listed_newest_first_and_revoked(backend: Backend) -> None:
    s, alice = backend.store, backend.user("alice")
    first, _ = add_key(s, alice, "  ci   runner ")
    assert (first.user_id, first.name, first.prefix) == (alice.user_id, "ci runner", "sk-chat-abc123")
    assert first.last_used_at is None and first.expires_at is None and first.revoked_at is None
    later = datetime.now(UTC) + timedelta(days=30)
    second, _ = add_key(s, alice, "laptop", expires_at=later)
    assert second.expires_at == later
    assert ids(s.list_api_keys(alice)) == [second.id, first.id]
    # Nothing the owner reads carries the hash.
    assert not any("hash" in name for name in vars(first))

    revoked = s.revoke_api_key(alice, str(first.id))
    assert revoked.revoked_at is not None and revoked.state(datetime.now(UTC)) == "revoked"
    again = s.revoke_api_key(alice, first.id)
    assert again.revoked_at == revoked.revoked_at  # revoking twice keeps the first time
    listed = {k.id: k for k in s.list_api_keys(alice)}
    assert listed[first.id].revoked_at == revoked.revoked_at and listed[second.id].revoked_at is None


def test_a_key_hash_finds_its_owner_only_while_the_key_is_live(backend: Backend) -> None:
    s, alice = backend.store, backend.user("alice")
    live, live_hash = add_key(s, alice, "live")
    gone, gone_hash = add_key(s, alice, "gone")
    _, old_hash = add_key(s, alice, "old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    s.revoke_api_key(alice, gone.id)

    assert s.find_api_key(live_hash) == ApiKeyMatch("live", alice.user_id, live.id)
    # Dead keys say only that they are dead: no owner, no id.
    assert s.find_api_key(gone_hash) == ApiKeyMatch("revoked", None, None)
    assert s.find_api_key(old_hash) == ApiKeyMatch("expired", None, None)
    assert s.find_api_key(new_hash()) is None
    for odd in ("", "not a hash", live_hash.upper(), live_hash + "0", "'; drop table api_keys; --"):
        assert s.find_api_key(odd) is None


def test_using_a_key_records_its_last_use(backend: Backend) -> None:
    s, alice = backend.store, backend.user("alice")
    key, digest = add_key(s, alice)
    before = datetime.now(UTC)
    assert s.find_api_key(digest) is not None
    used = {k.id: k for k in s.list_api_keys(alice)}[key.id].last_used_at
    assert used is not None and used >= before - timedelta(seconds=5)
    # Within the minute a second use does not write again.
    assert s.find_api_key(digest) is not None
    assert {k.id: k for k in s.list_api_keys(alice)}[key.id].last_used_at == used


def test_another_user_cannot_see_or_revoke_my_keys(backend: Backend) -> None:
    s, alice, bob = backend.store, backend.user("alice"), backend.user("bob")
    mine, digest = add_key(s, alice)
    assert s.list_api_keys(bob) == []
    with pytest.raises(NotFound):
        s.revoke_api_key(bob, mine.id)
    with pytest.raises(NotFound):
        s.revoke_api_key(backend.reviewer(), mine.id)  # reviewers read history, not keys
    assert s.find_api_key(digest) == ApiKeyMatch("live", alice.user_id, mine.id)
    for bad in ("not-a-uuid", "", str(uuid.uuid4())):
        with pytest.raises(NotFound):
            s.revoke_api_key(alice, bad)


def test_live_keys_are_capped_and_dead_ones_do_not_count(backend: Backend) -> None:
    s, alice = backend.store, backend.user("alice")
    first, _ = add_key(s, alice, "one", max_live=2)
    add_key(s, alice, "two", max_live=2)
    with pytest.raises(InvalidInput, match="2 active API keys"):
        add_key(s, alice, "three", max_live=2)
    assert len(s.list_api_keys(alice)) == 2
    s.revoke_api_key(alice, first.id)
    add_key(s, alice, "three", max_live=2)
    add_key(s, alice, "expired", max_live=10, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(InvalidInput):
        add_key(s, alice, "four", max_live=2)
    # The cap is per user.
    add_key(s, backend.user("bob"), "bobs", max_live=2)


def test_key_names_are_cleaned_and_bad_ones_refused(backend: Backend) -> None:
    s, alice = backend.store, backend.user("alice")
    assert add_key(s, alice, "tab\there\nnewline")[0].name == "tab here newline"
    assert add_key(s, alice, "é" * 100)[0].name == "é" * 100
    for bad in ("", "   ", "nul\x00name", "x" * 101):
        with pytest.raises(InvalidInput) as caught:
            add_key(s, alice, bad)
        assert caught.value.message.endswith(".")
    with pytest.raises(InvalidInput):
        s.create_api_key(
            alice, name="naive", prefix="sk-chat-", secret_hash=new_hash(), expires_at=datetime(2030, 1, 1), max_live=10
        )
    assert sorted(k.name for k in s.list_api_keys(alice)) == sorted(["tab here newline", "é" * 100])


# --- the message tree: parents, versions, the current leaf ---------------------------------------------


@dataclass
class Tree:
    """u1 -> a1, a2 (two versions of the reply); a2 -> u2 -> a3; u1' (an edit of u1, a second root) -> a4."""

    who: Principal
    conv: uuid.UUID
    u1: Message
    a1: Message
    a2: Message
    u2: Message
    a3: Message
    u1b: Message
    a4: Message


@pytest.fixture
def tree(backend: Backend) -> Tree:
    s, who = backend.store, backend.user("brancher")
    conv = s.create_conversation(who, "branches").id
    u1 = s.add_message(who, conv, "user", "question", "demo")
    a1 = s.add_message(who, conv, "assistant", "first answer", "demo")
    a2 = s.add_message(who, conv, "assistant", "second answer", "demo", parent_id=u1.id)
    u2 = s.add_message(who, conv, "user", "follow-up", "demo")
    a3 = s.add_message(who, conv, "assistant", "follow-up answer", "demo")
    u1b = s.add_message(who, conv, "user", "question, edited", "demo", parent_id=None)
    a4 = s.add_message(who, conv, "assistant", "answer to the edit", "demo")
    return Tree(who, conv, u1, a1, a2, u2, a3, u1b, a4)


def test_messages_chain_under_the_current_leaf_which_follows_each_insert(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    assert (t.u1.parent_id, t.a1.parent_id, t.a2.parent_id, t.u2.parent_id, t.a3.parent_id) == (
        None, t.u1.id, t.u1.id, t.a2.id, t.u2.id,
    )
    assert (t.u1b.parent_id, t.a4.parent_id) == (None, t.u1b.id)
    assert s.get_conversation(t.who, t.conv).current_leaf_id == t.a4.id
    assert ids(s.path_messages(t.who, t.conv)) == [t.u1b.id, t.a4.id]
    assert ids(s.path_messages(t.who, t.conv, to=t.a3.id)) == [t.u1.id, t.a2.id, t.u2.id, t.a3.id]
    assert ids(s.path_messages(t.who, t.conv, to=t.a3.id, limit=2)) == [t.u2.id, t.a3.id]
    assert s.get_message(t.who, t.a2.id) == t.a2


def test_versions_list_siblings_oldest_first(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    found = s.versions(t.who, t.conv, [t.u1.id, t.a2.id, t.u2.id, t.a4.id, t.u1b.id])
    assert set(found) == {t.u1.id, t.u1b.id, t.a2.id}  # u2 and a4 have no siblings
    assert found[t.u1b.id].ids == (t.u1.id, t.u1b.id) and found[t.u1b.id].index == 1
    assert found[t.u1b.id].previous == t.u1.id and found[t.u1b.id].next is None
    assert found[t.a2.id].ids == (t.a1.id, t.a2.id) and found[t.a2.id].index == 1


def test_choosing_a_branch_moves_the_leaf_to_its_newest_message(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    assert s.choose_branch(t.who, t.u1.id).current_leaf_id == t.a3.id  # the newest leaf under u1
    assert ids(s.path_messages(t.who, t.conv)) == [t.u1.id, t.a2.id, t.u2.id, t.a3.id]
    assert s.choose_branch(t.who, t.a1.id).current_leaf_id == t.a1.id  # a leaf is its own newest leaf
    assert ids(s.path_messages(t.who, t.conv)) == [t.u1.id, t.a1.id]
    # a new message goes under the chosen branch
    follow = s.add_message(t.who, t.conv, "user", "on the first answer", "demo")
    assert follow.parent_id == t.a1.id
    assert s.get_conversation(t.who, t.conv).current_leaf_id == follow.id


def test_the_current_path_ids_of_several_conversations(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    other = s.create_conversation(t.who, "other").id
    o1 = s.add_message(t.who, other, "user", "x", "demo")
    assert s.current_path_ids(t.who, [t.conv, other]) == {t.u1b.id, t.a4.id, o1.id}
    assert s.current_path_ids(t.who, []) == set()


def test_no_one_branches_from_or_switches_in_another_users_conversation(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    mallory, rita = backend.user("mallory"), backend.reviewer()
    own = s.create_conversation(mallory, "mine").id
    for who in (mallory, rita):
        with pytest.raises(NotFound):  # a parent in someone else's conversation
            s.add_message(who, t.conv, "user", "branching in", "demo", parent_id=t.u1.id)
        with pytest.raises(NotFound):  # someone else's message as the parent in one's own conversation
            s.add_message(who, own if who is mallory else s.create_conversation(rita).id, "user", "x", "demo",
                          parent_id=t.u1.id)
        with pytest.raises(NotFound):
            s.choose_branch(who, t.u1.id)
        with pytest.raises(NotFound):
            s.set_instructions(who, t.conv, "obey me")
    with pytest.raises(NotFound):
        s.get_message(mallory, t.u1.id)
    assert s.path_messages(mallory, t.conv) == []
    assert s.versions(mallory, t.conv, [t.u1b.id]) == {}
    assert s.current_path_ids(mallory, [t.conv]) == set()
    # a reviewer reads the path and its versions, and changes nothing
    assert ids(s.path_messages(rita, t.conv)) == [t.u1b.id, t.a4.id]
    assert s.versions(rita, t.conv, [t.u1b.id])[t.u1b.id].index == 1
    after = s.get_conversation(t.who, t.conv)
    assert after.current_leaf_id == t.a4.id and after.instructions == ""
    assert ids(s.path_messages(t.who, t.conv)) == [t.u1b.id, t.a4.id]


def test_a_parent_from_another_conversation_of_the_same_user_is_refused(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    other = s.create_conversation(t.who, "elsewhere").id
    with pytest.raises(NotFound):
        s.add_message(t.who, other, "user", "crossing over", "demo", parent_id=t.u1.id)
    assert s.path_messages(t.who, other) == []


def test_deleting_a_branched_conversation_removes_every_branch(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    s.delete_conversation(t.who, t.conv)
    assert list(s.iter_history(t.who)) == []


def test_history_rows_carry_their_parent(backend: Backend, tree: Tree) -> None:
    s, t = backend.store, tree
    rows = {r.id: r.parent_id for r in s.iter_history(t.who)}
    assert rows[t.a2.id] == t.u1.id and rows[t.u1b.id] is None
    exported = list(csv.reader(io.StringIO(b"".join(s.export_csv(t.who)).decode())))
    # Where it was added (after every older column); the feedback columns came after it, issue 15.
    assert exported[0][11] == "parent_id"
    assert [str(t.a2.id), str(t.conv), str(t.u1.id)] in [[r[1], r[2], r[11]] for r in exported]


# --- instructions and the title filter ----------------------------------------------------------------


def test_instructions_are_stored_with_the_conversation(backend: Backend) -> None:
    s, who = backend.store, backend.user("instructor")
    conv = s.create_conversation(who, "styled", instructions="  Answer in French.\n\nBe brief.  ")
    assert conv.instructions == "Answer in French.\n\nBe brief."
    assert s.set_instructions(who, conv.id, "").instructions == ""
    assert s.get_conversation(who, conv.id).instructions == ""
    with pytest.raises(InvalidInput, match="too long"):
        s.set_instructions(who, conv.id, "x" * 20_001)
    with pytest.raises(InvalidInput, match="NUL"):
        s.set_instructions(who, conv.id, "a\x00b")


def test_the_title_filter_matches_literally_case_insensitively_and_pages(backend: Backend) -> None:
    s, who, other = backend.store, backend.user("filterer"), backend.user("stranger")
    titles = ["Budget 2027", "budget_v2", "Trip to Rome", "100% done", "BUDGET review", "1000 done"]
    made = {t: s.create_conversation(who, t).id for t in titles}
    s.create_conversation(other, "budget of someone else")
    assert {c.title for c in s.list_conversations(who, title_filter="budget").items} == {
        "Budget 2027", "budget_v2", "BUDGET review",
    }
    assert [c.title for c in s.list_conversations(who, title_filter="100%").items] == ["100% done"]
    assert [c.title for c in s.list_conversations(who, title_filter="t_v").items] == ["budget_v2"]
    assert s.list_conversations(who, title_filter="nothing like it").items == []
    # paged in activity order, each match once
    first = s.list_conversations(who, limit=2, title_filter="budget")
    assert first.next_cursor is not None
    rest = s.list_conversations(who, limit=2, before=first.next_cursor, title_filter="budget")
    assert rest.next_cursor is None
    assert ids([*first.items, *rest.items]) == [made["BUDGET review"], made["budget_v2"], made["Budget 2027"]]
    # a cursor is bound to its filter
    with pytest.raises(InvalidCursor):
        s.list_conversations(who, limit=2, before=first.next_cursor)
    with pytest.raises(InvalidCursor):
        s.list_conversations(who, limit=2, before=first.next_cursor, title_filter="trip")
    # the lowered title follows a rename
    s.rename_conversation(who, made["Trip to Rome"], "Reise nach ÖSTERREICH")
    assert [c.title for c in s.list_conversations(who, title_filter="reise NACH").items] == ["Reise nach ÖSTERREICH"]
    assert s.list_conversations(who, title_filter="trip").items == []


# --- attachments (issue 15) ----------------------------------------------------------------------------


def _files() -> list[NewAttachment]:
    return [
        NewAttachment("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, thumbnail=b"thumb-bytes"),
        NewAttachment("notes.md", "text/markdown", b"# Notes\nhello", text="# Notes\nhello"),
    ]


def _attached(backend: Backend, who: Principal) -> tuple[uuid.UUID, list[Attachment]]:
    s = backend.store
    conversation = s.create_conversation(who, "with files")
    message = s.add_message(who, conversation.id, "user", "look at these", "demo/echo-1")
    return message.id, s.add_attachments(who, message.id, _files())


def test_attachments_are_listed_with_thumbnails_and_read_back_whole(backend: Backend) -> None:
    s, ann = backend.store, backend.user("ann")
    mid, stored = _attached(backend, ann)
    assert [(a.name, a.media_type, a.size, a.user_id) for a in stored] == [
        ("photo.png", "image/png", 72, ann.user_id),
        ("notes.md", "text/markdown", 13, ann.user_id),
    ]
    listed = s.message_attachments(ann, [mid])
    assert listed[mid] == stored
    assert [a.thumbnail for a in listed[mid]] == [b"thumb-bytes", None]
    assert s.attachment_file(ann, stored[0].id).data == b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    contents = {c.name: c for c in s.attachment_contents(ann, [mid])}
    assert contents["notes.md"].text == "# Notes\nhello" and contents["notes.md"].data is None
    assert contents["photo.png"].data == b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    exported = list(s.iter_attachments(ann, batch_size=1))
    assert [(e.id, e.data) for e in exported] == [(stored[0].id, _files()[0].data), (stored[1].id, _files()[1].data)]


def test_another_user_cannot_see_read_or_attach_to_my_files(backend: Backend) -> None:
    s, ann, bob = backend.store, backend.user("ann"), backend.user("bob")
    mid, stored = _attached(backend, ann)
    assert s.message_attachments(bob, [mid]) == {}
    assert s.attachment_contents(bob, [mid]) == []
    assert list(s.iter_attachments(bob)) == []
    with pytest.raises(NotFound):
        s.attachment_file(bob, stored[0].id)
    with pytest.raises(NotFound):
        s.add_attachments(bob, mid, [NewAttachment("planted.txt", "text/plain", b"x", text="x")])
    assert len(s.message_attachments(ann, [mid])[mid]) == 2


def test_a_reviewer_reads_others_files_but_exports_and_attaches_only_their_own(backend: Backend) -> None:
    s, ann, rita = backend.store, backend.user("ann"), backend.reviewer()
    mid, stored = _attached(backend, ann)
    assert [a.id for a in s.message_attachments(rita, [mid])[mid]] == [a.id for a in stored]
    assert s.attachment_file(rita, stored[1].id).data == b"# Notes\nhello"
    assert list(s.iter_attachments(rita)) == []
    with pytest.raises(NotFound):
        s.add_attachments(rita, mid, [NewAttachment("planted.txt", "text/plain", b"x", text="x")])


def test_an_edited_message_gets_copies_of_its_files_and_no_one_else_can_copy_them(backend: Backend) -> None:
    s, ann, bob = backend.store, backend.user("ann"), backend.user("bob")
    mid, stored = _attached(backend, ann)
    conversation = s.get_message(ann, mid).conversation_id
    edited = s.add_message(ann, conversation, "user", "edited", "demo/echo-1", parent_id=None)
    assert s.copy_attachments(ann, mid, edited.id) == 2
    copies = s.message_attachments(ann, [edited.id])[edited.id]
    assert [(a.name, a.size, a.thumbnail) for a in copies] == [
        ("photo.png", 72, b"thumb-bytes"),
        ("notes.md", 13, None),
    ]
    assert {a.id for a in copies}.isdisjoint(a.id for a in stored)
    bobs = s.create_conversation(bob, "bob's")
    target = s.add_message(bob, bobs.id, "user", "mine", "demo/echo-1")
    assert s.copy_attachments(bob, mid, target.id) == 0  # another user's files cannot be read to copy
    assert s.copy_attachments(ann, mid, target.id) == 0  # nor copied onto another user's message
    assert s.message_attachments(bob, [target.id]) == {}


def test_deleting_the_conversation_or_all_data_removes_the_files(backend: Backend) -> None:
    s, ann = backend.store, backend.user("ann")
    mid, stored = _attached(backend, ann)
    conversation = s.get_message(ann, mid).conversation_id
    s.delete_conversation(ann, conversation)
    with pytest.raises(NotFound):
        s.attachment_file(ann, stored[0].id)
    mid, stored = _attached(backend, ann)
    s.delete_all_user_data(ann)
    assert s.message_attachments(ann, [mid]) == {} and list(s.iter_attachments(ann)) == []


def test_bad_attachments_are_refused_and_none_of_the_batch_is_stored(backend: Backend) -> None:
    s, ann = backend.store, backend.user("ann")
    conversation = s.create_conversation(ann, "with files")
    mid = s.add_message(ann, conversation.id, "user", "look", "demo/echo-1").id
    good = NewAttachment("ok.txt", "text/plain", b"ok", text="ok")
    for bad in (
        NewAttachment("bad.txt", "not a type", b"x"),
        NewAttachment("", "text/plain", b"x"),
        NewAttachment("nul.txt", "text/plain", b"x", text="a\x00b"),
    ):
        with pytest.raises(InvalidInput):
            s.add_attachments(ann, mid, [good, bad])
    assert s.message_attachments(ann, [mid]) == {}
    assert s.add_attachments(ann, mid, [NewAttachment("dir/../a\nb.txt", "text/plain", b"x")])[0].name == "a b.txt"
