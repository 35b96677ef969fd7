"""The OpenAI-compatible door's service side with real parts: PostgreSQL (RLS), the offline demo model and the
real OpenAI SDK against the local wire server. A client session that resends its growing history makes one
conversation; what the provider gets is what the client sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.openai_door import InvalidRequest, OpenAIDoor, parse_request, transcript
from services.providers import Provider, Turn
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.demo import DemoProvider, demo_reply
from services.providers.openai_chat import OpenAIProvider
from services.ratelimit import RateLimited, RateLimiter
from services.store import InvalidInput, NotFound
from services.store.postgres import PostgresStore

OPENAI_MODEL = "openai/gpt-test"
DEMO_MODEL = "demo/echo-1"


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as w:
        yield w


@pytest.fixture(scope="module")
def catalogue(wire: WireServer) -> Catalogue:
    providers: dict[str, Provider] = {
        "openai": OpenAIProvider(api_key="sk-test", base_url=wire.base_url, timeout_s=5.0),
        "demo": DemoProvider(chars_per_s=1_000_000),
    }
    options = [
        ModelOption(OPENAI_MODEL, "openai", "gpt-test", "GPT test"),
        ModelOption(DEMO_MODEL, "demo", "echo-1", "Offline demo"),
    ]
    return Catalogue(providers, options, default=OPENAI_MODEL)


def door_with(store: PostgresStore, catalogue: Catalogue, limiter: RateLimiter | None = None) -> OpenAIDoor:
    settings = settings_from({"CHAT_MAX_MESSAGE_CHARS": "2000", "CHAT_CONTEXT_CHARS": "40000"})
    return OpenAIDoor(ChatService(store, catalogue, limiter, settings=settings))


@pytest.fixture(scope="module")
def door(store: PostgresStore, catalogue: Catalogue) -> OpenAIDoor:
    return door_with(store, catalogue)


def user(name: str) -> Principal:
    return Principal(user_id=f"user_{name}_{uuid.uuid4().hex[:8]}")


def call(
    door: OpenAIDoor, principal: Principal, messages: list[dict[str, Any]], model: str = DEMO_MODEL, **kw: Any
) -> tuple[uuid.UUID, str]:
    """One non-streamed call: the conversation it landed in and the reply's text."""
    turn = door.complete(principal, door.parse({"model": model, "messages": messages}), **kw)
    try:
        text = "".join(turn.reply)
    finally:
        turn.reply.close()
    assert turn.reply.outcome is not None and turn.reply.outcome.status == "complete"
    return turn.reply.conversation_id, text


def stored(store: PostgresStore, principal: Principal, cid: uuid.UUID) -> list[tuple[str, str, str]]:
    return [(m.role, m.content, m.status) for m in store.recent_messages(principal, cid, limit=200)]


def test_ten_calls_of_one_session_make_one_conversation_of_ten_turns(door: OpenAIDoor, store: PostgresStore) -> None:
    alice = user("alice")
    history: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    conversations = set()
    for i in range(10):
        history.append({"role": "user", "content": f"question {i}"})
        cid, text = call(door, alice, history)
        assert text == demo_reply(f"question {i}")
        conversations.add(cid)
        history.append({"role": "assistant", "content": text})
    assert len(conversations) == 1
    (cid,) = conversations
    rows = stored(store, alice, cid)
    assert len(rows) == 20
    # Only user and assistant turns, in order, each stored once; the client's system prompt is not stored.
    assert [(r, c) for r, c, _ in rows] == [(m["role"], m["content"]) for m in history[1:]]
    assert all(s == "complete" for _, _, s in rows)
    assert len(store.list_conversations(alice, limit=50).items) == 1


def test_the_provider_gets_what_the_client_sent_not_the_stored_context(
    door: OpenAIDoor, store: PostgresStore, wire: WireServer
) -> None:
    bob = user("bob")
    cid, first = call(door, bob, [{"role": "user", "content": "hi"}], model=OPENAI_MODEL)
    assert first == "Hello, world!"
    # The client continues the conversation but pins it by header and sends its own, different context.
    sent: list[dict[str, Any]] = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "made-up "}, {"type": "text", "text": "earlier"}]},
        {"role": "assistant", "content": "made-up answer"},
        {"role": "user", "content": "next"},
    ]
    before = len(wire.requests)
    same, _ = call(door, bob, sent, model=OPENAI_MODEL, conversation_id=str(cid))
    assert same == cid
    body = wire.requests[before].body
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "made-up earlier"},
        {"role": "assistant", "content": "made-up answer"},
        {"role": "user", "content": "next"},
    ]
    # The header pins the conversation, so only the new turn is stored (not the client's made-up context).
    assert [(r, c) for r, c, _ in stored(store, bob, cid)] == [
        ("user", "hi"),
        ("assistant", "Hello, world!"),
        ("user", "next"),
        ("assistant", "Hello, world!"),
    ]


def test_a_changed_earlier_message_starts_a_new_conversation_that_stores_the_whole_history(
    door: OpenAIDoor, store: PostgresStore
) -> None:
    carol = user("carol")
    first, a1 = call(door, carol, [{"role": "user", "content": "one"}])
    second, _ = call(door, carol, [{"role": "user", "content": "one"}, {"role": "assistant", "content": a1},
                                   {"role": "user", "content": "two"}])  # fmt: skip
    assert second == first
    edited = [{"role": "user", "content": "one (edited)"}, {"role": "assistant", "content": a1},
              {"role": "user", "content": "two"}]  # fmt: skip
    forked, a2 = call(door, carol, edited)
    assert forked != first
    # The original is left as it was; the new one holds everything the client sent, so its next call matches.
    assert len(stored(store, carol, first)) == 4
    assert [(r, c) for r, c, _ in stored(store, carol, forked)] == [
        ("user", "one (edited)"), ("assistant", a1), ("user", "two"), ("assistant", a2),
    ]  # fmt: skip
    again, _ = call(door, carol, [*edited, {"role": "assistant", "content": a2}, {"role": "user", "content": "3"}])
    assert again == forked
    assert store.get_conversation(carol, forked).title == "one (edited)"


def test_the_header_wins_over_a_matching_conversation(door: OpenAIDoor, store: PostgresStore) -> None:
    dave = user("dave")
    matched, a1 = call(door, dave, [{"role": "user", "content": "x"}])
    pinned, _ = call(door, dave, [{"role": "user", "content": "y"}])
    assert pinned != matched
    resent = [{"role": "user", "content": "x"}, {"role": "assistant", "content": a1}, {"role": "user", "content": "z"}]
    assert door.find_conversation(dave, door.parse({"model": DEMO_MODEL, "messages": resent})) == matched
    cid, _ = call(door, dave, resent, conversation_id=str(pinned))
    assert cid == pinned
    assert len(stored(store, dave, matched)) == 2


def test_another_users_conversation_in_the_header_is_not_found_and_nothing_is_stored(
    door: OpenAIDoor, store: PostgresStore
) -> None:
    erin, mallory = user("erin"), user("mallory")
    cid, _ = call(door, erin, [{"role": "user", "content": "private"}])
    with pytest.raises(NotFound):
        call(door, mallory, [{"role": "user", "content": "sneak"}], conversation_id=str(cid))
    # A reviewer can read it, and still may not add a turn to it.
    reviewer = Principal(user_id=f"user_rev_{uuid.uuid4().hex[:8]}", claims={"roles": ["reviewer"]})
    assert door.chat.open_conversation(reviewer, cid).id == cid
    with pytest.raises(NotFound):
        call(door, reviewer, [{"role": "user", "content": "sneak"}], conversation_id=str(cid))
    with pytest.raises(NotFound):
        call(door, mallory, [{"role": "user", "content": "sneak"}], conversation_id="not-a-uuid")
    assert len(stored(store, erin, cid)) == 2
    assert store.list_conversations(mallory).items == []


def test_a_retry_after_a_failed_reply_continues_the_conversation(
    door: OpenAIDoor, store: PostgresStore, wire: WireServer
) -> None:
    frank = user("frank")
    cid, a1 = call(door, frank, [{"role": "user", "content": "q1"}], model=OPENAI_MODEL)
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": a1},
               {"role": "user", "content": "q2"}]  # fmt: skip
    wire.queue(Script(status=500))
    failed = door.complete(frank, door.parse({"model": OPENAI_MODEL, "messages": history}))
    try:
        list(failed.reply)
    finally:
        failed.reply.close()
    assert failed.reply.outcome is not None and failed.reply.outcome.status == "error"
    assert failed.reply.conversation_id == cid
    # The client never got a reply, so it sends the same messages again: same conversation.
    again, a2 = call(door, frank, history, model=OPENAI_MODEL)
    assert again == cid
    later, _ = call(door, frank, [*history, {"role": "assistant", "content": a2}, {"role": "user", "content": "q3"}],
                    model=OPENAI_MODEL)  # fmt: skip
    assert later == cid
    assert [s for _, _, s in stored(store, frank, cid)] == ["complete"] * 3 + ["error"] + ["complete"] * 4


def test_a_refused_call_of_a_new_conversation_leaves_nothing(store: PostgresStore, catalogue: Catalogue) -> None:
    door = door_with(store, catalogue, RateLimiter(store, 1))
    gina = user("gina")
    call(door, gina, [{"role": "user", "content": "first"}])
    with pytest.raises(RateLimited):
        call(door, gina, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                          {"role": "user", "content": "c"}])  # fmt: skip
    assert len(store.list_conversations(gina).items) == 1
    with pytest.raises(InvalidInput):
        call(door, gina, [{"role": "user", "content": "x"}], model="demo/nope")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": DEMO_MODEL, "messages": []}, "messages"),
        ({"model": DEMO_MODEL, "messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
        ({"model": DEMO_MODEL, "messages": [{"role": "tool", "content": "x", "tool_call_id": "t"}]}, "messages[0]"),
        ({"model": DEMO_MODEL, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": DEMO_MODEL, "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        (
            {"model": DEMO_MODEL, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
        ({"model": DEMO_MODEL, "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": DEMO_MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        ({"model": DEMO_MODEL, "messages": [{"role": "user", "content": "x" * 50_001}]}, "messages"),
    ],
)
def test_bodies_the_door_refuses_name_the_field(body: object, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(body, max_message_chars=2000, context_chars=50_000)
    assert caught.value.param == param


def test_parse_keeps_the_order_and_the_stream_options() -> None:
    request = parse_request(
        {
            "model": DEMO_MODEL,
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.2,
        },
        max_message_chars=10,
        context_chars=1000,
    )
    assert request.turns == (Turn("system", "s"), Turn("user", "u"))
    assert (request.stream, request.include_usage, request.text, request.earlier) == (True, True, "u", ())


def test_transcript_skips_empty_messages_and_collapses_a_repeated_question() -> None:
    entries = [("user", "q"), ("assistant", " "), ("user", "q"), ("assistant", "a"), ("user", "q")]
    assert transcript(entries) == [("user", "q"), ("assistant", "a"), ("user", "q")]


def test_anthropic_gets_the_system_prompt_as_its_parameter() -> None:
    from services.providers.anthropic_chat import AnthropicProvider

    with WireServer("anthropic") as wire:
        provider = AnthropicProvider(api_key="sk-ant-test", base_url=wire.base_url, timeout_s=5.0)
        turns = [Turn("system", "Be brief."), Turn("user", "hi"), Turn("system", "No lists.")]
        reply = provider.stream("claude-test", turns, max_tokens=50)
        assert "".join(reply) == "Hello, world!"
        provider.close()
    body = wire.requests[0].body
    assert body["system"] == "Be brief.\n\nNo lists."
    assert body["messages"] == [{"role": "user", "content": "hi"}]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]) | _json},
    optional={
        "content": st.text(max_size=30)
        | st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": _json}), max_size=3)
        | _json,
        "tool_calls": _json,
    },
)
# A valid body with one field replaced by anything, or with generated messages, or anything at all: each check
# of the parser is reached by many examples.
_VALID = {"model": DEMO_MODEL, "messages": [{"role": "user", "content": "x"}]}
_FIELDS = ["model", "messages", "stream", "stream_options", "n", "tools", "functions", "temperature"]
_body = st.one_of(
    st.tuples(st.sampled_from(_FIELDS), _json).map(lambda kv: {**_VALID, kv[0]: kv[1]}),
    st.lists(_message, min_size=1, max_size=5).map(lambda ms: {**_VALID, "messages": ms}),
    _json,
)


@settings(max_examples=150, deadline=None)
@given(body=_body)
def test_any_body_is_taken_or_refused_with_a_named_reason(body: object) -> None:
    try:
        request = parse_request(body, max_message_chars=50, context_chars=1000)
    except InvalidRequest as exc:
        assert exc.message
        return
    assert request.turns and request.turns[-1].role == "user"
    assert all(isinstance(t.content, str) for t in request.turns)


def test_a_call_continues_the_branch_the_conversation_is_on(door: OpenAIDoor, store: PostgresStore) -> None:
    # Two turns through the door, then the user edits the second question on the chat page: the current
    # branch is now [q0, a0, q1-edited, a1']. A client that resends that branch continues it, under its leaf.
    alice = user("alice")
    history: list[dict[str, Any]] = []
    for q in ("q0", "q1"):
        history.append({"role": "user", "content": q})
        cid, text = call(door, alice, history)
        history.append({"role": "assistant", "content": text})
    second = [m for m in store.path_messages(alice, cid) if m.content == "q1"][0]
    edited = door.chat.edit(alice, second.id, "q1 edited", DEMO_MODEL)
    try:
        edited_text = "".join(edited)
    finally:
        edited.close()
    branch = [*history[:2], {"role": "user", "content": "q1 edited"}, {"role": "assistant", "content": edited_text}]
    again, _ = call(door, alice, [*branch, {"role": "user", "content": "q2"}])
    assert again == cid
    path = [(m.role, m.content) for m in store.path_messages(alice, cid)]
    assert [c for r, c in path if r == "user"] == ["q0", "q1 edited", "q2"]
    # The branch the user left is kept, and resending it (the client's old history) matches nothing now.
    old, _ = call(door, alice, [*history, {"role": "user", "content": "q2"}])
    assert old != cid
