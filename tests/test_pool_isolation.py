"""A pooled connection goes back to the pool without the last user's role or claims.

Through PostgresStore and its own pool (size 1, so the next borrower gets the very connection the last
call used): `as_principal` must set both with `set_config(..., true)`, transaction-local. Session-wide
settings (`false`) would survive the commit and leave the connection `authenticated` as that user.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from services.auth import Principal
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore


@pytest.fixture(scope="module")
def one_connection_store(database: EmbeddedDatabase) -> Iterator[PostgresStore]:
    store = PostgresStore(database.app_url, pool_max=1)
    yield store
    store.close()


def test_a_pooled_connection_keeps_no_role_or_claims_after_a_call(
    one_connection_store: PostgresStore, database: EmbeddedDatabase
) -> None:
    alice = Principal(user_id="user_pool_alice")
    conversation = one_connection_store.create_conversation(alice, "pooled")
    one_connection_store.add_message(alice, conversation.id, "user", "hello", "demo")
    assert [m.content for m in one_connection_store.page_messages(alice).items] == ["hello"]

    with one_connection_store._pool.connection() as conn:
        row = conn.execute("select current_setting('request.jwt.claims', true), current_user").fetchone()
    assert row is not None
    claims, user = row
    assert claims in (None, "")
    assert user == "chat_app"  # the login role, which has no table rights of its own


def test_a_pooled_connection_used_outside_the_helper_reads_nothing(one_connection_store: PostgresStore) -> None:
    """What a leak would let happen: code that borrows the connection without `as_principal` (a future
    maintenance task, a health check) acting as the last user. It must be refused outright."""
    alice = Principal(user_id="user_pool_alice2")
    conversation = one_connection_store.create_conversation(alice, "pooled again")
    one_connection_store.add_message(alice, conversation.id, "user", "private", "demo")
    with one_connection_store._pool.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table messages"):
            conn.execute("select content from public.messages")


def test_alternating_users_on_one_connection_each_see_only_their_own(one_connection_store: PostgresStore) -> None:
    people = [Principal(user_id=f"user_pool_{name}") for name in ("carol", "dave", "erin")]
    for person in people:
        conversation = one_connection_store.create_conversation(person, f"{person.user_id}'s")
        one_connection_store.add_message(person, conversation.id, "user", person.user_id, "demo")
    for _ in range(3):
        for person in people:
            seen = [m.content for m in one_connection_store.page_messages(person).items]
            assert seen == [person.user_id]
