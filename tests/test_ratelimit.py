"""The rate limiter over the store's request counter: per user, shared between replicas (two stores, two
pools, one database), a fixed window, private rows, and open (not closed) when the count cannot be kept."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.providers.catalogue import build_catalogue
from services.ratelimit import RateLimited, RateLimiter
from services.store.postgres import PostgresStore, as_principal


def user(name: str) -> Principal:
    return Principal(user_id=f"user_{name}_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def replica_store(database) -> Iterator[PostgresStore]:
    """A second store on the same database: another app replica with its own pool."""
    s = PostgresStore(database.app_url, max_message_chars=32_000, pool_max=2)
    yield s
    s.close()


def test_rate_limit_is_per_user_shared_between_replicas_and_stores_nothing(
    store: PostgresStore, replica_store: PostgresStore
) -> None:
    settings = settings_from({"CHAT_RATE_LIMIT_PER_MINUTE": "3"})
    catalogue = build_catalogue(settings)
    model = catalogue.default
    chat_a = ChatService(store, catalogue, RateLimiter(store, 3), settings=settings)
    chat_b = ChatService(replica_store, catalogue, RateLimiter(replica_store, 3), settings=settings)
    carol, dave = user("carol"), user("dave")

    def drain(reply) -> None:  # type: ignore[no-untyped-def]
        try:
            list(reply)
        finally:
            reply.close()

    first = chat_a.send(carol, None, "one", model)
    drain(first)
    drain(chat_b.send(carol, first.conversation_id, "two", model))
    drain(chat_a.send(carol, first.conversation_id, "three", model))
    before = len(store.page_messages(carol, limit=200).items)
    with pytest.raises(RateLimited) as caught:
        chat_b.send(carol, first.conversation_id, "four", model)
    assert 1 <= caught.value.retry_after_s <= 60
    assert caught.value.message.startswith("You have sent 3 messages in the last minute")
    assert len(store.page_messages(carol, limit=200).items) == before  # nothing stored for the refused one
    drain(chat_b.send(dave, None, "someone else", model))  # dave has his own budget


def test_rate_limit_window_resets(database, store: PostgresStore) -> None:
    limiter = RateLimiter(store, 1)
    erin = user("erin")
    first = limiter.hit(erin)
    assert first.allowed and first.hits == 1
    second = limiter.hit(erin)
    assert not second.allowed and second.hits == 2 and 1 <= second.retry_after_s <= 60
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute(
            "update public.rate_limits set window_start = now() - interval '61 seconds' where user_id = %s",
            [erin.user_id],
        )
    decision = limiter.hit(erin)
    assert decision.allowed and decision.hits == 1


def test_rate_limit_rows_are_private(store: PostgresStore) -> None:
    frank, grace = user("frank"), user("grace")
    store.count_request(frank, 60)
    store.count_request(grace, 60)
    # Through the store's own transaction helper and pool, as the app runs every statement.
    with as_principal(store._pool, frank) as conn:
        assert conn.execute("select user_id from public.rate_limits").fetchall() == [(frank.user_id,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_principal(store._pool, frank) as conn:
        conn.execute("insert into public.rate_limits (user_id, hits) values (%s, 0)", [grace.user_id + "_x"])


def test_rate_limit_zero_means_off_and_touches_no_counter() -> None:
    # No counter at all: a limit of 0 must not need one, and must allow everything.
    assert RateLimiter(None, 0).hit(user("henry")).allowed
    assert settings_from({"CHAT_RATE_LIMIT_PER_MINUTE": "0"}).rate_limit_per_minute == 0
    with pytest.raises(ValueError):
        RateLimiter(None, 5)


def test_unreachable_counter_lets_the_message_through(database) -> None:
    closed = PostgresStore(database.app_url, max_message_chars=32_000, pool_max=1)
    closed.close()
    limiter = RateLimiter(closed, 1)
    ivan = user("ivan")
    limiter.check(ivan)
    limiter.check(ivan)  # over the limit if it were counted: the outage must not block the user
