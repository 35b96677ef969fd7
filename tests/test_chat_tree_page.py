"""The chat page's tree and management features under AppTest, with the real services on a real
PostgreSQL: edit, regenerate, version switching that survives a reload, instructions reaching the model
(checked at the local wire server), rename, delete, and the sidebar's title filter."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from components.markdown import neutralise
from devtools.wire_servers import Script, WireServer
from services.providers.demo import demo_reply
from services.store import Message, NotFound
from services.store.postgres import PostgresStore
from tests.chat_page_support import APP, ME, app, bubbles, cid_of, my_store, reload, stop_keeps_the_page, wire

__all__ = ["app", "my_store", "stop_keeps_the_page", "wire"]  # fixtures, shared with test_chat_page.py


def versions_shown(at: AppTest) -> list[str]:
    return [c.value for m in at.chat_message for c in m.caption if "/" in c.value and len(c.value) <= 9]


def test_edit_makes_a_version_and_switching_survives_a_reload(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at = app().run()
    at.chat_input[0].set_value("First question").run()
    cid = cid_of(at)
    at.chat_input[0].set_value("Second question").run()
    at = reload(cid)
    original = my_store.path_messages(ME, cid)[0]
    at.button(key=f"edit-{original.id}").click().run()
    assert at.text_area(key=f"edit-text-{original.id}").value == "First question"
    at.text_area(key=f"edit-text-{original.id}").set_value("First question, better").run()
    at.button(key=f"edit-save-{original.id}").click().run()
    assert not at.exception, at.exception
    # the new branch: the edited message and its reply only; the later turn stays on the old branch
    assert bubbles(at) == [
        ("user", "First question, better"),
        ("assistant", neutralise(demo_reply("First question, better"))),
    ]
    assert versions_shown(at) == ["2 / 2"]
    assert len(list(my_store.iter_history(ME, cid))) == 6  # nothing was deleted
    edited = my_store.path_messages(ME, cid)[0]
    # ‹ goes back to the first version, with its continuation
    at = reload(cid)
    at.button(key=f"version-prev-{edited.id}").click().run()
    assert [text for _, text in bubbles(at)][::2] == ["First question", "Second question"]
    assert versions_shown(at) == ["1 / 2"]
    # the choice is stored: a new session (a reload, another tab) shows the same version
    again = reload(cid)
    assert [text for _, text in bubbles(again)][::2] == ["First question", "Second question"]
    again.button(key=f"version-next-{original.id}").click().run()
    assert [text for _, text in bubbles(again)][::2] == ["First question, better"]


def test_cancel_leaves_the_message_as_it_was(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at = app().run()
    at.chat_input[0].set_value("Keep me").run()
    cid = cid_of(at)
    at = reload(cid)
    (question, _) = my_store.path_messages(ME, cid)
    at.button(key=f"edit-{question.id}").click().run()
    at.text_area(key=f"edit-text-{question.id}").set_value("Changed my mind").run()
    at.button(key=f"edit-cancel-{question.id}").click().run()
    assert bubbles(at)[0] == ("user", "Keep me")
    assert not [t for t in at.text_area if (t.key or "").startswith("edit-text-")]
    assert len(list(my_store.iter_history(ME, cid))) == 2


def test_regenerate_adds_a_version_of_the_reply(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    wire.queue(Script(chunks=["Reply one"]))
    at.chat_input[0].set_value("Say something").run()
    cid = cid_of(at)
    wire.queue(Script(chunks=["Reply two"]))
    at.button(key="regenerate-done").click().run()
    assert not at.exception
    assert bubbles(at) == [("user", "Say something"), ("assistant", "Reply two")]  # replaced, not stacked
    at = reload(cid)
    assert versions_shown(at) == ["2 / 2"]
    second = my_store.path_messages(ME, cid)[-1]
    at.button(key=f"version-prev-{second.id}").click().run()
    assert bubbles(at)[-1] == ("assistant", "Reply one")
    assert bubbles(reload(cid))[-1] == ("assistant", "Reply one")


def test_instructions_set_at_the_start_and_later_reach_the_model(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = app(
        OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model", CHAT_DEFAULT_INSTRUCTIONS="Be kind."
    ).run()
    box = at.text_area(key=state.NEW_INSTRUCTIONS)
    assert box.value == "Be kind."  # the default from CHAT_DEFAULT_INSTRUCTIONS
    box.set_value("Answer in French.").run()
    wire.queue(Script(chunks=["Bonjour"]))
    before = len(wire.requests)
    at.chat_input[0].set_value("Hello").run()
    (request,) = wire.requests[before:]
    assert request.body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
    ]
    cid = cid_of(at)
    at = reload(cid)
    assert any("Answer in French" in e.label for e in at.expander)  # shown collapsed at the top
    at.text_area(key=f"instructions-{cid}").set_value("Answer in German.").run()
    at.button(key="instructions-save").click().run()
    assert my_store.get_conversation(ME, cid).instructions == "Answer in German."
    wire.queue(Script(chunks=["Hallo"]))
    before = len(wire.requests)
    at.chat_input[0].set_value("Again").run()
    (request,) = wire.requests[before:]
    assert request.body["messages"][0] == {"role": "system", "content": "Answer in German."}
    assert [m["content"] for m in request.body["messages"][1:]] == ["Hello", "Bonjour", "Again"]


def test_rename_inline_and_delete_after_confirming(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at = app().run()
    at.chat_input[0].set_value("Old title").run()
    cid = cid_of(at)
    at = reload(cid)
    at.button(key="rename-start").click().run()
    at.text_input(key=state.RENAME_TEXT).set_value("Fresh *title*").run()
    at.button(key="rename-save").click().run()
    assert my_store.get_conversation(ME, cid).title == "Fresh *title*"
    assert any(b.label == "Fresh \\*title\\*" for b in at.sidebar.button)  # shown as typed
    at.button(key="delete-start").click().run()
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="delete-cancel").click().run()
    assert my_store.get_conversation(ME, cid).title == "Fresh *title*"
    at.button(key="delete-start").click().run()
    at.button(key="delete-confirm").click().run()
    assert not at.exception
    with pytest.raises(NotFound):
        my_store.get_conversation(ME, cid)
    assert "c" not in at.query_params and not at.chat_message  # back to a new chat


def test_the_sidebar_filter_lists_only_matching_titles(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    tag = uuid.uuid4().hex[:6]
    for title in (f"Holiday {tag} Rome", f"holiday {tag} budget", f"Work {tag}"):
        my_store.create_conversation(ME, title)
    at = app().run()
    at.sidebar.text_input(key=state.CONVERSATION_FILTER).set_value(f"HOLIDAY {tag}").run()
    labels = [b.label for b in at.sidebar.button if tag in b.label]
    assert sorted(labels) == sorted([f"Holiday {tag} Rome", f"holiday {tag} budget"])
    at.sidebar.text_input(key=state.CONVERSATION_FILTER).set_value(f"nothing {tag}").run()
    assert any("No conversation titles contain" in c.value for c in at.sidebar.caption)


def button(at: AppTest, label: str) -> Any:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def system_prompt_of_next_chat(at: AppTest, wire: WireServer, typed: str | None = None) -> object:
    """Start a new chat (typing its instructions when `typed` is given); the system message the model got."""
    at.sidebar.button[0].click().run()  # New chat
    assert "c" not in at.query_params
    if typed is not None:
        at.text_area(key=state.NEW_INSTRUCTIONS).set_value(typed).run()
    wire.queue(Script(chunks=["Ok"]))
    before = len(wire.requests)
    at.chat_input[0].set_value("Hello").run()
    assert not at.exception, at.exception
    (request,) = wire.requests[before:]
    first = request.body["messages"][0]
    return first if first["role"] == "system" else None


def test_default_instructions_are_set_on_the_account_page_and_start_new_chats(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model", CHAT_DEFAULT_INSTRUCTIONS="Be kind.")
    at.run()
    try:
        at.switch_page("pages/account.py").run()
        assert not at.exception, at.exception
        box = at.text_area(key=state.DEFAULT_INSTRUCTIONS)
        assert box.value == ""  # none of my own yet: the server's apply, and the page shows them
        assert [t.value for t in at.text] == ["Be kind."]
        box.set_value("Answer like a poet.\n\nShort lines.")
        at = button(at, "Save default instructions").click().run()
        assert [s.value for s in at.success] == ["Saved. New chats start with these instructions."]
        assert my_store.default_instructions(ME) == "Answer like a poet.\n\nShort lines."
        # a new session reads it back
        again = AppTest.from_file(APP, default_timeout=30)  # a new session on the same services
        again.run().switch_page("pages/account.py").run()
        assert again.text_area(key=state.DEFAULT_INSTRUCTIONS).value == "Answer like a poet.\n\nShort lines."

        # the chat page: a new chat's box starts with it, and it reaches the model exactly
        at.switch_page("pages/chat.py").run()
        assert at.text_area(key=state.NEW_INSTRUCTIONS).value == "Answer like a poet.\n\nShort lines."
        poet = {"role": "system", "content": "Answer like a poet.\n\nShort lines."}
        assert system_prompt_of_next_chat(at, wire) == poet
        assert my_store.get_conversation(ME, cid_of(at)).instructions == poet["content"]
        # typed for a chat wins (typed empty too); the next new chat starts from the default again
        assert system_prompt_of_next_chat(at, wire, typed="Answer in French.") == {
            "role": "system", "content": "Answer in French.",
        }
        assert system_prompt_of_next_chat(at, wire, typed="") is None
        assert system_prompt_of_next_chat(at, wire) == poet

        # cleared: the server's default applies again
        at.switch_page("pages/account.py").run()
        assert at.text_area(key=state.DEFAULT_INSTRUCTIONS).value == poet["content"]
        at = button(at, "Clear").click().run()
        assert at.text_area(key=state.DEFAULT_INSTRUCTIONS).value == ""
        assert any("server's default instructions" in s.value for s in at.success)
        assert my_store.default_instructions(ME) is None
        at.switch_page("pages/chat.py").run()
        assert system_prompt_of_next_chat(at, wire) == {"role": "system", "content": "Be kind."}
    finally:
        my_store.save_default_instructions(ME, "")


# --- copy, and stopping an edit's reply (the Stop button, which Escape presses) ---------------------------

REPLY = "# Plan\n\nSome **bold**, a [link](https://example.com) and `code`.\n\n```python\nx = 1\n```\n\n- one\n- two\n"


def copy_texts(bubble: Any) -> list[str]:
    """What the bubble's Copy popover hands to the clipboard: the text of its markdown code block."""
    return [code.value for code in bubble.code if code.language == "markdown"]


def opened_copy(at: AppTest, message: Message) -> AppTest:
    """Open a reply's Copy popover as a click does: its key holds its open state, and opening reruns."""
    at.session_state[f"copy-{message.id}"] = True
    return at.run()


def test_each_reply_can_be_copied_as_its_raw_markdown(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    wire.queue(Script(chunks=["# Plan\n\nSome **bold**, a [link](https://example.com) ", REPLY[53:]]))
    at.chat_input[0].set_value("Make a plan").run()
    assert not at.exception, at.exception
    stored = my_store.path_messages(ME, cid_of(at))[-1]
    assert stored.content == REPLY
    # The text is sent only when Copy is opened, not a second time with every reply.
    assert copy_texts(at.chat_message[-1]) == []
    # the reply just streamed, and the same reply drawn from the database, copy the stored text exactly
    at = opened_copy(at, stored)
    assert not at.exception, at.exception
    assert copy_texts(at.chat_message[-1]) == [REPLY]
    again = reload(cid_of(at))
    assert copy_texts(again.chat_message[-1]) == []
    again = opened_copy(again, stored)
    assert copy_texts(again.chat_message[-1]) == [REPLY]
    assert copy_texts(again.chat_message[0]) == []  # the user's own message has no Copy
    again.session_state[f"copy-{stored.id}"] = False  # closed again (clicking outside it)
    assert copy_texts(again.run().chat_message[-1]) == []
    # While a reply is being written, the earlier replies' Copy holds its text already: opening a lazy one
    # would rerun the page and stop the reply.
    wire.queue(Script(chunks=["\n\nIndented:\n\n    code\n\n"]))
    again.chat_input[0].set_value("Another").run()
    assert copy_texts(again.chat_message[1]) == [REPLY]
    newest = my_store.path_messages(ME, cid_of(at))[-1]
    # text that starts or ends with blank lines is copied with them (st.code drops one newline at each end)
    again = opened_copy(again, newest)
    assert copy_texts(again.chat_message[-1]) == [newest.content]
    assert copy_texts(again.chat_message[-1])[0].endswith("    code\n\n")
    assert copy_texts(again.chat_message[1]) == []  # closed, and no reply being written: not sent


@pytest.mark.usefixtures("stop_keeps_the_page")
def test_an_edits_reply_has_its_own_stop_button_and_keeps_what_was_shown(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = app(OPENAI_BASE_URL=wire.base_url, OPENAI_COMPAT_MODELS="wire-model").run()
    wire.queue(Script(chunks=["First answer"]))
    at.chat_input[0].set_value("A question").run()
    cid = cid_of(at)
    at = reload(cid)  # a run that the chat input did not start: only the reply's own Stop button can end it
    (question, _) = my_store.path_messages(ME, cid)
    at.button(key=f"edit-{question.id}").click().run()
    at.text_area(key=f"edit-text-{question.id}").set_value("A better question").run()
    # Two words, then a minute of silence: the stop lands while the edit's reply is being written.
    wire.queue(Script(chunks=["Thinking ", "aloud", " and done"], pause_before={2: 60.0}))
    try:
        at.button(key=f"edit-save-{question.id}").click().run(timeout=4)
        assert [b.label for b in at.chat_message[-1].button] == ["Stop"]
        assert at.button(key="stop-live").proto.shortcut == "escape"  # the Escape key presses it
        assert bubbles(at) == [("user", "A better question"), ("assistant", "Thinking aloud")]  # what was shown
        at.button(key="stop-live").click().run()  # pressing it reruns the page: the reply is stopped and kept
    finally:
        wire.release.set()  # end the wire server's pause for the tests that follow
        wire.release.clear()
    assert not at.exception, at.exception
    path = my_store.path_messages(ME, cid)
    assert [(m.role, m.content, m.status) for m in path] == [
        ("user", "A better question", "complete"),
        ("assistant", "Thinking aloud", "interrupted"),
    ]
    assert at.chat_message[-1].caption[-1].value.endswith("Stopped before the end.")
    assert at.button(key="regenerate-last").label == "Regenerate"
    assert versions_shown(at) == ["2 / 2"]  # the first question and its answer stay as the other version
    assert copy_texts(opened_copy(at, path[-1]).chat_message[-1]) == ["Thinking aloud"]
