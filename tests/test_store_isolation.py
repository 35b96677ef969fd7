"""Row-level security in SQL: one user can never see or change another's rows, whichever way they ask.

Each case is tried with direct SQL as role `authenticated` with A's claims, the way PostgREST (and so
Supabase) would run it. The same isolation through the store's methods is in tests/test_store_contract.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore


@dataclass
class World:
    a_conv: uuid.UUID
    a_msg: uuid.UUID
    b_conv: uuid.UUID
    b_msg: uuid.UUID


@pytest.fixture(scope="module")
def world(store: PostgresStore) -> World:
    a, b = Principal("user_alice"), Principal("user_bob")
    a_conv = store.create_conversation(a, "A's chat")
    b_conv = store.create_conversation(b, "B's secret chat")
    a_msg = store.add_message(a, a_conv.id, "user", "hello from A", "demo")
    b_msg = store.add_message(b, b_conv.id, "user", "B's private words", "demo")
    return World(a_conv.id, a_msg.id, b_conv.id, b_msg.id)


def admin_counts(database: EmbeddedDatabase) -> tuple[int, int, str, str]:
    """What is really in the tables, seen by the superuser (who bypasses RLS)."""
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute(
            "select (select count(*) from messages), (select count(*) from conversations),"
            " (select string_agg(content, '|' order by id) from messages where user_id = 'user_bob'),"
            " (select string_agg(title, '|' order by id) from conversations where user_id = 'user_bob')"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


@contextmanager
def as_role(database: EmbeddedDatabase, role: str, claims: dict[str, Any] | None) -> Iterator[psycopg.Connection]:
    """A transaction as the app's login role switched to `role`, with `claims` (or none) set locally."""
    with psycopg.connect(database.app_url) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("select set_config('role', %s, true)", [role])
            if claims is not None:
                conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
            yield conn


# This app's user claims (services/app_tokens.py): what every policy accepts.
A_CLAIMS = {"iss": APP_ISSUER, "chat_scope": "user", "sub": "user_alice", "role": "authenticated"}


# --- direct SQL as `authenticated` with A's claims ----------------------------------------------------


def test_sql_select_sees_only_own_rows(database: EmbeddedDatabase, world: World) -> None:
    with as_role(database, "authenticated", A_CLAIMS) as conn:
        assert conn.execute("select id from messages").fetchall() == [(world.a_msg,)]
        assert conn.execute("select id from conversations").fetchall() == [(world.a_conv,)]
        assert conn.execute("select count(*) from messages where user_id = 'user_bob'").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        # B's conversation, claiming to be B
        "insert into messages (conversation_id, user_id, role, content, model)"
        " values (%(b_conv)s, 'user_bob', 'user', 'x', 'm')",
        # B's conversation, as A: a message may only go into a conversation its author owns
        "insert into messages (conversation_id, user_id, role, content, model)"
        " values (%(b_conv)s, 'user_alice', 'user', 'x', 'm')",
        # B's conversation, user_id left to its default (A's sub)
        "insert into messages (conversation_id, role, content, model) values (%(b_conv)s, 'user', 'x', 'm')",
        "insert into conversations (user_id, title) values ('user_bob', 'planted')",
        # moving one's own rows to someone else
        "update messages set user_id = 'user_bob' where id = %(a_msg)s",
        "update conversations set user_id = 'user_bob' where id = %(a_conv)s",
    ],
)
def test_sql_writes_for_others_are_rejected(database: EmbeddedDatabase, world: World, statement: str) -> None:
    params = {"b_conv": world.b_conv, "a_msg": world.a_msg, "a_conv": world.a_conv}
    # The policy must be what refuses: a foreign-key error here would mean the policy let the row through.
    # (tests/test_rls_policies.py tries the moves that only `with check` can stop.)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="new row violates row-level security policy"):
        with as_role(database, "authenticated", A_CLAIMS) as conn:
            conn.execute(statement, params)


@pytest.mark.parametrize(
    ("statement", "own_rows_hit"),
    [
        ("update messages set content = 'overwritten' where user_id = 'user_bob'", 0),
        ("update messages set content = 'overwritten' where id = %(b_msg)s", 0),
        ("update conversations set title = 'pwned' where id = %(b_conv)s", 0),
        ("delete from messages where id = %(b_msg)s", 0),
        ("delete from conversations where user_id <> 'user_alice'", 0),
        # Unfiltered statements reach exactly A's own single row and nothing of B's.
        ("update messages set content = 'mine'", 1),
        ("delete from messages", 1),
    ],
)
def test_sql_updates_and_deletes_of_others_touch_nothing(
    database: EmbeddedDatabase, world: World, statement: str, own_rows_hit: int
) -> None:
    before = admin_counts(database)
    with as_role(database, "authenticated", A_CLAIMS) as conn:
        affected = conn.execute(statement, {"b_msg": world.b_msg, "b_conv": world.b_conv}).rowcount
    assert affected == own_rows_hit
    assert admin_counts(database) == before  # rolled back, and B's rows were never in reach


# --- anonymous callers --------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["messages", "conversations"])
def test_anon_role_has_no_access_at_all(database: EmbeddedDatabase, world: World, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with as_role(database, "anon", {"role": "anon"}) as conn:
            conn.execute(f"select * from {table}")


def test_authenticated_without_a_subject_sees_and_writes_nothing(database: EmbeddedDatabase, world: World) -> None:
    with as_role(database, "authenticated", None) as conn:
        assert conn.execute("select count(*) from messages").fetchone() == (0,)
        assert conn.execute("select count(*) from conversations").fetchone() == (0,)
        assert conn.execute("delete from messages").rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="new row violates row-level security policy"):
        with as_role(database, "authenticated", None) as conn:
            conn.execute("insert into conversations (title) values ('orphan')")


def test_app_login_role_alone_has_no_table_rights(database: EmbeddedDatabase, world: World) -> None:
    """chat_app is NOINHERIT: until it switches to `authenticated` it can read nothing."""
    with psycopg.connect(database.app_url) as conn:
        row = conn.execute(
            "select rolsuper, rolbypassrls, rolinherit from pg_roles where rolname = current_user"
        ).fetchone()
        assert row == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from messages")


# --- pooled connections and FORCE ---------------------------------------------------------------------


def test_claims_do_not_survive_the_transaction_on_a_reused_connection(database: EmbeddedDatabase, world: World) -> None:
    with psycopg.connect(database.app_url) as conn:
        with conn.transaction():
            conn.execute("select set_config('role', 'authenticated', true)")
            conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(A_CLAIMS)])
            assert conn.execute("select count(*) from messages").fetchone() == (1,)
        # Same connection, next transaction: no claims, no role.
        row = conn.execute("select current_setting('request.jwt.claims', true), current_user").fetchone()
        assert row is not None and row[0] in (None, "") and row[1] == "chat_app"
        conn.rollback()


def test_store_pool_does_not_leak_claims_between_users(store: PostgresStore, world: World) -> None:
    # With pool connections reused across users, alternate callers must each see only their own row.
    for _ in range(10):
        assert [m.id for m in store.page_messages(Principal("user_alice")).items] == [world.a_msg]
        assert [m.id for m in store.page_messages(Principal("user_bob")).items] == [world.b_msg]
        assert store.page_messages(Principal("user_nobody")).items == []


def test_forced_rls_binds_a_table_owner_without_bypassrls(database: EmbeddedDatabase, world: World) -> None:
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute(
            "do $$ begin if not exists (select 1 from pg_roles where rolname = 'owner_test') then"
            " create role owner_test nologin nosuperuser nobypassrls; end if; end $$"
        )
        admin.execute("alter table messages owner to owner_test")
        try:
            with admin.transaction(force_rollback=True):
                admin.execute("set local role owner_test")
                admin.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(A_CLAIMS)])
                # FORCE: the owner is subject to the policies, which are for `authenticated` only.
                assert admin.execute("select count(*) from messages").fetchone() == (0,)
                admin.execute("alter table messages no force row level security")
                # Without FORCE the owner would see every user's rows: FORCE is what stops it.
                total = admin.execute("select count(*) from messages").fetchone()
                assert total is not None and total[0] >= 2
        finally:
            admin.execute("alter table messages owner to postgres")
        row = admin.execute("select relforcerowsecurity from pg_class where relname = 'messages'").fetchone()
        assert row == (True,)
