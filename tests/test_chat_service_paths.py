"""ChatService's failure paths, through its public API (send, Reply iteration, Outcome) with the real
store on PostgreSQL: removing the conversation it created when the first message cannot be stored, the
catch-all around streaming, and a reply whose final state cannot be saved.

Failures come from the real database wherever it can produce them; a provider that raises something
other than ProviderError (a bug the catch-all exists for) and a store whose delete fails are the only
stand-ins."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from services.auth import AuthError, Principal
from services.chat import ChatService, Reply
from services.config import settings_from
from services.providers import ProviderError, Turn, Usage
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.demo import DemoProvider
from services.store import InvalidInput, NotFound, StoreError
from services.store.postgres import PostgresStore

DEMO = "demo/echo-1"
# Longer than the 200 characters the messages table allows for a model name: the store refuses the
# message after the conversation has been created, a real failure of the insert.
TOO_LONG_MODEL = "demo/" + "x" * 200
BROKEN = "broken/bug-1"
DROPPING = "dropping/cut-1"


class _BrokenStream:
    """Yields one chunk, then fails with an error that is not a ProviderError (a provider bug)."""

    usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        yield "partial answer"
        raise RuntimeError("a bug inside a provider")

    def close(self) -> None:
        return None


class BuggyProvider:
    name = "broken"

    def stream(self, model: str, turns: Sequence[Turn], *, max_tokens: int) -> _BrokenStream:
        return _BrokenStream()


class _CountedThenDropped:
    """Yields the whole answer and reports its usage, then the connection drops before the end of the
    message (what an OpenAI stream cut after its usage chunk, before `[DONE]`, looks like)."""

    usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        yield "all of the answer"
        self.usage = Usage(11, 4)
        raise ProviderError("server", "The connection to the model server dropped.")

    def close(self) -> None:
        return None


class DroppingProvider:
    name = "dropping"

    def stream(self, model: str, turns: Sequence[Turn], *, max_tokens: int) -> _CountedThenDropped:
        return _CountedThenDropped()


@pytest.fixture(scope="module")
def chat(store: PostgresStore) -> ChatService:
    catalogue = Catalogue(
        {"demo": DemoProvider(chars_per_s=1_000_000), "broken": BuggyProvider(), "dropping": DroppingProvider()},
        [
            ModelOption(DEMO, "demo", "echo-1", "Offline demo"),
            ModelOption(TOO_LONG_MODEL, "demo", "echo-1", "Misconfigured"),
            ModelOption(BROKEN, "broken", "bug-1", "Buggy"),
            ModelOption(DROPPING, "dropping", "cut-1", "Dropping"),
        ],
        default=DEMO,
    )
    return ChatService(store, catalogue, None, settings=settings_from({"CHAT_MAX_MESSAGE_CHARS": "2000"}))


def user() -> Principal:
    return Principal(user_id=f"user_paths_{uuid.uuid4().hex[:8]}")


def drain(reply: Reply) -> list[str]:
    try:
        return list(reply)
    finally:
        reply.close()


def test_a_conversation_created_for_a_message_that_cannot_be_stored_is_removed(
    chat: ChatService, store: PostgresStore
) -> None:
    alice = user()
    with pytest.raises(InvalidInput, match="Model name"):
        chat.send(alice, None, "hello", TOO_LONG_MODEL)
    assert store.list_conversations(alice).items == []
    assert store.page_messages(alice).items == []


def test_an_existing_conversation_is_kept_when_a_message_cannot_be_stored(
    chat: ChatService, store: PostgresStore
) -> None:
    alice = user()
    first = chat.send(alice, None, "first", DEMO)
    drain(first)
    with pytest.raises(InvalidInput, match="Model name"):
        chat.send(alice, first.conversation_id, "second", TOO_LONG_MODEL)
    assert [c.id for c in store.list_conversations(alice).items] == [first.conversation_id]
    assert [m.content for m in store.recent_messages(alice, first.conversation_id)][0] == "first"


class _DeleteFails:
    """The real store, except that deleting a conversation fails (a database outage at that moment)."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def delete_conversation(self, principal: Principal, conversation_id: object) -> None:
        raise StoreError("The database took too long to answer. Please try again.")


def test_the_original_error_is_reported_when_the_cleanup_also_fails(
    chat: ChatService, store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    alice = user()
    failing = ChatService(_DeleteFails(store), chat.catalogue, None, settings=chat.settings)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="services.chat"), pytest.raises(InvalidInput, match="Model name"):
        failing.send(alice, None, "hello", TOO_LONG_MODEL)
    # The empty conversation is left behind (logged); the user still gets the error that matters.
    assert [c.title for c in store.list_conversations(alice).items] == ["hello"]
    [record] = [r for r in caplog.records if r.name == "services.chat"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "could not remove an empty conversation after a failed insert"
    assert record.exc_info is not None and isinstance(record.exc_info[1], StoreError)


def test_an_unexpected_provider_failure_ends_the_reply_as_an_error_and_keeps_the_text(
    chat: ChatService, store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    alice = user()
    reply = chat.send(alice, None, "ask the buggy model", BROKEN)
    with caplog.at_level(logging.WARNING, logger="services.chat"):
        assert "".join(drain(reply)) == "partial answer"
    # The bug is logged with its traceback for the operator, and kept out of what the user sees.
    [record] = [r for r in caplog.records if r.name == "services.chat"]
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "unexpected failure while streaming a reply")
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    outcome = reply.outcome
    assert outcome is not None
    assert (outcome.status, outcome.error_kind) == ("error", "server")
    assert outcome.error == "Something went wrong while streaming the reply."
    assert "bug inside" not in (outcome.error or "")  # no internals in what the user sees
    assert outcome.message is not None
    stored = store.recent_messages(alice, reply.conversation_id)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "ask the buggy model", "complete"),
        ("assistant", "partial answer", "error"),
    ]


def test_a_reply_that_fails_after_the_provider_counted_it_is_stored_as_an_error_without_token_counts(
    chat: ChatService, store: PostgresStore
) -> None:
    # Token counts are stored with a complete reply only, even when the provider reported them before failing.
    alice = user()
    reply = chat.send(alice, None, "count me", DROPPING)
    assert "".join(drain(reply)) == "all of the answer"
    outcome = reply.outcome
    assert outcome is not None
    assert (outcome.status, outcome.usage) == ("error", None)
    assert outcome.error == "The connection to the model server dropped."
    stored = store.recent_messages(alice, reply.conversation_id)[-1]
    assert (stored.role, stored.content, stored.status) == ("assistant", "all of the answer", "error")
    assert (stored.input_tokens, stored.output_tokens) == (None, None)


def test_a_reply_whose_final_state_cannot_be_saved_says_so(
    chat: ChatService, store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The conversation is deleted (another tab, "delete my data") while the reply is on screen: storing
    the reply's final state fails in the database, the outcome says the reply was not saved, and the log
    says which final state was lost and why."""
    alice = user()
    reply = chat.send(alice, None, "hello", DEMO)
    chunks = iter(reply)
    first = next(chunks)
    assert first
    store.delete_conversation(alice, reply.conversation_id)
    with caplog.at_level(logging.WARNING, logger="services.chat"):
        reply.close()  # stop: the reply is finalised now, into a conversation that no longer exists
    [record] = [r for r in caplog.records if r.name == "services.chat"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "could not store the final state of a reply (interrupted): That conversation does not exist."
    )
    outcome = reply.outcome
    assert outcome is not None
    assert outcome.status == "error" and outcome.error_kind == "server"
    assert outcome.message is None
    assert outcome.error == "The reply could not be saved: That conversation does not exist."
    assert outcome.text == first
    with pytest.raises(NotFound):
        store.get_conversation(alice, reply.conversation_id)


def test_a_reply_whose_checkpoint_cannot_be_saved_ends_as_an_error_and_says_why(
    chat: ChatService, store: PostgresStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The conversation is deleted while the reply streams on: the next save of the streaming reply fails in
    the database, the reply ends there, and both the outcome and the log say it could not be saved."""
    alice = user()
    reply = chat.send(alice, None, "hello", DEMO)
    chunks = iter(reply)
    first = next(chunks)  # handed over before it is saved: the save runs when the reply is read on
    assert first
    store.delete_conversation(alice, reply.conversation_id)
    with caplog.at_level(logging.WARNING, logger="services.chat"):
        rest = list(chunks)
    reply.close()
    assert rest == []  # nothing more is handed over once the reply cannot be saved
    outcome = reply.outcome
    assert outcome is not None
    assert (outcome.status, outcome.error_kind, outcome.message) == ("error", "server", None)
    assert outcome.error == "The reply could not be saved: That conversation does not exist."
    assert outcome.text == first
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.chat"]
    assert logged == [
        (logging.WARNING, "saving a streaming reply failed: That conversation does not exist."),
        (logging.ERROR, "could not store the final state of a reply (error): That conversation does not exist."),
    ]


# --- the picker's remembered model ---------------------------------------------------------------------


def test_the_remembered_model_is_offered_while_the_catalogue_still_has_it(
    chat: ChatService, store: PostgresStore
) -> None:
    alice = user()
    assert chat.preferred_model(alice) == DEMO  # nothing remembered yet: the catalogue's default
    chat.remember_model(alice, BROKEN)
    assert store.model_choice(alice) == BROKEN
    assert chat.preferred_model(alice) == BROKEN


def test_a_remembered_model_the_catalogue_dropped_gives_way_to_the_default(
    chat: ChatService, store: PostgresStore
) -> None:
    alice = user()
    store.save_model_choice(alice, "retired/model-0")  # picked when it was still offered
    assert chat.preferred_model(alice) == DEMO


def test_a_model_that_is_not_offered_is_not_remembered(chat: ChatService, store: PostgresStore) -> None:
    alice = user()
    with pytest.raises(InvalidInput, match=r"^The model 'retired/model-0' is not available here\."):
        chat.remember_model(alice, "retired/model-0")
    assert store.model_choice(alice) is None


def test_an_unreadable_remembered_model_offers_the_default_and_logs_why(
    chat: ChatService, caplog: pytest.LogCaptureFixture
) -> None:
    # A sign-in that has expired: the real store refuses to read under it (AuthError).
    expired = Principal(user_id=user().user_id, expires_at=datetime.now(UTC) - timedelta(hours=1))
    with caplog.at_level(logging.WARNING, logger="services.chat"):
        assert chat.preferred_model(expired) == DEMO
    [record] = [r for r in caplog.records if r.name == "services.chat"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "could not read the remembered model; offering the default"
    assert record.exc_info is not None and isinstance(record.exc_info[1], AuthError)


def test_a_reply_built_without_a_provider_request_refuses_to_open_one() -> None:
    # ChatService always gives one; the guard names the mistake instead of failing on None later.
    def nothing(reply: Reply) -> Generator[str, None, None]:
        yield from ()

    reply = Reply(uuid.uuid4(), None, ModelOption(DEMO, "demo", "echo-1", "Offline demo"), False, run=nothing)
    reply.start()  # nothing to open: does nothing
    with pytest.raises(RuntimeError, match=r"^this Reply has no provider request to open$"):
        reply.pump()


class SlowToOpenProvider:
    """A provider whose request opens only once `opened` is set (a model server slow to answer)."""

    name = "slow"

    def __init__(self) -> None:
        self.opened = threading.Event()

    def stream(self, model: str, turns: Sequence[Turn], *, max_tokens: int) -> _LateStream:
        self.opened.wait(30)
        return _LateStream()


class _LateStream:
    usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        yield "late"

    def close(self) -> None:
        return None


def test_a_head_start_does_not_wait_longer_than_it_was_given(store: PostgresStore) -> None:
    # The page gives the request a short head start before it draws on; a provider slow to answer must not
    # hold the page for longer (a timer opens the request after ten seconds, in case the wait never ends).
    slow = SlowToOpenProvider()
    option = ModelOption("slow/s-1", "slow", "s-1", "Slow")
    chat = ChatService(store, Catalogue({"slow": slow}, [option], default=option.id), None, settings=settings_from({}))
    reply = chat.send(user(), None, "hello", option.id)
    timer = threading.Timer(10, slow.opened.set)
    timer.start()
    try:
        reply.start(wait_s=0.05)
        assert not slow.opened.is_set(), "start() waited for the request to open"
        slow.opened.set()
        assert "".join(drain(reply)) == "late"
    finally:
        slow.opened.set()
        timer.cancel()
    assert reply.outcome is not None and reply.outcome.status == "complete"
