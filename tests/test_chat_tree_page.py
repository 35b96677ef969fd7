"""The chat page's tree and management features under AppTest, with the real services on a real
PostgreSQL: edit, regenerate, version switching that survives a reload, instructions reaching the model
(checked at the local wire server), rename, delete, and the sidebar's title filter."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from components.auth_gate import LOCAL_USER
from components.markdown import neutralise
from devtools.wire_servers import Script, WireServer
from services.providers.demo import demo_reply
from services.runtime import reset_shared_services
from services.store import NotFound
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
ME = LOCAL_USER


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture
def app(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., AppTest]]:
    def make(**env: str) -> AppTest:
        base = {
            "CHAT_AUTH": "none",
            "CHAT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_DEMO_CHARS_PER_S": "1000000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        for name in ("OPENAI_BASE_URL", "OPENAI_COMPAT_MODELS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY",
                     "CHAT_DEFAULT_INSTRUCTIONS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        reset_shared_services()
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)

    yield make
    reset_shared_services()


@pytest.fixture
def my_store(database: EmbeddedDatabase) -> Iterator[PostgresStore]:
    s = PostgresStore(database.app_url, pool_max=2)
    yield s
    s.close()


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    return [(m.name, "\n\n".join(md.value for md in m.markdown)) for m in at.chat_message]


def cid_of(at: AppTest) -> str:
    value = at.query_params["c"]
    return value[0] if isinstance(value, list) else value


def reload(cid: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params["c"] = cid
    return at.run()


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
