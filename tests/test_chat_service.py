"""ChatService with its real parts: PostgreSQL (RLS), the real SDKs against local wire-format servers, the
offline demo model. After every path the user message is stored and the assistant message has the right
status and the text received so far."""

from __future__ import annotations

import gc
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devtools.wire_servers import Script, WireServer
from services import chat as chat_module
from services.auth import AuthError, Principal
from services.chat import WINDOW, ChatService, Reply, build_context, title_from
from services.config import settings_from
from services.providers import Turn, Usage
from services.providers.anthropic_chat import AnthropicProvider
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.demo import DemoProvider, demo_reply
from services.providers.openai_chat import OpenAIProvider
from services.store import MAX_STORED_CHARS, InvalidInput, Message, NotFound
from services.store.postgres import PostgresStore

OPENAI_MODEL = "openai/gpt-test"
ANTHROPIC_MODEL = "anthropic/claude-test"
DEMO_MODEL = "demo/echo-1"


@pytest.fixture(scope="module")
def wires() -> Iterator[dict[str, WireServer]]:
    with WireServer("openai") as o, WireServer("anthropic") as a:
        yield {"openai": o, "anthropic": a}


@pytest.fixture(scope="module")
def catalogue(wires: dict[str, WireServer]) -> Catalogue:
    providers = {
        "openai": OpenAIProvider(api_key="sk-test", base_url=wires["openai"].base_url, timeout_s=1.0),
        "anthropic": AnthropicProvider(api_key="sk-ant-test", base_url=wires["anthropic"].base_url, timeout_s=1.0),
        "demo": DemoProvider(chars_per_s=1_000_000),
    }
    options = [
        ModelOption(OPENAI_MODEL, "openai", "gpt-test", "GPT test"),
        ModelOption(ANTHROPIC_MODEL, "anthropic", "claude-test", "Claude test"),
        ModelOption(DEMO_MODEL, "demo", "echo-1", "Offline demo"),
    ]
    return Catalogue(providers, options, default=OPENAI_MODEL)


@pytest.fixture(scope="module")
def chat(store: PostgresStore, catalogue: Catalogue) -> ChatService:
    settings = settings_from({"CHAT_MAX_MESSAGE_CHARS": "2000", "CHAT_CONTEXT_CHARS": "4000"})
    return ChatService(store, catalogue, None, settings=settings)


def user(name: str) -> Principal:
    return Principal(user_id=f"user_{name}_{uuid.uuid4().hex[:8]}")


def drain(reply: Reply) -> list[str]:
    """The text hand-overs of a reply (without the "" ticks it yields while the provider is silent)."""
    try:
        return [text for text in reply if text]
    finally:
        reply.close()


def messages(store: PostgresStore, principal: Principal, reply: Reply) -> list[Message]:
    return store.recent_messages(principal, reply.conversation_id, limit=50)


def count_rows(store: PostgresStore, principal: Principal) -> tuple[int, int]:
    conversations = store.list_conversations(principal, limit=200).items
    msgs = store.page_messages(principal, limit=200).items
    return len(conversations), len(msgs)


MODELS = [pytest.param("openai", OPENAI_MODEL, id="openai"), pytest.param("anthropic", ANTHROPIC_MODEL, id="anthropic")]


@pytest.mark.parametrize(("kind", "model"), MODELS)
def test_a_complete_reply_is_stored_with_usage_and_latency(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], kind: str, model: str
) -> None:
    wires[kind].queue(Script(chunks=["The ", "answer ", "is ", "42."], usage=(17, 5)))
    alice = user("alice")
    reply = chat.send(alice, None, "What is the answer?", model)
    assert reply.created_conversation is True  # the chat page redraws its conversation list for it
    assert "".join(drain(reply)) == "The answer is 42."
    assert reply.outcome is not None and reply.outcome.status == "complete" and reply.outcome.error is None
    assert reply.outcome.usage == Usage(17, 5)  # what the HTTP API reports to its client
    user_msg, assistant = messages(store, alice, reply)
    assert (user_msg.role, user_msg.content, user_msg.status) == ("user", "What is the answer?", "complete")
    assert (assistant.role, assistant.content, assistant.status) == ("assistant", "The answer is 42.", "complete")
    assert (assistant.model, assistant.input_tokens, assistant.output_tokens) == (model, 17, 5)
    assert assistant.latency_ms is not None and assistant.latency_ms >= 0
    assert store.get_conversation(alice, reply.conversation_id).title == "What is the answer?"


FAULTS = [
    pytest.param(Script(fault="error_first"), "", id="error-before-first-token"),
    pytest.param(Script(chunks=["Once ", "upon ", "a ", "time"], fault="drop", fault_after=2), "Once upon ", id="drop"),
    pytest.param(Script(status=429), "", id="429"),
    pytest.param(Script(status=500), "", id="500"),
    pytest.param(
        Script(chunks=["Still ", "thinking", "..."], fault="stall", fault_after=2), "Still thinking", id="stall"
    ),
]


@pytest.mark.parametrize(("kind", "model"), MODELS)
@pytest.mark.parametrize(("script", "received"), FAULTS)
def test_provider_faults_store_an_error_reply_with_the_text_so_far(
    chat: ChatService,
    store: PostgresStore,
    wires: dict[str, WireServer],
    kind: str,
    model: str,
    script: Script,
    received: str,
) -> None:
    wires[kind].queue(script)
    alice = user("alice")
    reply = chat.send(alice, None, "Tell me a story", model)
    assert "".join(drain(reply)) == received
    assert reply.outcome is not None and reply.outcome.status == "error"
    assert reply.outcome.error and "wire server says" not in reply.outcome.error
    user_msg, assistant = messages(store, alice, reply)
    assert (user_msg.role, user_msg.content) == ("user", "Tell me a story")
    assert (assistant.role, assistant.status, assistant.content) == ("assistant", "error", received)
    assert assistant.output_tokens is None and assistant.latency_ms is not None


def test_429_is_reported_as_rate_limiting(chat: ChatService, wires: dict[str, WireServer]) -> None:
    wires["openai"].queue(Script(status=429))
    reply = chat.send(user("alice"), None, "hi", OPENAI_MODEL)
    drain(reply)
    assert reply.outcome is not None and reply.outcome.error_kind == "rate_limited"
    assert "rate-limiting" in (reply.outcome.error or "")


@pytest.mark.parametrize(("kind", "model"), MODELS)
def test_stop_mid_stream_stores_interrupted_text_and_hangs_up_on_the_provider(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], kind: str, model: str
) -> None:
    wire = wires[kind]
    gone_before = wire.disconnects
    wire.queue(Script(chunks=[f"w{i} " for i in range(40)], chunk_delay_s=0.1))
    alice = user("alice")
    reply = chat.send(alice, None, "Count slowly", model)
    first = next(iter(reply))
    reply.close()  # what the page does when Streamlit stops the script (stop button, rerun, closed tab)
    assert reply.outcome is not None and reply.outcome.status == "interrupted"
    _, assistant = messages(store, alice, reply)
    assert (assistant.status, assistant.content) == ("interrupted", first)
    assert first.startswith("w0 ")
    deadline = time.monotonic() + 10
    while wire.disconnects == gone_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wire.disconnects == gone_before + 1, "the provider connection was not closed"


def test_a_reply_closed_before_it_started_stores_only_the_user_message(chat: ChatService, store: PostgresStore) -> None:
    alice = user("alice")
    reply = chat.send(alice, None, "never answered", DEMO_MODEL)
    reply.close()
    assert [(m.role, m.content) for m in messages(store, alice, reply)] == [("user", "never answered")]
    assert reply.outcome is None


def test_the_reply_is_saved_while_it_streams(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # checkpoint_s=0: every hand-over is also a checkpoint, even when no time has passed at all (the service's
    # clock is stopped here). The demo model is paced (about 90 words over half a second, on its own clock) so
    # the reply arrives in many hand-overs.
    monkeypatch.setattr(chat_module, "time", _Clock(1_000.0))
    paced = Catalogue(
        {"demo": DemoProvider(chars_per_s=1_000)}, [ModelOption(DEMO_MODEL, "demo", "echo-1", "d")], DEMO_MODEL
    )
    chat = ChatService(store, paced, None, settings=settings_from({}), checkpoint_s=0.0, render_interval_s=0.0)
    alice = user("alice")
    reply = chat.send(alice, None, "Stream please", DEMO_MODEL)
    it = iter(reply)
    seen = next(it)
    snapshots = []
    for chunk in it:
        _, assistant = messages(store, alice, reply)
        snapshots.append((assistant.status, assistant.content))
        assert assistant.content == seen  # everything handed over before this point is in the database
        seen += chunk
        if len(snapshots) == 5:
            break
    assert all(status == "streaming" for status, _ in snapshots)
    assert len({content for _, content in snapshots}) == 5  # it grew at every checkpoint
    reply.close()
    _, final = messages(store, alice, reply)
    assert (final.status, final.content) == ("interrupted", seen)


def test_two_thousand_tiny_chunks_are_coalesced(chat: ChatService, wires: dict[str, WireServer]) -> None:
    chunks = [f"t{i} " for i in range(2_000)]
    wires["openai"].queue(Script(chunks=chunks))
    reply = chat.send(user("alice"), None, "long reply", OPENAI_MODEL)
    started = time.monotonic()
    yielded = drain(reply)
    elapsed = time.monotonic() - started
    assert "".join(yielded) == "".join(chunks)
    assert yielded[0].startswith("t0 ")
    # At most one hand-over per 50 ms interval, plus the immediate first one and the final flush.
    assert len(yielded) <= elapsed / 0.05 + 2
    assert len(yielded) < len(chunks) / 10
    assert reply.outcome is not None and reply.outcome.renders == len(yielded)


def test_text_is_handed_over_without_waiting_for_the_next_chunk(
    chat: ChatService, wires: dict[str, WireServer]
) -> None:
    # "B" arrives right after "A"; the server sends "C" only once the test has been handed "B", so "B"
    # must be shown before "C" exists. (A fixed 1.0 s pause raced the provider's 1.0 s read timeout.)
    c_may_follow = threading.Event()
    wires["anthropic"].queue(Script(chunks=["A", "B", "C"], gate_before={2: c_may_follow}))
    reply = chat.send(user("alice"), None, "abc", ANTHROPIC_MODEL)
    yielded: list[str] = []
    try:
        for text in reply:
            yielded.append(text)
            if "".join(yielded) == "AB":
                c_may_follow.set()
    finally:
        reply.close()
        c_may_follow.set()
    assert "".join(yielded) == "ABC"
    assert yielded[-1] == "C"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"^Message is empty: type something before sending\.$"),
        ("   \n\t ", r"^Message is empty: type something before sending\.$"),
        ("x" * 2_001, "too long: 2,001 characters, the limit is 2,000"),
        ("nul \x00 byte", "NUL"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_stores_nothing(
    chat: ChatService, store: PostgresStore, text: str, message: str
) -> None:
    alice = user("alice")
    existing = chat.send(alice, None, "first", DEMO_MODEL)
    drain(existing)
    before = count_rows(store, alice)
    for conversation_id in (None, existing.conversation_id):
        with pytest.raises(InvalidInput, match=message):
            chat.send(alice, conversation_id, text, DEMO_MODEL)
    assert count_rows(store, alice) == before


def test_unknown_model_is_refused(chat: ChatService, store: PostgresStore) -> None:
    alice = user("alice")
    with pytest.raises(
        InvalidInput, match=r"^The model 'openai/gpt-nonexistent' is not available here\. Pick one from the list\.$"
    ):
        chat.send(alice, None, "hello", "openai/gpt-nonexistent")
    assert count_rows(store, alice) == (0, 0)


def test_a_message_that_is_not_text_is_refused(chat: ChatService) -> None:
    # What a page or the API hands over is checked, whatever its type.
    with pytest.raises(InvalidInput, match=r"^Message must be text\.$"):
        chat.validate(42)


def test_sending_into_another_users_conversation_is_refused(chat: ChatService, store: PostgresStore) -> None:
    alice, bob = user("alice"), user("bob")
    reply = chat.send(alice, None, "mine", DEMO_MODEL)
    drain(reply)
    with pytest.raises(NotFound):
        chat.send(bob, reply.conversation_id, "let me in", DEMO_MODEL)
    with pytest.raises(NotFound):
        chat.regenerate(bob, reply.conversation_id, DEMO_MODEL)
    assert count_rows(store, bob) == (0, 0)
    assert len(messages(store, alice, reply)) == 2


def test_context_is_the_conversation_so_far(chat: ChatService, wires: dict[str, WireServer]) -> None:
    alice = user("alice")
    first = chat.send(alice, None, "My name is Ada.", OPENAI_MODEL)
    drain(first)  # default script: "Hello, world!"
    before = len(wires["openai"].requests)
    second = chat.send(alice, first.conversation_id, "What is my name?", OPENAI_MODEL)
    assert second.created_conversation is False
    drain(second)
    (request,) = wires["openai"].requests[before:]
    assert request.body["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello, world!"},
        {"role": "user", "content": "What is my name?"},
    ]


def test_regenerate_answers_the_last_message_again_and_keeps_the_failed_reply(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    alice = user("alice")
    wires["anthropic"].queue(Script(status=500))
    failed = chat.send(alice, None, "Try me", ANTHROPIC_MODEL)
    drain(failed)
    before = len(wires["anthropic"].requests)
    retry = chat.regenerate(alice, failed.conversation_id, ANTHROPIC_MODEL)
    assert "".join(drain(retry)) == "Hello, world!"
    (request,) = wires["anthropic"].requests[before:]
    assert request.body["messages"] == [{"role": "user", "content": "Try me"}]
    assert [(m.role, m.status) for m in messages(store, alice, retry)] == [
        ("user", "complete"),
        ("assistant", "error"),
        ("assistant", "complete"),
    ]


def test_regenerate_with_nothing_to_answer(chat: ChatService, store: PostgresStore) -> None:
    alice = user("alice")
    conversation = store.create_conversation(alice)
    with pytest.raises(InvalidInput, match=r"^There is no message to answer in this conversation yet\.$"):
        chat.regenerate(alice, conversation.id, DEMO_MODEL)


def test_new_chat_is_titled_from_its_first_message(chat: ChatService, store: PostgresStore) -> None:
    alice = user("alice")
    first = "  Plan a   trip to Lisbon in spring, with a day in Sintra and good food  "
    reply = chat.send(alice, None, first, DEMO_MODEL)
    drain(reply)
    title = store.get_conversation(alice, reply.conversation_id).title
    assert title == title_from("Plan a trip to Lisbon in spring, with a day in Sintra and good food")
    assert title.startswith("Plan a trip to Lisbon") and title.endswith("…") and len(title) <= 60


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("x" * 60, "x" * 60),  # sixty characters fit
        ("x" * 61, "x" * 59 + "…"),  # one more is cut to fifty-nine and the ellipsis
        ("y" * 58 + " and more words", "y" * 58 + "…"),  # no space left before the ellipsis
        ("  \n ", "New chat"),
    ],
)
def test_a_title_is_at_most_sixty_characters(text: str, title: str) -> None:
    assert title_from(text) == title


def test_window_shows_the_last_fifty_and_pages_back(store: PostgresStore, chat: ChatService) -> None:
    alice = user("alice")
    conversation = store.create_conversation(alice, "long")
    for i in range(120):
        store.add_message(alice, conversation.id, "user" if i % 2 == 0 else "assistant", f"m{i}", DEMO_MODEL)
    one = chat.window(alice, conversation)
    assert [m.content for m in one.messages] == [f"m{i}" for i in range(120 - WINDOW, 120)]
    assert one.has_more
    everything = chat.window(alice, conversation, pages=3)
    assert [m.content for m in everything.messages] == [f"m{i}" for i in range(120)]
    assert not everything.has_more


@pytest.mark.parametrize(("length", "more"), [(WINDOW, False), (WINDOW + 1, True)])
def test_show_earlier_is_offered_only_when_something_is_hidden(
    store: PostgresStore, chat: ChatService, length: int, more: bool
) -> None:
    alice = user("alice")
    conversation = store.create_conversation(alice, "exact")
    for i in range(length):
        store.add_message(alice, conversation.id, "user" if i % 2 == 0 else "assistant", f"m{i}", DEMO_MODEL)
    window = chat.window(alice, conversation)
    assert len(window.messages) == WINDOW and window.has_more is more


def test_demo_reply_is_stored_complete(chat: ChatService, store: PostgresStore) -> None:
    alice = user("alice")
    reply = chat.send(alice, None, "Hello demo", DEMO_MODEL)
    assert "".join(drain(reply)) == demo_reply("Hello demo")
    _, assistant = messages(store, alice, reply)
    assert (assistant.status, assistant.content, assistant.model) == ("complete", demo_reply("Hello demo"), DEMO_MODEL)
    assert assistant.output_tokens and assistant.input_tokens


def test_build_context_merges_skips_and_budgets() -> None:
    now = datetime.now(UTC)

    def m(role: str, content: str, status: str = "complete") -> Message:
        return Message(uuid.uuid4(), uuid.uuid4(), "u", role, content, "demo/echo-1", status, None, None, None, now)

    history = [
        m("assistant", "orphan greeting"),
        m("user", "q1"),
        m("assistant", "", "error"),
        m("user", "q1 again"),
        m("assistant", "first try", "interrupted"),
        m("assistant", "second try"),
        m("user", "x" * 50),
    ]
    assert build_context(history, 10_000) == [
        Turn("user", "q1\n\nq1 again"),
        Turn("assistant", "second try"),
        Turn("user", "x" * 50),
    ]
    # Over budget: the newest turns are kept, and the context still starts with a user turn.
    assert build_context(history, 55) == [Turn("user", "x" * 50)]
    # A question asked twice after an answer merges into the last turn; a budget of exactly the context's
    # length keeps all of it.
    later = [m("user", "a"), m("assistant", "b"), m("user", "c"), m("user", "d")]
    whole = [Turn("user", "a"), Turn("assistant", "b"), Turn("user", "c\n\nd")]
    assert build_context(later, 6) == whole
    assert build_context(later, 5) == whole[2:]


# --- issue 10: nothing lost while the provider is silent, identity bounded to the turn --------------


def wait_for_disconnect(wire: WireServer, before: int) -> None:
    deadline = time.monotonic() + 10
    while wire.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wire.disconnects == before + 1, "the provider connection was not closed"


def test_stop_during_a_provider_silence_stores_what_was_shown_and_hangs_up(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # The provider says two words, then nothing for a minute. The reply must still hand the page control
    # ("" ticks) so the page can notice a stop; the old code blocked in the wait for the next chunk.
    wire = wires["openai"]
    gone_before = wire.disconnects
    wire.queue(Script(chunks=["Thinking ", "hard", " done"], pause_before={2: 60.0}))
    alice = user("alice")
    reply = chat.send(alice, None, "Pause please", OPENAI_MODEL)
    shown = ""
    it = iter(reply)
    while shown != "Thinking hard":
        shown += next(it)
    assert next(it) == ""  # a tick with nothing new, while the provider is still silent
    reply.close()  # the page's finally after Streamlit raised at the tick's render
    assert reply.outcome is not None and reply.outcome.status == "interrupted"
    _, assistant = messages(store, alice, reply)
    assert (assistant.status, assistant.content) == ("interrupted", "Thinking hard")
    wait_for_disconnect(wire, gone_before)


def test_checkpoints_follow_the_clock_while_the_provider_pauses(
    store: PostgresStore, catalogue: Catalogue, wires: dict[str, WireServer]
) -> None:
    # "A" is saved at once (the first text); "B" arrives before a checkpoint is due, then the provider
    # pauses. A chunk-driven checkpoint would leave "B" unsaved for the whole pause.
    chat = ChatService(store, catalogue, None, settings=settings_from({}), checkpoint_s=0.3, tick_s=0.05)
    wire = wires["openai"]
    wire.queue(Script(chunks=["A", "B", "C"], pause_before={1: 0.05, 2: 60.0}))
    alice = user("alice")
    reply = chat.send(alice, None, "pause", OPENAI_MODEL)
    shown = ""
    try:
        for ticks, text in enumerate(reply):
            shown += text
            rows = messages(store, alice, reply)  # the assistant row exists once the first text is shown
            assistant = rows[-1]
            if shown == "AB" and assistant.content == "AB":
                break
            assert ticks < 400, "the text shown during the pause was never saved"
        assert (assistant.status, assistant.content) == ("streaming", "AB")
    finally:
        reply.close()


@pytest.mark.parametrize("final_write_s", [None, 3_600])
def test_a_reply_finishes_under_the_sign_in_that_started_it(
    chat: ChatService,
    store: PostgresStore,
    wires: dict[str, WireServer],
    monkeypatch: pytest.MonkeyPatch,
    final_write_s: int | None,
) -> None:
    # The token expires about half a second into a reply that takes over a second: the reply must finish
    # and be stored whole; the next turn needs a valid sign-in again. The turn's sign-in lasts the provider
    # timeout, the longest reply and the final write together: a final write allowed longer than the other
    # two still extends it (the three add up, none is taken off).
    if final_write_s is not None:
        monkeypatch.setattr(chat_module, "FINAL_WRITE_S", final_write_s)
    name = f"user_expiring_{uuid.uuid4().hex[:8]}"
    expires = datetime.fromtimestamp(time.time() + 0.6, tz=UTC)
    alice = Principal(user_id=name, expires_at=expires)
    words = [f"word{i} " for i in range(15)]
    wires["anthropic"].queue(Script(chunks=words, chunk_delay_s=0.08))
    reply = chat.send(alice, None, "A long answer please", ANTHROPIC_MODEL)
    assert "".join(drain(reply)) == "".join(words)
    assert alice.expires_at is not None and alice.expires_at.timestamp() < time.time()  # it did expire mid-reply
    assert reply.outcome is not None and (reply.outcome.status, reply.outcome.error) == ("complete", None)
    reader = Principal(user_id=name)
    _, assistant = messages(store, reader, reply)
    assert (assistant.status, assistant.content) == ("complete", "".join(words))
    with pytest.raises(AuthError) as refused:
        chat.send(alice, reply.conversation_id, "and another", ANTHROPIC_MODEL)
    assert refused.value.reason == "expired"


def test_a_turn_principal_is_accepted_for_a_bounded_time_only() -> None:
    p = Principal(user_id="user_bounded", expires_at=datetime.fromtimestamp(1_000, tz=UTC))
    turn = p.for_turn(50, now=990)
    turn.ensure_fresh(now=1_039)  # past the token's expiry, within the turn
    with pytest.raises(AuthError):
        turn.ensure_fresh(now=1_041)
    with pytest.raises(AuthError):
        p.ensure_fresh(now=1_001)  # the principal the page holds is not extended
    with pytest.raises(AuthError):
        p.for_turn(50, now=1_001)  # an expired sign-in cannot start a turn
    assert turn == p  # the same identity: only how long it is accepted differs


def test_a_revoked_sign_in_ends_the_reply_at_once_as_interrupted(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    wire = wires["openai"]
    gone_before = wire.disconnects
    wire.queue(Script(chunks=[f"w{i} " for i in range(40)], chunk_delay_s=0.05))
    signed_out = False
    alice = user("alice")
    reply = chat.send(alice, None, "Talk", OPENAI_MODEL, revoked=lambda: signed_out)
    it = iter(reply)
    shown = next(it)
    signed_out = True
    shown += "".join(it)  # ends without the rest of the reply
    assert reply.outcome is not None and reply.outcome.status == "interrupted"
    _, assistant = messages(store, alice, reply)
    assert (assistant.status, assistant.content) == ("interrupted", shown)
    assert shown.startswith("w0 ") and "w39" not in shown
    wait_for_disconnect(wire, gone_before)


def test_a_started_reply_opens_the_provider_request_before_it_is_read(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    wire = wires["openai"]
    wire.queue(Script(chunks=["early ", "bird"]))
    seen_before = len(wire.requests)
    alice = user("alice")
    reply = chat.send(alice, None, "Start now", OPENAI_MODEL)
    assert len(wire.requests) == seen_before  # send() alone asks nothing of the provider
    reply.start()
    reply.start()  # idempotent: still one request
    deadline = time.monotonic() + 10
    while len(wire.requests) == seen_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(wire.requests) == seen_before + 1, "start() did not open the provider request"
    assert "".join(drain(reply)) == "early bird"
    assert reply.outcome is not None and reply.outcome.status == "complete"
    assert len(wire.requests) == seen_before + 1
    stored = [(m.role, m.status) for m in messages(store, alice, reply)]
    assert stored == [("user", "complete"), ("assistant", "complete")]


def test_start_with_a_wait_returns_with_the_provider_request_open(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # The page gives the request a head start (its drawing would hold the GIL while the request is built):
    # start(wait_s) returns once the request is open. The wire server answers the headers at once, then
    # waits before the first words; the bound is generous so a busy machine cannot make this flaky.
    wire = wires["openai"]
    wire.queue(Script(chunks=["head ", "start"], first_delay_s=0.3))
    seen_before = len(wire.requests)
    alice = user("alice")
    reply = chat.send(alice, None, "Open it first", OPENAI_MODEL)
    reply.start(wait_s=30)
    assert len(wire.requests) == seen_before + 1
    assert reply.pump().stream is not None  # the provider's response has begun: the request is out
    assert "".join(drain(reply)) == "head start"
    assert reply.outcome is not None and reply.outcome.status == "complete"


@pytest.mark.parametrize("how", ["close", "garbage"])
def test_a_started_reply_that_is_never_read_hangs_up_and_stores_no_reply(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], how: str
) -> None:
    # The page starts the request, then Streamlit stops the script before the reply is read: the page's
    # `finally` never runs for an unread reply, so close() or dropping the Reply must hang up.
    wire = wires["openai"]
    gone_before = wire.disconnects
    wire.queue(Script(chunks=[f"w{i} " for i in range(40)], chunk_delay_s=0.1))
    alice = user("alice")
    reply = chat.send(alice, None, "Stopped before reading", OPENAI_MODEL)
    reply.start()
    cid = reply.conversation_id
    if how == "close":
        reply.close()
        assert reply.outcome is None
    else:
        del reply
        gc.collect()
    deadline = time.monotonic() + 10
    while wire.disconnects == gone_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert wire.disconnects == gone_before + 1, "the provider connection was not closed"
    rows = store.recent_messages(alice, cid, limit=50)
    assert [(m.role, m.content) for m in rows] == [("user", "Stopped before reading")]


# --- the longest a reply may stream: CHAT_PROVIDER_TIMEOUT_S + LONGEST_REPLY_S ---------------------------


def patient_chat(store: PostgresStore, wires: dict[str, WireServer], timeout_s: str) -> ChatService:
    """A service whose provider never times out on its own within the test: only the turn's deadline can."""
    provider = OpenAIProvider(api_key="sk-test", base_url=wires["openai"].base_url, timeout_s=60.0)
    options = [ModelOption(OPENAI_MODEL, "openai", "gpt-test", "GPT test")]
    settings = settings_from({"CHAT_PROVIDER_TIMEOUT_S": timeout_s})
    return ChatService(store, Catalogue({"openai": provider}, options, default=OPENAI_MODEL), None, settings=settings)


def test_a_reply_may_stream_for_the_provider_timeout_plus_the_longest_reply(
    store: PostgresStore, wires: dict[str, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no time of its own left for the reply, the provider's timeout is still the turn's to use.
    monkeypatch.setattr(chat_module, "LONGEST_REPLY_S", 0)
    wires["openai"].queue(Script(chunks=["all ", "of ", "it"]))
    reply = patient_chat(store, wires, "600").send(user("patient"), None, "Hello", OPENAI_MODEL)
    assert "".join(drain(reply)) == "all of it"
    assert reply.outcome is not None and reply.outcome.status == "complete"


def test_a_reply_still_streaming_at_its_deadline_is_cut_off_and_keeps_its_text(
    store: PostgresStore, wires: dict[str, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_module, "LONGEST_REPLY_S", 0)
    held = threading.Event()
    wires["openai"].queue(Script(chunks=["so ", "far", " never"], gate_before={2: held}))
    alice = user("endless")
    reply = patient_chat(store, wires, "1").send(alice, None, "Hello", OPENAI_MODEL)
    try:
        shown = "".join(drain(reply))
    finally:
        held.set()  # let the wire server finish the abandoned stream
    outcome = reply.outcome
    assert outcome is not None and (outcome.status, outcome.error_kind) == ("error", "timeout")
    assert outcome.error == "The reply took longer than 0 minutes."
    assert "never" not in shown
    assert [(m.role, m.content, m.status) for m in messages(store, alice, reply)][-1] == ("assistant", shown, "error")


def test_a_reply_is_iterated_once(chat: ChatService) -> None:
    reply = chat.send(user("twice"), None, "Hello", DEMO_MODEL)
    assert drain(reply)
    with pytest.raises(RuntimeError, match=r"^a Reply can be iterated only once$"):
        iter(reply)


def test_a_reply_longer_than_the_store_keeps_is_stored_cut_to_the_limit(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    alice = user("verbose")
    wires["openai"].queue(Script(chunks=["y" * 10_000] * 100 + ["z" * 5]))  # MAX_STORED_CHARS and five more
    reply = chat.send(alice, None, "Say a lot", OPENAI_MODEL)
    assert len("".join(drain(reply))) == MAX_STORED_CHARS + 5  # everything is shown
    outcome = reply.outcome
    assert outcome is not None and outcome.status == "complete" and outcome.text == "y" * MAX_STORED_CHARS
    stored = messages(store, alice, reply)[-1]
    assert (stored.role, stored.content, stored.status) == ("assistant", "y" * MAX_STORED_CHARS, "complete")


def test_a_first_hand_over_of_one_character_is_saved_at_once(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    held = threading.Event()
    wires["openai"].queue(Script(chunks=["A", "nd the rest"], gate_before={1: held}))
    alice = user("terse")
    reply = chat.send(alice, None, "Hello", OPENAI_MODEL)
    try:
        it = iter(reply)
        assert next(text for text in it if text) == "A"  # after any ticks while the request was opening
        assert next(it) == ""  # the provider is held: a tick, after the first hand-over was saved
        assert [(m.role, m.content, m.status) for m in messages(store, alice, reply)][-1] == (
            "assistant",
            "A",
            "streaming",
        )
    finally:
        held.set()
        reply.close()


class _Clock:
    """services.chat's monotonic clock, moved by the test: durations come out exact (the wire server and the
    provider's reader keep the real clock)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_latency_and_time_to_first_text_are_measured_from_the_request_in_milliseconds(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(1_000.0)
    monkeypatch.setattr(chat_module, "time", clock)
    held = threading.Event()
    wires["openai"].queue(Script(chunks=["first", " and the rest"], gate_before={1: held}))
    alice = user("timed")
    reply = chat.send(alice, None, "How long?", OPENAI_MODEL)
    reply.start(wait_s=30)  # the request is opened at 1000 s
    clock.now = 1_002.0  # the first text arrives two seconds later
    try:
        it = iter(reply)
        assert next(text for text in it if text) == "first"
        clock.now = 1_004.0  # and the reply ends two seconds after that
        held.set()
        assert "".join(it) == " and the rest"
    finally:
        held.set()
        reply.close()
    outcome = reply.outcome
    assert outcome is not None and outcome.status == "complete"
    assert (outcome.first_token_ms, outcome.latency_ms) == (2_000, 4_000)
    _, assistant = messages(store, alice, reply)
    assert (assistant.content, assistant.latency_ms) == ("first and the rest", 4_000)


def test_a_reply_read_at_the_very_end_of_its_time_is_not_cut_off(
    store: PostgresStore, wires: dict[str, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The turn may last the provider timeout plus the longest reply: at exactly that moment it still may.
    monkeypatch.setattr(chat_module, "LONGEST_REPLY_S", 0)
    clock = _Clock(1_000.0)
    monkeypatch.setattr(chat_module, "time", clock)
    wires["openai"].queue(Script(chunks=["just ", "in ", "time"]))
    reply = patient_chat(store, wires, "600").send(user("punctual"), None, "Hello", OPENAI_MODEL)
    reply.start(wait_s=30)
    clock.now = 1_600.0  # the request was opened at 1000 s; 600 s is the provider timeout
    assert "".join(drain(reply)) == "just in time"
    assert reply.outcome is not None and reply.outcome.status == "complete"


def test_no_reply_row_is_stored_before_the_first_text_and_then_one_per_checkpoint_interval(
    store: PostgresStore, catalogue: Catalogue, wires: dict[str, WireServer]
) -> None:
    # While the provider is silent the page gets "" ticks and nothing is written; the first text is saved at
    # once; later text waits for the next checkpoint (an hour away here), and the end stores everything.
    chat = ChatService(store, catalogue, None, settings=settings_from({}), checkpoint_s=3_600.0, tick_s=0.02)
    gates = [threading.Event() for _ in range(3)]
    wires["openai"].queue(Script(chunks=["A", "B", "C"], gate_before=dict(enumerate(gates))))
    alice = user("quiet")
    reply = chat.send(alice, None, "Wait for it", OPENAI_MODEL)
    try:
        it = iter(reply)
        assert next(it) == ""  # a tick while the provider says nothing
        assert next(it) == ""
        assert [m.role for m in messages(store, alice, reply)] == ["user"]
        gates[0].set()
        assert next(text for text in it if text) == "A"
        gates[1].set()
        assert next(text for text in it if text) == "B"
        assert next(it) == ""  # "C" is held: a tick, after "B" was handed over
        assert [(m.content, m.status) for m in messages(store, alice, reply)][-1] == ("A", "streaming")
        gates[2].set()
        assert "".join(it) == "C"
    finally:
        for gate in gates:
            gate.set()
        reply.close()
    assert [(m.content, m.status) for m in messages(store, alice, reply)][-1] == ("ABC", "complete")


def test_a_reply_past_its_time_says_how_long_a_reply_may_take(
    store: PostgresStore, wires: dict[str, WireServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(1_000.0)
    monkeypatch.setattr(chat_module, "time", clock)
    wires["openai"].queue(Script(chunks=["too ", "late"]))
    reply = patient_chat(store, wires, "600").send(user("slow"), None, "Hello", OPENAI_MODEL)
    reply.start(wait_s=30)
    clock.now = 2_200.5  # past the provider timeout (600 s) and the longest reply (LONGEST_REPLY_S, 600 s)
    drain(reply)
    outcome = reply.outcome
    assert outcome is not None and (outcome.status, outcome.error_kind) == ("error", "timeout")
    assert outcome.error == "The reply took longer than 10 minutes."


def test_a_reply_without_text_is_stored_with_its_counts_under_the_message_it_answers(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # Nothing was saved while it streamed (there was no text), so the reply is stored only at its end; another
    # tab has sent a message meanwhile, and the reply still answers the question it was asked.
    wires["openai"].queue(Script(chunks=[], usage=(9, 0)))
    alice = user("speechless")
    reply = chat.send(alice, None, "Say nothing", OPENAI_MODEL)
    assert reply.user_message is not None
    store.add_message(alice, reply.conversation_id, "user", "from the other tab", OPENAI_MODEL)
    assert drain(reply) == []
    outcome = reply.outcome
    assert outcome is not None and outcome.status == "complete" and outcome.message is not None
    stored = store.get_message(alice, outcome.message.id)
    assert (stored.content, stored.status, stored.input_tokens, stored.output_tokens) == ("", "complete", 9, 0)
    assert stored.parent_id == reply.user_message.id
    assert stored.latency_ms is not None


@pytest.mark.parametrize("started_first", [False, True])
def test_a_reply_reads_its_provider_as_it_arrives_unless_told_to_gather(
    chat: ChatService, wires: dict[str, WireServer], started_first: bool
) -> None:
    # The chat page reads each chunk as it comes; the HTTP API sets `gather_s` (before or after the request
    # is opened) and its reader then lets chunks gather between hand-overs (services.streaming.Pump).
    wires["openai"].queue(Script(chunks=["gathered ", "text"]))
    reply = chat.send(user("gatherer"), None, "Hello", OPENAI_MODEL)
    assert reply.gather_s == 0.0
    if started_first:
        reply.start()
    reply.gather_s = 0.25
    assert reply.pump().gather_s == 0.25
    assert "".join(drain(reply)) == "gathered text"
