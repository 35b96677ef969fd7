"""The store contract for feedback on replies (issue 15), run against every backend of the contract suite
(tests/test_store_contract.py's BACKENDS): who may give, change, remove and read feedback, and how History's
feedback filter, usage and exports see it. Spoken only through the protocols, like the rest of the suite."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from services.auth import Principal
from services.store.types import Feedback, HistoryRow, InvalidCursor, InvalidInput, Message, MessageFilter, NotFound
from tests.test_store_contract import BACKENDS, Backend


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param](request)


@dataclass
class Rated:
    ann: Principal
    bob: Principal
    ann_reply: Message
    bob_reply: Message
    ann_given: Feedback


def turn(backend: Backend, who: Principal, text: str = "question") -> Message:
    s = backend.store
    conversation = s.create_conversation(who, "rated")
    s.add_message(who, conversation.id, "user", text, "demo")
    return s.add_message(who, conversation.id, "assistant", f"answer to {text}", "demo")


@pytest.fixture
def rated(backend: Backend) -> Rated:
    ann, bob = backend.user("ann"), backend.user("bob")
    ann_reply, bob_reply = turn(backend, ann), turn(backend, bob)
    given = backend.store.set_feedback(ann, ann_reply.id, "down", "Wrong year.")
    backend.store.set_feedback(bob, bob_reply.id, "up")
    return Rated(ann, bob, ann_reply, bob_reply, given)


def history(backend: Backend, who: Principal, where: MessageFilter) -> list[HistoryRow]:
    return list(backend.store.search_messages(who, where, 200).items)


def test_feedback_is_given_changed_and_taken_back_by_its_owner(backend: Backend, rated: Rated) -> None:
    s, ann, reply = backend.store, rated.ann, rated.ann_reply
    first = rated.ann_given
    assert (first.message_id, first.user_id) == (reply.id, ann.user_id)
    assert (first.rating, first.comment) == ("down", "Wrong year.")
    changed = s.set_feedback(ann, reply.id, "up")
    assert (changed.rating, changed.comment, changed.created_at) == ("up", "Wrong year.", first.created_at)
    assert changed.updated_at >= first.updated_at
    assert s.set_feedback(ann, reply.id, "up", "").comment is None
    again = s.set_feedback(ann, reply.id, "down", "Again.")
    assert s.feedback_for(ann, [reply.id]) == {reply.id: again}
    assert s.clear_feedback(ann, reply.id) is True
    assert s.feedback_for(ann, [reply.id]) == {}
    assert s.clear_feedback(ann, reply.id) is False


def test_another_user_can_neither_read_nor_write_nor_give_feedback_on_my_reply(
    backend: Backend, rated: Rated
) -> None:
    s, ann, bob = backend.store, rated.ann, rated.bob
    mine = rated.ann_reply.id
    assert s.feedback_for(bob, [mine]) == {}
    with pytest.raises(NotFound):
        s.set_feedback(bob, mine, "up", "planted praise")
    assert s.clear_feedback(bob, mine) is False
    # Not through History either, not even asking for all users: his own rows only, and mine never.
    for where in (MessageFilter(feedback="down"), MessageFilter(feedback="comment", all_users=True)):
        assert history(backend, bob, where) == []
    assert [r.id for r in history(backend, bob, MessageFilter(feedback="up", all_users=True))] == [rated.bob_reply.id]
    assert s.feedback_for(ann, [mine]) == {mine: rated.ann_given}  # untouched by all of the above


def test_a_reviewer_reads_everyones_feedback_and_writes_none(backend: Backend, rated: Rated) -> None:
    s, rita = backend.store, backend.reviewer()
    mine = rated.ann_reply.id
    assert s.feedback_for(rita, [mine, rated.bob_reply.id]) == {
        mine: rated.ann_given,
        rated.bob_reply.id: s.feedback_for(rated.bob, [rated.bob_reply.id])[rated.bob_reply.id],
    }
    found = history(backend, rita, MessageFilter(feedback="comment", all_users=True))
    assert [(r.id, r.feedback, r.feedback_comment) for r in found if r.user_id == rated.ann.user_id] == [
        (mine, "down", "Wrong year.")
    ]
    with pytest.raises(NotFound):
        s.set_feedback(rita, mine, "up")
    assert s.clear_feedback(rita, mine) is False
    assert s.feedback_for(rated.ann, [mine]) == {mine: rated.ann_given}
    # Not asked for all users, the reviewer's listing is their own (empty).
    assert history(backend, rita, MessageFilter(feedback="down")) == []


def test_only_a_finished_assistant_reply_takes_feedback_and_input_is_checked(backend: Backend) -> None:
    s, who = backend.store, backend.user("carl")
    conversation = s.create_conversation(who, "checks")
    question = s.add_message(who, conversation.id, "user", "q", "demo")
    streaming = s.add_message(who, conversation.id, "assistant", "partial", "demo", "streaming")
    for message_id in (question.id, streaming.id, uuid.uuid4(), "not-a-uuid"):
        with pytest.raises(NotFound):
            s.set_feedback(who, message_id, "up")
    finished = s.update_message(who, streaming.id, content="partial", status="interrupted")
    assert s.set_feedback(who, finished.id, "down").rating == "down"
    with pytest.raises(InvalidInput):
        s.set_feedback(who, finished.id, "meh")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="Comment is too long"):
        s.set_feedback(who, finished.id, "up", "x" * 4_001)
    with pytest.raises(InvalidInput):
        history(backend, who, MessageFilter(feedback="sideways"))


def test_feedback_goes_with_its_reply(backend: Backend) -> None:
    s, who = backend.store, backend.user("dora")
    kept, gone = turn(backend, who, "kept"), turn(backend, who, "gone")
    for reply in (kept, gone):
        s.set_feedback(who, reply.id, "up", "noted")
    s.delete_conversation(who, gone.conversation_id)
    assert set(s.feedback_for(who, [kept.id, gone.id])) == {kept.id}
    s.delete_all_user_data(who)
    assert s.feedback_for(who, [kept.id]) == {}


FILTERS = ("up", "down", "none", "comment")


def expected_feedback(i: int) -> tuple[str | None, str | None]:
    """Reply i's feedback in the paging world: a thumb on 2 in 5, a comment on every 3rd thumb."""
    rating = {0: "up", 1: "down"}.get(i % 5)
    return rating, (f"comment {i}" if rating and i % 3 == 0 else None)


def test_each_feedback_filter_walks_every_match_once_newest_first(backend: Backend) -> None:
    s, who = backend.store, backend.user("paging")
    conversation = s.create_conversation(who, "many")
    replies: list[Message] = []
    for i in range(30):
        s.add_message(who, conversation.id, "user", f"question {i}", "demo")
        replies.append(s.add_message(who, conversation.id, "assistant", f"reply {i}", "demo"))
    # Equal timestamps in pairs: the keyset must order by id within them and never skip or repeat a row.
    base = datetime(2026, 3, 1, tzinfo=UTC)
    backend.set_times({r.id: base + timedelta(minutes=i // 2) for i, r in enumerate(replies)}, {})
    for i, reply in enumerate(replies):
        rating, comment = expected_feedback(i)
        if rating:
            s.set_feedback(who, reply.id, rating, comment)  # type: ignore[arg-type]

    def matches(i: int, choice: str) -> bool:
        rating, comment = expected_feedback(i)
        found = {"up": rating == "up", "down": rating == "down", "none": rating is None, "comment": bool(comment)}
        return found[choice]

    for choice in FILTERS:
        where = MessageFilter(feedback=choice)
        seen: list[HistoryRow] = []
        cursor: str | None = None
        while True:
            page = s.search_messages(who, where, 4, before=cursor)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        want = {r.id for i, r in enumerate(replies) if matches(i, choice)}
        assert [r.id for r in seen if r.id in want] == [r.id for r in seen], choice
        assert len(seen) == len(want) == len({r.id for r in seen}), choice
        keys = [(r.created_at, r.id) for r in seen]
        assert keys == sorted(keys, reverse=True), choice
        for row in seen:
            i = replies.index(next(r for r in replies if r.id == row.id))
            assert (row.feedback, row.feedback_comment) == expected_feedback(i)
        # The same filter with a text search (another query path) finds the same rows.
        searched = history(backend, who, MessageFilter(query="reply", feedback=choice))
        assert [r.id for r in searched] == [r.id for r in seen], choice

    # A plain search (the search function's path) carries each row's feedback too.
    searched_all = history(backend, who, MessageFilter(query="reply"))
    assert len(searched_all) == 30
    for row in searched_all:
        i = replies.index(next(r for r in replies if r.id == row.id))
        assert (row.feedback, row.feedback_comment) == expected_feedback(i)

    # A cursor belongs to its filter: one made for "up" is refused for "down".
    up_page = s.search_messages(who, MessageFilter(feedback="up"), 2)
    assert up_page.next_cursor is not None
    with pytest.raises(InvalidCursor):
        s.search_messages(who, MessageFilter(feedback="down"), 2, before=up_page.next_cursor)
    # Without the filter the scope is what it always was: links made before feedback existed keep working.
    assert MessageFilter().scope() == MessageFilter(feedback=None).scope()


def test_usage_and_csv_count_and_carry_feedback(backend: Backend) -> None:
    s, who = backend.store, backend.user("usage")
    replies = [turn(backend, who, f"q{i}") for i in range(4)]
    day = datetime(2026, 4, 2, 12, tzinfo=UTC)
    backend.set_times({r.id: day for r in replies}, {})
    s.set_feedback(who, replies[0].id, "up")
    s.set_feedback(who, replies[1].id, "up", "=1+1 is right")
    s.set_feedback(who, replies[2].id, "down", "-wrong")
    rows = s.usage_by_day(who, day - timedelta(days=1), day + timedelta(days=1), "UTC")
    on_day = [r for r in rows if r.day == day.date()]
    assert [(r.model, r.thumbs_up, r.thumbs_down) for r in on_day] == [("demo", 2, 1)]
    exported = list(csv.DictReader(io.StringIO(b"".join(s.export_csv(who)).decode())))
    by_id = {r["id"]: r for r in exported}
    assert [(by_id[str(r.id)]["feedback"], by_id[str(r.id)]["feedback_comment"]) for r in replies] == [
        ("up", ""),
        ("up", "'=1+1 is right"),  # the formula guard covers the comment
        ("down", "'-wrong"),
        ("", ""),
    ]
    json_rows = {r.id: r for r in s.iter_history(who)}
    assert (json_rows[replies[1].id].feedback, json_rows[replies[1].id].feedback_comment) == ("up", "=1+1 is right")
