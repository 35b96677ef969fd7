"""FeedbackService and the store's feedback operations on the real database: what is accepted, what is
refused (and in which words), and what a comment becomes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from services.auth import Principal
from services.feedback import FeedbackService, rateable
from services.store import InvalidInput, Message, NotFound
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests import rls_checks


@pytest.fixture
def service(store: PostgresStore) -> Iterator[FeedbackService]:
    yield FeedbackService(store, comment_chars=20)


def conversation(store: PostgresStore, who: Principal, status: str = "complete") -> tuple[Message, Message]:
    c = store.create_conversation(who, "rated")
    question = store.add_message(who, c.id, "user", "question", "demo")
    reply = store.add_message(who, c.id, "assistant", "answer", "demo", status)  # type: ignore[arg-type]
    return question, reply


def user(label: str) -> Principal:
    return Principal(user_id=f"user_{label}_{uuid.uuid4().hex[:8]}")


def test_a_comment_is_trimmed_bounded_kept_replaced_and_removed(store: PostgresStore, service: FeedbackService) -> None:
    who = user("ann")
    _, reply = conversation(store, who)
    assert service.give(who, reply.id, "down", "  cites the wrong year \n").comment == "cites the wrong year"
    assert service.give(who, reply.id, "up").comment == "cites the wrong year"  # None keeps it
    assert service.give(who, reply.id, "up", "   ").comment is None  # blank removes it
    with pytest.raises(InvalidInput, match="Comment is too long: 21 characters, the limit is 20."):
        service.give(who, reply.id, "up", "x" * 21)
    with pytest.raises(InvalidInput, match="NUL"):
        service.give(who, reply.id, "up", "a\x00b")
    with pytest.raises(InvalidInput, match="Unknown feedback 'sideways'"):
        service.give(who, reply.id, "sideways")
    assert service.clear(who, reply.id) is True
    assert service.clear(who, reply.id) is False
    assert service.for_messages(who, [reply]) == {}


def test_only_finished_replies_of_ones_own_take_feedback(store: PostgresStore, service: FeedbackService) -> None:
    who, other = user("ann"), user("bob")
    question, reply = conversation(store, who)
    _, streaming = conversation(store, who, "streaming")
    for not_a_finished_reply in (question.id, streaming.id, uuid.uuid4()):
        with pytest.raises(NotFound, match="That reply does not exist, is not yours, or is not finished yet."):
            service.give(who, not_a_finished_reply, "up")
    with pytest.raises(NotFound):
        service.give(other, reply.id, "down", "planted")
    assert service.clear(other, reply.id) is False
    assert service.for_messages(who, [reply]) == {}
    assert not rateable(question) and not rateable(streaming) and rateable(reply)
    # for_messages asks only about replies that can carry feedback: a question never reaches the store.
    given = service.give(who, reply.id, "up")
    assert service.for_messages(who, [question, reply]) == {reply.id: given}


def test_switched_off_feedback_is_refused_in_plain_words(store: PostgresStore) -> None:
    who = user("ann")
    _, reply = conversation(store, who)
    off = FeedbackService(store, comment_chars=20, enabled=False)
    with pytest.raises(InvalidInput, match="Feedback is switched off on this server."):
        off.give(who, reply.id, "up")


def test_the_write_policies_refuse_a_thumb_in_ones_own_name_on_anothers_reply(
    database: EmbeddedDatabase, store: PostgresStore
) -> None:
    """Straight SQL as `authenticated`, around the functions: the policies' `exists` clause is what refuses
    feedback in my own name on another user's reply; with that clause dropped, the same insert goes through."""
    plant = (
        "insert into public.feedback (message_id, user_id, rating, message_created_at)"
        " values (%(theirs)s, %(me)s, 1, %(at)s)"
    )
    world = rls_checks.store_world(store)
    with psycopg.connect(database.admin_url) as admin, admin.transaction(force_rollback=True):
        at = admin.execute("select created_at from public.messages where id = %s", [world.other_spare_message])
        params = {"theirs": world.other_spare_message, "me": world.me, "at": at.fetchone()[0]}  # type: ignore[index]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=rls_checks.RLS_REFUSAL):
            with rls_checks.savepoint_as(admin, world.me) as conn:
                conn.execute(plant, params)
        admin.execute(
            "alter policy feedback_insert_own on public.feedback"
            " with check ((select auth.jwt() ->> 'sub') = user_id)"
        )
        with rls_checks.savepoint_as(admin, world.me) as conn:
            assert conn.execute(plant, params).rowcount == 1
