"""The chat page under AppTest, running app.py with the real services on a real PostgreSQL: the offline
model and the real openai SDK against a local wire-format server."""

from __future__ import annotations

import html
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis.strategies import characters
from hypothesis.strategies import text as st_text
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from components import state
from components.chat import plain_label
from components.markdown import neutralise, safe_stream
from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.providers.demo import ANSWERS, EXAMPLES, demo_reply
from services.store import Message, embedded
from services.store.embedded import EmbeddedDatabase
from services.store.migrate import migrate
from services.store.postgres import PostgresStore
from tests.chat_page_support import ME, ROOT, app, bubbles, my_store, stop_keeps_the_page, wire

__all__ = ["app", "my_store", "stop_keeps_the_page", "wire"]  # fixtures, shared with test_chat_tree_page.py


def conversation_messages(store: PostgresStore, cid: str, who: Principal = ME) -> list[Message]:
    return store.recent_messages(who, cid, limit=200)


def total_messages(store: PostgresStore) -> int:
    return len(store.page_messages(ME, limit=200).items)


def test_send_on_the_offline_model_streams_persists_and_reloads(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at = app().run()
    assert not at.exception
    assert any("Offline demo model" in c.value for c in at.caption)  # labelled, with the configure hint
    at.chat_input[0].set_value("Hello there").run()
    assert not at.exception, at.exception
    expected = demo_reply("Hello there")
    assert bubbles(at) == [("user", "Hello there"), ("assistant", neutralise(expected))]
    cid = at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"]
    stored = conversation_messages(my_store, cid)
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Hello there", "complete"),
        ("assistant", expected, "complete"),
    ]
    assert any(b.label == "Hello there" for b in at.sidebar.button)  # listed, titled from the message

    reloaded = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)  # a new session, same services
    reloaded.query_params["c"] = cid
    reloaded.run()
    assert not reloaded.exception
    assert bubbles(reloaded) == [("user", "Hello there"), ("assistant", neutralise(expected))]
    assert any("Offline demo" in c.value and "tokens" in c.value for c in reloaded.caption)  # quiet meta line


def test_stop_mid_stream_leaves_an_interrupted_message(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at = app(CHAT_DEMO_CHARS_PER_S="8").run()  # about a minute for the whole reply
    before = total_messages(my_store)
    at.chat_input[0].set_value("Please stop me")
    # AppTest stops an overrunning script exactly as the stop button does (request_stop -> StopException
    # at the next render), then reports the timeout.
    with pytest.raises(RuntimeError, match="timed out"):
        at.run(timeout=8)
    newest = my_store.page_messages(ME, limit=2).items
    assert total_messages(my_store) == before + 2
    assistant, user_msg = newest
    assert (user_msg.role, user_msg.content) == ("user", "Please stop me")
    assert (assistant.role, assistant.status) == ("assistant", "interrupted")
    full = demo_reply("Please stop me")
    assert assistant.content and full.startswith(assistant.content) and assistant.content != full


@pytest.mark.parametrize(
    ("text", "error"),
    [("   ", "empty"), ("x" * 51, "too long"), ("nul\x00byte", "NUL")],
    ids=["blank", "too-long", "nul"],
)
def test_bad_input_shows_an_error_keeps_the_draft_and_stores_nothing(
    app: Callable[..., AppTest], my_store: PostgresStore, text: str, error: str
) -> None:
    at = app(CHAT_MAX_MESSAGE_CHARS="50").run()
    before = total_messages(my_store)
    conversations_before = len(my_store.list_conversations(ME, limit=200).items)
    at.chat_input[0].set_value(text).run()
    assert not at.exception
    assert any(error in e.value for e in at.error), [e.value for e in at.error]
    assert total_messages(my_store) == before
    assert len(my_store.list_conversations(ME, limit=200).items) == conversations_before
    assert at.chat_input[0].proto.value == text and at.chat_input[0].proto.set_value  # back in the input box
    assert not at.chat_message


def test_provider_failure_shows_an_inline_error_with_retry_and_a_toast(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    wire.queue(Script(chunks=["Part ", "one"], fault="drop", fault_after=1))
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    assert at.sidebar.selectbox(key=state.MODEL).value == "compat/wire-model"
    assert not any("Offline demo model" in c.value for c in at.caption)
    at.chat_input[0].set_value("Will this fail?").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "Could not reach the model server (the connection failed or dropped). Please retry."
    ]
    assert any("failed" in t.value for t in at.toast)
    cid = at.query_params["c"]
    assert [(m.role, m.status, m.content) for m in conversation_messages(my_store, cid)] == [
        ("user", "complete", "Will this fail?"),
        ("assistant", "error", "Part "),
    ]
    at.button(key="retry-live").click().run()
    assert not at.exception
    assert bubbles(at)[-1] == ("assistant", "Hello, world!")
    assert [(m.role, m.status) for m in conversation_messages(my_store, cid)] == [
        ("user", "complete"),
        ("assistant", "error"),
        ("assistant", "complete"),
    ]


def test_model_images_are_never_rendered_and_html_is_text(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    wire.queue(Script(chunks=["See !", "[pixel](http://tracker.example/p.png) <im", "g src=http://tracker.example/q>"]))
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    at.chat_input[0].set_value("show me").run()
    assert not at.exception
    rendered = at.chat_message[1].markdown
    assert [md.value for md in rendered] == [
        "See !\\[pixel](http://tracker.example/p.png) \\<img src=http\\://tracker.example/q>"
    ]
    assert all(not md.proto.allow_html for md in rendered)
    # Stored as the model sent it; only rendering is neutralised.
    (_, assistant) = conversation_messages(my_store, at.query_params["c"])
    assert assistant.content == "See ![pixel](http://tracker.example/p.png) <img src=http://tracker.example/q>"


def test_long_conversation_renders_fifty_and_shows_earlier(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    conversation = my_store.create_conversation(ME, "long one")
    for i in range(120):
        my_store.add_message(ME, conversation.id, "user" if i % 2 == 0 else "assistant", f"message {i}", "demo/echo-1")
    at = app()
    at.query_params["c"] = str(conversation.id)
    at.run()
    assert not at.exception
    texts = [text for _, text in bubbles(at)]
    assert texts == [f"message {i}" for i in range(70, 120)]
    next(b for b in at.button if b.label == "Show earlier messages").click().run()
    assert [text for _, text in bubbles(at)] == [f"message {i}" for i in range(20, 120)]


@pytest.mark.parametrize("link", [str(uuid.uuid4()), "not-a-uuid"], ids=["unknown-id", "garbage"])
def test_a_link_to_a_missing_conversation_starts_a_new_chat(app: Callable[..., AppTest], link: str) -> None:
    at = app()
    at.query_params["c"] = link
    at.run()
    assert not at.exception
    assert any("does not exist" in w.value for w in at.warning)
    assert not at.chat_message and at.chat_input  # an empty chat, ready for a message
    assert "c" not in at.query_params


@pytest.fixture
def reviewer_database(pg_server: EmbeddedDatabase, database: EmbeddedDatabase) -> EmbeddedDatabase:
    """A separate database with the migrations only: the reviewer may read others' conversations through
    the real reviewer policy (supabase/migrations/..._history_search_and_reviewer.sql), nothing added."""
    name = f"reviewers_{uuid.uuid4().hex[:8]}"
    embedded.ensure_database(pg_server.admin_url, name)
    admin = pg_server.url_for(name, admin=True)
    embedded.ensure_app_role(admin, name)
    migrate(admin)
    return embedded.EmbeddedDatabase(admin_url=admin, app_url=pg_server.url_for(name))


def test_a_reviewer_sees_another_users_conversation_read_only(
    app: Callable[..., AppTest], reviewer_database: EmbeddedDatabase
) -> None:
    assert ME.is_reviewer
    owner = Principal(user_id="user_someone_else")
    store = PostgresStore(reviewer_database.app_url, pool_max=1)
    try:
        theirs = store.create_conversation(owner, "their chat")
        store.add_message(owner, theirs.id, "user", "their question", "demo/echo-1")
        store.add_message(owner, theirs.id, "assistant", "their answer", "demo/echo-1")
    finally:
        store.close()
    at = app(DATABASE_URL=reviewer_database.app_url, DATABASE_ADMIN_URL=reviewer_database.admin_url)
    at.query_params["c"] = str(theirs.id)
    at.run()
    assert not at.exception
    assert bubbles(at) == [("user", "their question"), ("assistant", "their answer")]
    assert any("read-only" in i.value for i in at.info)
    assert not at.chat_input  # nothing to type into
    assert not [b for b in at.button if b.label in ("Retry", "Regenerate")]


def test_new_chat_and_switching_conversations(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at = app().run()
    at.chat_input[0].set_value("first topic").run()
    first = at.query_params["c"]
    at.sidebar.button[0].click().run()  # New chat
    assert "c" not in at.query_params and not at.chat_message
    at.chat_input[0].set_value("second topic").run()
    second = at.query_params["c"]
    assert second != first
    labels = [b.label for b in at.sidebar.button]
    assert labels.index("second topic") < labels.index("first topic")  # newest first
    at.sidebar.button(key=f"conversation-{first}").click().run()
    assert at.query_params["c"] == first
    assert bubbles(at)[0] == ("user", "first topic")


def test_safe_stream_never_renders_what_the_final_text_takes_back() -> None:
    text = (
        "Intro ![a](http://x/1.png) and <img src=http://x/2>\n```markdown\n![literal](kept)\n```\n"
        "tail ![ref][r] and `code`\n\n[r]: http://x/3.png"
    )
    final = neutralise(text)
    assert final == (
        "Intro !\\[a](http://x/1.png) and \\<img src=http\\://x/2>\n```markdown\n![literal](kept)\n```\n"
        "tail !\\[ref][r] and `code`\n\n[r]: http://x/3.png"
    )
    for seed in range(200):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(text)), 12))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        shown = ""
        for out in safe_stream(chunks):
            shown += out
            assert final.startswith(shown), (seed, shown)
        assert shown == final


# --- issue 12: what a new user trips over -----------------------------------------------------------------


def element_order(at: AppTest) -> list[str]:
    """The main area's elements in page order, as type names (chat messages as one entry each)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if getattr(node, "type", None) == "chat_message":
            out.append("chat_message")
            return
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)
        else:
            out.append(str(getattr(node, "type", "?")))

    walk(at.main)
    return out


def test_an_input_error_shows_at_the_end_above_the_input_and_as_a_toast(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    # Issue 12, item 3: the error was drawn above the messages, thousands of pixels out of sight.
    conversation = my_store.create_conversation(ME, "long one")
    for i in range(30):
        my_store.add_message(ME, conversation.id, "user" if i % 2 == 0 else "assistant", f"message {i}", "demo/echo-1")
    at = app(CHAT_MAX_MESSAGE_CHARS="50")
    at.query_params["c"] = str(conversation.id)
    at.run()
    at.chat_input[0].set_value("x" * 51).run()
    assert not at.exception
    (error,) = at.error
    assert "too long" in error.value
    assert any("too long" in t.value for t in at.toast)  # in view however far the page is scrolled
    order = element_order(at)
    last_bubble = len(order) - 1 - order[::-1].index("chat_message")
    assert order.index("error") > last_bubble, order  # after every message: where the input is
    assert at.chat_input[0].proto.value == "x" * 51  # and the text is back in the box


def test_the_first_screen_welcomes_and_sends_an_example_on_click(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    # Issue 12, item 9: the first screen was blank but for one caption.
    at = app().run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["What would you like to talk about?"]
    examples = [b for b in at.button if b.key and b.key.startswith("example-")]
    assert sorted(b.label for b in examples) == sorted(plain_label(e) for e in EXAMPLES) and len(examples) >= 3
    next(b for b in examples if b.label == plain_label(EXAMPLES[1])).click().run()
    assert not at.exception
    assert bubbles(at) == [("user", neutralise(EXAMPLES[1])), ("assistant", neutralise(ANSWERS[EXAMPLES[1]]))]
    assert "| Mars |" in ANSWERS[EXAMPLES[1]]  # the offline model answers it, not an echo
    assert not at.subheader and not [b for b in at.button if b.key and b.key.startswith("example-")]
    cid = at.query_params["c"]
    assert [(m.role, m.content) for m in conversation_messages(my_store, cid)][0] == ("user", EXAMPLES[1])
    at.run()  # the next run sends nothing again
    assert len(conversation_messages(my_store, cid)) == 2


def test_sidebar_titles_are_plain_text_grouped_by_day(app: Callable[..., AppTest], database: EmbeddedDatabase) -> None:
    # Issue 12, item 7: "# Release notes" showed raw, "**bold**" bold, centred, undated.
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.conversations where user_id = %s", [ME.user_id])
    store = PostgresStore(database.app_url, pool_max=1)
    try:
        made = {t: store.create_conversation(ME, t).id for t in ("# Release notes", "**bold** plan", ":red[x] `c`")}
    finally:
        store.close()
    now = datetime.now(UTC)
    with psycopg.connect(database.admin_url) as conn:
        for title, age in (("# Release notes", 30), ("**bold** plan", 1)):
            conn.execute(
                "update public.conversations set updated_at = %s where id = %s",
                [now - timedelta(days=age), made[title]],
            )
    at = app().run()
    assert not at.exception
    side = [(n.type, getattr(n, "value", None) or getattr(n, "label", None)) for n in sidebar_nodes(at)]
    start = side.index(("caption", "Conversations"))
    assert side[start + 1 :] == [
        ("caption", "Today"),
        ("button", plain_label(":red[x] `c`")),
        ("caption", "Yesterday"),
        ("button", plain_label("**bold** plan")),
        ("caption", "Older"),
        ("button", plain_label("# Release notes")),
    ]
    button = at.sidebar.button(key=f"conversation-{made['# Release notes']}")
    assert button.proto.label == "\\# Release notes"


def sidebar_nodes(at: AppTest) -> list[Any]:
    out: list[Any] = []

    def walk(node: Any) -> None:
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                walk(child)
        else:
            out.append(node)

    walk(at.sidebar)
    return out


@given(st_text(alphabet=characters(blacklist_categories=("Cs", "Cc")), max_size=60))
def test_plain_label_renders_as_the_text_itself(title: str) -> None:
    rendered = MarkdownIt("commonmark").renderInline(plain_label(title))
    assert html.unescape(rendered) == " ".join(title.split())


@pytest.mark.parametrize("prompt", ["# Release notes", "**bold** and `code` and ``two``", "`edge`", "> quoted"])
def test_the_demo_model_quotes_a_message_as_text(prompt: str) -> None:
    # Issue 12, item 13: a message starting with "#" came back as a giant heading.
    rendered = MarkdownIt("commonmark").render(demo_reply(prompt))
    assert "<h1>" not in rendered and "<strong>bold" not in rendered
    assert f"<code>{html.escape(prompt, quote=False)}</code>" in rendered


# --- issue 10 / issue 12 item 4: stop that stops, and a page that stays whole after a stop -------------


def test_stop_during_a_provider_silence_stores_the_shown_text(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    # Two words, then a minute of silence. AppTest stops the overrunning run as the stop button does; the
    # page must notice it during the silence (not when the provider next speaks) and store what it showed.
    wire.queue(Script(chunks=["Thinking ", "aloud", " and done"], pause_before={2: 60.0}))
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    at.chat_input[0].set_value("Think first")
    with pytest.raises(RuntimeError, match="timed out"):
        at.run(timeout=4)
    assistant, user_msg = my_store.page_messages(ME, limit=2).items
    assert (user_msg.role, user_msg.content) == ("user", "Think first")
    assert (assistant.role, assistant.status, assistant.content) == ("assistant", "interrupted", "Thinking aloud")
    wire.release.set()  # end the wire server's pause for the tests that follow
    wire.release.clear()


@pytest.mark.usefixtures("stop_keeps_the_page")
def test_what_must_stay_after_a_stop_is_drawn_before_the_reply_streams(app: Callable[..., AppTest]) -> None:
    at = app(CHAT_DEMO_CHARS_PER_S="8").run()  # about a minute for the whole reply
    at.chat_input[0].set_value("Stop me early").run(timeout=4)
    # What the browser keeps after a stop: the conversation listed, the meta line, Regenerate.
    assert any(b.label == "Stop me early" for b in at.sidebar.button)
    assert [c.value for c in at.chat_message[-1].caption] == ["Offline demo model (no API key)"]
    assert [b.label for b in at.chat_message[-1].button] == ["Stop", "Regenerate"]
    assert at.chat_message[-1].name == "assistant"
    assert not at.chat_message[0].caption  # the user's bubble carries no meta line


@pytest.mark.usefixtures("stop_keeps_the_page")
def test_a_regenerated_reply_has_its_own_stop_button(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at = app().run()
    at.chat_input[0].set_value("Answer twice").run()
    cid = at.query_params["c"]
    at = app(CHAT_DEMO_CHARS_PER_S="8")
    at.query_params["c"] = cid
    at.run()
    at.button(key="regenerate-last").click().run(timeout=4)
    # The chat input's stop button appears only for runs it started: this reply has its own.
    assert [b.label for b in at.chat_message[-1].button] == ["Stop"]
    at.button(key="stop-live").click().run()  # pressing it reruns the page: the reply is stopped and kept
    assert at.button(key="regenerate-last").label == "Regenerate"
    assert at.chat_message[-1].caption[0].value.endswith("Stopped before the end.")
    assert [(m.role, m.status) for m in conversation_messages(my_store, cid)][-1] == ("assistant", "interrupted")
