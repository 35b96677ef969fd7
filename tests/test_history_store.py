"""History storage specific to the Postgres backend: exports at scale (COPY), formula guarding, the search
vector's size cap, and the reviewer read-only policy in direct SQL. Search, filters, paging both ways,
usage, delete-all and the reviewer's reads through the store are in tests/test_store_contract.py."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import psycopg
import pytest
from streamlit.runtime.download_data_util import convert_data_to_bytes_and_infer_mime

from services import export
from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.store import MessageFilter, NotFound
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODELS = ("gpt-4o", "claude-sonnet-4-5", "demo")
STATUSES = ("complete", "complete", "complete", "error", "interrupted")


def seed(admin_url: str, user_id: str, count: int, conversations: int = 3) -> list[uuid.UUID]:
    """Insert `count` messages for `user_id` as the superuser (fast, and lets us force equal timestamps).

    Message i: role alternates, model/status cycle, content holds apple/banana/cherry/delta by divisibility, and every
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


@pytest.fixture(scope="module")
def carol(database: EmbeddedDatabase) -> Iterator[Principal]:
    """A user with 157 seeded messages (many ties on created_at)."""
    seed(database.admin_url, "user_carol", 157)
    yield Principal(user_id="user_carol")


@pytest.fixture(scope="module")
def dave(database: EmbeddedDatabase) -> Iterator[Principal]:
    seed(database.admin_url, "user_dave", 40, conversations=2)
    yield Principal(user_id="user_dave")


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


# --- reviewer policy -------------------------------------------------------------------------------

NOT_REVIEWER_CLAIMS: list[dict[str, object]] = [
    {},
    {"roles": ["member"]},
    {"roles": {"reviewer": True}},  # an object is not a role list
    {"role": "reviewer"},  # the database role claim, not an app role
    {"metadata": {"role": "reviewer"}},
]


def _as_authenticated(conn: psycopg.Connection, claims: Mapping[str, object]) -> None:
    conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        # This app's user token (services/app_tokens.py) with the claims under test.
        [json.dumps({"iss": APP_ISSUER, "chat_scope": "user", **claims})],
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
    assert [r["content"] for r in rows] == ["'- a list item", *guarded, "plain = text", "'-"]  # any leading "-" (OWASP)
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
