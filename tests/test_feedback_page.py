"""Feedback on replies under AppTest, with the real app.py and services on the real test database: the chat
page's thumbs and comment (given, changed, cleared, restored on reload), and History's feedback filter,
table, detail view, usage chart and exports."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from components import feedback as feedback_view
from components import state
from components.auth_gate import LOCAL_USER
from services.runtime import reset_shared_services, shared_services
from services.store import Feedback, Message
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
ME = LOCAL_USER  # CHAT_AUTH=none signs everyone in as this user
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def app(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., AppTest]]:
    """A factory: app(**env) sets the environment, drops cached services, and returns a fresh AppTest."""
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.conversations")  # each test starts from a known history

    def make(**env: str) -> AppTest:
        base = {
            "CHAT_AUTH": "none",
            "CHAT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_DEMO_CHARS_PER_S": "1000000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        for name in ("OPENAI_BASE_URL", "OPENAI_COMPAT_MODELS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
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


def param(at: AppTest, name: str) -> str:
    value = at.query_params[name]
    return str(value[0] if isinstance(value, list) else value)


def reply_of(store: PostgresStore, cid: str) -> Message:
    (reply,) = [m for m in store.recent_messages(ME, cid) if m.role == "assistant"]
    return reply


def stored(store: PostgresStore, message_id: uuid.UUID) -> Feedback | None:
    return store.feedback_for(ME, [message_id]).get(message_id)


def reopened(cid: str) -> AppTest:
    """The conversation in a new session (a reload): only the database remembers anything."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params["c"] = cid
    return at.run()


def comment_boxes(at: AppTest) -> list[str]:
    return [str(t.key) for t in at.text_area if str(t.key).startswith("feedback-comment-")]


def chat_once(app: Callable[..., AppTest], text: str = "Hello there", **env: str) -> tuple[AppTest, str]:
    at = app(**env).run()
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at, param(at, "c")


def test_thumbs_and_a_comment_are_given_changed_cleared_and_restored_on_reload(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at, cid = chat_once(app)
    reply = reply_of(my_store, cid)
    key = feedback_view.thumbs_key(str(reply.id))
    # The reply just streamed already has its thumbs (and no comment box before a thumb is given).
    assert [f.key for f in at.feedback] == [key]
    assert comment_boxes(at) == []
    at.feedback(key=key).set_value(0).run()  # thumbs down
    assert not at.exception, at.exception
    given = stored(my_store, reply.id)
    assert given is not None and (given.rating, given.comment) == ("down", None)

    at = reopened(cid)
    assert at.feedback(key=key).value == 0  # restored from the database
    box = at.text_area(key=feedback_view.comment_key(str(reply.id)))
    assert box.value == ""
    box.set_value("  Too vague: no example.  ").run()
    at.button(key=f"feedback-save-{reply.id}").click().run()
    assert not at.exception, at.exception
    given = stored(my_store, reply.id)
    assert given is not None and (given.rating, given.comment) == ("down", "Too vague: no example.")

    at = reopened(cid)
    assert at.text_area(key=feedback_view.comment_key(str(reply.id))).value == "Too vague: no example."
    at.feedback(key=key).set_value(1).run()  # changing the thumb keeps the comment
    given = stored(my_store, reply.id)
    assert given is not None and (given.rating, given.comment) == ("up", "Too vague: no example.")
    at.text_area(key=feedback_view.comment_key(str(reply.id))).set_value("Fine after all.").run()
    at.button(key=f"feedback-save-{reply.id}").click().run()
    given = stored(my_store, reply.id)
    assert given is not None and (given.rating, given.comment) == ("up", "Fine after all.")

    at.button(key=f"feedback-clear-{reply.id}").click().run()  # remove the comment, keep the thumb
    given = stored(my_store, reply.id)
    assert given is not None and (given.rating, given.comment) == ("up", None)
    assert at.text_area(key=feedback_view.comment_key(str(reply.id))).value == ""

    at.feedback(key=key).set_value(None).run()  # un-thumbing removes the feedback
    assert not at.exception, at.exception
    assert stored(my_store, reply.id) is None
    at = reopened(cid)
    assert at.feedback(key=key).value is None and comment_boxes(at) == []


def test_the_comment_box_holds_at_most_the_configured_length(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at, cid = chat_once(app, CHAT_FEEDBACK_COMMENT_CHARS="20")
    reply = reply_of(my_store, cid)
    at.feedback(key=feedback_view.thumbs_key(str(reply.id))).set_value(1).run()
    box = at.text_area(key=feedback_view.comment_key(str(reply.id)))
    assert box.max_chars == 20
    box.set_value("x" * 25).run()  # the widget keeps the first 20, as the browser does
    at.button(key=f"feedback-save-{reply.id}").click().run()
    assert not at.exception, at.exception
    given = stored(my_store, reply.id)
    assert given is not None and given.comment == "x" * 20


def test_feedback_can_be_switched_off(app: Callable[..., AppTest], my_store: PostgresStore) -> None:
    at, cid = chat_once(app, CHAT_FEEDBACK="false")
    assert not at.feedback
    assert not reopened(cid).feedback


def test_a_reviewer_sees_the_authors_feedback_read_only(
    app: Callable[..., AppTest], my_store: PostgresStore, database: EmbeddedDatabase
) -> None:
    """CHAT_AUTH=none's user is a reviewer: another user's conversation opens read-only, thumbs included."""
    other = "user_rated_elsewhere"
    cid, reply_id = seed_rated(database.admin_url, other, "down", "Wrong year.")
    at = app()
    at.query_params["c"] = str(cid)
    at.run()
    assert not at.exception, at.exception
    (thumbs,) = at.feedback
    assert thumbs.value == 0 and thumbs.disabled
    assert any("Comment: Wrong year." in t.value for t in at.text)
    assert thumbs.key == feedback_view.thumbs_key(str(reply_id))
    assert comment_boxes(at) == []  # nothing to edit


# --- History ---------------------------------------------------------------------------------------------


def seed_rated(admin_url: str, user_id: str, rating: str | None, comment: str | None = None, minute: int = 0) -> tuple[
    uuid.UUID, uuid.UUID
]:
    """One conversation with a question and a reply (at T0 + minute), the reply rated as given (as admin)."""
    cid, reply_id = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "insert into public.conversations (id, user_id, title) values (%s, %s, %s)", [cid, user_id, "Rated"]
        )
        question = conn.execute(
            "insert into public.messages (conversation_id, user_id, role, content, model, created_at)"
            " values (%s, %s, 'user', %s, 'demo', %s) returning id",
            [cid, user_id, f"question {minute}", T0.replace(minute=minute)],
        ).fetchone()
        assert question is not None
        conn.execute(
            "insert into public.messages (id, conversation_id, user_id, role, content, model, created_at, parent_id)"
            " values (%s, %s, %s, 'assistant', %s, 'demo', %s, %s)",
            [reply_id, cid, user_id, f"answer {minute}", T0.replace(minute=minute, second=30), question[0]],
        )
        conn.execute("update public.conversations set current_leaf_id = %s where id = %s", [reply_id, cid])
        if rating is not None:
            conn.execute(
                "insert into public.feedback (message_id, user_id, rating, comment, message_created_at)"
                " values (%s, %s, %s, %s, %s)",
                [reply_id, user_id, 1 if rating == "up" else -1, comment, T0.replace(minute=minute, second=30)],
            )
    return cid, reply_id


@pytest.fixture
def history(app: Callable[..., AppTest], database: EmbeddedDatabase) -> AppTest:
    seed_rated(database.admin_url, ME.user_id, "up", None, minute=1)
    seed_rated(database.admin_url, ME.user_id, "down", "=HYPERLINK(\"http://evil.test\") made up", minute=2)
    seed_rated(database.admin_url, ME.user_id, None, None, minute=3)
    at = app()
    at.run()
    at.switch_page("pages/history.py")
    return at


def previews(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["Preview"])


def test_history_filters_by_feedback_and_shows_it_in_table_and_detail(history: AppTest) -> None:
    at = history.run()
    assert not at.exception, at.exception
    frame = at.dataframe[0].value
    cells = dict(zip(frame["Preview"], frame["Feedback"], strict=True))
    assert cells == {
        "answer 3": "",
        "question 3": "",
        "answer 2": "👎",
        "question 2": "",
        "answer 1": "👍",
        "question 1": "",
    }
    assert list(frame["Comment"])[2] == '=HYPERLINK("http://evil.test") made up'

    expected = {"up": ["answer 1"], "down": ["answer 2"], "comment": ["answer 2"], "none": ["answer 3"]}
    for choice, rows in expected.items():
        at.selectbox(key=state.HISTORY_FEEDBACK).set_value(choice).run()
        assert not at.exception, at.exception
        assert param(at, "feedback") == choice  # in the URL, like every filter
        assert previews(at) == rows, choice
    at.selectbox(key=state.HISTORY_FEEDBACK).set_value(None).run()
    assert "feedback" not in at.query_params and len(previews(at)) == 6

    at.query_params["feedback"] = "down"
    at.query_params["q"] = "answer"  # text search and the filter together
    at.run()
    assert previews(at) == ["answer 2"]
    (box,) = [s for s in at.selectbox if s.label == "Message details"]
    box.select_index(1).run()
    assert any("Your feedback: 👎 thumbs down" in c.value for c in at.caption)
    assert any(t.value == 'Comment: =HYPERLINK("http://evil.test") made up' for t in at.text)


def test_a_bad_feedback_filter_in_the_link_is_dropped_with_a_notice(history: AppTest) -> None:
    history.query_params["feedback"] = "![x](http://evil.test/x.png)"
    at = history.run()
    assert [w.value for w in at.warning] == [
        "Unknown feedback filter in the link (up, down, none or comment); showing every message."
    ]
    assert len(previews(at)) == 6 and "feedback" not in at.query_params


def test_usage_counts_feedback_per_day(history: AppTest) -> None:
    history.query_params.update({"from": "2026-04-30", "to": "2026-05-02"})
    at = history.run()
    at.radio(key=state.HISTORY_VIEW).set_value("Usage").run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric][2:] == ["👍 Thumbs up", "👎 Thumbs down"]
    assert [m.value for m in at.metric][2:] == ["1", "1"]
    assert any(h.value == "Feedback per day" for h in at.subheader)
    assert len(at.get("vega_lite_chart")) == 3


def test_exports_carry_feedback_with_the_csv_formula_guard(history: AppTest) -> None:
    history.run()
    services = shared_services()
    rows = list(csv.DictReader(io.StringIO(services.history.export_csv(ME).read().decode())))
    by_content = {r["content"]: r for r in rows}
    assert by_content["answer 1"]["feedback"] == "up" and by_content["answer 1"]["feedback_comment"] == ""
    assert by_content["answer 2"]["feedback"] == "down"
    assert by_content["answer 2"]["feedback_comment"] == "'=HYPERLINK(\"http://evil.test\") made up"
    assert by_content["answer 3"]["feedback"] == "" and by_content["question 1"]["feedback"] == ""

    document: dict[str, Any] = json.loads(services.history.export_json(ME).read())
    messages = {m["content"]: m for m in document["messages"]}
    assert (messages["answer 2"]["feedback"], messages["answer 2"]["feedback_comment"]) == (
        "down",
        '=HYPERLINK("http://evil.test") made up',  # JSON is lossless: no guard
    )
    assert (messages["answer 3"]["feedback"], messages["answer 3"]["feedback_comment"]) == (None, None)

    def markdown_of(answer: str) -> str:
        cid = messages[answer]["conversation_id"]
        return services.history.export_markdown(ME, uuid.UUID(cid)).read().decode()

    assert markdown_of("answer 1").endswith("> answer 1\n\nFeedback: 👍 thumbs up\n")
    # The comment is quoted like the content: typed text cannot start a heading of the export's own.
    assert markdown_of("answer 2").endswith(
        '> answer 2\n\nFeedback: 👎 thumbs down, with a comment:\n\n> =HYPERLINK("http://evil.test") made up\n'
    )
    assert "Feedback" not in markdown_of("answer 3")
