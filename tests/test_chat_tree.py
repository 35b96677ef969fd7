"""ChatService on the message tree: edit, regenerate and switch with real parts (PostgreSQL under RLS, the
real SDKs against the local wire servers). What reaches the model is checked at the wire server: the exact
request, so a message of another branch or a missing instruction cannot hide."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService, Reply, build_context
from services.config import settings_from
from services.providers import Provider, Turn
from services.providers.anthropic_chat import AnthropicProvider
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.demo import DemoProvider, demo_reply
from services.providers.openai_chat import OpenAIProvider
from services.ratelimit import RateLimited, RateLimiter
from services.store import MAX_PATH, InvalidInput, Message, NotFound
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

OPENAI = "openai/gpt-test"
ANTHROPIC = "anthropic/claude-test"
DEMO = "demo/echo-1"


@pytest.fixture(scope="module")
def wires() -> Iterator[dict[str, WireServer]]:
    with WireServer("openai") as o, WireServer("anthropic") as a:
        yield {"openai": o, "anthropic": a}


@pytest.fixture(scope="module")
def chat(store: PostgresStore, wires: dict[str, WireServer]) -> ChatService:
    providers: dict[str, Provider] = {
        "openai": OpenAIProvider(api_key="sk-test", base_url=wires["openai"].base_url, timeout_s=2.0),
        "anthropic": AnthropicProvider(api_key="sk-ant-test", base_url=wires["anthropic"].base_url, timeout_s=2.0),
        "demo": DemoProvider(chars_per_s=1_000_000),
    }
    options = [
        ModelOption(OPENAI, "openai", "gpt-test", "GPT test"),
        ModelOption(ANTHROPIC, "anthropic", "claude-test", "Claude test"),
        ModelOption(DEMO, "demo", "echo-1", "Offline demo"),
    ]
    settings = settings_from({"CHAT_DEFAULT_INSTRUCTIONS": "Answer like a pirate."})
    return ChatService(store, Catalogue(providers, options, default=OPENAI), None, settings=settings)


def user(name: str) -> Principal:
    return Principal(user_id=f"user_{name}_{uuid.uuid4().hex[:8]}")


def finish(reply: Reply) -> Message:
    try:
        for _ in reply:
            pass
    finally:
        reply.close()
    assert reply.outcome is not None and reply.outcome.message is not None, reply.outcome
    assert reply.outcome.status == "complete", reply.outcome
    return reply.outcome.message


def sent(wire: WireServer, before: int) -> dict[str, Any]:
    (request,) = wire.requests[before:]
    return request.body


def said(wire: WireServer, chat: ChatService, reply_text: str, call: Any) -> tuple[Message, dict[str, Any]]:
    """Run one turn whose reply is `reply_text`; the stored reply and the exact request the model got."""
    wire.queue(Script(chunks=[reply_text]))
    before = len(wire.requests)
    message = finish(call())
    return message, sent(wire, before)


def test_edit_regenerate_and_switch_keep_every_version_and_send_only_the_path(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    o, me = wires["openai"], user("brancher")
    a1, _ = said(o, chat, "A1", lambda: chat.send(me, None, "Q1", OPENAI, instructions=""))
    cid = a1.conversation_id
    a2, body = said(o, chat, "A2", lambda: chat.send(me, cid, "Q2", OPENAI))
    assert body["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    q2 = store.get_message(me, a2.parent_id)  # type: ignore[arg-type]
    # Regenerate: a sibling of A2, answering the same path.
    a2b, body = said(o, chat, "A2b", lambda: chat.regenerate(me, cid, OPENAI))
    assert a2b.parent_id == q2.id and body["messages"][-1] == {"role": "user", "content": "Q2"}
    assert len(body["messages"]) == 3
    # Edit Q1: a sibling root; its reply sees only the edited text.
    a1e, body = said(o, chat, "A1e", lambda: chat.edit(me, a1.parent_id, "Q1 edited", OPENAI))  # type: ignore[arg-type]
    assert body["messages"] == [{"role": "user", "content": "Q1 edited"}]
    q1e = store.get_message(me, a1e.parent_id)  # type: ignore[arg-type]
    assert q1e.parent_id is None and q1e.content == "Q1 edited"
    window = chat.window(me, chat.open_conversation(me, cid))
    assert [m.content for m in window.messages] == ["Q1 edited", "A1e"]
    assert window.versions[q1e.id].index == 1 and len(window.versions[q1e.id].ids) == 2
    # Switch back to the first version of Q1: its newest leaf (A2b) becomes current, and a new message
    # continues that branch with exactly its path as context.
    chat.switch(me, window.versions[q1e.id].previous)  # type: ignore[arg-type]
    window = chat.window(me, chat.open_conversation(me, cid))
    assert [m.content for m in window.messages] == ["Q1", "A1", "Q2", "A2b"]
    assert window.versions[a2b.id].ids == (a2.id, a2b.id)
    _, body = said(o, chat, "A3", lambda: chat.send(me, cid, "Q3", OPENAI))
    assert [m["content"] for m in body["messages"]] == ["Q1", "A1", "Q2", "A2b", "Q3"]
    # Every version is still stored.
    assert len(list(store.iter_history(me, cid))) == 9


def test_instructions_reach_openai_as_a_system_message(chat: ChatService, wires: dict[str, WireServer]) -> None:
    o, me = wires["openai"], user("captain")
    reply, body = said(o, chat, "Arr", lambda: chat.send(me, None, "Hello", OPENAI))  # default instructions
    assert body["messages"] == [
        {"role": "system", "content": "Answer like a pirate."},
        {"role": "user", "content": "Hello"},
    ]
    chat.set_instructions(me, reply.conversation_id, "Answer in French.")
    _, body = said(o, chat, "Oui", lambda: chat.send(me, reply.conversation_id, "Again", OPENAI))
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    chat.set_instructions(me, reply.conversation_id, "  ")
    _, body = said(o, chat, "Yes", lambda: chat.send(me, reply.conversation_id, "Plain", OPENAI))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_a_users_own_default_instructions_come_between_typed_ones_and_the_setting(
    chat: ChatService, wires: dict[str, WireServer]
) -> None:
    o, me, other = wires["openai"], user("defaults"), user("no_defaults")
    assert chat.default_instructions(me) == "Answer like a pirate."  # the setting, until the user sets one
    assert chat.set_default_instructions(me, "  Reply in haiku.\nNo rhymes. ") == "Reply in haiku.\nNo rhymes."
    assert chat.own_default_instructions(me) == "Reply in haiku.\nNo rhymes."
    assert chat.default_instructions(me) == "Reply in haiku.\nNo rhymes."
    assert chat.default_instructions(other) == "Answer like a pirate."  # one user's default is theirs only

    def system_sent(who: Principal, **typed: str) -> object:
        reply, body = said(o, chat, "Ok", lambda: chat.send(who, None, "Hi", OPENAI, **typed))
        assert chat.open_conversation(who, reply.conversation_id).instructions == (
            body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
        )  # what was sent is what the conversation keeps
        return body["messages"][0] if body["messages"][0]["role"] == "system" else None

    # nothing typed (the HTTP API): the user's own default
    assert system_sent(me) == {"role": "system", "content": "Reply in haiku.\nNo rhymes."}
    # typed wins, even typed empty
    assert system_sent(me, instructions="Be brief.") == {"role": "system", "content": "Be brief."}
    assert system_sent(me, instructions="") is None
    assert system_sent(other) == {"role": "system", "content": "Answer like a pirate."}
    # cleared: the setting applies again
    assert chat.set_default_instructions(me, "") is None
    assert system_sent(me) == {"role": "system", "content": "Answer like a pirate."}


def test_instructions_reach_anthropic_as_the_system_parameter(
    chat: ChatService, wires: dict[str, WireServer]
) -> None:
    a, me = wires["anthropic"], user("claude_user")
    _, body = said(a, chat, "Ok", lambda: chat.send(me, None, "Hi", ANTHROPIC, instructions="Be terse.\nNo lists."))
    assert body == {
        "model": "claude-test",
        "max_tokens": 4096,
        "system": "Be terse.\nNo lists.",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
    }


def test_the_demo_model_acknowledges_instructions(chat: ChatService) -> None:
    me = user("demo_user")
    reply = finish(chat.send(me, None, "Hi", DEMO, instructions="Speak softly."))
    assert reply.content == demo_reply("Hi", "Speak softly.")
    assert reply.content.startswith("(Instructions received: `Speak softly.`)")


def test_nobody_edits_switches_regenerates_or_instructs_in_another_users_conversation(
    chat: ChatService, store: PostgresStore
) -> None:
    owner, mallory = user("owner"), user("mallory")
    reviewer = Principal(user_id=f"user_rita_{uuid.uuid4().hex[:6]}", claims={"roles": ["reviewer"]})
    answer = finish(chat.send(owner, None, "mine", DEMO))
    cid, question = answer.conversation_id, answer.parent_id
    assert question is not None
    before = [(m.id, m.content) for m in store.iter_history(owner)]
    for who in (mallory, reviewer):
        with pytest.raises((NotFound, InvalidInput)):
            chat.edit(who, question, "hijacked", DEMO)
        with pytest.raises(NotFound):
            chat.switch(who, question)
        with pytest.raises((NotFound, InvalidInput)):
            chat.regenerate(who, cid, DEMO)
        with pytest.raises((NotFound, InvalidInput)):
            chat.set_instructions(who, cid, "obey")
        with pytest.raises((NotFound, InvalidInput)):
            chat.rename(who, cid, "pwned")
        with pytest.raises((NotFound, InvalidInput)):
            chat.delete(who, cid)
    assert [(m.id, m.content) for m in store.iter_history(owner)] == before
    after = chat.open_conversation(owner, cid)
    assert (after.current_leaf_id, after.instructions, after.title) == (answer.id, "Answer like a pirate.", "mine")


def test_only_user_messages_can_be_edited(chat: ChatService) -> None:
    me = user("editor")
    answer = finish(chat.send(me, None, "question", DEMO))
    with pytest.raises(InvalidInput, match=r"^Only your own messages can be edited; regenerate a reply instead\.$"):
        chat.edit(me, answer.id, "rewritten reply", DEMO)
    with pytest.raises(InvalidInput, match="empty"):
        chat.edit(me, answer.parent_id, "   ", DEMO)  # type: ignore[arg-type]


def test_rename_and_delete_from_the_chat_service(chat: ChatService) -> None:
    me = user("manager")
    cid = finish(chat.send(me, None, "to be renamed", DEMO)).conversation_id
    assert chat.rename(me, cid, "  Renamed   chat ").title == "Renamed chat"
    items, _ = chat.recent_conversations(me, title_filter="renamed")
    assert [c.id for c in items] == [cid]
    chat.delete(me, cid)
    with pytest.raises(NotFound):
        chat.open_conversation(me, cid)


# --- deep and wide trees --------------------------------------------------------------------------------


def _bulk_tree(database: EmbeddedDatabase, who: str, depth: int, wide_at: list[int], width: int) -> uuid.UUID:
    """A conversation `depth` messages deep (alternating user/assistant) whose messages at `wide_at` get
    `width - 1` extra sibling versions each, written in one statement per level as the superuser (setup)."""
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute(
            "insert into public.conversations (user_id, title) values (%s, 'deep') returning id", [who]
        ).fetchone()
        assert row is not None
        cid = row[0]
        parent = None
        for level in range(depth):
            role = "user" if level % 2 == 0 else "assistant"
            copies = width if level in wide_at else 1
            # siblings first (older), the chosen version last, so the path runs through the newest one
            ids = conn.execute(
                "insert into public.messages (conversation_id, user_id, role, content, model, parent_id, created_at)"
                " select %s, %s, %s, %s || ' v' || n, 'demo/echo-1', %s,"
                " timestamptz '2026-01-01' + (%s * 100 + n) * interval '1 second'"
                " from generate_series(1, %s) n returning id",
                [cid, who, role, f"m{level}", parent, level, copies],
            ).fetchall()
            parent = ids[-1][0]
        conn.execute("update public.conversations set current_leaf_id = %s where id = %s", [parent, cid])
    return cid


def test_the_context_of_a_deep_wide_tree_is_exactly_its_path(
    chat: ChatService, store: PostgresStore, database: EmbeddedDatabase, wires: dict[str, WireServer]
) -> None:
    me = user("deep")
    wide = list(range(1, 1000, 20))  # 50 branch points, 20 versions each
    cid = _bulk_tree(database, me.user_id, 1000, wide, 20)
    path = store.path_messages(me, cid, limit=1000)
    assert len(path) == 1000 and [m.content for m in path[:3]] == ["m0 v1", "m1 v20", "m2 v1"]
    assert all(m.parent_id == p.id for p, m in zip(path, path[1:], strict=False))
    turns = build_context(path, budget_chars=10**9)
    assert [t.content for t in turns] == [m.content for m in path]  # no sibling version slipped in
    window = chat.window(me, chat.open_conversation(me, cid))
    assert len(window.messages) == 50 and window.has_more
    # the window shows levels 950-999, of which 961 and 981 are branch points
    assert {m.content for m in window.messages if m.id in window.versions} == {"m961 v20", "m981 v20"}
    assert all(len(v.ids) == 20 and v.index == 19 for v in window.versions.values())
    o = wires["openai"]
    _, body = said(o, chat, "deep answer", lambda: chat.send(me, cid, "m1000", OPENAI))
    contents = [m["content"] for m in body["messages"] if m["role"] != "system"]
    # the last CONTEXT_MESSAGES of the path (99 before the new message), less a leading assistant turn
    expected = [m.content for m in path[-98:]] + ["m1000"]
    assert contents == expected
    # Regenerate and Edit read the same window of the path: its last CONTEXT_MESSAGES.
    _, body = said(o, chat, "again", lambda: chat.regenerate(me, cid, OPENAI))
    assert [m["content"] for m in body["messages"] if m["role"] != "system"] == expected
    question = chat.window(me, chat.open_conversation(me, cid)).messages[-2]
    assert question.content == "m1000"
    _, body = said(o, chat, "edited", lambda: chat.edit(me, question.id, "m1000 edited", OPENAI))
    assert [m["content"] for m in body["messages"] if m["role"] != "system"] == expected[:-1] + ["m1000 edited"]


def test_the_window_reads_at_most_one_less_than_the_longest_path(
    chat: ChatService, database: EmbeddedDatabase
) -> None:
    """However far "Show earlier" is pressed, the window asks for MAX_PATH messages at most (the one past
    the shown ones says whether more exist), so the store never refuses it."""
    me = user("longest")
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute(
            "insert into public.conversations (user_id, title) values (%s, 'longest') returning id", [me.user_id]
        ).fetchone()
        assert row is not None
        cid = row[0]
        # One statement: the foreign key to each parent is checked when the statement ends.
        conn.execute(
            "insert into public.messages (id, conversation_id, user_id, role, content, model, parent_id, created_at)"
            " select md5(%(cid)s || n)::uuid, %(cid)s::uuid, %(who)s,"
            " case when n %% 2 = 0 then 'user' else 'assistant' end,"
            " 'm' || n, 'demo/echo-1', case when n > 0 then md5(%(cid)s || (n - 1))::uuid end,"
            " timestamptz '2026-01-01' + n * interval '1 second' from generate_series(0, %(last)s) n",
            {"cid": str(cid), "who": me.user_id, "last": MAX_PATH},
        )
        conn.execute(
            "update public.conversations set current_leaf_id = md5(%s || %s)::uuid where id = %s",
            [str(cid), MAX_PATH, cid],
        )
    conversation = chat.open_conversation(me, cid)
    window = chat.window(me, conversation, pages=MAX_PATH)
    assert len(window.messages) == MAX_PATH - 1 and window.has_more
    assert window.messages[-1].content == f"m{MAX_PATH}"


def test_a_reviewer_may_read_but_not_change_anothers_conversation(chat: ChatService) -> None:
    owner = user("owned")
    reviewer = Principal(user_id=f"user_rita_{uuid.uuid4().hex[:6]}", claims={"roles": ["reviewer"]})
    cid = finish(chat.send(owner, None, "mine", DEMO)).conversation_id
    assert chat.open_conversation(reviewer, cid).title == "mine"
    with pytest.raises(InvalidInput, match=r"^This conversation belongs to another user and is read-only\.$"):
        chat.rename(reviewer, cid, "theirs now")


def test_load_more_stays_complete_while_a_listed_chat_becomes_active(chat: ChatService, store: PostgresStore) -> None:
    me = user("lister")
    made = [store.create_conversation(me, f"chat {n}").id for n in range(5)]  # newest last
    first_page, more = chat.recent_conversations(me, pages=1, per_page=2)
    assert [c.id for c in first_page] == [made[4], made[3]] and more
    # the oldest chat becomes active between "page 1" and "Load more"
    store.add_message(me, made[0], "user", "back to this one", "demo")
    both, _ = chat.recent_conversations(me, pages=2, per_page=2)
    everything, more = chat.recent_conversations(me, pages=3, per_page=2)
    assert [c.id for c in both] == [made[0], made[4], made[3], made[2]]  # it moved up: no gap, no duplicate
    assert [c.id for c in everything] == [made[0], made[4], made[3], made[2], made[1]] and not more


def test_regenerate_and_edit_answer_under_the_conversations_instructions_in_the_same_chat(
    chat: ChatService, wires: dict[str, WireServer]
) -> None:
    o, me = wires["openai"], user("steady")
    answer, _ = said(o, chat, "Arr", lambda: chat.send(me, None, "Hello", OPENAI))  # default instructions
    pirate = {"role": "system", "content": "Answer like a pirate."}
    for call, question in (
        (lambda: chat.regenerate(me, answer.conversation_id, OPENAI), None),  # no new user message
        (lambda: chat.edit(me, answer.parent_id, "Hello again", OPENAI), ("Hello again", OPENAI)),  # type: ignore[arg-type]
    ):
        o.queue(Script(chunks=["Aye"]))
        before = len(o.requests)
        reply = call()
        assert reply.created_conversation is False and reply.conversation_id == answer.conversation_id
        edited = reply.user_message
        assert ((edited.content, edited.model) if edited else None) == question
        finish(reply)
        assert sent(o, before)["messages"][0] == pirate


def test_regenerate_and_edit_stop_once_the_sign_in_is_revoked(chat: ChatService, wires: dict[str, WireServer]) -> None:
    o, me = wires["openai"], user("revoked")
    answer, _ = said(o, chat, "first", lambda: chat.send(me, None, "Hello", OPENAI))
    for call in (
        lambda: chat.regenerate(me, answer.conversation_id, OPENAI, revoked=lambda: True),
        lambda: chat.edit(me, answer.parent_id, "Hello?", OPENAI, revoked=lambda: True),  # type: ignore[arg-type]
    ):
        o.queue(Script(chunks=["never ", "finished"]))
        reply = call()
        try:
            for _ in reply:
                pass
        finally:
            reply.close()
        assert reply.outcome is not None and reply.outcome.status == "interrupted"


def test_regenerate_and_edit_count_against_the_rate_limit(
    store: PostgresStore, chat: ChatService, wires: dict[str, WireServer]
) -> None:
    limited = ChatService(store, chat.catalogue, RateLimiter(store, 3), settings=chat.settings)
    o, me = wires["openai"], user("hasty")
    answer, _ = said(o, limited, "one", lambda: limited.send(me, None, "Hello", OPENAI))
    said(o, limited, "two", lambda: limited.regenerate(me, answer.conversation_id, OPENAI))
    said(o, limited, "three", lambda: limited.edit(me, answer.parent_id, "Hi", OPENAI))  # type: ignore[arg-type]
    stored = len(list(store.iter_history(me, answer.conversation_id)))
    with pytest.raises(RateLimited):
        limited.regenerate(me, answer.conversation_id, OPENAI)
    with pytest.raises(RateLimited):
        limited.edit(me, answer.parent_id, "Hi again", OPENAI)  # type: ignore[arg-type]
    assert len(list(store.iter_history(me, answer.conversation_id))) == stored


class _AnotherTabWrites:
    """The real store, except that just before the next path is read another tab of the same user sends a
    message (at the current leaf, through the real store): a send or an edit is two statements apart from
    the read of its context."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.armed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def path_messages(self, principal: Principal, conversation_id: uuid.UUID, **kwargs: Any) -> list[Message]:
        if self.armed:
            self.armed = False
            self._store.add_message(principal, conversation_id, "user", "from the other tab", DEMO)
        return self._store.path_messages(principal, conversation_id, **kwargs)


def test_a_message_another_tab_sends_meanwhile_stays_out_of_the_context_of_a_send_or_an_edit(
    store: PostgresStore, chat: ChatService, wires: dict[str, WireServer]
) -> None:
    o, me = wires["openai"], user("two_tabs")
    racing = _AnotherTabWrites(store)
    tabbed = ChatService(racing, chat.catalogue, None, settings=settings_from({}))  # type: ignore[arg-type]
    answer, _ = said(o, tabbed, "A1", lambda: tabbed.send(me, None, "Q1", OPENAI))
    racing.armed = True
    _, body = said(o, tabbed, "A2", lambda: tabbed.send(me, answer.conversation_id, "Q2", OPENAI))
    assert body["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    racing.armed = True
    _, body = said(o, tabbed, "A1e", lambda: tabbed.edit(me, answer.parent_id, "Q1 edited", OPENAI))  # type: ignore[arg-type]
    assert body["messages"] == [{"role": "user", "content": "Q1 edited"}]
    # The other tab's messages are stored, each under the message the reply answers (its own branch).
    other = [m for m in store.iter_history(me, answer.conversation_id) if m.content == "from the other tab"]
    assert len(other) == 2 and not racing.armed


def test_a_given_context_reaches_the_model_as_it_is_without_standing_instructions(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer]
) -> None:
    # What the OpenAI-compatible door does: the client's own transcript is the context. A conversation it
    # starts gets no standing instructions (not even the server's default), and continuing one that has
    # some does not add them to what the client sent.
    o, me = wires["openai"], user("door")
    started, body = said(o, chat, "Hi there", lambda: chat.send(me, None, "Hi", OPENAI, context=[Turn("user", "Hi")]))
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert chat.open_conversation(me, started.conversation_id).instructions == ""
    pirate, _ = said(o, chat, "Arr", lambda: chat.send(me, None, "Hello", OPENAI))
    assert chat.open_conversation(me, pirate.conversation_id).instructions == "Answer like a pirate."
    sent_turns = [Turn("user", "Hello"), Turn("assistant", "Arr"), Turn("user", "Again")]
    _, body = said(o, chat, "Aye", lambda: chat.send(me, pirate.conversation_id, "Again", OPENAI, context=sent_turns))
    assert body["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Arr"},
        {"role": "user", "content": "Again"},
    ]
